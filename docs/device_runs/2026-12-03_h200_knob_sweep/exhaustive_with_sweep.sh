#!/bin/bash
# build; the exhaustive search's GPU tests (knob sweep in a worker); the exhaustive ResNet-50 run
T0=$(date +%s)
python3 setup.py build_ext --inplace -j 16 > $OUT/build.log 2>&1; tail -1 $OUT/build.log
export PYTHONPATH=pyx:.
timeout -s KILL 150 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_exhaustive_gpu.py --timeout 100 > $OUT/exh_tests.log 2>&1
echo "tests rc $?"; grep -E "passed|failed|Error|assert " $OUT/exh_tests.log | tail -12
LEFT=$(( 560 - ($(date +%s) - T0) ))
echo "bench time limit $((LEFT - 60))"
timeout -s KILL $LEFT python3 -m bench --suite resnet50 --batch 128 --dtype fp16 --layout nhwc --direction fwd,dgrad,wgrad \
  --engine graph --compare torch --exhaustive 5 --budget 0.4 --time-limit $((LEFT - 60)) --out $OUT/r50x > $OUT/r50x.log 2> $OUT/r50x.err
echo "bench rc $?"; tail -9 $OUT/r50x.log; grep -c "(done)" $OUT/r50x.err; grep -i "did not finish\|worker" $OUT/r50x.err | head -5
