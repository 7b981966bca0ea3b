#!/usr/bin/env bash
# compute-sanitizer over tools/sanitize_cases.py, in one device call of at most 9 minutes:
# memcheck, initcheck, racecheck and synccheck, each over the whole case list (split into parts so
# that every tool finishes inside its share of the time), plus memcheck over the split path in a
# build with a small CUDNNCONV_INDEX_LIMIT.  Writes $OUT/sanitize/<tool>_<part>.log and a summary,
# $OUT/sanitize/summary.txt: per tool and part, the cases run and failed and the sanitizer's error
# count.  Exits non-zero when any case failed or any tool reported an error.
#
# Usage (GPU): bash tools/sanitize.sh        Env: PARTS (default 2), TOOL_TIMEOUT (s per part, 50)
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/sanitize_out}
S=$OUT/sanitize
mkdir -p "$S"
PARTS=${PARTS:-2}
TOOL_TIMEOUT=${TOOL_TIMEOUT:-50}
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
python3 setup.py build_ext --inplace -j 16 > "$S/build.log" 2>&1 || { echo "build failed"; exit 2; }
export PYTHONPATH=$ROOT/pyx
STATUS=0
: > "$S/summary.txt"
run_tool() {   # run_tool TOOL PART LABEL
    local tool=$1 part=$2 label=$3
    local log="$S/${label}.log"
    timeout "$TOOL_TIMEOUT" "$CS" --tool "$tool" --error-exitcode 99 --print-limit 50 \
        python3 tools/sanitize_cases.py --part "$part" --no-pool > "$log" 2>&1
    local rc=$?
    local cases errs
    cases=$(grep -E "^cases " "$log" | tail -1)
    errs=$(grep -E "ERROR SUMMARY: [0-9]+ error" "$log" | tail -1)
    echo "$label: rc=$rc | ${cases:-no summary (timed out?)} | ${errs:-no sanitizer summary}" | tee -a "$S/summary.txt"
    [ $rc -eq 0 ] || STATUS=1
}
for tool in memcheck initcheck racecheck synccheck; do
    for ((p = 1; p <= PARTS; p++)); do
        run_tool "$tool" "$p/$PARTS" "${tool}_${p}of${PARTS}"
    done
done
# the split path: a second copy built with a small index limit
SMALL=/tmp/sanitize_small
rm -rf "$SMALL" && mkdir -p "$SMALL" && cp -r setup.py include pyx tests tools "$SMALL/"
(cd "$SMALL" && CUDNNCONV_INDEX_LIMIT=1048576 python3 setup.py build_ext --inplace -j 16 > "$S/build_small.log" 2>&1)
(cd "$SMALL" && PYTHONPATH=$SMALL/pyx timeout "$TOOL_TIMEOUT" "$CS" --tool memcheck --error-exitcode 99 \
    python3 tools/sanitize_cases.py --no-pool > "$S/memcheck_split.log" 2>&1); rc=$?
echo "memcheck_split: rc=$rc | $(grep -E '^cases ' "$S/memcheck_split.log" | tail -1) | $(grep -E 'ERROR SUMMARY' "$S/memcheck_split.log" | tail -1)" \
    | tee -a "$S/summary.txt"
[ $rc -eq 0 ] || STATUS=1
exit $STATUS
