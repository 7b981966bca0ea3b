set -u
export OUT
t0=$(date +%s)
SUITE_PATHS=tests/gpu STRESS=0 SPLIT=0 SUITE_TIMEOUT=470 bash tools/gpu_suite.sh > $OUT/run.log 2>&1
echo "rc $?"; grep -E "^(FAILED|ERROR)" $OUT/gpu_suite.log | head -30; tail -4 $OUT/summary.txt; grep -E "passed|failed" $OUT/gpu_suite.log | tail -2
rm -f $OUT/junit.xml; grep -q "build ok" $OUT/summary.txt && rm -f $OUT/build.log
left=$(( 585 - ($(date +%s) - t0) ))
echo "left for resnet $left s"
if [ $left -gt 90 ]; then
PYTHONPATH=pyx:. timeout $left python3 -m bench --suite resnet50 --batch 128 --dtype fp16 --layout nhwc --direction fwd,dgrad,wgrad --engine graph --compare torch --time-limit $(( left - 25 )) --out $OUT/r50 > $OUT/r50.log 2>&1
echo "r50 rc $?"; grep -E "^- graph" $OUT/r50.log | tail -8
fi
