set -u
export OUT
t0=$(date +%s)
export PYTHONPATH=$PWD/<ignored folder> SHARD_N=2 SHARD_K=0
SUITE_PATHS=tests/gpu STRESS=0 SPLIT=0 SUITE_TIMEOUT=380 PYTEST_ARGS="-p shard" bash tools/gpu_suite.sh > $OUT/run_a.log 2>&1
echo "rc $?"; grep -E "^(FAILED|ERROR)" $OUT/gpu_suite.log | head -30; cat $OUT/summary.txt
mv $OUT/gpu_suite.log $OUT/suite_a.log; mv $OUT/summary.txt $OUT/summary_a.txt
rm -f $OUT/junit*.xml; grep -q "build\] ok" $OUT/summary_a.txt && rm -f $OUT/build.log
unset PYTHONPATH SHARD_N SHARD_K
echo "elapsed $(( $(date +%s) - t0 )) s"
left=$(( 580 - ($(date +%s) - t0) ))
PYTHONPATH=pyx:. timeout $(( left < 80 ? left : 80 )) python3 tools/over_limit_run.py $OUT/over_limit.json > $OUT/over_limit.log 2>&1; echo "ol80 rc $?"; grep -vE "^ |^\{|^\}" $OUT/over_limit.log | tail -6
echo "elapsed $(( $(date +%s) - t0 )) s"
left=$(( 585 - ($(date +%s) - t0) ))
if [ $left -gt 40 ]; then
PYTHONPATH=pyx:. timeout $left python3 tools/over_limit_run.py $OUT/over_limit_d130.json --depth 130 > $OUT/over_limit_d130.log 2>&1; echo "ol130 rc $?"; grep -vE "^ |^\{|^\}" $OUT/over_limit_d130.log | tail -6
fi
for f in over_limit.json over_limit_d130.json; do [ -f $OUT/$f ] && PYTHONPATH=pyx:. python3 -c "import json;d=json.load(open('$OUT/$f'));print('$f refused',d.get('one_sided_refused'),'trusted',len(d.get('one_sided_trusted') or []))"; done
rm -f $OUT/env.txt
echo "elapsed $(( $(date +%s) - t0 )) s"
