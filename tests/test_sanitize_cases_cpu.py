"""tools/sanitize_cases.py, the workload of tools/sanitize.sh, covers what
the sanitizer pass must: every public function on every engine of the build,
every dtype and both layouts, 1 to 3 spatial dims, 'same' padding (even
kernels: forward), out= views, CUDA-graph capture (both engines) and the
plan objects; and --part splits the
list without losing or repeating a case.  (Listing needs no GPU.)"""
import os
import subprocess
import sys

import cudnnconv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "sanitize_cases.py")


def _list(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(REPO, "pyx"), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, TOOL, "--list", *args], capture_output=True, text=True, env=env,
                         check=True, timeout=120).stdout
    return out.split()


def test_the_cases_cover_every_function_engine_dtype_and_layout():
    names = set(_list())
    for engine in cudnnconv.build_info()["engines"]:
        for dtype in ("float64", "float32", "float16", "bfloat16"):
            for layout in ("nchw", "channels_last"):
                for sp in ("1d", "2d", "2d_same_even", "3d"):
                    assert "fwd/%s/%s/%s/%s" % (engine, dtype, layout, sp) in names
                for sp in ("1d", "2d", "2d_dil", "3d"):
                    assert "bwd/%s/%s/%s/%s" % (engine, dtype, layout, sp) in names
                assert "transpose/%s/%s/%s" % (engine, dtype, layout) in names
                assert "fused/%s/%s/%s" % (engine, dtype, layout) in names
        for extra in ("out_view", "plan", "capture"):
            assert "%s/%s" % (extra, engine) in names


def test_parts_split_the_list_exactly():
    whole = _list()
    parts = [_list("--part", "%d/3" % i) for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(whole) and len(whole) == len(set(whole))


def test_only_keeps_a_prefix():
    assert _list("--only", "split") in ([], ["split"]) and set(_list("--only", "plan/")) <= set(_list())
