#!/bin/bash
# build; the exhaustive ResNet-50 search of all 69 layer-directions with a tuning file, then a fresh
# process with that file (it must search nothing)
set -x
date -u
python3 setup.py build_ext --inplace -j 16 > $OUT/build.log 2>&1; tail -2 $OUT/build.log
export PYTHONPATH=pyx:.
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv
T=$OUT/ex; mkdir -p $T
timeout -s KILL 470 python3 -m bench --suite resnet50 --batch 128 --dtype fp16 --layout nhwc --engine graph \
  --exhaustive 5 --budget 0.4 --tuning-file $T/tuning.json --time-limit 440 --out $T > $T/cold.log 2> $T/cold.err
echo "cold rc $?"; tail -12 $T/cold.log; grep -c "(done)" $T/cold.err
timeout -s KILL 115 python3 -m bench --suite resnet50 --batch 128 --dtype fp16 --layout nhwc --engine graph \
  --exhaustive 5 --budget 0.4 --tuning-file $T/tuning.json --time-limit 100 --out $T \
  --name h200_resnet50_fp16_nhwc_exhaustive_warm > $T/warm.log 2> $T/warm.err
echo "warm rc $?"; tail -12 $T/warm.log; grep -c "(done)" $T/warm.err
ls -la $T; date -u
