set -u
export OUT
t0=$(date +%s)
git log --oneline -1 2>/dev/null
SUITE_PATHS=tests/gpu STRESS=0 SPLIT=0 SUITE_TIMEOUT=520 bash tools/gpu_suite.sh > $OUT/run.log 2>&1
echo "rc $?"; grep -E "^(FAILED|ERROR)" $OUT/gpu_suite.log | head -30; tail -4 $OUT/summary.txt; grep -E "passed|failed" $OUT/gpu_suite.log | tail -2
rm -f $OUT/junit*.xml; grep -q "build\] ok" $OUT/summary.txt && rm -f $OUT/build.log
echo "elapsed $(( $(date +%s) - t0 )) s"
