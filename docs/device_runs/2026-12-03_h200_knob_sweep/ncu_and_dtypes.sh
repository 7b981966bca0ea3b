#!/bin/bash
# build, ncu on the five layer-directions furthest from their roofline, bf16 NHWC and fp32 NCHW ResNet-50
set -x
python3 setup.py build_ext --inplace -j 16 > $OUT/build.log 2>&1; tail -2 $OUT/build.log
export PYTHONPATH=pyx:.
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv
timeout -s KILL 200 ncu --clock-control none --profile-from-start off --target-processes all \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section ComputeWorkloadAnalysis \
  --section MemoryWorkloadAnalysis --csv --page details \
  python3 .probes/ncu_worst.py all > $OUT/ncu_details.csv 2> $OUT/ncu.err
echo "ncu rc $?"; grep -c . $OUT/ncu_details.csv; tail -5 $OUT/ncu.err; grep -E "PROFILED|CHOICE" $OUT/ncu_details.csv | head -20
timeout -s KILL 150 python3 -m bench --suite resnet50 --batch 128 --dtype bf16 --layout nhwc --engine graph --out $OUT/bf16 --name h200_resnet50_bf16_nhwc --time-limit 110 > $OUT/bf16.log 2>&1
echo "bf16 rc $?"; tail -12 $OUT/bf16.log
timeout -s KILL 170 python3 -m bench --suite resnet50 --batch 128 --dtype fp32 --layout nchw --engine graph --out $OUT/fp32 --name h200_resnet50_fp32_nchw --time-limit 130 > $OUT/fp32.log 2>&1
echo "fp32 rc $?"; tail -12 $OUT/fp32.log
