"""cudnnconv.core.arrays: CuPy arrays read and made by their C layout agree,
field for field, with CuPy's own attributes and constructor.

No GPU: the arrays live on UnownedMemory (an address that is never touched),
which CuPy accepts without a device."""
import os
import subprocess
import sys

import numpy
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

cupy = pytest.importorskip("cupy")
arrays = pytest.importorskip("cudnnconv.core.arrays")

from cupy.cuda import memory  # noqa: E402

_MEM = memory.UnownedMemory(1 << 30, 1 << 30, None, device_id=0)
DTYPES = ("float16", "float32", "float64", "int8", "uint8", "int32", "bool")


def _array(shape, dtype, strides, offset):
    return cupy.ndarray(shape, cupy.dtype(dtype), memory.MemoryPointer(_MEM, offset), strides)


@st.composite
def layouts(draw):
    ndim = draw(st.integers(0, 9))
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from(DTYPES))
    itemsize = numpy.dtype(dtype).itemsize
    order = draw(st.permutations(range(ndim))) if ndim else []
    strides = [0] * ndim
    acc = itemsize
    for d in reversed(order):                      # packed in some dim order ...
        strides[d] = acc
        acc *= max(shape[d], 1)
    for d in range(ndim):                          # ... with some dims broadcast or stepped
        k = draw(st.sampled_from((1, 1, 1, 0, 2)))
        strides[d] *= k
    offset = draw(st.integers(0, 64)) * itemsize
    return shape, dtype, tuple(strides), offset


def test_the_c_layout_is_in_use_on_this_cupy():
    s = arrays.status()
    assert s["direct"], s["reason"]
    assert s["alloc"] == s["stream"] == s["device"] == "c"


@settings(max_examples=300, deadline=None)
@given(layouts())
def test_a_read_by_the_c_layout_equals_the_attributes(case):
    shape, dtype, strides, offset = case
    a = _array(shape, dtype, strides, offset)
    direct, attrs = arrays._read(a, True), arrays._read(a, False)
    if len(shape) > 8:
        assert direct is None and attrs is None        # no convolution takes it: not read
        return
    assert direct == attrs
    assert direct == (len(shape), a.shape, a.strides, a.dtype, a.data.ptr, 0)
    assert direct[3] is a.dtype


@settings(max_examples=300, deadline=None)
@given(layouts())
def test_an_array_made_by_the_c_path_equals_cupys(case):
    shape, dtype, strides, offset = case
    if len(shape) > 8:
        return
    a = _array(shape, dtype, strides, offset)
    mp = memory.MemoryPointer(_MEM, offset + 4096)
    b = arrays._make_like(a, mp)
    ref = cupy.ndarray(shape, a.dtype, mp, strides)
    assert type(b) is cupy.ndarray
    for name in ("shape", "strides", "size", "ndim", "nbytes", "itemsize", "_index_32_bits", "_c_contiguous",
                 "_f_contiguous"):
        assert getattr(b, name) == getattr(ref, name), name
    assert b.flags.c_contiguous == ref.flags.c_contiguous and b.flags.f_contiguous == ref.flags.f_contiguous
    assert b.dtype is ref.dtype and b.data is mp and b.base is None
    # a view of it is what CuPy makes of its own
    if b.ndim >= 2:
        assert b.T.strides == ref.T.strides and b.T.flags.c_contiguous == ref.T.flags.c_contiguous


