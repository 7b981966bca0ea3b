set -u
export OUT
t0=$(date +%s)
SUITE_PATHS="tests --ignore=tests/gpu" STRESS=1 STRESS_TIMEOUT=220 SUITE_TIMEOUT=300 SPLIT_TIMEOUT=120 bash tools/gpu_suite.sh > $OUT/run.log 2>&1
echo "rc $?"; grep -E "^(FAILED|ERROR)" $OUT/gpu_suite.log $OUT/stress.log $OUT/split.log 2>/dev/null | head -30; cat $OUT/summary.txt
rm -f $OUT/junit*.xml; grep -q "build\] ok" $OUT/summary.txt && rm -f $OUT/build.log
echo "elapsed $(( $(date +%s) - t0 )) s"
