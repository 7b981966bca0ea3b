#!/usr/bin/env bash
# compute-sanitizer over tools/sanitize_cases.py (182 small calls: every function x engine x dtype x
# layout, transposed, fused, out= views, capture, plan objects), each against the float64 reference.
#
#   bash tools/sanitize.sh [TOOL ...]      TOOL: memcheck initcheck racecheck synccheck split
#                                          (default: all; "split" = memcheck over the split path in a
#                                          build with a small CUDNNCONV_INDEX_LIMIT)
#
# A sanitizer slows a call by 10-100x. Each tool runs the case list in PARTS parts (default 4),
# each part under TOOL_TIMEOUT seconds (default 300), CuPy's pool off (--no-pool) so that memcheck
# sees every allocation's bounds. All parts of all tools run at once (PARALLEL=0 runs them one after
# another): on an H200 with 16 cores the four tools and the split path took 115 s in all.
# Writes $OUT/sanitize/<tool>_<i>of<n>.log and appends one line per part to
# $OUT/sanitize/summary.txt: exit status, cases run/ok/failed, and the sanitizer's error summary.
# Exits non-zero when a case failed, a part timed out, or a tool reported an error.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/sanitize_out}
S=$OUT/sanitize
mkdir -p "$S"
PARTS=${PARTS:-4}
TOOL_TIMEOUT=${TOOL_TIMEOUT:-300}
SMALL_INDEX_LIMIT=${SMALL_INDEX_LIMIT:-1048576}
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
[ -x "$CS" ] || { echo "compute-sanitizer not found" | tee -a "$S/summary.txt"; exit 2; }
TOOLS=("$@")
[ ${#TOOLS[@]} -gt 0 ] || TOOLS=(memcheck initcheck racecheck synccheck split)
STATUS=0
for tool in "${TOOLS[@]}"; do
    if [ "$tool" != split ]; then     # the tree as it is now (quick where nothing changed)
        python3 setup.py build_ext --inplace -j 16 > "$S/build.log" 2>&1 || { echo "build failed (build.log)"; exit 2; }
        break
    fi
done

report() {   # report LABEL RC LOG
    local cases errs
    cases=$(grep -E "^cases " "$3" | tail -1)
    errs=$(grep -E "(ERROR|RACECHECK) SUMMARY: [0-9]+ (error|hazard)" "$3" | tail -1)
    if [ -z "$cases" ]; then     # cut short (a timeout): what had finished by then
        cases="cut short after $(grep -c '^ok ' "$3") ok, $(grep -c '^FAIL ' "$3") failed"
    fi
    if [ -z "$errs" ]; then      # the sanitizer's records so far (each opens with '========= ' and a capital)
        errs="no sanitizer summary; $(grep -cE '^========= (Invalid|Uninitialized|Race|Barrier|Program hit|Error|Warning)' "$3") error records so far"
    fi
    echo "$1: rc=$2 | $cases | $errs" | tee -a "$S/summary.txt"
    [ "$2" -eq 0 ] || STATUS=1
}

# Each part runs as a job: all at once (the GPU has room for them, and a sanitizer's slowdown is
# largely host work, so the parts overlap well on many cores), or with PARALLEL=0 one after another.
LABELS=()
run_part() {   # run_part LABEL DIR PYTHONPATH TOOL ARGS...: one sanitizer run; its status goes to LOG.rc
    local label=$1 dir=$2 pp=$3 tool=$4; shift 4
    local log="$S/$label.log"
    (cd "$dir" && PYTHONPATH=$pp timeout -k 10 "$TOOL_TIMEOUT" "$CS" --tool "$tool" --error-exitcode 99 \
        --print-limit 50 python3 tools/sanitize_cases.py "$@" --no-pool > "$log" 2>&1)
    echo $? > "$log.rc"
}
start_part() {
    LABELS+=("$1")
    if [ "${PARALLEL:-1}" = "1" ]; then run_part "$@" & else run_part "$@"; fi
}

for tool in "${TOOLS[@]}"; do
    if [ "$tool" = split ]; then
        # A copy of the tree without build outputs, so that every module is compiled with the limit.
        SMALL=/tmp/sanitize_small
        rm -rf "$SMALL" && mkdir -p "$SMALL"
        tar -C "$ROOT" --exclude=./.git --exclude=./build --exclude='*.so' --exclude='*.egg-info' \
            --exclude='__pycache__' --exclude='./pyx/cudnnconv/*.c' --exclude='./pyx/cudnnconv/*/*.c' \
            --exclude='./pyx/cudnnconv/*.cpp' --exclude='./pyx/cudnnconv/*/*.cpp' -cf - setup.py include pyx tests tools \
            | tar -C "$SMALL" -xf -
        if ! (cd "$SMALL" && CUDNNCONV_INDEX_LIMIT=$SMALL_INDEX_LIMIT python3 setup.py build_ext --inplace -j 16 \
                > "$S/build_small.log" 2>&1); then
            echo "split: the small-limit build failed (see build_small.log)" | tee -a "$S/summary.txt"; STATUS=1; continue
        fi
        got=$(cd "$SMALL" && PYTHONPATH=$SMALL/pyx python3 -c "import cudnnconv; print(cudnnconv.build_info()['CUDNNCONV_INDEX_LIMIT'])")
        if [ "$got" != "$SMALL_INDEX_LIMIT" ]; then
            echo "split: the small build reports CUDNNCONV_INDEX_LIMIT=$got" | tee -a "$S/summary.txt"; STATUS=1; continue
        fi
        start_part memcheck_split "$SMALL" "$SMALL/pyx" memcheck --only split
        continue
    fi
    for ((p = 1; p <= PARTS; p++)); do
        start_part "${tool}_${p}of${PARTS}" "$ROOT" "$ROOT/pyx" "$tool" --part "$p/$PARTS"
    done
done
wait
for label in "${LABELS[@]}"; do
    report "$label" "$(cat "$S/$label.log.rc" 2>/dev/null || echo 1)" "$S/$label.log"
done
exit $STATUS