@st.composite
def foreign_layouts(draw):
    """Tensors' layouts as torch gives them: element strides, never negative, and large extents too."""
    shape, dtype, strides, offset = draw(layouts())
    itemsize = numpy.dtype(dtype).itemsize
    scale = draw(st.sampled_from((1, 1, 1, 1 << 20)))              # some past 2**31 bytes (index_32_bits)
    return shape, dtype, tuple(s // itemsize * scale for s in strides), 4096 + offset


@settings(max_examples=300, deadline=None)
@given(foreign_layouts())
def test_a_view_of_foreign_memory_equals_cupys_constructor(case):
    shape, dtype, elem_strides, ptr = case
    if len(shape) > 8:
        return
    dt = numpy.dtype(dtype)
    owner = type("Owner", (), {})()
    for direct in (True, False):
        arrays._set_direct(direct)
        try:
            b = arrays.view(ptr, shape, elem_strides, dt, dt.itemsize, owner, 0)
        finally:
            arrays._set_direct(True)
        byte_strides = tuple(s * dt.itemsize for s in elem_strides)
        extent = 0 if 0 in shape else dt.itemsize + sum((n - 1) * s for n, s in zip(shape, byte_strides))
        ref = cupy.ndarray(shape, dt, memory.MemoryPointer(memory.UnownedMemory(ptr, extent, owner, 0), 0),
                           byte_strides)
        assert type(b) is cupy.ndarray
        for name in ("shape", "strides", "size", "ndim", "nbytes", "itemsize", "_index_32_bits", "_c_contiguous",
                     "_f_contiguous"):
            assert getattr(b, name) == getattr(ref, name), (name, direct)
        assert b.dtype == ref.dtype and b.base is None
        assert b.data.ptr == ptr and b.data.device_id == 0 and b.data.mem.size == extent
        assert b.data.mem._owner is owner


def test_a_view_keeps_its_owner_alive_and_refuses_what_it_cannot_hold():
    import gc
    import weakref

    class Owner:
        pass
    owner = Owner()
    ref = weakref.ref(owner)
    b = arrays.view(8192, (2, 3), (3, 1), numpy.dtype("float32"), 4, owner, 0)
    del owner
    gc.collect()
    assert ref() is not None                         # the array holds it
    del b
    gc.collect()
    assert ref() is None
    with pytest.raises(ValueError, match="negative strides"):
        arrays.view(8192, (2, 3), (-3, 1), numpy.dtype("float32"), 4, None, 0)
    with pytest.raises(ValueError, match="at most 8 dims"):
        arrays.view(8192, (1,) * 9, (1,) * 9, numpy.dtype("float32"), 4, None, 0)


def test_other_types_are_not_read():
    a = _array((2, 3), "float32", None, 0)

    class Sub(cupy.ndarray):
        pass

    s = a.view(Sub)
    for obj in (s, numpy.zeros((2, 3)), None, 3, [a]):
        assert arrays._read(obj, True) is None and arrays._read(obj, False) is None


def test_made_arrays_hold_their_pointer_and_dtype_and_let_them_go():
    a = _array((4, 5), "float32", None, 0)
    mp = memory.MemoryPointer(_MEM, 0)
    dt = a.dtype
    n_mp, n_dt = sys.getrefcount(mp), sys.getrefcount(dt)
    made = [arrays._make_like(a, mp) for _ in range(100)]
    assert sys.getrefcount(mp) == n_mp + 100 and sys.getrefcount(dt) == n_dt + 100
    assert all(b.data is mp for b in made)
    del made
    assert sys.getrefcount(mp) == n_mp and sys.getrefcount(dt) == n_dt


def test_cudnnconv_cupy_direct_0_turns_the_c_layout_off():
    code = ("from cudnnconv.core import arrays; s = arrays.status(); "
            "print(s['direct'], s['reason'])")
    env = dict(os.environ, CUDNNCONV_CUPY_DIRECT="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False CUDNNCONV_CUPY_DIRECT=0"
    code = ("import cupy; from cudnnconv.core import arrays; "
            "m = cupy.cuda.MemoryPointer(cupy.cuda.UnownedMemory(256, 4, None, device_id=0), 0); "
            "a = cupy.ndarray((1,), 'f', m); print(arrays._read(a, False)[:3]); arrays._read(a, True)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "(1, (1,), (4,))"
    assert out.returncode != 0 and "RuntimeError: the C layout is not in use" in out.stderr


def test_outputs_come_from_cupys_current_allocator_which_must_give_a_pointer():
    a = _array((2, 8, 5, 5), "float16", (400, 2, 80, 16), 0)
    got = []

    def allocator(n):
        got.append(n)
        return memory.MemoryPointer(_MEM, 8192)
    old = memory.get_allocator()
    try:
        memory.set_allocator(allocator)
        b = arrays._new_like(a)
        assert got == [a.nbytes] and b.data.ptr == _MEM.ptr + 8192
        assert (b.shape, b.strides, b.dtype, b.flags.c_contiguous) == (a.shape, a.strides, a.dtype, False)
        memory.set_allocator(lambda n: None)             # a broken allocator: an error, never an address
        with pytest.raises(TypeError, match="allocator returned NoneType"):
            arrays._new_like(a)
    finally:
        memory.set_allocator(old)


class _Standin:
    """A stand-in array type whose dtype is made anew on each read."""
    shape, strides = (2, 3), (12, 4)
    data = type("D", (), {"ptr": 4096, "device_id": 0})()

    @property
    def dtype(self):
        return numpy.dtype([("a", "f4")])


def test_a_stand_in_type_is_read_by_its_attributes_only_and_safely():
    try:
        arrays.use_array_type(_Standin)
        assert arrays.status()["direct"] is False and not arrays._set_direct(True)
        assert arrays._read(_Standin(), False) is None            # no dtype that the array holds: not read
        with pytest.raises(RuntimeError, match="not in use"):
            arrays._read(_Standin(), True)
    finally:
        arrays.use_array_type(None)
    assert arrays.status()["direct"] and arrays._set_direct(True)
