"""Bad inputs that used to escape the argument checks (no GPU needed).

Each call here is refused before any GPU work with a ValueError or TypeError
that names the argument, where before it raised AttributeError, KeyError,
OverflowError or RuntimeError from deeper down, or was taken as something it
is not (a float shape truncated, ``typestr=None`` read as float64, a
generator consumed, ``benchmark='no'`` read as True).  A valid call on a
machine without a usable GPU says so in one cudnnconv error.
"""
import math

import numpy
import pytest

import cudnnconv
from conftest import FakeCudaArray


class Interface:
    """An object with exactly this ``__cuda_array_interface__``."""

    def __init__(self, **cai):
        base = {"shape": (2, 4, 8, 8), "typestr": "<f4", "data": (0x7F0000000000, False), "version": 3,
                "strides": None}
        base.update(cai)
        self._changed = cai
        self.__cuda_array_interface__ = {k: v for k, v in base.items() if v is not Ellipsis}

    def __repr__(self):
        def text(v):
            if v is Ellipsis:
                return "<missing>"
            if isinstance(v, tuple):
                return "(%s)" % ", ".join(text(e) for e in v)
            if type(v) is int and v >= 1 << 40:
                return "2**%d" % (v.bit_length() - 1) if v == 1 << (v.bit_length() - 1) else hex(v)
            return repr(v)
        return "Interface(%s)" % ", ".join("%s=%s" % (k, text(v)) for k, v in self._changed.items())


class DLPackOnly:
    """A DLPack producer whose device query answers ``device``."""

    def __init__(self, device):
        self._device = device

    def __repr__(self):
        return "DLPackOnly(__dlpack_device__=%r)" % (self._device,)

    def __dlpack__(self, stream=None):
        raise AssertionError("not to be read")

    def __dlpack_device__(self):
        return self._device


W = FakeCudaArray((6, 4, 3, 3))
X = FakeCudaArray((2, 4, 8, 8))
GY = FakeCudaArray((2, 6, 6, 6))


@pytest.mark.parametrize("call, name", [
    (lambda: cudnnconv.conv(None, W), "input"),
    (lambda: cudnnconv.conv(X, None), "weight"),
    (lambda: cudnnconv.conv_backward_input(X.shape, None, GY), "weight"),
    (lambda: cudnnconv.conv_backward_input(X.shape, W, None), "grad_output"),
    (lambda: cudnnconv.conv_backward_weight(None, W.shape, GY), "input"),
    (lambda: cudnnconv.conv_backward_weight(X, W.shape, None), "grad_output"),
    (lambda: cudnnconv.conv_transpose(None, FakeCudaArray((4, 3, 3, 3))), "input"),
    (lambda: cudnnconv.conv_transpose(X, None), "weight"),
    (lambda: cudnnconv.conv_bias_add_relu(None, W, GY, 1.0, None), "input"),
    (lambda: cudnnconv.conv_bias_add_relu(X, None, GY, 1.0, None), "weight"),
], ids=["conv-input", "conv-weight", "bwd_in-weight", "bwd_in-grad", "bwd_w-input", "bwd_w-grad", "tr-input",
        "tr-weight", "fused-input", "fused-weight"])
def test_a_required_array_given_as_none(call, name):
    with pytest.raises(TypeError, match="^%s must be a CUDA array .*got None" % name):
        call()


def test_a_negative_batch_size():
    with pytest.raises(ValueError, match="input has a negative dim"):
        cudnnconv.conv(FakeCudaArray((-2, 4, 8, 8)), W)
    with pytest.raises(ValueError, match="input_shape has a negative batch size"):
        cudnnconv.conv_backward_input((-5, 4, 8, 8), W, GY)
    with pytest.raises(ValueError, match="weight_shape .*zero-sized|weight_shape has a zero"):
        cudnnconv.conv_backward_weight(X, (-6, 4, 3, 3), GY)


