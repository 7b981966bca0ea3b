"""Transposed convolution against its definition, and the fused
conv_bias_add_relu against the composed float64 computation."""
import pytest

import cudnnconv
import reference as ref
from gpu_cases import DTYPE_BENCH, DTYPE_BENCH_IDS, DTYPES, ENGINES, FUSED, LAYOUTS, TRANSPOSE, ids, kwargs

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")


def _tkw(c):
    return dict(stride=c.stride, padding=c.padding, output_padding=c.output_padding, groups=c.groups,
                dilation=c.dilation)


def _t(v, n):
    return tuple(v) if isinstance(v, tuple) else (v,) * n



@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype,bench", DTYPE_BENCH, ids=DTYPE_BENCH_IDS)
@pytest.mark.parametrize("case", TRANSPOSE, ids=ids(TRANSPOSE))
@pytest.mark.parametrize("engine", ENGINES)
def test_transpose_matches_definition(engine, case, dtype, layout, bench, request):
    x = ref.random(case.x, dtype, layout)
    w = ref.random(case.w, dtype, layout)
    b = ref.random((case.w[1] * case.groups,), dtype)
    expect = ref.conv_transpose(x, w, b, **_tkw(case))
    out = ref.poisoned(expect.shape, dtype, layout)
    y = cudnnconv.conv_transpose(x, w, b, **_tkw(case), out=out, benchmark=bench, allow_tf32=False,
                                 engine=engine)
    assert y is out and y.shape == expect.shape
    err = ref.rel_error(y, expect)
    assert err <= ref.tolerance(dtype), "relative error %.3g (last call: %s)" % (err, cudnnconv.last_call())
    assert cudnnconv.last_call()["function"] == "conv_transpose"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("engine", ENGINES)
def test_transpose_result_layout_and_no_bias(engine, layout):
    case = TRANSPOSE[2]
    x = ref.random(case.x, "float32", layout)
    w = ref.random(case.w, "float32", layout)
    y = cudnnconv.conv_transpose(x, w, **_tkw(case), allow_tf32=False, engine=engine)
    assert (ref.is_channels_last if layout == "channels_last" else ref.is_nchw)(y), y.strides
    assert ref.rel_error(y, ref.conv_transpose(x, w, **_tkw(case))) <= ref.tolerance("float32")


ALPHAS = [0.7, -1.5]


@pytest.mark.parametrize("fusion", ["auto", "fused", "composed"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", FUSED, ids=ids(FUSED))
@pytest.mark.parametrize("engine", ENGINES)
def test_fused_matches_composed_reference(engine, case, dtype, layout, fusion):
    alpha = ALPHAS[(FUSED.index(case) + DTYPES.index(dtype)) % 2]
    x = ref.random(case.x, dtype, layout)
    w = ref.random(case.w, dtype, layout)
    b = ref.random((case.w[0],), dtype)
    yshape = ref.conv_out_shape(case.x, case.w, case.stride, case.padding, case.dilation)
    z = ref.random(yshape, dtype, layout)
    expect = ref.conv_bias_add_relu(x, w, z, alpha, b, **kwargs(case))
    out = ref.poisoned(yshape, dtype, layout)
    try:
        y = cudnnconv.conv_bias_add_relu(x, w, z, alpha, b, **kwargs(case), out=out, fusion=fusion,
                                         allow_tf32=False, engine=engine)
    except cudnnconv.CuDNNError as e:
        if fusion != "fused":
            raise
        # fusion='fused' may refuse a case cuDNN cannot fuse: that must be a
        # clear CuDNNError, never a wrong result.
        assert "CUDNN_STATUS" in str(e)
        pytest.skip("cuDNN does not fuse this case: %s" % e.name)
    call = cudnnconv.last_call()
    assert y is out
    assert call["function"] == "conv_bias_add_relu"
    if fusion == "composed":
        assert call["path"] == "composed"
    elif fusion == "fused":
        assert call["path"] == "fused"
    else:
        assert call["path"] in ("fused", "composed")
    err = ref.rel_error(y, expect)
    assert err <= ref.tolerance(dtype), "relative error %.3g on the %s path" % (err, call["path"])
    assert bool((y.astype("float64") >= 0).all())


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("engine", ENGINES)
def test_fused_path_runs_for_plain_2d(engine, layout, dtype):
    """The canonical case (2-D, groups 1) fuses: fusion='fused' and 'auto' take the fused path."""
    case = FUSED[1]
    x = ref.random(case.x, dtype, layout)
    w = ref.random(case.w, dtype, layout)
    b = ref.random((case.w[0],), dtype)
    z = ref.random((2, 16, 10, 12), dtype, layout)
    expect = ref.conv_bias_add_relu(x, w, z, 0.5, b, **kwargs(case))
    for fusion in ("fused", "auto"):
        y = cudnnconv.conv_bias_add_relu(x, w, z, 0.5, b, **kwargs(case), fusion=fusion, allow_tf32=False,
                                         engine=engine)
        assert cudnnconv.last_call()["path"] == "fused", fusion
        assert ref.rel_error(y, expect) <= ref.tolerance(dtype)
        assert (ref.is_channels_last if layout == "channels_last" else ref.is_nchw)(y)


@pytest.mark.parametrize("fusion", ["auto", "composed"])
@pytest.mark.parametrize("engine", ENGINES)
def test_fused_out_aliases_z_and_no_bias(engine, fusion):
    """out=z (an in-place residual) and bias=None."""
    case = FUSED[1]
    x = ref.random(case.x, "float64")
    w = ref.random(case.w, "float64")
    z = ref.random((2, 16, 10, 12), "float64")
    expect = ref.conv_bias_add_relu(x, w, z, 2.0, None, **kwargs(case))
    y = cudnnconv.conv_bias_add_relu(x, w, z, 2.0, None, **kwargs(case), out=z, fusion=fusion, engine=engine)
    assert y is z
    assert ref.rel_error(z, expect) <= ref.tolerance("float64")
