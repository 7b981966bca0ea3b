"""Random valid problems against the float64 reference, on a GPU, for all five functions.

Hypothesis draws 1-3 spatial dims, groups, stride, dilation, padding (an int per dim, or 'same'),
batch and channel counts, every dtype, both layouts, both engines, and for float32 whether TF32 is
allowed.  Each result lands in a poisoned ``out=`` (an element left unwritten is NaN, which fails)
and is compared with the float64 reference on fresh random data (never zeros) at the dtype's
tolerance.  derandomize=True draws the same examples on every run, so that a failure reproduces;
the example count is bounded (EXAMPLES per function) so that the suite's time stays predictable.
"""
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import cudnnconv  # noqa: E402
import reference as ref  # noqa: E402

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")

ENGINES = cudnnconv.build_info()["engines"]
DTYPES = ("float64", "float32", "float16", "bfloat16")
LAYOUTS = ("nchw", "channels_last")
EXAMPLES = 40

SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def problems(draw, same_ok=True, symmetric_same_only=False, transposed=False):
    """(x shape, w shape, kwargs, dtype, layout, engine, allow_tf32) of one valid problem.

    Forward roles: w is (K, C/groups, *kernel); for ``transposed``, (C, K/groups, *kernel) and
    kwargs carries output_padding (smaller than the stride or the dilation, as PyTorch requires)."""
    nsp = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    cg = draw(st.integers(1, 3))
    kg = draw(st.integers(1, 3))
    n = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nsp))
    use_same = same_ok and draw(st.booleans())
    if use_same and symmetric_same_only:
        use_same = all(d * (k - 1) % 2 == 0 for k, d in zip(kernel, dilation))
    stride = (1,) * nsp if use_same else tuple(draw(st.integers(1, 2)) for _ in range(nsp))
    padding = "same" if use_same else tuple(draw(st.integers(0, 2)) for _ in range(nsp))
    spatial = []
    for i in range(nsp):
        eff = dilation[i] * (kernel[i] - 1) + 1
        pad = 0 if use_same else padding[i]
        low = 1 if (use_same or transposed) else max(1, eff - 2 * pad)
        spatial.append(draw(st.integers(low, low + 6)))
    if transposed:
        w = (groups * cg, kg) + kernel
        output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
        kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, output_padding=output_padding)
        out_sp = ref.transpose_out_shape((n, groups * cg) + tuple(spatial), w, stride, padding, output_padding,
                                         groups, dilation)[2:]
        if min(out_sp) < 1:
            # an output padding cropped away entirely: fall back to no padding
            kw["padding"] = (0,) * nsp
    else:
        w = (groups * kg, cg) + kernel
        kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    dtype = draw(st.sampled_from(DTYPES))
    layout = draw(st.sampled_from(LAYOUTS))
    engine = draw(st.sampled_from(ENGINES))
    tf32 = dtype == "float32" and draw(st.booleans())
    return (n, groups * cg) + tuple(spatial), w, kw, dtype, layout, engine, tf32


def _check(got, want, dtype, tf32, what):
    err = ref.rel_error(got, want)
    assert err <= ref.tolerance(dtype, tf32), "%s: relative error %.3g" % (what, err)


def _flags(engine, tf32):
    return dict(engine=engine, allow_tf32=tf32)


@SETTINGS
@given(problems())
def test_conv_matches_reference(p):
    xs, ws, kw, dtype, layout, engine, tf32 = p
    x, w = ref.random(xs, dtype, layout), ref.random(ws, dtype, layout, scale=0.3)
    b = ref.random((ws[0],), dtype)
    want = ref.conv(x, w, b, **kw)
    out = ref.poisoned(want.shape, dtype, layout)
    got = cudnnconv.conv(x, w, b, out=out, **kw, **_flags(engine, tf32))
    assert got is out
    _check(out, want, dtype, tf32, "conv %s" % (p,))


@SETTINGS
@given(problems(symmetric_same_only=True))
def test_conv_backward_input_matches_reference(p):
    xs, ws, kw, dtype, layout, engine, tf32 = p
    w = ref.random(ws, dtype, layout, scale=0.3)
    y_shape = ref.conv_out_shape(xs, ws, kw["stride"], kw["padding"], kw["dilation"])
    gy = ref.random(y_shape, dtype, layout)
    out = ref.poisoned(xs, dtype, layout)
    cudnnconv.conv_backward_input(xs, w, gy, out=out, **kw, **_flags(engine, tf32))
    _check(out, ref.conv_backward_input(xs, w, gy, **kw), dtype, tf32, "conv_backward_input %s" % (p,))


# Alike the test above and kept apart from it: hypothesis seeds each test's examples by the test
# itself, so a merged test would draw other examples than those the last GPU run passed.
@SETTINGS
@given(problems(symmetric_same_only=True))
def test_conv_backward_weight_matches_reference(p):
    xs, ws, kw, dtype, layout, engine, tf32 = p
    x = ref.random(xs, dtype, layout)
    y_shape = ref.conv_out_shape(xs, ws, kw["stride"], kw["padding"], kw["dilation"])
    gy = ref.random(y_shape, dtype, layout)
    out = ref.poisoned(ws, dtype, layout)
    cudnnconv.conv_backward_weight(x, ws, gy, out=out, **kw, **_flags(engine, tf32))
    _check(out, ref.conv_backward_weight(x, ws, gy, **kw), dtype, tf32, "conv_backward_weight %s" % (p,))


@SETTINGS
@given(problems(same_ok=False, transposed=True))
def test_conv_transpose_matches_reference(p):
    xs, ws, kw, dtype, layout, engine, tf32 = p
    x, w = ref.random(xs, dtype, layout), ref.random(ws, dtype, layout, scale=0.3)
    b = ref.random((ws[1] * kw["groups"],), dtype)
    want = ref.conv_transpose(x, w, b, **kw)
    out = ref.poisoned(want.shape, dtype, layout)
    cudnnconv.conv_transpose(x, w, b, out=out, **kw, **_flags(engine, tf32))
    _check(out, want, dtype, tf32, "conv_transpose %s" % (p,))


@SETTINGS
@given(problems(), st.sampled_from((0.0, 0.5, 1.0, -2.0)), st.booleans())
def test_conv_bias_add_relu_matches_reference(p, alpha, with_bias):
    xs, ws, kw, dtype, layout, engine, tf32 = p
    x, w = ref.random(xs, dtype, layout), ref.random(ws, dtype, layout, scale=0.3)
    y_shape = ref.conv_out_shape(xs, ws, kw["stride"], kw["padding"], kw["dilation"])
    z = ref.random(y_shape, dtype, layout)
    b = ref.random((ws[0],), dtype) if with_bias else None
    want = ref.conv_bias_add_relu(x, w, z, alpha, b, **kw)
    out = ref.poisoned(y_shape, dtype, layout)
    cudnnconv.conv_bias_add_relu(x, w, z, alpha, b, out=out, **kw, **_flags(engine, tf32))
    _check(out, want, dtype, tf32, "conv_bias_add_relu %s" % (p,))
