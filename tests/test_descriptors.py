"""Legacy-API descriptors and cuDNN's own shape inference (host side, no GPU)."""
import gc
import itertools
import pickle

import pytest

import cudnnconv
from cudnnconv import params

D = pytest.importorskip("cudnnconv.engines.legacy_descriptors",
                        reason="this build has no legacy engine (CUDNNCONV_LEGACY_API=0)")

F32, F64, F16, BF16 = 0, 1, 2, 9


def _as_legacy(shape, w_shape, geom):
    """The legacy engine's view of a problem: 1-D becomes 2-D with unit height
    (padding 0, stride 1, dilation 1 in the added dim)."""
    if geom.nsp != 1:
        return shape, w_shape, geom.padding, geom.stride, geom.dilation
    return (shape[:2] + (1,) + shape[2:], w_shape[:2] + (1,) + w_shape[2:],
            (0,) + geom.padding, (1,) + geom.stride, (1,) + geom.dilation)


def cudnn_output_shape(x_shape, w_shape, geom, layout, dtype=F32):
    xs, ws, pad, st, dil = _as_legacy(x_shape, w_shape, geom)
    x = D.TensorDescriptor(dtype, xs, params.layout_strides(xs, layout))
    w = D.FilterDescriptor(dtype, ws, layout)
    c = D.ConvolutionDescriptor(dtype, pad, st, dil, geom.groups)
    out = D.forward_output_dims(c, x, w)
    if geom.nsp == 1:
        assert out[2] == 1
        out = out[:2] + out[3:]
    return out


SHAPES = [
    # (spatial, kernel, stride, padding, dilation)
    ((17,), (3,), 1, 1, 1),
    ((17,), (4,), 3, 2, 2),
    ((8,), (8,), 1, 0, 1),
    ((9, 11), (3, 3), 1, 0, 1),
    ((9, 11), (3, 2), (2, 3), (1, 0), (2, 1)),
    ((16, 16), (5, 5), 2, 2, 1),
    ((7, 9), (1, 1), (3, 2), 0, 1),
    ((5, 6, 7), (3, 3, 3), 1, 1, 1),
    ((6, 7, 8), (2, 3, 2), (2, 1, 3), (1, 0, 2), (1, 2, 3)),
]


