"""conv_epilogue: act(alpha1 * conv(x, w) + alpha2 * z + bias) against the float64 composition
(cudnnconv.activations' references on the float64 convolution), on both paths: fused (the graph
engine's one plan, where cuDNN takes the pattern) and composed (the convolution, then one kernel).
Every output is poisoned with NaN first."""
import numpy
import pytest

import cudnnconv
import reference as ref
from cudnnconv import activations
from gpu_cases import DTYPES, ENGINES, FUSED, LAYOUTS, ids, kwargs

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")

ACTS = [None, "relu", ("leaky_relu", 0.2), ("elu", 0.7), "gelu", "gelu_tanh", "silu", "sigmoid", "tanh",
        ("clamp", -0.5, 0.75)]
ACT_IDS = [activations.activation(a).name for a in ACTS]
# (has_z, has_bias, alpha1, alpha2)
PARTS = [(True, True, 1.0, 1.0), (False, True, 1.0, 1.0), (False, False, 1.0, 1.0), (True, False, 0.5, 2.0),
         (True, True, 0.75, -1.5)]
PART_IDS = ["z_b", "b", "none", "z_a1_a2", "z_b_a1_a2neg"]


def expected(x, w, z, b, act, alpha1, alpha2, case_kw):
    """The float64 composition, on the host."""
    y = ref.conv(x, w, None, **case_kw) * alpha1
    if z is not None:
        y = y + alpha2 * ref._f64(z)
    if b is not None:
        y = y + ref._f64(b).reshape((1, y.shape[1]) + (1,) * (y.ndim - 2))
    return activations.reference_forward(act, cupy.asnumpy(y))


def run(x, w, z, b, act, alpha1, alpha2, case_kw, dtype, layout, fusion, engine="graph", out_shape=None):
    out = ref.poisoned(out_shape, dtype, layout)
    y = cudnnconv.conv_epilogue(x, w, b, **case_kw, z=z, act=act, alpha1=alpha1, alpha2=alpha2, out=out,
                                fusion=fusion, allow_tf32=False, engine=engine)
    assert y is out
    return y, cudnnconv.last_call()


def check(y, expect, dtype, what):
    err = ref.rel_error(cupy.asnumpy(y), expect)
    assert err <= ref.tolerance(dtype), "relative error %.3g: %s" % (err, what)


@pytest.mark.skipif("graph" not in ENGINES, reason="the graph engine is not built")
@pytest.mark.parametrize("parts", PARTS, ids=PART_IDS)
@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_every_activation_on_both_paths(act, parts):
    """fp16 channels-last 2-D on the graph engine: 'composed' always composes; 'auto' fuses where
    cuDNN takes the pattern (and then 'fused' runs the same plan), and composes otherwise."""
    has_z, has_b, alpha1, alpha2 = parts
    case = FUSED[1]
    x, w = ref.random(case.x, "float16", "channels_last"), ref.random(case.w, "float16", "channels_last")
    yshape = ref.conv_out_shape(case.x, case.w, case.stride, case.padding, case.dilation)
    z = ref.random(yshape, "float16", "channels_last") if has_z else None
    b = ref.random((case.w[0],), "float16") if has_b else None
    expect = expected(x, w, z, b, act, alpha1, alpha2, kwargs(case))
    y, call = run(x, w, z, b, act, alpha1, alpha2, kwargs(case), "float16", "channels_last", "composed",
                  out_shape=yshape)
    assert call["function"] == "conv_epilogue" and call["path"] == "composed"
    check(y, expect, "float16", "composed")
    y, call = run(x, w, z, b, act, alpha1, alpha2, kwargs(case), "float16", "channels_last", "auto",
                  out_shape=yshape)
    check(y, expect, "float16", "auto (%s)" % call["path"])
    if call["path"] == "fused":
        y, call = run(x, w, z, b, act, alpha1, alpha2, kwargs(case), "float16", "channels_last", "fused",
                      out_shape=yshape)
        assert call["path"] == "fused"
        check(y, expect, "float16", "fused")
    else:
        assert call["path"] == "composed"
        with pytest.raises(cudnnconv.CuDNNError):
            run(x, w, z, b, act, alpha1, alpha2, kwargs(case), "float16", "channels_last", "fused",
                out_shape=yshape)


