"""The 32-bit split paths, exercised through a build with a small
CUDNNCONV_INDEX_LIMIT (tools/gpu_suite.sh builds one with 1048576 and runs
this file against it).  With the default limit these tests skip."""
import math

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


GEOMETRIES = [dict(padding=1), dict(padding=(2, 0), stride=2), dict(padding=2, dilation=2), dict(padding="same")]


@pytest.fixture
def engine_sizes(monkeypatch):
    """Every array a tiled call hands its engine, checked against the index limit (and listed)."""
    from cudnnconv import params, tiled_calls
    run, one_sided = tiled_calls.run, []

    class Checked:
        """The call's engine, checked; engine='auto' wrapped as its two engines are, so that the
        tiles reach the graph engine with their one-sided padding as they do unchecked."""

        def __init__(self, eng):
            self.eng = eng
            self.ENGINE = eng.ENGINE
            one = tiled_calls.one_sided_engine(eng)
            if one is eng:
                self.ONE_SIDED_PADDING = True
            elif one is not None:
                self.first = Checked(one)

        def run(self, op, x, w, y, *args, **kw):
            assert x.size <= LIMIT and y.size <= LIMIT, (op, x.shape, y.shape, LIMIT)
            seen.append((op, x.shape, y.shape))
            one_sided.append(params.one_sided(args[0].padding))
            return self.eng.run(op, x, w, y, *args, **kw)

    monkeypatch.setattr(tiled_calls, "run", lambda eng, *a, **kw: run(Checked(eng), *a, **kw))
    seen = Seen()
    seen.one_sided = one_sided          # per run: whether its padding was one-sided
    return seen


class Seen(list):
    """(op, x shape, y shape) of every run an engine was handed, and ``one_sided``."""


def _three_directions(x, w, dtype, layout, engine, **geom):
    """conv of x and w, its input gradient and its weight gradient, each into a poisoned ``out=``
    (so an element left unwritten shows) and against the float64 reference.  Returns (the run
    count of each call, as _nchunks() gives it; the forward's float64 reference)."""
    kw = dict(geom, allow_tf32=False, engine=engine)
    tol = ref.tolerance(dtype)
    expect = ref.conv(x, w, None, **geom)
    out = ref.poisoned(expect.shape, dtype, layout)
    y = cudnnconv.conv(x, w, out=out, **kw)
    counts = [_nchunks()]
    assert y is out and ref.rel_error(y, expect) <= tol, cudnnconv.last_call()
    gy = ref.random(expect.shape, dtype, layout)
    gx = cudnnconv.conv_backward_input(x.shape, w, gy, out=ref.poisoned(x.shape, dtype, layout), **kw)
    counts.append(_nchunks())
    assert ref.rel_error(gx, ref.conv_backward_input(x.shape, w, gy, **geom)) <= tol
    gw = cudnnconv.conv_backward_weight(x, w.shape, gy, out=ref.poisoned(w.shape, dtype, layout), **kw)
    counts.append(_nchunks())
    assert ref.rel_error(gw, ref.conv_backward_weight(x, w.shape, gy, **geom)) <= tol
    return counts, expect


