"""params: geometry, layouts, the cache key and the repro line (no GPU)."""
import ast
import itertools

import numpy
import pytest

from cudnnconv import options, params


# ---------------------------------------------------------------------------
# An independent reference: count window positions by enumeration
# ---------------------------------------------------------------------------

def ref_out_size(size, k, stride, pad_lo, pad_hi, dilation):
    """How many windows fit, found by walking the padded input."""
    padded = size + pad_lo + pad_hi
    span = dilation * (k - 1)
    return sum(1 for start in range(0, padded, stride) if start + span < padded)


def same_pads(k, dilation):
    """PyTorch's 'same': total padding d*(k-1), the odd element at the end."""
    total = dilation * (k - 1)
    return total // 2, total - total // 2


GRID = [
    # (spatial, kernel, stride, padding, dilation)
    ((9,), (3,), 1, 0, 1),
    ((9,), (3,), 2, 1, 1),
    ((10,), (4,), 3, 2, 2),
    ((7, 8), (3, 2), (2, 1), (1, 0), (1, 2)),
    ((8, 8), (1, 1), 1, 0, 1),
    ((5, 6), (5, 6), 1, 0, 1),
    ((16, 15), (3, 3), (3, 2), (2, 1), (2, 3)),
    ((4, 5, 6), (3, 3, 3), 1, 1, 1),
    ((6, 7, 8), (2, 3, 1), (2, 1, 3), (0, 1, 2), (3, 1, 1)),
]


