#!/usr/bin/env bash
# The wheel is relocatable: a wheel built from this checkout, installed into a fresh virtual
# environment on another path, imports from there and passes the CPU tests there, with no pyx/
# beside them (tests/test_packaging_cpu.py checks the installed extensions' RUNPATH and debug info).
#
# Usage: bash tools/wheel_check.sh        (after the README's install step: it builds with
#        --no-build-isolation against the environment's Cython and nvidia-cudnn-cu13, and the fresh
#        environment sees that environment's packages, numpy, CuPy and cuDNN, but not cudnnconv)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/cudnnconv-wheel.XXXXXX")
trap 'rm -rf "$W"' EXIT

python3 -m pip wheel --no-build-isolation --no-deps -q -w "$W/dist" "$ROOT"
WHEEL=$(ls "$W"/dist/cudnnconv-*.whl)
echo "[wheel] built $(basename "$WHEEL")"

python3 -m venv --system-site-packages "$W/venv"
PY="$W/venv/bin/python"
"$PY" -m pip install --no-deps --no-index -q "$WHEEL"

# The tree without the package's sources, so that only the installed copy can be imported.
mkdir "$W/tree"
(cd "$ROOT" && git ls-files -z 2>/dev/null || find . -type f -not -path './.git/*' -print0) \
    | (cd "$ROOT" && grep -zv '^\(\./\)\?pyx/' | xargs -0 cp --parents -t "$W/tree")

cd "$W/tree"
"$PY" - "$W/venv" <<'PY'
import os, sys
import cudnnconv
venv = os.path.realpath(sys.argv[1])
where = os.path.realpath(cudnnconv.__file__)
assert where.startswith(venv + os.sep), "cudnnconv was imported from %s, not from the wheel in %s" % (where, venv)
info = cudnnconv.build_info()
print("[wheel] imported from", os.path.dirname(where))
print("[wheel] libcudnn loaded:", info["libcudnn_loaded"])
PY
PYTHONDONTWRITEBYTECODE=1 "$PY" -m pytest -q -p no:cacheprovider tests
