set -u
export OUT
t0=$(date +%s)
SUITE_PATHS="tests --ignore=tests/gpu" STRESS=0 SPLIT=1 SUITE_TIMEOUT=320 SPLIT_TIMEOUT=150 bash tools/gpu_suite.sh > $OUT/run_c.log 2>&1
echo "rc $?"; grep -E "^(FAILED|ERROR)" $OUT/gpu_suite.log $OUT/split.log 2>/dev/null | head -30; cat $OUT/summary.txt
grep -E "one-sided problems refused" $OUT/split.log | sort | uniq -c | head -8
rm -f $OUT/junit*.xml $OUT/env.txt; grep -q "build\] ok" $OUT/summary.txt && rm -f $OUT/build.log
echo "elapsed $(( $(date +%s) - t0 )) s"