@pytest.mark.parametrize("fusion", ["auto", "composed"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", FUSED, ids=ids(FUSED))
@pytest.mark.parametrize("engine", ENGINES)
def test_dtypes_layouts_dims_and_groups(engine, case, dtype, layout, fusion):
    """silu with z and the bias over every dtype, layout, 1-3 spatial dims and groups."""
    x, w = ref.random(case.x, dtype, layout), ref.random(case.w, dtype, layout)
    yshape = ref.conv_out_shape(case.x, case.w, case.stride, case.padding, case.dilation)
    z, b = ref.random(yshape, dtype, layout), ref.random((case.w[0],), dtype)
    expect = expected(x, w, z, b, "silu", 1.0, 0.5, kwargs(case))
    y, call = run(x, w, z, b, "silu", 1.0, 0.5, kwargs(case), dtype, layout, fusion, engine, yshape)
    assert call["path"] in (("composed",) if fusion == "composed" or engine == "legacy" else ("fused", "composed"))
    check(y, expect, dtype, "%s on %s" % (call["path"], engine))
    assert (ref.is_channels_last if layout == "channels_last" else ref.is_nchw)(y) or y.ndim < 3


@pytest.mark.skipif("legacy" not in ENGINES, reason="the legacy engine is not built")
def test_the_legacy_engine_composes_and_refuses_fused():
    case = FUSED[1]
    x, w = ref.random(case.x, "float32"), ref.random(case.w, "float32")
    b = ref.random((case.w[0],), "float32")
    yshape = ref.conv_out_shape(case.x, case.w, case.stride, case.padding, case.dilation)
    y, call = run(x, w, None, b, "gelu", 1.0, 1.0, kwargs(case), "float32", "nchw", "auto", "legacy", yshape)
    assert call["path"] == "composed" and call["engine"] == "legacy"
    check(y, expected(x, w, None, b, "gelu", 1.0, 1.0, kwargs(case)), "float32", "legacy composed")
    with pytest.raises(cudnnconv.CuDNNError, match=r"the legacy engine fuses only relu\(conv \+ alpha2 \* z"):
        run(x, w, None, b, "gelu", 1.0, 1.0, kwargs(case), "float32", "nchw", "fused", "legacy", yshape)


@pytest.mark.skipif("legacy" not in ENGINES, reason="the legacy engine is not built")
@pytest.mark.parametrize("with_bias", [True, False])
def test_the_legacy_engine_fuses_relu_with_z(with_bias):
    """relu(conv + alpha2 * z + bias) through cudnnConvolutionBiasActivationForward (the op
    conv_bias_add_relu runs), with and without the bias."""
    case = FUSED[1]
    x, w = ref.random(case.x, "float32"), ref.random(case.w, "float32")
    yshape = ref.conv_out_shape(case.x, case.w, case.stride, case.padding, case.dilation)
    z, b = ref.random(yshape, "float32"), ref.random((case.w[0],), "float32") if with_bias else None
    for fusion in ("auto", "fused"):
        y, call = run(x, w, z, b, "relu", 1.0, 0.5, kwargs(case), "float32", "nchw", fusion, "legacy", yshape)
        assert call["path"] == "fused" and call["engine"] == "legacy"
        check(y, expected(x, w, z, b, "relu", 1.0, 0.5, kwargs(case)), "float32", "legacy fused")


@pytest.mark.parametrize("fusion", ["auto", "composed"])
@pytest.mark.parametrize("engine", ENGINES)
def test_out_aliases_z(engine, fusion):
    """out=z, an in-place residual: z is read before it is overwritten."""
    case = FUSED[1]
    x, w = ref.random(case.x, "float32"), ref.random(case.w, "float32")
    yshape = ref.conv_out_shape(case.x, case.w, case.stride, case.padding, case.dilation)
    z = ref.random(yshape, "float32")
    expect = expected(x, w, z, None, "tanh", 1.0, 2.0, kwargs(case))
    y = cudnnconv.conv_epilogue(x, w, None, **kwargs(case), z=z, act="tanh", alpha2=2.0, out=z, fusion=fusion,
                                allow_tf32=False, engine=engine)
    assert y is z
    check(z, expect, "float32", "out=z, %s" % cudnnconv.last_call()["path"])


@pytest.mark.parametrize("engine", ENGINES)
def test_alpha1_alone_scales_the_convolution(engine):
    case = FUSED[1]
    x, w = ref.random(case.x, "float64"), ref.random(case.w, "float64")
    y = cudnnconv.conv_epilogue(x, w, None, **kwargs(case), alpha1=-3.0, engine=engine)
    err = ref.rel_error(y, -3.0 * ref.conv(x, w, None, **kwargs(case)))
    assert err <= ref.tolerance("float64"), (err, cudnnconv.last_call()["path"])


def test_composed_kernel_writes_every_element_and_rounds_bfloat16_once():
    """The composed kernel alone on a bf16 channels-last array (all of it written; the result the
    float32 computation rounded to nearest even once)."""
    from cudnnconv import epilogue_composed
    y32 = cupy.random.standard_normal((2, 5, 7, 3)).astype(numpy.float32)
    b32 = cupy.random.standard_normal((5,)).astype(numpy.float32)
    bf16 = ref.dtype_of("bfloat16")
    y = ref.in_layout(y32.astype(bf16), "channels_last")
    b = b32.astype(bf16)
    epi = activations.epilogue(2.0, 1.0, "gelu_tanh", False, True)
    epilogue_composed.apply(y, epi, None, b)
    v = 2.0 * cupy.asnumpy(y32.astype(bf16).astype(numpy.float64)) + \
        cupy.asnumpy(b.astype(numpy.float64)).reshape(1, 5, 1, 1)
    expect = activations.reference_forward("gelu_tanh", v).astype(numpy.float32).astype(bf16)
    got = cupy.asnumpy(y)
    assert numpy.isfinite(got.astype(numpy.float32)).all()
    diff = numpy.abs(got.astype(numpy.float64) - expect.astype(numpy.float64))
    # one bfloat16 ulp (2^-7 relative): float32 and float64 arithmetic may round a tie apart; and
    # 1e-5 absolute, for gelu's far negative tail, where float32's 1 + tanh cancels
    ulp = numpy.abs(expect.astype(numpy.float64)) * 2.0 ** -7 + 1e-5
    assert (diff <= ulp).all(), float((diff / ulp).max())


# per element: a few units in the last place of the dtype, and an absolute floor for results near 0
# (the float32 sum of terms of order 1 before the activation)
ELEMENT_TOLERANCE = {"float16": (2.0 ** -10, 1e-5), "bfloat16": (2.0 ** -7, 1e-5), "float32": (1e-5, 1e-6),
                     "float64": (1e-12, 1e-13)}


def check_elements(y, expect, dtype, what):
    rtol, atol = ELEMENT_TOLERANCE[dtype]
    got = cupy.asnumpy(y).astype(numpy.float64)
    bad = ~(numpy.abs(got - expect) <= rtol * numpy.abs(expect) + atol)        # NaN counts as bad
    assert not bad.any(), "%s: %d elements off, the first at %s: %r against %r" % (
        what, int(bad.sum()), numpy.argwhere(bad)[0], got[bad][0], expect[bad][0])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "offset"])
