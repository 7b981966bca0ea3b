set -u
export OUT
t0=$(date +%s)
git log --oneline -1 2>/dev/null
SUITE_PATHS="tests/gpu/test_gpu_split.py tests/test_tiling.py" STRESS=0 SPLIT=1 SPLIT_TIMEOUT=200 SUITE_TIMEOUT=150 bash tools/gpu_suite.sh > /tmp/run.log 2>&1
echo "suite rc $?"; cat $OUT/summary.txt; grep -E "^(FAILED|ERROR)" $OUT/gpu_suite.log $OUT/split.log | head -20
grep -E "one-sided problems refused|RuntimeWarning" $OUT/split.log | head -8
rm -f $OUT/junit*.xml $OUT/env.txt; grep -q "build\] ok" $OUT/summary.txt && rm -f $OUT/build.log
echo "elapsed $(( $(date +%s) - t0 )) s"
export PYTHONPATH=pyx:.
timeout 150 python3 tools/over_limit_run.py $OUT/over_limit.json > $OUT/over_limit.log 2>&1; echo "ol80 rc $?"; grep -vE "^ |^\{|^\}" $OUT/over_limit.log | tail -8
python3 -c "import json;d=json.load(open('$OUT/over_limit.json'));print('refused',d.get('one_sided_refused'));print('trusted',d.get('one_sided_trusted'))"
echo "elapsed $(( $(date +%s) - t0 )) s"
timeout 200 python3 tools/over_limit_run.py $OUT/over_limit_d130.json --depth 130 > $OUT/over_limit_d130.log 2>&1; echo "ol130 rc $?"; grep -vE "^ |^\{|^\}" $OUT/over_limit_d130.log | tail -8
echo "elapsed $(( $(date +%s) - t0 )) s"