@pytest.mark.parametrize("spatial,kernel,stride,padding,dilation", GRID)
@pytest.mark.parametrize("groups", [1, 2])
def test_conv_geometry_matches_enumeration(spatial, kernel, stride, padding, dilation, groups):
    nsp = len(spatial)
    c, k = 4, 6
    x_shape = (3, c) + spatial
    w_shape = (k, c // groups) + kernel
    geom, out = params.conv_geometry(x_shape, w_shape, stride, padding, dilation, groups)
    st = stride if isinstance(stride, tuple) else (stride,) * nsp
    pd = padding if isinstance(padding, tuple) else (padding,) * nsp
    dl = dilation if isinstance(dilation, tuple) else (dilation,) * nsp
    assert geom.nsp == nsp
    assert geom.stride == st and geom.padding == pd and geom.dilation == dl
    assert geom.groups == groups and geom.same_extra == (0,) * nsp
    expect = tuple(ref_out_size(spatial[i], kernel[i], st[i], pd[i], pd[i], dl[i]) for i in range(nsp))
    assert out == (3, k) + expect


@pytest.mark.parametrize("spatial,kernel,dilation", [
    ((9,), (3,), 1), ((9,), (4,), 1), ((9,), (2,), 3), ((10,), (5,), 2),
    ((7, 8), (3, 4), 1), ((7, 8), (2, 2), (1, 2)), ((6, 5, 4), (2, 3, 4), 1), ((6, 5, 4), (3, 3, 3), 2),
])
def test_same_padding_keeps_the_size_with_asymmetric_extra(spatial, kernel, dilation):
    nsp = len(spatial)
    x_shape = (2, 3) + spatial
    w_shape = (5, 3) + kernel
    geom, out = params.conv_geometry(x_shape, w_shape, 1, "same", dilation, 1)
    assert out == (2, 5) + spatial
    dl = dilation if isinstance(dilation, tuple) else (dilation,) * nsp
    for i in range(nsp):
        lo, hi = same_pads(kernel[i], dl[i])
        assert geom.padding[i] == lo
        assert geom.same_extra[i] == hi - lo
        assert geom.same_extra[i] in (0, 1)
        # Odd dilated-kernel totals (even kernels with odd dilation) need the extra element.
        assert geom.same_extra[i] == (dl[i] * (kernel[i] - 1)) % 2
        assert ref_out_size(spatial[i], kernel[i], 1, lo, hi, dl[i]) == spatial[i]


def test_valid_padding_is_zero():
    geom, out = params.conv_geometry((1, 2, 10, 9), (4, 2, 3, 2), 2, "valid", 1, 1)
    assert geom.padding == (0, 0)
    assert out == (1, 4, 4, 4)


def test_padding_tuple_and_int_agree():
    g1, o1 = params.conv_geometry((1, 2, 10, 10), (4, 2, 3, 3), 1, 1, 1, 1)
    g2, o2 = params.conv_geometry((1, 2, 10, 10), (4, 2, 3, 3), (1, 1), [1, 1], (1,), 1)
    assert o1 == o2 and g1 == g2


def test_depthwise():
    c, mult = 8, 3
    geom, out = params.conv_geometry((2, c, 11, 12), (c * mult, 1, 3, 3), 1, 1, 1, c)
    assert geom.groups == c
    assert out == (2, c * mult, 11, 12)


def test_kernel_equal_to_padded_input_is_allowed_and_one_larger_is_not():
    _, out = params.conv_geometry((1, 1, 5), (1, 1, 7), 1, 1, 1, 1)
    assert out == (1, 1, 1)
    with pytest.raises(ValueError, match="larger than the padded input"):
        params.conv_geometry((1, 1, 5), (1, 1, 8), 1, 1, 1, 1)
    with pytest.raises(ValueError, match="larger than the padded input"):
        params.conv_geometry((1, 1, 5), (1, 1, 3), 1, 0, 3, 1)   # dilated to 7


@pytest.mark.parametrize("bad,exc", [
    (dict(stride=0), ValueError), (dict(stride=-1), ValueError), (dict(dilation=0), ValueError),
    (dict(padding=-1), ValueError), (dict(padding=(1, 2, 3)), ValueError), (dict(stride=(1, 2, 3)), ValueError),
    (dict(padding="full"), ValueError), (dict(stride=1.5), TypeError), (dict(stride=True), TypeError),
    (dict(groups=0), ValueError), (dict(groups=2.0), TypeError), (dict(padding="same", stride=2), ValueError),
])
def test_conv_geometry_rejects(bad, exc):
    kw = dict(stride=1, padding=0, dilation=1, groups=1)
    kw.update(bad)
    with pytest.raises(exc):
        params.conv_geometry((1, 4, 8, 8), (4, 4, 3, 3), kw["stride"], kw["padding"], kw["dilation"], kw["groups"])


def test_spatial_tuple():
    assert params.spatial_tuple(2, 3, "stride", 1) == (2, 2, 2)
    assert params.spatial_tuple((2,), 2, "stride", 1) == (2, 2)
    assert params.spatial_tuple([1, 2], 2, "stride", 1) == (1, 2)
    assert params.spatial_tuple(numpy.int64(3), 1, "stride", 1) == (3,)
    assert params.spatial_tuple(0, 2, "padding", 0) == (0, 0)
    with pytest.raises(ValueError, match="stride must be positive"):
        params.spatial_tuple((1, 0), 2, "stride", 1)
    with pytest.raises(ValueError, match="2 entries"):
        params.spatial_tuple((1, 1, 1), 2, "stride", 1)


def test_cudnn_dtype_codes():
    assert params.cudnn_dtype("float32") == 0
    assert params.cudnn_dtype(numpy.float64) == 1
    assert params.cudnn_dtype(numpy.float16) == 2
    ml_dtypes = pytest.importorskip("ml_dtypes")
    assert params.cudnn_dtype(ml_dtypes.bfloat16) == 9
    for bad in ("int32", "float128" if hasattr(numpy, "float128") else "int8", "complex64", "uint8"):
        with pytest.raises(TypeError, match="unsupported dtype"):
            params.cudnn_dtype(bad)


# ---------------------------------------------------------------------------
# Transposed and backward geometry
# ---------------------------------------------------------------------------

def ref_transpose_size(size, k, stride, pad, opad, dilation):
    return (size - 1) * stride - 2 * pad + dilation * (k - 1) + opad + 1


TGRID = [
    # (spatial, kernel, stride, padding, output_padding, dilation, groups)
    ((5,), (3,), 1, 0, 0, 1, 1),
    ((5,), (3,), 2, 1, 1, 1, 1),
    ((6,), (4,), 3, 1, 2, 1, 2),
    ((4, 5), (3, 3), (2, 3), (1, 0), (1, 2), 1, 1),
    ((4, 5), (2, 3), 1, 0, 1, 2, 1),           # output_padding < dilation, >= stride
    ((3, 4, 5), (3, 2, 3), 2, 1, 1, 1, 2),
]


@pytest.mark.parametrize("spatial,kernel,stride,padding,opad,dilation,groups", TGRID)
def test_transpose_geometry(spatial, kernel, stride, padding, opad, dilation, groups):
    nsp = len(spatial)
    cin, cout_g = 4, 3
    x_shape = (2, cin) + spatial
    w_shape = (cin, cout_g) + kernel
    geom, out = params.transpose_geometry(x_shape, w_shape, stride, padding, opad, groups, dilation)
    t = lambda v: v if isinstance(v, tuple) else (v,) * nsp  # noqa: E731
    st, pd, op, dl = t(stride), t(padding), t(opad), t(dilation)
    expect = tuple(ref_transpose_size(spatial[i], kernel[i], st[i], pd[i], op[i], dl[i]) for i in range(nsp))
    assert out == (2, cout_g * groups) + expect
    assert geom.stride == st and geom.padding == pd and geom.dilation == dl and geom.groups == groups
    # The forward convolution of the result (weight in the forward roles) gives back x's shape
    # whenever output_padding < stride (it only adds rows the forward stride skips).
    if all(op[i] < st[i] for i in range(nsp)):
        _, back = params.conv_geometry(out, w_shape, st, pd, dl, groups)
        assert back == x_shape


@pytest.mark.parametrize("stride,dilation,opad,ok", [
    (2, 1, 1, True), (2, 1, 2, False), (1, 1, 1, False), (1, 2, 1, True), (1, 3, 2, True),
    (3, 3, 3, False), ((2, 1), 1, (1, 1), False), ((2, 2), 1, (1, 1), True),
])
def test_transpose_output_padding_rule(stride, dilation, opad, ok):
    args = ((1, 2, 6, 6), (2, 2, 3, 3), stride, 0, opad, 1, dilation)
    if ok:
        params.transpose_geometry(*args)
    else:
        with pytest.raises(ValueError, match="output_padding must be smaller"):
            params.transpose_geometry(*args)


def test_transpose_geometry_rejects():
    with pytest.raises(ValueError, match="C_in=4"):
        params.transpose_geometry((1, 4, 5, 5), (3, 2, 3, 3), 1, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="divisible by groups"):
        params.transpose_geometry((1, 4, 5, 5), (4, 2, 3, 3), 1, 0, 0, 3, 1)
    with pytest.raises(ValueError, match="integer padding"):
        params.transpose_geometry((1, 4, 5, 5), (4, 2, 3, 3), 1, "same", 0, 1, 1)
    with pytest.raises(ValueError, match="empty"):
        params.transpose_geometry((1, 4, 1, 1), (4, 2, 1, 1), 1, 1, 0, 1, 1)


@pytest.mark.parametrize("spatial,kernel,stride,padding,dilation,groups", [
    ((9,), (3,), 2, 1, 1, 1), ((8, 7), (3, 2), (1, 2), (1, 0), (2, 1), 2), ((5, 6, 7), (3, 3, 3), 1, 1, 1, 4),
])
def test_backward_geometries_agree_with_forward(spatial, kernel, stride, padding, dilation, groups):
    x_shape = (2, 4) + spatial
    w_shape = (8, 4 // groups) + kernel
    fgeom, y_shape = params.conv_geometry(x_shape, w_shape, stride, padding, dilation, groups)
    assert params.backward_input_geometry(list(x_shape), w_shape, y_shape, stride, padding, dilation,
                                          groups) == fgeom
    assert params.backward_weight_geometry(x_shape, list(w_shape), y_shape, stride, padding, dilation,
                                           groups) == fgeom
    bad_y = y_shape[:-1] + (y_shape[-1] + 1,)
    with pytest.raises(ValueError, match="grad_output has shape"):
        params.backward_input_geometry(x_shape, w_shape, bad_y, stride, padding, dilation, groups)
    with pytest.raises(ValueError, match="grad_output has shape"):
        params.backward_weight_geometry(x_shape, w_shape, bad_y, stride, padding, dilation, groups)


def test_backward_same_padding():
    # odd kernel: symmetric, allowed
    g = params.backward_input_geometry((1, 2, 7, 7), (3, 2, 3, 3), (1, 3, 7, 7), 1, "same", 1, 1)
    assert g.padding == (1, 1)
    # even kernel: asymmetric, refused with a clear message
    with pytest.raises(ValueError, match="asymmetric"):
        params.backward_input_geometry((1, 2, 7, 7), (3, 2, 2, 2), (1, 3, 7, 7), 1, "same", 1, 1)
    with pytest.raises(ValueError, match="asymmetric"):
        params.backward_weight_geometry((1, 2, 7, 7), (3, 2, 2, 2), (1, 3, 7, 7), 1, "same", 1, 1)


def test_backward_shapes_must_be_int_sequences():
    with pytest.raises(TypeError, match="input_shape"):
        params.backward_input_geometry((1, 2, 7.5, 7), (3, 2, 3, 3), (1, 3, 5, 5), 1, 0, 1, 1)
    with pytest.raises(TypeError, match="weight_shape"):
        params.backward_weight_geometry((1, 2, 7, 7), None, (1, 3, 5, 5), 1, 0, 1, 1)


# ---------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------

def channels_last(shape, dtype=numpy.float32):
    nd = len(shape)
    perm = (0,) + tuple(range(2, nd)) + (1,)
    inv = (0, nd - 1) + tuple(range(1, nd - 1))
    return numpy.zeros(tuple(shape[p] for p in perm), dtype).transpose(inv)


@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 4, 5), (2, 3, 4, 5, 6)])
def test_layout_strides_match_numpy(shape):
    a = numpy.zeros(shape, numpy.float16)
    assert params.layout_strides(shape, params.NCHW) == tuple(s // 2 for s in a.strides)
    b = channels_last(shape, numpy.float16)
    assert b.shape == shape
    assert params.layout_strides(shape, params.CHANNELS_LAST) == tuple(s // 2 for s in b.strides)
    assert params.layout_strides(shape, params.CHANNELS_LAST)[1] == 1


def test_has_layout():
    a = numpy.zeros((2, 3, 4, 5), numpy.float32)
    b = channels_last((2, 3, 4, 5))
    assert params.has_layout(a, params.NCHW) and not params.has_layout(a, params.CHANNELS_LAST)
    assert params.has_layout(b, params.CHANNELS_LAST) and not params.has_layout(b, params.NCHW)
    c = numpy.zeros((2, 3, 4, 10), numpy.float32)[..., ::2]     # strided: neither
    assert not params.has_layout(c, params.NCHW) and not params.has_layout(c, params.CHANNELS_LAST)
    one = numpy.zeros((2, 1, 4, 5), numpy.float32)               # C == 1: both
    assert params.has_layout(one, params.NCHW) and params.has_layout(one, params.CHANNELS_LAST)


def test_suggest_layout():
    x = numpy.zeros((2, 3, 4, 5), numpy.float32)
    w = numpy.zeros((6, 3, 3, 3), numpy.float32)
    xl, wl = channels_last(x.shape), channels_last(w.shape)
    assert params.suggest_layout(x, w) == params.NCHW
    assert params.suggest_layout(xl, w) == params.CHANNELS_LAST
    assert params.suggest_layout(x, wl) == params.CHANNELS_LAST
    assert params.suggest_layout(xl, wl) == params.CHANNELS_LAST
    # C == 1 is both layouts at once: not a reason to go channels-last
    assert params.suggest_layout(numpy.zeros((2, 1, 4, 5)), numpy.zeros((6, 1, 3, 3))) == params.NCHW
    # 1-D and 3-D
    assert params.suggest_layout(channels_last((2, 3, 7)), numpy.zeros((4, 3, 3))) == params.CHANNELS_LAST
    assert params.suggest_layout(channels_last((2, 3, 4, 5, 6)), numpy.zeros((4, 3, 1, 1, 1))) \
        == params.CHANNELS_LAST
    # non-contiguous in both: NCHW (a copy into it)
    assert params.suggest_layout(numpy.zeros((2, 3, 4, 10))[..., ::2], w) == params.NCHW


# ---------------------------------------------------------------------------
# The cache key
# ---------------------------------------------------------------------------

def _key(**over):
    geom, _ = params.conv_geometry((2, 4, 9, 9), (8, 2, 3, 3), 1, 1, 1, 2)
    base = dict(op="forward", engine="legacy", device=0, dtype_code=0, x_shape=(2, 4, 9, 9),
                w_shape=(8, 2, 3, 3), layout=params.NCHW, geom=geom,
                opts=options.Options(False, False, True, None, "auto"), extra=())
    base.update(over)
    return params.make_key(**base)


def test_key_is_hashable_and_immutable():
    k = _key()
    assert hash(k) == hash(_key())
    assert k == _key()
    assert {k: 1}[_key()] == 1
    with pytest.raises(AttributeError):
        k.groups = 3
    for field in k:
        hash(field)        # every field is itself hashable (tuples, not lists)
    assert isinstance(k.input_shape, tuple) and isinstance(k.weight_shape, tuple)


def test_key_from_lists_equals_key_from_tuples():
    assert _key(x_shape=[2, 4, 9, 9], w_shape=[8, 2, 3, 3], extra=[16]) == _key(extra=(16,))


def _geom(**over):
    g, _ = params.conv_geometry((2, 4, 9, 9), (8, 2, 3, 3), 1, 1, 1, 2)
    return g._replace(**over)


@pytest.mark.parametrize("change", [
    dict(op="backward_data"), dict(engine="graph"), dict(device=1), dict(dtype_code=2),
    dict(x_shape=(3, 4, 9, 9)), dict(x_shape=(2, 4, 9, 10)), dict(w_shape=(8, 2, 3, 1)),
    dict(layout=params.CHANNELS_LAST),
    dict(geom=_geom(padding=(0, 1))), dict(geom=_geom(stride=(2, 1))), dict(geom=_geom(dilation=(1, 2))),
    dict(geom=_geom(groups=1)),
    dict(opts=options.Options(False, True, True, None, "auto")),
    dict(opts=options.Options(False, False, False, None, "auto")),
    dict(opts=options.Options(False, False, True, 1 << 20, "auto")),
    dict(opts=options.Options(False, False, True, 0, "auto")),
    dict(extra=(256,)),
])
def test_key_differs_when_a_field_that_matters_differs(change):
    assert _key(**change) != _key()
    assert hash(_key(**change)) != hash(_key()) or _key(**change) != _key()


def test_key_omits_benchmark_and_same_extra():
    # documented omissions: benchmark (see search.try_all) and same_extra (carried by the padded input shape)
    assert _key(opts=options.Options(True, False, True, None, "auto")) == _key()
    assert _key(geom=_geom(same_extra=(1, 1))) == _key()


def test_all_key_pairs_in_a_grid_are_distinct():
    keys = set()
    count = 0
    for dt, lay, dev, det, tf32 in itertools.product((0, 1, 2, 9), (params.NCHW, params.CHANNELS_LAST), (0, 1),
                                                     (False, True), (False, True)):
        keys.add(_key(dtype_code=dt, layout=lay, device=dev,
                      opts=options.Options(False, det, tf32, None, "auto")))
        count += 1
    assert len(keys) == count


# ---------------------------------------------------------------------------
# The repro line
# ---------------------------------------------------------------------------

KW = [("stride", (2, 2)), ("padding", (1, 1)), ("dilation", (1, 1)), ("groups", 1), ("benchmark", False)]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "bfloat16"])
@pytest.mark.parametrize("layout", [params.NCHW, params.CHANNELS_LAST])
def test_repro_parses(dtype, layout):
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    line = params.repro("conv", [("input", (2, 3, 8, 8)), ("weight", (4, 3, 3, 3))], dtype, layout, KW)
    tree = ast.parse(line)
    assert "\n" not in line
    assert line.startswith("import cupy, cudnnconv")
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == "conv"]
    assert len(calls) == 1
    call = calls[0]
    assert {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords} == dict(KW)
    assert len(call.args) == 2
    assert "(2, 3, 8, 8)" in line or "(2, 8, 8, 3)" in line
    if numpy.dtype(dtype).name == "bfloat16":
        assert "ml_dtypes" in line.split(";")[0]
    else:
        assert "ml_dtypes" not in line
    if layout == params.CHANNELS_LAST:
        assert "(2, 8, 8, 3)" in line and "transpose((0, 3, 1, 2))" in line
    else:
        assert "transpose" not in line


