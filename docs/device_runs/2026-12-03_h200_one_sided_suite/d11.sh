set -u
export OUT
t0=$(date +%s)
export PYTHONPATH=$PWD/<ignored folder> SHARD_N=2 SHARD_K=1
SUITE_PATHS=tests/gpu STRESS=1 STRESS_TIMEOUT=200 SPLIT=0 SUITE_TIMEOUT=370 PYTEST_ARGS="-p shard" bash tools/gpu_suite.sh > $OUT/run_b.log 2>&1
echo "rc $?"; grep -E "^(FAILED|ERROR)" $OUT/gpu_suite.log $OUT/stress.log | head -30; cat $OUT/summary.txt
mv $OUT/gpu_suite.log $OUT/suite_b.log; mv $OUT/summary.txt $OUT/summary_b.txt
rm -f $OUT/junit*.xml $OUT/env.txt; grep -q "build\] ok" $OUT/summary_b.txt && rm -f $OUT/build.log
echo "elapsed $(( $(date +%s) - t0 )) s"
