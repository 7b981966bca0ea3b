#!/usr/bin/env bash
# The GPU suite, in one call on the device machine:
#   1. record the machine: nvidia-smi, python / cupy / torch / cuDNN versions;
#   2. build the package (default options) and run the whole test suite
#      (CPU + GPU tests), with a JUnit XML;
#   3. build a second copy of the tree with a small CUDNNCONV_INDEX_LIMIT and
#      run the split tests against it (tests/gpu/test_gpu_split.py);
#   4. with --bench [ARGS...]: run `python3 -m bench ARGS...` if bench/ exists;
#   5. with WARM_CACHE_ARGS set: run `python3 bench/warm_cache.py $WARM_CACHE_ARGS`
#      (the warm tuning-cache benchmark, each mode in fresh processes).
# Everything it writes goes to $OUT (default ./gpu_suite_out): env.txt,
# build.log, gpu_suite.log, junit.xml, split.log, junit_split.xml, bench.log,
# warm_cache.log.
# Exits non-zero when any phase fails; prints one summary line per phase.
#
# Usage: bash tools/gpu_suite.sh [--bench [bench args...]]
# Env:   SMALL_INDEX_LIMIT (default 1048576), PYTEST_ARGS (extra pytest args),
#        SUITE_TIMEOUT / SPLIT_TIMEOUT / STRESS_TIMEOUT (seconds per pytest phase; 124 = timed out),
#        STRESS=0 (leave out the stress phase: tests marked stress),
#        SPLIT=0 (leave out the small-limit build and its split tests: for the call of a two-call
#        suite that does not run them),
#        SUITE_PATHS (what the suite phase collects, default "tests"; to run the suite in two
#        calls where one does not fit a call's time: SUITE_PATHS=tests/gpu, then
#        SUITE_PATHS="tests --ignore=tests/gpu"),
#        SHARD=K/N (the suite phase runs the K-th of N interleaved shares of what it collects,
#        tools/pytest_shard.py: tests/gpu alone no longer fits a ten-minute call, so three calls:
#        SUITE_PATHS=tests/gpu SHARD=0/2 SPLIT=0 STRESS=0, then SHARD=1/2 SPLIT=0, then
#        SUITE_PATHS="tests --ignore=tests/gpu" STRESS=0).
set -u
set -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/gpu_suite_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
SMALL_INDEX_LIMIT=${SMALL_INDEX_LIMIT:-1048576}
SMALL=/tmp/smallbuild
BENCH=0
if [ "${1:-}" = "--bench" ]; then BENCH=1; shift; fi

declare -A RESULT
ORDER=()
phase() {   # phase NAME STATUS SUMMARY
    ORDER+=("$1")
    RESULT[$1]="$2 :: $3"
}
last_summary() {   # the pytest summary line of a log
    grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error|deselected)|no tests ran|[0-9]+ (passed|failed|error)' "$1" \
        | tail -n 1 | sed -e 's/^=* *//' -e 's/ *=*$//'
}

