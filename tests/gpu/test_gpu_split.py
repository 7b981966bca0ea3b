"""The 32-bit split paths, exercised through a build with a small
CUDNNCONV_INDEX_LIMIT (tools/gpu_suite.sh builds one with 1048576 and runs
this file against it).  With the default limit these tests skip."""
import pytest

import cudnnconv
import reference as ref
from gpu_cases import ENGINES, LAYOUTS

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(cudnnconv.build_info()["CUDNNCONV_INDEX_LIMIT"] >= 2 ** 31 - 1,
                       reason="needs a build with a small CUDNNCONV_INDEX_LIMIT "
                              "(tools/gpu_suite.sh runs one with 1048576)"),
]

cupy = pytest.importorskip("cupy")

LIMIT = cudnnconv.build_info()["CUDNNCONV_INDEX_LIMIT"]


def _problem():
    """N samples of C*H*W elements: one sample well under the limit, the
    batch over it, and N not a multiple of the chunk (a remainder chunk)."""
    c, k = 4, 6
    hw = max(int((LIMIT // 5 // c) ** 0.5), 4)
    per_sample = max(c, k) * hw * hw
    n = LIMIT // per_sample * 2 + 1
    return (n, c, hw, hw), (k, c, 3, 3)


def _nchunks():
    return len(cudnnconv.last_call()["choices"])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("engine", ENGINES)
def test_split_forward(engine, dtype, layout):
    xs, wsh = _problem()
    x = ref.random(xs, dtype, layout)
    w = ref.random(wsh, dtype, layout)
    b = ref.random((wsh[0],), dtype)
    expect = ref.conv(x, w, b, padding=1)
    assert expect.size > LIMIT
    out = ref.poisoned(expect.shape, dtype, layout)
    y = cudnnconv.conv(x, w, b, padding=1, out=out, allow_tf32=False, engine=engine)
    assert _nchunks() >= 3, cudnnconv.last_call()
    assert y is out
    assert ref.rel_error(y, expect) <= ref.tolerance(dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("engine", ENGINES)
def test_split_backward_input(engine, dtype, layout):
    xs, wsh = _problem()
    w = ref.random(wsh, dtype, layout)
    gy = ref.random((xs[0], wsh[0]) + xs[2:], dtype, layout)
    expect = ref.conv_backward_input(xs, w, gy, padding=1)
    out = ref.poisoned(xs, dtype, layout)
    gx = cudnnconv.conv_backward_input(xs, w, gy, padding=1, out=out, allow_tf32=False, engine=engine)
    assert _nchunks() >= 3, cudnnconv.last_call()
    assert gx is out
    assert ref.rel_error(gx, expect) <= ref.tolerance(dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("engine", ENGINES)
def test_split_backward_weight(engine, dtype, layout):
    xs, wsh = _problem()
    x = ref.random(xs, dtype, layout)
    gy = ref.random((xs[0], wsh[0]) + xs[2:], dtype, layout)
    expect = ref.conv_backward_weight(x, wsh, gy, padding=1)
    out = ref.poisoned(wsh, dtype, layout)
    gw = cudnnconv.conv_backward_weight(x, wsh, gy, padding=1, out=out, allow_tf32=False, engine=engine)
    assert _nchunks() >= 3, cudnnconv.last_call()
    assert gw is out
    assert ref.rel_error(gw, expect) <= ref.tolerance(dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("engine", ENGINES)
def test_split_backward_weight_accumulates_in_float32(engine, dtype, layout):
    """16-bit weight gradients summed over the chunks in float32.

    The bound is tight: each chunk's partial is rounded once to the dtype
    and the sum once more, so the error stays within a small multiple of
    the error of rounding the exact (unsplit, float64) gradient to the dtype.
    Summing the partials in the 16-bit dtype itself adds a rounding per
    chunk; with many chunks (one sample each here) that exceeds the bound.
    """
    c, k = 4, 4
    hw = max(int((LIMIT // c) ** 0.5) - 2, 4)            # one sample just under the limit
    n = 24
    x = ref.random((n, c, hw, hw), dtype, layout)
    gy = ref.random((n, k, hw, hw), dtype, layout)
    wsh = (k, c, 3, 3)
    expect = ref.conv_backward_weight(x, wsh, gy, padding=1)
    out = ref.poisoned(wsh, dtype, layout)
    gw = cudnnconv.conv_backward_weight(x, wsh, gy, padding=1, out=out, engine=engine)
    nchunks = _nchunks()
    assert nchunks >= n // 2, cudnnconv.last_call()
    rounding = ref.rel_error(expect.astype(ref.dtype_of(dtype)), expect)
    err = ref.rel_error(gw, expect)
    # Independent roundings of n_chunks partials of size ~|total|/sqrt(n_chunks)
    # add up to about one rounding of the total, plus the final one: about
    # sqrt(2) roundings.  16-bit accumulation adds ~sqrt(n_chunks/2) more.
    print("split fp16 weight grad: err %.3g, rounding %.3g, chunks %d" % (err, rounding, nchunks))
    assert err <= 3 * rounding, (err, rounding, nchunks)


@pytest.mark.parametrize("engine", ENGINES)
def test_split_sample_over_limit_raises(engine):
    side = int((LIMIT // 2) ** 0.5) + 2
    x = ref.random((2, 2, side, side), "float32")         # one sample: 2*side^2 > LIMIT
    w = ref.random((2, 2, 3, 3), "float32")
    assert 2 * side * side > LIMIT
    with pytest.raises(ValueError, match="limit"):
        cudnnconv.conv(x, w, padding=1, engine=engine)
    gy = ref.random((2, 2, side, side), "float32")
    with pytest.raises(ValueError, match="limit"):
        cudnnconv.conv_backward_input(x.shape, w, gy, padding=1, engine=engine)
    with pytest.raises(ValueError, match="limit"):
        cudnnconv.conv_backward_weight(x, w.shape, gy, padding=1, engine=engine)