def test_repro_shapes_and_names():
    line = params.repro("conv_backward_input", [("input_shape", (2, 3, 8)), ("weight", (4, 3, 3)),
                                                ("grad_output", (2, 4, 6))], "float32", params.NCHW, [])
    tree = ast.parse(line)
    call = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") ==
            "conv_backward_input"][0]
    assert ast.literal_eval(call.args[0]) == (2, 3, 8)
    assert call.keywords == []
    # Scalars and None are literals, so the repro runs as written.
    line = params.repro("conv_bias_add_relu", [("input", (1, 2, 5, 5)), ("alpha", 0.5), ("bias", None)],
                        "float32", params.NCHW, [("fusion", "auto")])
    call = [n for n in ast.walk(ast.parse(line)) if isinstance(n, ast.Call)
            and getattr(n.func, "attr", "") == "conv_bias_add_relu"][0]
    assert ast.literal_eval(call.args[1]) == 0.5
    assert ast.literal_eval(call.args[2]) is None
    assert not [n for n in ast.walk(call) if isinstance(n, ast.Name) and n.id not in ("cupy", "cudnnconv")]


def test_memoized_helpers_agree_with_their_definitions():
    # cudnn_dtype and layout_strides memoize; the memo must never change an answer.
    import numpy
    for dt in ("float32", numpy.float16, numpy.dtype("float64"), "float32"):
        assert params.cudnn_dtype(dt) == params._CUDNN_DTYPE[numpy.dtype(dt).name]
    with pytest.raises(TypeError):
        params.cudnn_dtype("int8")
    with pytest.raises(TypeError):
        params.cudnn_dtype("int8")          # a refusal is not memoized into an answer
    for shape in ((2, 3, 4, 5), (1, 8, 7), (2, 3, 4, 5, 6)):
        for layout in (params.NCHW, params.CHANNELS_LAST):
            first = params.layout_strides(shape, layout)
            assert params.layout_strides(shape, layout) == first == params._layout_strides(shape, layout)
    assert params.layout_strides([2, 3, 4, 5], params.NCHW) == (60, 20, 5, 1)      # a list: computed, not memoized
    assert params.layout_strides((2, 3, 4, 5), params.CHANNELS_LAST) == (60, 1, 15, 3)


