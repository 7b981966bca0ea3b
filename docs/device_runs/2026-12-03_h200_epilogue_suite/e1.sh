set -u
mkdir -p $OUT
t0=$(date +%s)
python3 setup.py build_ext --inplace -j 16 > /tmp/build.log 2>&1 || { tail -40 /tmp/build.log; exit 1; }
echo "build $(( $(date +%s) - t0 )) s"
export PYTHONPATH=pyx:.
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 60 python3 .probes/dgrad_act_kinks.py $OUT/dgrad_act_kinks.json 2>&1 | tail -30
timeout 320 python3 -m pytest tests/gpu/test_gpu_epilogue.py "tests/gpu/test_gpu_torch.py" -k "epilogue or conv_act" -q --tb=short -p no:cacheprovider -ra --durations=8 > $OUT/epi_tests.log 2>&1
echo "tests rc $?"; grep -E "^(FAILED|ERROR)" $OUT/epi_tests.log | head -40; tail -15 $OUT/epi_tests.log
echo "elapsed $(( $(date +%s) - t0 )) s"
left=$(( 575 - ($(date +%s) - t0) ))
timeout $left python3 bench/epilogue.py --out $OUT/bench --time-limit $(( left - 45 )) > $OUT/bench.log 2>&1
echo "bench rc $?"; grep -E "^- " $OUT/bench.log | tail -12
