"""The typed path for torch tensors reads a tensor as the signature of its CuPy view reads (no GPU).

``callplan.run_strided`` finds the plan that the same call made through CuPy views bound, so for
every tensor it must read exactly what a call's signature reads of an array with the tensor's
metadata: shape, byte strides, the dtype object, pointer and device.  A duck-typed tensor (torch's
accessors: ``data_ptr()``, ``shape``, ``stride()`` in elements, ``dtype``, ``get_device()``) stands
in for torch's, and the conftest's MetaArray for the array; hypothesis draws shapes, strides (zero
ones included), dtypes, pointers and devices.  tests/test_torch_bridge_cpu.py checks the reading
against the view ``bridge.as_array`` really makes, with torch tensors.  What it declines (a dtype it has no entry for, more dims than a signature holds, a
negative stride, which torch never makes) is a call for the public function, never a wrong plan.
"""
import numpy
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

from cudnnconv import callplan  # noqa: E402
from conftest import MetaArray  # noqa: E402


class ViewArray(MetaArray):
    """The view's metadata, read as the typed path reads a cupy.ndarray's."""


class Size(tuple):
    """torch.Size: a tuple subclass."""


class FakeTensor:
    def __init__(self, shape, strides, dtype, ptr, device):
        self.shape, self._strides, self.dtype, self._ptr, self._device = Size(shape), tuple(strides), dtype, ptr, device

    def stride(self):
        return self._strides

    def data_ptr(self):
        return self._ptr

    def get_device(self):
        return self._device


DTYPES = {"half": numpy.dtype(numpy.float16), "float": numpy.dtype(numpy.float32),
          "double": numpy.dtype(numpy.float64)}
STRIDED = {k: (v, v.itemsize) for k, v in DTYPES.items()}


@pytest.fixture(autouse=True)
def view_arrays():
    callplan._use_array_type(ViewArray)
    yield
    callplan._use_array_type(None)


@st.composite
def tensors(draw):
    nd = draw(st.integers(0, 10))
    shape = draw(st.lists(st.integers(0, 70000), min_size=nd, max_size=nd))
    strides = draw(st.lists(st.one_of(st.integers(0, 1 << 40), st.integers(-8, -1)), min_size=nd, max_size=nd))
    dtype = draw(st.sampled_from(["half", "float", "double", "bfloat16", "int8"]))
    ptr = draw(st.one_of(st.just(0), st.integers(1, (1 << 64) - 1)))
    return FakeTensor(shape, strides, dtype, ptr, draw(st.integers(-1, 7)))


@settings(max_examples=1500, deadline=None)
@given(tensors())
def test_a_tensor_reads_as_its_views_signature(t):
    got = callplan.strided_signature(t, STRIDED)
    declined = t.dtype not in STRIDED or len(t.shape) > 8 or any(s < 0 for s in t.stride())
    if declined:
        assert got is None
        return
    dt = DTYPES[t.dtype]
    view = ViewArray(tuple(t.shape), t.stride(), dt, t.data_ptr(), t.get_device())
    want = callplan.array_signature(view)
    assert want is not None and got == want
    assert got[2] is dt                       # the dtype object itself: plans compare dtypes by identity
    assert got[1] == tuple(s * dt.itemsize for s in t.stride())


def test_what_is_not_a_strided_tensor_is_declined_or_raises_its_own_error():
    t = FakeTensor((2, 3), (3, 1), "half", 1 << 32, 0)
    t.shape = [2, 3]                           # not a tuple: declined
    assert callplan.strided_signature(t, STRIDED) is None
    assert callplan.strided_signature(FakeTensor((2, 3), (3, 1), "half", 1 << 32, 0), {}) is None
    with pytest.raises(AttributeError):        # not a tensor at all: the caller's bug, raised as it is
        callplan.strided_signature(object(), STRIDED)
