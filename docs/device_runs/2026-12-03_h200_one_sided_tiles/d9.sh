set -u
export OUT
t0=$(date +%s)
python3 setup.py build_ext --inplace -j 16 > /tmp/build.log 2>&1 || { tail -30 /tmp/build.log; exit 1; }
echo "build $(( $(date +%s) - t0 )) s"
PYTHONPATH=pyx:. timeout 70 python3 tools/over_limit_run.py $OUT/over_limit.json > $OUT/over_limit.log 2>&1; echo "ol80 rc $?"; grep -vE "^ |^\{|^\}" $OUT/over_limit.log | tail -6
PYTHONPATH=pyx:. python3 -c "import json;d=json.load(open('$OUT/over_limit.json'));print('refused',d.get('one_sided_refused'));print('trusted',d.get('one_sided_trusted'))"
echo "elapsed $(( $(date +%s) - t0 )) s"
SUITE_PATHS="tests/gpu/test_gpu_split.py" STRESS=0 SPLIT=1 SPLIT_TIMEOUT=100 SUITE_TIMEOUT=30 bash tools/gpu_suite.sh > /tmp/run.log 2>&1
echo "suite rc $?"; cat $OUT/summary.txt; grep -E "^(FAILED|ERROR)" $OUT/split.log | head -20
grep -E "one-sided problems refused" $OUT/split.log | sort | uniq -c | head -8
rm -f $OUT/junit*.xml $OUT/env.txt $OUT/gpu_suite.log; grep -q "build\] ok" $OUT/summary.txt && rm -f $OUT/build.log
echo "elapsed $(( $(date +%s) - t0 )) s"
left=$(( 200 - ($(date +%s) - t0) ))
if [ $left -gt 35 ]; then
PYTHONPATH=pyx:. timeout $left python3 tools/over_limit_run.py $OUT/over_limit_d130.json --depth 130 > $OUT/over_limit_d130.log 2>&1; echo "ol130 rc $?"; grep -vE "^ |^\{|^\}" $OUT/over_limit_d130.log | tail -6
fi
echo "elapsed $(( $(date +%s) - t0 )) s"
