set -u
mkdir -p $OUT
t0=$(date +%s)
python3 setup.py build_ext --inplace -j 16 > /tmp/build.log 2>&1 || { tail -40 /tmp/build.log; exit 1; }
echo "build $(( $(date +%s) - t0 )) s"
export PYTHONPATH=pyx:.
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
git log --oneline -1 2>/dev/null
timeout 90 python3 docs/device_runs/2026-12-03_h200_composed_kernels/dbias.py $OUT/dbias.json > $OUT/dbias.log 2>&1; echo "dbias rc $?"; tail -12 $OUT/dbias.log
echo "elapsed $(( $(date +%s) - t0 )) s"
left=$(( 580 - ($(date +%s) - t0) ))
timeout $left python3 bench/epilogue.py --out $OUT/bench --all-acts-on 2 --time-limit $(( left - 50 )) > $OUT/bench.log 2>&1
echo "bench rc $?"; grep -E "^- " $OUT/bench.log | tail -16