@pytest.mark.parametrize("geom", range(len(GEOMETRIES)))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("engine", ENGINES)
def test_a_sample_over_the_limit_runs_in_spatial_tiles(engine, dtype, layout, geom, engine_sizes):
    """Two samples, each over the index limit: conv and its two gradients run tile by tile and
    match the float64 reference; every output element is written (outputs start poisoned)."""
    kw = GEOMETRIES[geom]
    side = int((LIMIT // 2) ** 0.5) + 2
    x = ref.random((2, 2, side, side + 1), dtype, layout)        # one sample: 2 * side * (side + 1) > LIMIT
    w = ref.random((3, 2, 3, 3), dtype, layout)
    assert 2 * side * (side + 1) > LIMIT
    counts, expect = _three_directions(x, w, dtype, layout, engine, **kw)
    assert min(counts) >= 4, counts                                    # 2 samples x at least 2 tiles
    assert {op for op, _, _ in engine_sizes} == {"forward", "backward_data", "backward_filter"}
    # the same signature again: the memoized tiled plan runs its tiles again, unbound
    again = cudnnconv.conv(x, w, out=ref.poisoned(expect.shape, dtype, layout), allow_tf32=False, engine=engine, **kw)
    assert _nchunks() >= 4 and ref.rel_error(again, expect) <= ref.tolerance(dtype)


@pytest.mark.parametrize("engine", ENGINES)
def test_same_padding_with_an_even_kernel_and_1d_over_the_limit(engine, engine_sizes):
    side = int((LIMIT // 2) ** 0.5) + 2
    x = ref.random((1, 2, side, side + 1), "float32", "channels_last")
    w = ref.random((3, 2, 2, 4), "float32", "channels_last")     # even kernels: 'same' pads the end by one
    y = cudnnconv.conv(x, w, padding="same", out=ref.poisoned((1, 3, side, side + 1), "float32", "channels_last"),
                       allow_tf32=False, engine=engine)
    assert y.shape == (1, 3, side, side + 1) and _nchunks() >= 2
    assert ref.rel_error(y, ref.conv(x, w, None, padding="same")) <= ref.tolerance("float32")
    n = LIMIT // 2 + 7
    x1 = ref.random((2, 2, n), "float32")                          # 1D: one sample 2 * n > LIMIT
    w1 = ref.random((3, 2, 5), "float32")
    counts, _ = _three_directions(x1, w1, "float32", "nchw", engine, padding=2, stride=3)
    assert counts[0] >= 4, counts


@pytest.mark.parametrize("engine", ENGINES)
def test_a_sample_over_the_limit_in_3d_and_with_groups(engine, engine_sizes):
    d = max(int((LIMIT // 4) ** (1 / 3)) + 2, 4)
    x = ref.random((1, 4, d, d, d), "float32")                    # 4 * d**3 > LIMIT
    w = ref.random((4, 2, 3, 3, 3), "float32")
    assert 4 * d ** 3 > LIMIT
    counts, _ = _three_directions(x, w, "float32", "nchw", engine, padding=1, groups=2)
    assert counts[0] >= 2, counts


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("engine", ENGINES)
def test_windows_that_read_padding_alone(engine, dtype, engine_sizes):
    """Padding wider than the kernel: the output's edge rows read padding alone, so their windows
    are never run (a forward writes them as zeros, the fused call as relu(alpha * z + bias)); every
    element still matches the reference (outputs start poisoned)."""
    if dtype == "bfloat16" and ref.BFLOAT16 is None:
        pytest.skip("bfloat16 needs ml_dtypes")
    side = int((LIMIT // 2) ** 0.5) + 2
    x = ref.random((1, 2, side, side + 1), dtype, "channels_last")
    w = ref.random((3, 2, 1, 2), dtype, "channels_last")
    counts, expect = _three_directions(x, w, dtype, "channels_last", engine, padding=(3, 2))
    assert counts[0] >= 2, counts
    z = ref.random(expect.shape, dtype, "channels_last")
    b = ref.random((3,), dtype)
    for fusion in ("composed", "auto"):
        fexpect = ref.conv_bias_add_relu(x, w, z, 0.5, b, padding=(3, 2))
        fy = cudnnconv.conv_bias_add_relu(x, w, z, 0.5, b, padding=(3, 2), fusion=fusion, allow_tf32=False,
                                          engine=engine, out=ref.poisoned(expect.shape, dtype, "channels_last"))
        assert _nchunks() >= 2, fusion
        assert ref.rel_error(fy, fexpect) <= ref.tolerance(dtype), fusion
    assert {op for op, _, _ in engine_sizes} == {"forward", "fused", "backward_data", "backward_filter"}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("engine", ENGINES)
def test_transposed_and_fused_calls_over_the_limit_run_in_tiles(engine, layout, engine_sizes):
    side = int((LIMIT // 2) ** 0.5) + 2
    x = ref.random((2, 2, side, side + 1), "float32", layout)
    w = ref.random((2, 3, 3, 3), "float32", layout)               # transposed: 2 -> 3 channels
    b = ref.random((3,), "float32")
    for kw in (dict(stride=1, padding=1), dict(stride=2, padding=1, output_padding=1),
               dict(stride=1, padding=0, output_padding=1, dilation=3)):   # output_padding >= stride: cropped
        expect = ref.conv_transpose(x, w, b, **kw)
        y = cudnnconv.conv_transpose(x, w, b, out=ref.poisoned(expect.shape, "float32", layout), allow_tf32=False,
                                     engine=engine, **kw)
        assert _nchunks() >= 4, kw
        assert ref.rel_error(y, expect) <= ref.tolerance("float32"), kw
    wf = ref.random((3, 2, 3, 3), "float32", layout)
    z = ref.random((2, 3, side, side + 1), "float32", layout)
    for fusion in ("composed", "auto"):
        expect = ref.conv_bias_add_relu(x, wf, z, 0.5, b, padding=1)
        y = cudnnconv.conv_bias_add_relu(x, wf, z, 0.5, b, padding=1, out=ref.poisoned(expect.shape, "float32", layout),
                                         fusion=fusion, allow_tf32=False, engine=engine)
        assert _nchunks() >= 4, fusion
        assert ref.rel_error(y, expect) <= ref.tolerance("float32"), fusion


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("engine", ENGINES)
def test_channels_last_tiles_run_on_views_with_one_sided_padding(engine, dtype, engine_sizes, monkeypatch):
    """Channels-last, a 3x3x3 convolution with padding 1 on a volume cut along its depth: on the
    graph engine every tile runs on views of the call's own arrays, the edge tiles with their
    one-sided padding, and the input gradient in parts.  The first call of each one-sided problem
    checks its plan against the padded copy (cudnnconv.one_sided); from the second call on, no
    window or tile is copied, filled or summed, but for a problem whose plan disagreed (refused:
    printed, and run from the copy).  The legacy engine (symmetric padding only) copies the edge
    tiles' windows.  Every call of every direction against the float64 reference, into poisoned
    outputs."""
    from cudnnconv import one_sided, tiled
    cudnnconv.clear_cache()
    calls = []
    for name in ("assign", "fill", "add_into"):
        real = getattr(tiled, name)
        monkeypatch.setattr(tiled, name, lambda *a, _real=real, _name=name: (calls.append(_name), _real(*a))[1])
    depth = LIMIT // (4 * 32 * 32) + 40                           # one sample over the limit: two tiles
    x = ref.random((1, 4, depth, 32, 32), dtype, "channels_last")
    w = ref.random((4, 4, 3, 3, 3), dtype, "channels_last")
    for call in range(2):
        del calls[:], engine_sizes[:], engine_sizes.one_sided[:]
        counts, _ = _three_directions(x, w, dtype, "channels_last", engine, padding=1)
        assert counts == [2, 2, 2], counts
    graph = cudnnconv.last_call()["engine"] == "graph"
    assert graph == (engine != "legacy"), cudnnconv.last_call()["engine"]
    if not graph:
        assert "assign" in calls and not any(engine_sizes.one_sided)
        return
    verdicts = one_sided.verdicts()[1]
    print("one-sided problems refused (%s): %s" % (dtype, verdicts or "none"))
    refused = {prob.op for prob in verdicts}
    ran = {op for op, _, _ in engine_sizes}
    for op in ran - refused:
        assert all(o for (o_, _, _), o in zip(engine_sizes, engine_sizes.one_sided) if o_ == op), op
    if not refused:
        assert calls == [] and sum(engine_sizes.one_sided) == 6, (calls, engine_sizes.one_sided)


@pytest.mark.parametrize("engine", ENGINES)
def test_where_tiling_cannot_help_the_error_names_the_sizes(engine):
    # one output element reads more than the limit: a dilated 3x3 window spans all of C x side x side,
    # while the weight stays small (an undilated window over the limit needs a weight over it too)
    c = 16
    side = math.isqrt(LIMIT // c) + 1
    side += 1 - side % 2                         # odd: a 3-tap window with dilation (side - 1) / 2 spans it
    x = ref.random((1, c, side, side), "float32")
    w = ref.random((1, c, 3, 3), "float32")
    with pytest.raises(ValueError, match=r"one output element of this convolution reads %d input elements.*"
                                         r"no spatial tiling brings it under" % (c * side * side)):
        cudnnconv.conv(x, w, dilation=(side - 1) // 2, engine=engine)
    # a weight over the limit: no split or tiling changes it
    c = LIMIT // 9 + 1
    x = ref.random((1, c, 3, 3), "float32")
    w = ref.random((1, c, 3, 3), "float32")
    with pytest.raises(ValueError, match=r"the weight \(1, %d, 3, 3\) has %d elements, over the index limit"
                                         % (c, 9 * c)):
        cudnnconv.conv(x, w, engine=engine)