@pytest.mark.parametrize("spatial,kernel,stride,padding,dilation", SHAPES)
@pytest.mark.parametrize("groups", [1, 2, 6])
@pytest.mark.parametrize("layout", [params.NCHW, params.CHANNELS_LAST])
def test_forward_output_dims_match_params(spatial, kernel, stride, padding, dilation, groups, layout):
    c, k = 6, 12
    x_shape = (3, c) + spatial
    w_shape = (k, c // groups) + kernel
    geom, y_shape = params.conv_geometry(x_shape, w_shape, stride, padding, dilation, groups)
    assert cudnn_output_shape(x_shape, w_shape, geom, layout) == y_shape


@pytest.mark.parametrize("dtype", [F32, F64, F16, BF16])
def test_forward_output_dims_for_each_dtype(dtype):
    geom, y_shape = params.conv_geometry((2, 4, 10, 10), (8, 4, 3, 3), 2, 1, 1, 1)
    assert cudnn_output_shape((2, 4, 10, 10), (8, 4, 3, 3), geom, params.CHANNELS_LAST, dtype) == y_shape


@pytest.mark.parametrize("kernel,dilation", [((3, 3), 1), ((2, 4), 1), ((3, 2), (2, 3))])
def test_same_padding_through_cudnn(kernel, dilation):
    """'same' as the engine sees it: the extra end element is already in the input."""
    x_shape, w_shape = (2, 4, 9, 10), (5, 4) + kernel
    geom, y_shape = params.conv_geometry(x_shape, w_shape, 1, "same", dilation, 1)
    padded = x_shape[:2] + tuple(s + e for s, e in zip(x_shape[2:], geom.same_extra))
    assert cudnn_output_shape(padded, w_shape, geom, params.NCHW) == y_shape == (2, 5, 9, 10)


@pytest.mark.parametrize("spatial,kernel,stride,padding,dilation", SHAPES)
def test_backward_shapes_through_cudnn(spatial, kernel, stride, padding, dilation):
    """The backward functions take grad_output of the shape cuDNN infers for input_shape."""
    x_shape = (2, 4) + spatial
    w_shape = (6, 2) + kernel
    geom, y_shape = params.conv_geometry(x_shape, w_shape, stride, padding, dilation, 2)
    gy = cudnn_output_shape(x_shape, w_shape, geom, params.NCHW)
    assert params.backward_input_geometry(x_shape, w_shape, gy, stride, padding, dilation, 2) == geom
    assert params.backward_weight_geometry(x_shape, w_shape, gy, stride, padding, dilation, 2) == geom


@pytest.mark.parametrize("spatial,kernel,stride,padding,opad,dilation", [
    ((5,), (3,), 2, 1, 1, 1), ((4, 6), (3, 2), (2, 3), (1, 0), (1, 2), 1), ((3, 4, 5), (3, 3, 3), 2, 1, 0, 2),
])
def test_transpose_shape_through_cudnn(spatial, kernel, stride, padding, opad, dilation):
    """The transposed convolution's output, convolved forward by cuDNN, gives back its input."""
    x_shape = (2, 6) + spatial
    w_shape = (6, 2) + kernel
    geom, out = params.transpose_geometry(x_shape, w_shape, stride, padding, opad, 3, dilation)
    assert cudnn_output_shape(out, w_shape, geom, params.NCHW) == x_shape


# ---------------------------------------------------------------------------
# Reprs
# ---------------------------------------------------------------------------

def test_tensor_descriptor_repr_nchw():
    t = D.TensorDescriptor(F32, (2, 3, 4, 5), params.layout_strides((2, 3, 4, 5), params.NCHW))
    assert repr(t) == "TensorDescriptor(dims=(2, 3, 4, 5), strides=(60, 20, 5, 1), dtype=float32, layout=NCHW)"
    assert t.layout == "NCHW"


def test_tensor_descriptor_repr_nhwc_and_3d():
    t = D.TensorDescriptor(F16, (2, 3, 4, 5), params.layout_strides((2, 3, 4, 5), params.CHANNELS_LAST))
    assert repr(t) == "TensorDescriptor(dims=(2, 3, 4, 5), strides=(60, 1, 15, 3), dtype=float16, layout=NHWC)"
    t = D.TensorDescriptor(BF16, (1, 2, 3, 4, 5), params.layout_strides((1, 2, 3, 4, 5), params.CHANNELS_LAST))
    r = repr(t)
    assert "dims=(1, 2, 3, 4, 5)" in r and "dtype=bfloat16" in r and "layout=NHWC" in r
    assert "strides=(120, 1, 40, 10, 2)" in r
    t = D.TensorDescriptor(F64, (2, 1, 4, 5), params.layout_strides((2, 1, 4, 5), params.CHANNELS_LAST))
    assert "dtype=float64" in repr(t) and t.layout == "NCHW"    # C == 1 reads as NCHW


def test_filter_descriptor_repr():
    f = D.FilterDescriptor(F16, (6, 3, 3, 3), "NHWC")
    assert repr(f) == "FilterDescriptor(dims=(6, 3, 3, 3), dtype=float16, layout=NHWC)"
    f = D.FilterDescriptor(F32, (6, 3, 1, 3), "NCHW")
    assert repr(f) == "FilterDescriptor(dims=(6, 3, 1, 3), dtype=float32, layout=NCHW)"


def test_convolution_descriptor_repr_and_math_type():
    c = D.ConvolutionDescriptor(F16, (1, 2), (3, 4), (1, 2), 2)
    r = repr(c)
    assert r == ("ConvolutionDescriptor(padding=(1, 2), stride=(3, 4), dilation=(1, 2), groups=2, "
                 "compute=float32, math=DEFAULT_MATH)")
    c.set_math_type(3)
    assert "math=FMA_MATH" in repr(c)
    c.set_math_type(1)
    assert "math=TENSOR_OP_MATH" in repr(c)
    assert "compute=float64" in repr(D.ConvolutionDescriptor(F64, (0, 0), (1, 1), (1, 1), 1))
    assert "compute=float32" in repr(D.ConvolutionDescriptor(BF16, (0, 0), (1, 1), (1, 1), 1))


def test_compute_type():
    assert [D.compute_type_for(t) for t in (F32, F64, F16, BF16)] == [F32, F64, F32, F32]


def test_activation_descriptor():
    assert repr(D.ActivationDescriptor()) == "ActivationDescriptor(RELU)"


def test_many_descriptors_are_freed():
    # __dealloc__ runs for each; a leak of cuDNN descriptors would not crash,
    # but a double free or a raising __dealloc__ would.
    for _ in range(2000):
        D.TensorDescriptor(F32, (1, 2, 3, 4), (24, 12, 4, 1))
        D.FilterDescriptor(F32, (2, 2, 1, 1), "NCHW")
        D.ConvolutionDescriptor(F32, (0, 0), (1, 1), (1, 1), 1)


# ---------------------------------------------------------------------------
# Bad descriptors
# ---------------------------------------------------------------------------

BAD = {
    "negative-dim": lambda: D.TensorDescriptor(F32, (2, -3, 4, 5), (60, 20, 5, 1)),
    "zero-stride": lambda: D.TensorDescriptor(F32, (2, 3, 4, 5), (0, 0, 0, 0)),
    "bad-dtype": lambda: D.TensorDescriptor(77, (2, 3, 4, 5), (60, 20, 5, 1)),
    "filter-zero-dim": lambda: D.FilterDescriptor(F32, (6, 0, 3, 3), "NCHW"),
    "negative-padding": lambda: D.ConvolutionDescriptor(F32, (-1, 1), (1, 1), (1, 1), 1),
    "zero-stride-conv": lambda: D.ConvolutionDescriptor(F32, (1, 1), (0, 1), (1, 1), 1),
    "zero-groups": lambda: D.ConvolutionDescriptor(F32, (1, 1), (1, 1), (1, 1), 0),
    "channel-mismatch": lambda: D.forward_output_dims(
        D.ConvolutionDescriptor(F32, (0, 0), (1, 1), (1, 1), 1),
        D.TensorDescriptor(F32, (2, 3, 4, 5), (60, 20, 5, 1)), D.FilterDescriptor(F32, (6, 4, 3, 3), "NCHW")),
    "kernel-too-large": lambda: D.forward_output_dims(
        D.ConvolutionDescriptor(F32, (0, 0), (1, 1), (1, 1), 1),
        D.TensorDescriptor(F32, (2, 3, 4, 5), (60, 20, 5, 1)), D.FilterDescriptor(F32, (6, 3, 7, 3), "NCHW")),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_descriptor_raises_cudnn_error(case):
    with pytest.raises(cudnnconv.CuDNNError) as info:
        BAD[case]()
    e = info.value
    assert e.name.startswith("CUDNN_STATUS_"), e.name
    assert e.name == "CUDNN_STATUS_BAD_PARAM" and e.status == 2000
    assert str(e).startswith(e.name)
    assert not isinstance(e, MemoryError)
    back = pickle.loads(pickle.dumps(e))
    assert (back.status, back.name, back.message) == (e.status, e.name, e.message)


def test_descriptor_argument_errors_before_cudnn():
    with pytest.raises(ValueError, match="3..8 dims"):
        D.TensorDescriptor(F32, (2, 3), (3, 1))
    with pytest.raises(ValueError, match="as many strides"):
        D.TensorDescriptor(F32, (2, 3, 4, 5), (60, 20, 5))
    with pytest.raises(ValueError, match="32-bit"):
        D.TensorDescriptor(F32, (2, 3, 4, 2**31), (3 * 4 * 2**31, 4 * 2**31, 2**31, 1))
    with pytest.raises(ValueError, match="layout must be"):
        D.FilterDescriptor(F32, (6, 3, 3, 3), "NCWH")
    with pytest.raises(ValueError, match="one entry per spatial dim"):
        D.ConvolutionDescriptor(F32, (1, 1), (1,), (1, 1), 1)


def test_grid_of_layouts_and_groups_is_exhaustive():
    # A small exhaustive sweep: every combination of stride/padding/dilation 1..2 on a 2-D problem.
    for st, pd, dl, g in itertools.product((1, 2), (0, 1, 2), (1, 2), (1, 3)):
        x_shape, w_shape = (1, 6, 7, 8), (9, 6 // g, 3, 2)
        geom, y_shape = params.conv_geometry(x_shape, w_shape, st, pd, dl, g)
        for layout in (params.NCHW, params.CHANNELS_LAST):
            assert cudnn_output_shape(x_shape, w_shape, geom, layout) == y_shape, (st, pd, dl, g, layout)


def test_legacy_descriptors_are_counted_while_alive():
    """engine_registry.live_descriptors() counts each descriptor from its creation to its __dealloc__
    (the GPU leak test reads it after clear_cache())."""
    from cudnnconv import engine_registry
    ld = D
    gc.collect()
    base = engine_registry.live_descriptors()["legacy"]
    t = ld.TensorDescriptor(0, (2, 3, 4, 5), (60, 20, 5, 1))
    f = ld.FilterDescriptor(0, (4, 3, 3, 3), "NCHW")
    c = ld.ConvolutionDescriptor(0, (1, 1), (1, 1), (1, 1), 1)
    a = ld.ActivationDescriptor()
    assert engine_registry.live_descriptors()["legacy"] == base + 4
    del t, f, c, a
    gc.collect()
    assert engine_registry.live_descriptors()["legacy"] == base
    with pytest.raises(ValueError):
        ld.TensorDescriptor(0, (2, 3), (3, 1))                           # refused before any is created
    assert engine_registry.live_descriptors()["legacy"] == base