@pytest.mark.parametrize("shape", [(3, 13, 9, 7), (2, 24, 16, 16), (4, 5, 33)])
def test_composed_kernels_vector_and_elementwise(monkeypatch, dtype, layout, offset, shape):
    """apply() and apply_derivative() on packed arrays (the vector kernels) and on arrays one element
    off 16-byte alignment (the elementwise kernels), with counts, channel runs and spatial sizes
    that are no multiple of a vector: which kernel ran, and each element against the float64
    composition."""
    from cudnnconv import epilogue_composed
    ran = []
    vector, elementwise = epilogue_composed._vector_kernel, epilogue_composed._kernel
    monkeypatch.setattr(epilogue_composed, "_vector_kernel", lambda *k: ran.append("vector") or vector(*k))
    monkeypatch.setattr(epilogue_composed, "_kernel", lambda *k: ran.append("elementwise") or elementwise(*k))

    def packed(base):
        """``base`` copied into a packed array of the layout whose data starts ``offset`` elements
        into its allocation."""
        n = int(numpy.prod(shape))
        buf = cupy.empty(n + offset, dtype=base.dtype)
        if layout == "channels_last":
            perm = (0,) + tuple(range(2, len(shape))) + (1,)
            arr = buf[offset:].reshape([shape[i] for i in perm]).transpose(numpy.argsort(perm))
        else:
            arr = buf[offset:].reshape(shape)
        arr[...] = base
        return arr
    d = ref.dtype_of(dtype)
    y0, z0, a0 = (ref.random(shape, dtype, "nchw") for _ in range(3))
    b = ref.random((shape[1],), dtype)
    y, z = packed(y0), packed(z0)
    kind = "vector" if offset == 0 else "elementwise"
    epi = activations.epilogue(1.25, -0.5, "silu", True, True)
    epilogue_composed.apply(y, epi, z, b)
    y64, z64, a64, b64 = (cupy.asnumpy(t).astype(numpy.float64) for t in (y0, z0, a0, b))
    v = 1.25 * y64 - 0.5 * z64 + b64.reshape((1, -1) + (1,) * (len(shape) - 2))
    check_elements(y, activations.reference_forward("silu", v), dtype, "apply, %s kernel" % kind)
    g, a = packed(y0), packed(a0)
    epilogue_composed.apply_derivative(g, activations.activation("gelu"), a)
    check_elements(g, y64 * activations.reference_derivative("gelu", a64), dtype, "apply_derivative, %s kernel" % kind)
    assert ran == [kind, kind] and y.dtype == d


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", [(64, 24, 40, 40), (8, 64, 112, 112), (4, 40, 6, 50, 50), (2, 3, 7)])
def test_bias_gradient_in_steps(dtype, layout, shape):
    """The bias gradient, one reduction or several (epilogue_composed.bias_plan), against the float64
    sum; the partial sums in float32 round once."""
    from cudnnconv import epilogue_composed
    g = ref.random(shape, dtype, layout)
    out = ref.poisoned((shape[1],), dtype)
    assert epilogue_composed.bias_gradient(g, out) is out
    expect = ref._f64(g).sum(axis=(0,) + tuple(range(2, len(shape))))
    assert ref.rel_error(out, expect) <= ref.tolerance(dtype)
    fresh = epilogue_composed.bias_gradient(g)
    assert fresh.shape == (shape[1],) and fresh.dtype == g.dtype and ref.rel_error(fresh, expect) <= ref.tolerance(dtype)


