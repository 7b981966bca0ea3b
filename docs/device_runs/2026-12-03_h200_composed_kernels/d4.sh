set -u
mkdir -p $OUT
t0=$(date +%s)
python3 setup.py build_ext --inplace -j 16 > /tmp/build.log 2>&1 || { tail -40 /tmp/build.log; exit 1; }
echo "build $(( $(date +%s) - t0 )) s"
export PYTHONPATH=pyx:.
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 230 python3 -m pytest tests/gpu/test_gpu_epilogue.py -q --tb=short -p no:cacheprovider -ra --durations=5 > $OUT/epi_tests.log 2>&1
echo "tests rc $?"; grep -E "^(FAILED|ERROR)" $OUT/epi_tests.log | head -30; tail -3 $OUT/epi_tests.log
echo "elapsed $(( $(date +%s) - t0 )) s"
timeout 60 python3 docs/device_runs/2026-12-03_h200_composed_kernels/dbias.py $OUT/dbias.json > $OUT/dbias.log 2>&1; echo "dbias rc $?"; cut -c1-150 $OUT/dbias.log | tail -10
left=$(( 440 - ($(date +%s) - t0) ))
echo "left for bench $left s"
if [ $left -gt 60 ]; then
timeout $left python3 bench/epilogue.py --out $OUT/bench --time-limit $(( left - 40 )) > $OUT/bench.log 2>&1
echo "bench rc $?"; grep -E "^- " $OUT/bench.log | tail -8
fi