# ---- 1. environment -------------------------------------------------------
{
    echo "# date: $(date -u)"
    echo "# nvidia-smi"; nvidia-smi 2>&1 || echo "nvidia-smi failed"
    echo "# python"; python3 --version 2>&1
    python3 - <<'PY' 2>&1
import importlib
for name in ("numpy", "cupy", "torch", "ml_dtypes", "Cython", "pytest"):
    try:
        m = importlib.import_module(name)
        print(name, getattr(m, "__version__", "?"))
    except Exception as e:
        print(name, "unavailable:", e)
try:
    import cupy
    print("cupy cuda runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
    print("device 0:", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
except Exception as e:
    print("cupy device info unavailable:", e)
try:
    import torch
    print("torch cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
except Exception as e:
    print("torch info unavailable:", e)
try:
    import nvidia.cudnn, os, glob
    d = os.path.dirname(nvidia.cudnn.__file__ or list(nvidia.cudnn.__path__)[0])
    print("nvidia.cudnn wheel:", d, sorted(os.path.basename(p) for p in glob.glob(d + "/lib/libcudnn.so*")))
    import importlib.metadata as md
    for dist in ("nvidia-cudnn-cu13", "nvidia-cudnn-cu12"):
        try:
            print(dist, md.version(dist))
        except Exception:
            pass
except Exception as e:
    print("nvidia.cudnn unavailable:", e)
PY
} > "$OUT/env.txt" 2>&1
grep -E '^(device 0|cupy|torch|nvidia-cudnn|Python)' "$OUT/env.txt" || true

# ---- 2. default build + full suite ------------------------------------------
echo "=== build (default options) ==="
python3 setup.py build_ext --inplace -j 16 > "$OUT/build.log" 2>&1
BUILD_RC=$?
tail -n 3 "$OUT/build.log"
if [ $BUILD_RC -ne 0 ]; then
    tail -n 40 "$OUT/build.log"
    phase build FAIL "setup.py build_ext exited $BUILD_RC (see build.log)"
    SUITE_RC=1
    phase suite FAIL "not run: the build failed"
else
    phase build ok "built in place"
    export PYTHONPATH="$ROOT/pyx${PYTHONPATH:+:$PYTHONPATH}"
    python3 -c "import cudnnconv, json; print(cudnnconv.__file__); print(json.dumps(cudnnconv.build_info(), default=str))" \
        2>&1 | tee -a "$OUT/env.txt"
    echo "=== pytest tests (CPU + GPU)${SHARD:+, share $SHARD} ==="
    SHARD_ARGS=""
    if [ -n "${SHARD:-}" ]; then
        SHARD_ARGS="-p pytest_shard"
        export CUDNNCONV_TEST_SHARD="$SHARD"
        export PYTHONPATH="$PYTHONPATH:$ROOT/tools"
    fi
    # shellcheck disable=SC2086
    timeout "${SUITE_TIMEOUT:-390}" python3 -m pytest ${SUITE_PATHS:-tests} -q -ra -p no:cacheprovider --durations=20 \
        -m "not stress" --junitxml="$OUT/junit.xml" $SHARD_ARGS ${PYTEST_ARGS:-} 2>&1 \
        | tee "$OUT/gpu_suite.log"
    SUITE_RC=$?
    if [ $SUITE_RC -eq 0 ]; then phase suite ok "$(last_summary "$OUT/gpu_suite.log")"
    else phase suite FAIL "rc=$SUITE_RC: $(last_summary "$OUT/gpu_suite.log")"; fi
    if [ "${STRESS:-1}" = "1" ]; then
        echo "=== pytest -m stress (threads, memory, out-of-memory) ==="
        timeout -k 10 "${STRESS_TIMEOUT:-300}" python3 -m pytest tests/gpu -q -rA -p no:cacheprovider -m stress \
            --durations=5 --junitxml="$OUT/junit_stress.xml" 2>&1 | tee "$OUT/stress.log"
        STRESS_RC=${PIPESTATUS[0]}
        if [ $STRESS_RC -eq 0 ]; then phase stress ok "$(last_summary "$OUT/stress.log")"
        else phase stress FAIL "rc=$STRESS_RC: $(last_summary "$OUT/stress.log")"; fi
    fi
fi

# ---- 3. small-index-limit build + split tests ------------------------------
SPLIT_RC=0
if [ "${SPLIT:-1}" = "1" ]; then
echo "=== small-limit build (CUDNNCONV_INDEX_LIMIT=$SMALL_INDEX_LIMIT) in $SMALL ==="
rm -rf "$SMALL"
mkdir -p "$SMALL"
# The tree minus build outputs (so the copy compiles its own modules).
tar -C "$ROOT" --exclude=./.git --exclude=./build --exclude='*.so' --exclude='*.egg-info' \
    --exclude='__pycache__' --exclude=./gpu_suite_out --exclude='./pyx/cudnnconv/*.c' \
    --exclude='./pyx/cudnnconv/*/*.c' -cf - . | tar -C "$SMALL" -xf -
# (the split tests run no torch: the copy leaves cudnnconv.torch's C++ node out)
(cd "$SMALL" && CUDNNCONV_INDEX_LIMIT=$SMALL_INDEX_LIMIT CUDNNCONV_TORCH_NODE=0 python3 setup.py build_ext --inplace -j 16) \
    > "$OUT/split.log" 2>&1
SMALL_BUILD_RC=$?
if [ $SMALL_BUILD_RC -ne 0 ]; then
    tail -n 40 "$OUT/split.log"
    phase split FAIL "small-limit build exited $SMALL_BUILD_RC (see split.log)"
    SPLIT_RC=1
else
    (
        cd "$SMALL" || exit 1
        export PYTHONPATH="$SMALL/pyx"
        python3 - <<PY || exit 1
import cudnnconv, sys
limit = cudnnconv.build_info()["CUDNNCONV_INDEX_LIMIT"]
print("split build: cudnnconv from", cudnnconv.__file__, "index limit", limit)
if not cudnnconv.__file__.startswith("$SMALL/"):
    sys.exit("the small-limit copy is not the one imported")
if limit != $SMALL_INDEX_LIMIT:
    sys.exit("the small-limit copy reports limit %d" % limit)
PY
        timeout "${SPLIT_TIMEOUT:-150}" python3 -m pytest tests/gpu/test_gpu_split.py tests/test_split.py \
            -q -ra -p no:cacheprovider -s \
            --junitxml="$OUT/junit_split.xml"
    ) 2>&1 | tee -a "$OUT/split.log"
    SPLIT_RC=$?
    S=$(last_summary "$OUT/split.log")
    if [ $SPLIT_RC -eq 0 ] && ! echo "$S" | grep -q ' skipped' ; then phase split ok "$S"
    elif [ $SPLIT_RC -eq 0 ]; then phase split ok "$S (some skipped: see split.log)"
    else phase split FAIL "rc=$SPLIT_RC: $S"; fi
fi
fi

# ---- 4. optional benchmarks ---------------------------------------------------
BENCH_RC=0
if [ $BENCH -eq 1 ]; then
    if [ -d "$ROOT/bench" ]; then
        echo "=== python3 -m bench $* ==="
        python3 -m bench "$@" 2>&1 | tee "$OUT/bench.log"
        BENCH_RC=$?
        if [ $BENCH_RC -eq 0 ]; then phase bench ok "$(tail -n 1 "$OUT/bench.log")"
        else phase bench FAIL "rc=$BENCH_RC"; fi
    else
        phase bench skipped "no bench/ directory"
    fi
fi

# ---- 5. optional warm tuning-cache benchmark -----------------------------------
WARM_RC=0
if [ -n "${WARM_CACHE_ARGS:-}" ]; then
    echo "=== python3 bench/warm_cache.py $WARM_CACHE_ARGS ==="
    # shellcheck disable=SC2086
    python3 bench/warm_cache.py $WARM_CACHE_ARGS 2>&1 | tee "$OUT/warm_cache.log"
    WARM_RC=$?
    if [ $WARM_RC -eq 0 ]; then phase warm_cache ok "$(grep -E '^\| warm\+warmup \|' "$OUT/warm_cache.log" | head -n 1)"
    else phase warm_cache FAIL "rc=$WARM_RC"; fi
fi

# ---- summary -------------------------------------------------------------------
echo "=== summary ==="
FAIL=0
for p in "${ORDER[@]}"; do
    echo "[$p] ${RESULT[$p]}"
    case "${RESULT[$p]}" in FAIL*) FAIL=1 ;; esac
done | tee "$OUT/summary.txt"
grep -q '^\[[a-z]*\] FAIL' "$OUT/summary.txt" && exit 1
[ $BUILD_RC -eq 0 ] && [ $SUITE_RC -eq 0 ] && [ $SPLIT_RC -eq 0 ] && [ $BENCH_RC -eq 0 ] && [ $WARM_RC -eq 0 ] || exit 1
exit 0