@pytest.mark.parametrize("cai, exc, fragment", [
    ({"data": (0, False)}, ValueError, "input has a NULL data pointer but 512 elements"),
    ({"data": Ellipsis}, TypeError, "input has an invalid __cuda_array_interface__: it has no 'data' entry"),
    ({"shape": Ellipsis}, TypeError, "no 'shape' entry"),
    ({"data": (2 ** 63, False)}, ValueError, "input has the data pointer 9223372036854775808, which is no device"),
    ({"data": (-16, False)}, ValueError, "which is no device address"),
    ({"data": (1.5, False)}, TypeError, "data must be \\(pointer, read_only\\)"),
    ({"data": 12345}, TypeError, "data must be \\(pointer, read_only\\)"),
    ({"strides": (2 ** 63, 4, 4, 4)}, ValueError, "byte strides .* multiple of the item size 4 and below 2\\*\\*63"),
    ({"strides": (1024, 256, 32, 2)}, ValueError, "byte strides"),
    ({"strides": (1024, 256, 32)}, TypeError, "strides must be None or one int per dim"),
    ({"strides": (1024.0, 256, 32, 4)}, TypeError, "strides must be None or one int per dim"),
    ({"typestr": None}, TypeError, "typestr must be a string"),
    ({"typestr": "nonsense"}, TypeError, "typestr 'nonsense' is no dtype"),
    ({"shape": (2.0, 4, 8, 8)}, TypeError, "shape must be a tuple of ints"),
    ({"shape": (2, True, 8, 8)}, TypeError, "shape must be a tuple of ints"),
    ({"shape": "2x4x8x8"}, TypeError, "shape must be a tuple of ints"),
])
def test_array_interface_fields_are_checked_here(cai, exc, fragment):
    with pytest.raises(exc, match=fragment):
        cudnnconv.conv(Interface(**cai), W)


def test_negative_and_zero_strides_pass_the_interface_check():
    """Negative (reversed) and zero (broadcast) strides are valid array
    metadata; what the library does with them is its layout's business."""
    from cudnnconv import params
    a = params.inspect_array(Interface(strides=(-1024, 256, 32, 4)), "input")
    assert a.shape == (2, 4, 8, 8)
    assert params.inspect_array(Interface(strides=(0, 256, 32, 4)), "input").dtype == numpy.float32
    empty = params.inspect_array(Interface(shape=(0, 4, 8, 8), data=(0, False)), "input")   # NULL is fine when empty
    assert empty.shape == (0, 4, 8, 8)


@pytest.mark.parametrize("device", [(), None, ("cuda", 0), 5])
def test_a_broken_dlpack_device_query(device):
    with pytest.raises(TypeError, match="input has an invalid __dlpack_device__\\(\\)"):
        cudnnconv.conv(DLPackOnly(device), W)


def test_a_host_dlpack_producer_is_refused_as_host_memory():
    with pytest.raises(TypeError, match="in host memory"):
        cudnnconv.conv(DLPackOnly((1, 0)), W)


def test_scalars():
    z = FakeCudaArray((2, 6, 6, 6))
    with pytest.raises(TypeError, match="alpha must be a finite real number"):
        cudnnconv.conv_bias_add_relu(X, W, z, 10 ** 400, None)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="alpha must be a finite real number"):
            cudnnconv.conv_bias_add_relu(X, W, z, bad, None)
    with pytest.raises(TypeError, match="benchmark must be True, False or None, got 'no'"):
        cudnnconv.conv(X, W, benchmark="no")
    with pytest.raises(TypeError, match="deterministic must be True, False or None, got 1"):
        cudnnconv.conv(X, W, deterministic=1)
    with pytest.raises(TypeError, match="input_shape must be a sequence of ints"):
        cudnnconv.conv_backward_input((s for s in (2, 4, 8, 8)), W, GY)
    with pytest.raises(TypeError, match="weight_shape must be a sequence of ints"):
        cudnnconv.conv_backward_weight(X, iter((6, 4, 3, 3)), GY)
    with pytest.raises(TypeError, match="input_shape must be a sequence of ints"):
        cudnnconv.conv_backward_input("2,4,8,8", W, GY)


def test_a_void16_array_says_what_to_do():
    x = FakeCudaArray((2, 4, 8, 8), typestr="<V2")
    w = FakeCudaArray((6, 4, 3, 3), typestr="<V2")
    with pytest.raises(TypeError, match="unsupported dtype void16.*cupy.from_dlpack.*ml_dtypes.bfloat16"):
        cudnnconv.conv(x, w)
    with pytest.raises(TypeError, match="^unsupported dtype void32: cudnnconv supports float16, bfloat16, "
                                        "float32 and float64$"):
        cudnnconv.conv(FakeCudaArray((2, 4, 8, 8), typestr="<V4"), FakeCudaArray((6, 4, 3, 3), typestr="<V4"))


def test_a_valid_call_without_a_gpu_says_so():
    if cudnnconv.cuda_available():
        pytest.skip("a CUDA device is usable here: the call would run")
    with pytest.raises(cudnnconv.CudaUnavailableError, match="no usable CUDA device was found "
                                                             "\\(cudnnconv.cuda_available\\(\\) is False\\)") as e:
        cudnnconv.conv(X, W)
    assert e.value.__cause__ is None and e.value.__suppress_context__