# ---------------------------------------------------------------------------
# the backward: the input gradient times the activation's derivative, and the weight and bias gradients
# ---------------------------------------------------------------------------

BACKWARD_ACTS = [a for a in ACTS if a is not None]
BACKWARD_CASES = [c for c in FUSED if c.padding != "same"]


def expected_dgrad_act(w, gy, a_in, act, x_shape, case_kw, from_output=False):
    g = cupy.asnumpy(ref.conv_backward_input(x_shape, w, gy, **case_kw))
    a = cupy.asnumpy(a_in).astype(numpy.float64)
    d = activations.reference_derivative_from_output(act, a) if from_output else \
        activations.reference_derivative(act, a)
    return g * d


def run_dgrad_act(w, gy, a_in, act, x_shape, case_kw, dtype, layout, fusion, engine="graph", kind="pre"):
    out = ref.poisoned(x_shape, dtype, layout)
    y = cudnnconv.conv_backward_input_act(x_shape, w, gy, a_in, **case_kw, act=act, act_input_is=kind, out=out,
                                          fusion=fusion, allow_tf32=False, engine=engine)
    assert y is out
    return y, cudnnconv.last_call()


@pytest.mark.skipif("graph" not in ENGINES, reason="the graph engine is not built")
@pytest.mark.parametrize("kind", ["pre", "output"])
@pytest.mark.parametrize("act", BACKWARD_ACTS, ids=ACT_IDS[1:])
def test_dgrad_act_every_activation_on_both_paths(act, kind):
    if kind == "output" and activations.needs(act) != "output":
        pytest.skip("%s's derivative needs the pre-activation" % activations.activation(act).name)
    case = FUSED[1]
    kw = kwargs(case)
    yshape = ref.conv_out_shape(case.x, case.w, case.stride, case.padding, case.dilation)
    w, gy = ref.random(case.w, "float16", "channels_last"), ref.random(yshape, "float16", "channels_last")
    pre = ref.random(case.x, "float16", "channels_last")
    a_in = pre if kind == "pre" else ref.in_layout(
        cupy.asarray(activations.reference_forward(act, cupy.asnumpy(pre).astype(numpy.float64))).astype("float16"),
        "channels_last")
    expect = expected_dgrad_act(w, gy, a_in, act, case.x, kw, kind == "output")
    y, call = run_dgrad_act(w, gy, a_in, act, case.x, kw, "float16", "channels_last", "composed", kind=kind)
    assert call["function"] == "conv_backward_input_act" and call["path"] == "composed"
    check(y, expect, "float16", "composed")
    y, call = run_dgrad_act(w, gy, a_in, act, case.x, kw, "float16", "channels_last", "auto", kind=kind)
    check(y, expect, "float16", "auto (%s)" % call["path"])
    if call["path"] == "fused":
        y, call = run_dgrad_act(w, gy, a_in, act, case.x, kw, "float16", "channels_last", "fused", kind=kind)
        check(y, expect, "float16", "fused")
    else:
        with pytest.raises(cudnnconv.CuDNNError):
            run_dgrad_act(w, gy, a_in, act, case.x, kw, "float16", "channels_last", "fused", kind=kind)


