"""Memory pressure on a GPU: CuPy's pool limit swept over ResNet-50's distinct layers (batch 2,
fp16 channels-last), forward, backward-data and backward-weight.  Under each limit a call either
gives the right result or raises an out-of-memory error: CuDNNOutOfMemoryError when no candidate's
workspace fits (the search skips candidates that do not fit, and fails cleanly when none does), or
CuPy's OutOfMemoryError when the output array itself cannot be allocated, on either path; both are
MemoryError.  Never a wrong result, never another error, never a crash.  After the limit is lifted,
the same call succeeds.  The references are computed, and the results compared, with no limit in
force."""
import os
import sys

import pytest

import cudnnconv
import reference as ref

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from bench.host import resnet50_convs  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.stress]

cupy = pytest.importorskip("cupy")

HEADROOM_MIB = (0, 1, 4, 16, 64)          # pool limit = what the inputs hold + this


def _layers():
    seen, out = set(), []
    for c in resnet50_convs():
        k = (c["x"][1:], c["w"], c["stride"], c["padding"])
        if k not in seen:
            seen.add(k)
            out.append(c)
    return out


def _call(lib, direction, x, w, gy, kw):
    """``direction`` through ``lib``: cudnnconv, or the float64 reference (the same names and arguments)."""
    if direction == "fwd":
        return lib.conv(x, w, **kw)
    if direction == "dgrad":
        return lib.conv_backward_input(x.shape, w, gy, **kw)
    return lib.conv_backward_weight(x, w.shape, gy, **kw)


@pytest.mark.parametrize("direction", ["fwd", "dgrad", "wgrad"])
def test_pool_limits_over_resnet50_layers(direction):
    pool = cupy.get_default_memory_pool()
    counts = {"ok": 0, "oom": 0}
    try:
        for c in _layers():
            kw = dict(stride=c["stride"], padding=c["padding"])
            x = ref.random((2,) + tuple(c["x"][1:]), "float16", "channels_last")
            w = ref.random(c["w"], "float16", "channels_last", scale=0.05)
            gy = ref.random(ref.conv_out_shape(x.shape, w.shape, **kw), "float16", "channels_last")
            want = _call(ref, direction, x, w, gy, kw)
            cupy.cuda.runtime.deviceSynchronize()
            for mib in HEADROOM_MIB:
                cudnnconv.clear_cache()                  # each limit searches afresh
                pool.free_all_blocks()
                pool.set_limit(size=pool.used_bytes() + (mib << 20))
                try:
                    got = _call(cudnnconv, direction, x, w, gy, kw)
                    cupy.cuda.runtime.deviceSynchronize()
                except cudnnconv.CuDNNOutOfMemoryError:
                    got = None
                except cupy.cuda.memory.OutOfMemoryError:
                    got = None                           # the output array itself did not fit
                finally:
                    pool.set_limit(size=0)               # 0: no limit
                if got is None:
                    counts["oom"] += 1
                else:
                    counts["ok"] += 1
                    err = ref.rel_error(got, want)
                    assert err <= ref.tolerance("float16"), (c["name"], direction, mib, err)
                again = _call(cudnnconv, direction, x, w, gy, kw)    # the limit lifted: the same call runs
                assert ref.rel_error(again, want) <= ref.tolerance("float16"), (c["name"], direction, mib)
    finally:
        pool.set_limit(size=0)
        cudnnconv.clear_cache()
    assert counts["ok"] > 0
    print("%s: %d limits ran, %d raised an out-of-memory error" % (direction, counts["ok"], counts["oom"]))
