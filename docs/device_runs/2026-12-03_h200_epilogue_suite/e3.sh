set -u
export OUT
SUITE_PATHS="tests --ignore=tests/gpu" STRESS=0 SUITE_TIMEOUT=330 bash tools/gpu_suite.sh > $OUT/run.log 2>&1
echo "rc $?"; grep -E "^(FAILED|ERROR)" $OUT/gpu_suite.log | head -30; cat $OUT/summary.txt
rm -f $OUT/junit*.xml $OUT/run.log; grep -q "build ok" $OUT/summary.txt && rm -f $OUT/build.log
PYTHONPATH=pyx:. timeout 170 python3 bench/host.py --out $OUT/host --time-limit 140 > $OUT/host.log 2>&1; echo "host rc $?"; tail -25 $OUT/host.log