@pytest.mark.parametrize("fusion", ["auto", "composed"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", BACKWARD_CASES, ids=ids(BACKWARD_CASES))
@pytest.mark.parametrize("engine", ENGINES)
def test_dgrad_act_dtypes_layouts_dims_and_groups(engine, case, dtype, layout, fusion):
    kw = kwargs(case)
    yshape = ref.conv_out_shape(case.x, case.w, case.stride, case.padding, case.dilation)
    w, gy, pre = ref.random(case.w, dtype, layout), ref.random(yshape, dtype, layout), ref.random(case.x, dtype, layout)
    y, call = run_dgrad_act(w, gy, pre, "silu", case.x, kw, dtype, layout, fusion, engine)
    assert call["path"] in (("composed",) if fusion == "composed" or engine == "legacy" else ("fused", "composed"))
    check(y, expected_dgrad_act(w, gy, pre, "silu", case.x, kw), dtype, "%s on %s" % (call["path"], engine))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("engine", ENGINES)
def test_weight_and_bias_gradients(engine, dtype, layout):
    case = FUSED[2]
    kw = kwargs(case)
    yshape = ref.conv_out_shape(case.x, case.w, case.stride, case.padding, case.dilation)
    x, gy = ref.random(case.x, dtype, layout), ref.random(yshape, dtype, layout)
    out, bias_out = ref.poisoned(case.w, dtype, layout), ref.poisoned((case.w[0],), dtype)
    dw, db = cudnnconv.conv_backward_weight_bias(x, case.w, gy, **kw, out=out, bias_out=bias_out, allow_tf32=False,
                                                 engine=engine)
    assert dw is out and db is bias_out
    call = cudnnconv.last_call()
    assert call["function"] == "conv_backward_weight_bias" and call["path"] == "composed"
    assert ref.rel_error(dw, ref.conv_backward_weight(x, case.w, gy, **kw)) <= ref.tolerance(dtype) * 4
    expect_b = ref._f64(gy).sum(axis=(0, 2, 3))
    assert ref.rel_error(db, expect_b) <= ref.tolerance(dtype)
    dw2, db2 = cudnnconv.conv_backward_weight_bias(x, case.w, gy, **kw, engine=engine)     # fresh outputs
    assert db2.shape == (case.w[0],) and db2.dtype == gy.dtype
    assert ref.rel_error(db2, expect_b) <= ref.tolerance(dtype)


# ---------------------------------------------------------------------------
# fusion='auto' under benchmark=True: the first call times both paths and keeps the faster
# ---------------------------------------------------------------------------

def _forcing(monkeypatch, force):
    """Make fusion_choice.decide keep ``force`` (None: leave it to the times), so that both outcomes
    of the first call run on the GPU whichever path this GPU finds faster."""
    from cudnnconv import fusion_choice
    if force is None:
        return
    real = fusion_choice.decide

    def decide(*args, **kw):
        d = real(*args, **kw)
        d.path = force
        return d
    monkeypatch.setattr(fusion_choice, "decide", decide)


@pytest.mark.skipif("graph" not in ENGINES, reason="the graph engine is not built")
@pytest.mark.parametrize("force", [None, "fused", "composed"], ids=["timed", "keeps_fused", "keeps_composed"])
@pytest.mark.parametrize("groups", [1, 16], ids=["dense", "depthwise"])
def test_auto_under_benchmark_decides_once_and_stays_correct(monkeypatch, fresh_search, groups, force):
    """Whichever path the first call keeps, every call's output is the float64 composition, and
    later calls take the same path; a stale decision (clear_cache) is made again, and is correct.
    (fresh_search: the first call here is the signature's first, not one a test before decided.)"""
    _forcing(monkeypatch, force)
    shape, wshape = (8, 16, 24, 24), (16, 16 // groups, 3, 3)
    kw = dict(padding=1, groups=groups)
    x, w = ref.random(shape, "float16", "channels_last"), ref.random(wshape, "float16", "channels_last")
    b = ref.random((16,), "float16")
    expect = expected(x, w, None, b, "silu", 1.0, 1.0, kw)
    paths = []
    for _ in range(3):
        out = ref.poisoned(shape, "float16", "channels_last")
        cudnnconv.conv_epilogue(x, w, b, **kw, act="silu", out=out, fusion="auto", benchmark=True)
        paths.append(cudnnconv.last_call()["path"])
        check(out, expect, "float16", "auto (%s)" % paths[-1])
    assert paths[0] in ((force,) if force else ("fused", "composed")) and paths[1:] == paths[:1] * 2
    cudnnconv.clear_cache()
    out = ref.poisoned(shape, "float16", "channels_last")
    cudnnconv.conv_epilogue(x, w, b, **kw, act="silu", out=out, fusion="auto", benchmark=True)
    check(out, expect, "float16", "auto after clear_cache (%s)" % cudnnconv.last_call()["path"])


@pytest.mark.skipif("graph" not in ENGINES, reason="the graph engine is not built")
@pytest.mark.parametrize("force", [None, "fused", "composed"], ids=["timed", "keeps_fused", "keeps_composed"])
@pytest.mark.parametrize("groups", [1, 16], ids=["dense", "depthwise"])
def test_dgrad_act_auto_under_benchmark_decides_once_and_stays_correct(monkeypatch, fresh_search, groups, force):
    _forcing(monkeypatch, force)
    shape, wshape = (8, 16, 24, 24), (16, 16 // groups, 3, 3)
    kw = dict(padding=1, groups=groups)
    w, gy = ref.random(wshape, "float16", "channels_last"), ref.random(shape, "float16", "channels_last")
    pre = ref.random(shape, "float16", "channels_last")
    expect = expected_dgrad_act(w, gy, pre, "gelu", shape, kw)
    paths = []
    for _ in range(3):
        out = ref.poisoned(shape, "float16", "channels_last")
        cudnnconv.conv_backward_input_act(shape, w, gy, pre, **kw, act="gelu", out=out, fusion="auto",
                                          benchmark=True)
        paths.append(cudnnconv.last_call()["path"])
        check(out, expect, "float16", "auto (%s)" % paths[-1])
    assert paths[0] in ((force,) if force else ("fused", "composed")) and paths[1:] == paths[:1] * 2