def test_repro_writes_an_array_keyword_as_a_random_array():
    """conv_epilogue's z is a keyword argument that is an array: RandomArray marks it, and the line
    makes a random array of its shape (in the call's layout), not a tuple."""
    line = params.repro("conv_epilogue", [("input", (1, 2, 5, 5)), ("weight", (3, 2, 3, 3)), ("bias", None)],
                        "float16", params.CHANNELS_LAST,
                        [("z", params.RandomArray((1, 3, 3, 3))), ("act", ("leaky_relu", 0.2)), ("alpha1", 1.0)])
    call = [n for n in ast.walk(ast.parse(line)) if isinstance(n, ast.Call)
            and getattr(n.func, "attr", "") == "conv_epilogue"][0]
    kw = {k.arg: k.value for k in call.keywords}
    z = ast.unparse(kw["z"])
    assert "cupy.random.standard_normal((1, 3, 3, 3))" in z and "transpose((0, 3, 1, 2))" in z
    assert ast.literal_eval(kw["act"]) == ("leaky_relu", 0.2) and ast.literal_eval(kw["alpha1"]) == 1.0
    line = params.repro("conv_epilogue", [("input", (1, 2, 5, 5)), ("weight", (3, 2, 3, 3))], "float32",
                        params.NCHW, [("z", None)])
    assert "z=None" in line


@pytest.mark.parametrize("value, expect", [(2, 2.0), (-0.5, -0.5), (numpy.float32(1.5), 1.5), (numpy.int64(3), 3.0)])
def test_finite_real_takes_real_numbers(value, expect):
    got = params.finite_real("alpha", value)
    assert got == expect and type(got) is float


@pytest.mark.parametrize("value, exc", [("2", TypeError), (True, TypeError), (numpy.bool_(False), TypeError),
                                        (None, TypeError), ([1.0], TypeError), (float("inf"), ValueError),
                                        (float("nan"), ValueError), (10 ** 400, TypeError)])
def test_finite_real_says_what_is_wrong(value, exc):
    with pytest.raises(exc, match="alpha2 must be a finite real number"):
        params.finite_real("alpha2", value)
