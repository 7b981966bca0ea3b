# cython: language_level=3
# distutils: language = c++
"""CuPy arrays read and made at C speed (tier 2: no policy).

A cached call reads the shape, strides, dtype, device and data pointer of
each array it is given, and makes one new array for its result.  Through
CuPy's Python attributes that costs about 0.3 µs per array read (``shape``
and ``strides`` build tuples) and 1.5 µs per array made (``cupy.ndarray``'s
constructor is a Python-level ``__new__`` that parses its arguments and
recomputes the layout), a quarter of a cached call's host time.

CuPy ships no ``.pxd`` files to cimport, so this module reads its ndarray
the way CuPy's own modules do, by the C layout of ``cupy._core.core.
_ndarray_base`` and ``cupy.cuda.memory.MemoryPointer`` (declared below,
field for field, after CuPy's ``core.pxd`` and ``memory.pxd``).  It uses
that layout only after checking it, once, on arrays made through CuPy's
public constructor: the type sizes must match, and every field read must
equal the public attribute, and an array made here must equal, attribute for
attribute, the one CuPy's constructor makes.  Any mismatch (a CuPy release
that changed the layout), or ``CUDNNCONV_CUPY_DIRECT=0``, turns it off and
every read and every new array goes through CuPy's public Python API, with
the same results, only slower (``status()`` says which is in use and why).

A new array is made as CuPy makes one internally: its base type's
``tp_new``, then the layout (shape, strides, size and the contiguity flags,
all copied from an array CuPy made with the same layout: ``layout_of``), the
dtype, and a MemoryPointer from CuPy's current allocator.  The device and the
stream come from CuPy's exported C functions (``get_device_id``,
``get_current_stream_ptr``), taken from its modules' ``__pyx_capi__`` by
their exact C signatures; a signature that differs falls back to the Python
call.

Only the exact type ``cupy.ndarray`` is read (a subclass may override
``__array_finalize__`` or the attributes: it is "not an array" here, and
its call takes the full path).
"""
import os

from cpython.object cimport PyTypeObject
from cpython.pycapsule cimport PyCapsule_GetPointer
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from libc.stdint cimport intptr_t
from libcpp.vector cimport vector

cdef extern from *:
    """
    #include <vector>
    /* cupy._core.core._ndarray_base (CuPy's core.pxd, in declaration order) */
    struct cudnnconv_cupy_ndarray {
        PyObject_HEAD
        void *vtab;
        PyObject *weakref;
        Py_ssize_t size;
        std::vector<Py_ssize_t> shape;
        std::vector<Py_ssize_t> strides;
        int c_contiguous;
        int f_contiguous;
        int index_32_bits;
        PyObject *dtype;
        PyObject *data;
        PyObject *base;
    };
    /* cupy.cuda.memory.MemoryPointer (CuPy's memory.pxd) */
    struct cudnnconv_cupy_memptr {
        PyObject_HEAD
        void *vtab;
        intptr_t ptr;
        int device_id;
        PyObject *mem;
    };
    """
    cdef struct NdMirror "cudnnconv_cupy_ndarray":
        Py_ssize_t size
        vector[Py_ssize_t] shape
        vector[Py_ssize_t] strides
        int c_contiguous
        int f_contiguous
        int index_32_bits
        PyObject* dtype
        PyObject* data
        PyObject* base
    cdef struct MpMirror "cudnnconv_cupy_memptr":
        intptr_t ptr
        int device_id

ctypedef object (*alloc_fn)(object, int)                # memory.alloc(size): a new MemoryPointer
ctypedef intptr_t (*stream_fn)() except? -1             # stream.get_current_stream_ptr()
ctypedef int (*device_fn)(int) except? -1               # device.get_device_id()

_ALLOC_SIG = b"struct __pyx_obj_4cupy_4cuda_6memory_MemoryPointer *(PyObject *, int __pyx_skip_dispatch)"
_STREAM_SIG = b"intptr_t (void)"
_DEVICE_SIG = b"int (int __pyx_skip_dispatch)"

cdef object _TYPE = None          # the array type: cupy.ndarray, or a test's stand-in
cdef object _CHECKED = None       # the type whose C layout was checked (cupy.ndarray), or None
cdef object _MEMPTR = None        # cupy.cuda.MemoryPointer
cdef object _UNOWNED = None       # cupy.cuda.UnownedMemory
cdef bint _DIRECT = False         # read and make _TYPE by its C layout (checked)
cdef PyTypeObject* _BASE = NULL   # cupy's _ndarray_base: its tp_new makes an uninitialized ndarray
cdef alloc_fn _c_alloc = NULL
cdef stream_fn _c_stream = NULL
cdef device_fn _c_device = NULL
cdef object _py_alloc = None
cdef object _py_stream = None
cdef object _py_device = None
cdef tuple _EMPTY = ()
cdef dict _STATUS = {}


def _capi(module, str name, bytes sig):
    """The address of ``module``'s exported C function ``name`` if its C
    signature is exactly ``sig``, else 0."""
    cap = getattr(module, "__pyx_capi__", {}).get(name)
    if cap is None:
        return 0
    try:
        return <size_t>PyCapsule_GetPointer(cap, sig)
    except ValueError:               # another signature: not ours to call
        return 0


cdef int _setup() except -1:
    """Import cupy and decide, once, how arrays are read and made."""
    global _TYPE, _DIRECT, _CHECKED, _MEMPTR, _UNOWNED, _BASE, _c_alloc, _c_stream, _c_device, _py_alloc, \
        _py_stream, _py_device
    import cupy
    from cupy.cuda import memory, stream, device
    _py_alloc = cupy.cuda.alloc
    _py_device = cupy.cuda.runtime.getDevice
    _py_stream = _stream_ptr_py
    _c_alloc = <alloc_fn><size_t>_capi(memory, "alloc", _ALLOC_SIG)
    _c_stream = <stream_fn><size_t>_capi(stream, "get_current_stream_ptr", _STREAM_SIG)
    _c_device = <device_fn><size_t>_capi(device, "get_device_id", _DEVICE_SIG)
    _TYPE = cupy.ndarray
    _STATUS.clear()
    _STATUS["alloc"] = "c" if _c_alloc != NULL else "python"
    _STATUS["stream"] = "c" if _c_stream != NULL else "python"
    _STATUS["device"] = "c" if _c_device != NULL else "python"
    reason = None
    if os.environ.get("CUDNNCONV_CUPY_DIRECT", "1").strip() == "0":
        reason = "CUDNNCONV_CUPY_DIRECT=0"
    else:
        reason = _check_layout(cupy, memory)
    _DIRECT = reason is None
    _CHECKED = _TYPE if _DIRECT else None
    _MEMPTR = memory.MemoryPointer
    _UNOWNED = memory.UnownedMemory
    _STATUS["direct"] = _DIRECT
    _STATUS["reason"] = reason or "the C layout matches CuPy %s" % cupy.__version__
    return 0


def _stream_ptr_py():
    import cupy
    return cupy.cuda.get_current_stream().ptr


cdef object _check_layout(cupy, memory):
    """None when the declared layouts match this CuPy, else why not."""
    global _BASE, _DIRECT
    nd = cupy.ndarray
    mro = nd.__mro__
    if len(mro) != 3 or mro[2] is not object:
        return "cupy.ndarray's bases are %r" % (mro,)
    base = mro[1]
    if nd.__basicsize__ != sizeof(NdMirror) or base.__basicsize__ != sizeof(NdMirror):
        return "cupy.ndarray is %d bytes, the declared layout %d" % (nd.__basicsize__, sizeof(NdMirror))
    if memory.MemoryPointer.__basicsize__ != sizeof(MpMirror):
        return "MemoryPointer is %d bytes, the declared layout %d" % (
            memory.MemoryPointer.__basicsize__, sizeof(MpMirror))
    _BASE = <PyTypeObject*>base
    # Arrays on memory that is never touched (an address and a size only).
    mem = memory.UnownedMemory(1 << 20, 1 << 24, None, device_id=0)
    mem1 = memory.UnownedMemory(1 << 21, 1 << 24, None, device_id=1)     # device_id read, not padding
    cases = [((2, 3, 4, 5), "float16", 0, None),
             ((8, 16, 7, 7), "float16", 256, (1568, 2, 224, 32)),       # channels-last
             ((4, 6), "float32", 64, (4, 16)),                           # Fortran order
             ((3,), "float64", 8, None),
             ((2, 0, 3), "float32", 0, None),                            # empty
             ((1, 1, 5, 1), "int8", 1, (5, 5, 1, 1)),
             ((3, 4), "float32", 0, (0, 4)),                             # broadcast
             ((2, 3, 4, 5, 6), "float16", 512, None)]
    cdef Layout lay
    cdef ArrayMeta m
    for k, (shape, dt, offset, strides) in enumerate(cases):
        mp = memory.MemoryPointer(mem1 if k % 2 else mem, offset)
        a = nd(shape, cupy.dtype(dt), mp, strides)
        why = _compare_read(a, mp)
        if why is not None:
            return "reading %r: %s" % (a.shape, why)
        _layout(a, &lay)
        mp2 = memory.MemoryPointer(mem1 if k % 2 else mem, offset + 4096)
        b = _make(&lay, a.dtype, mp2)
        why = _compare_made(b, a, mp2)
        if why is not None:
            return "making %r: %s" % (a.shape, why)
    return None


cdef object _compare_read(a, mp):
    cdef NdMirror* am = <NdMirror*><PyObject*>a
    cdef MpMirror* mm
    cdef Py_ssize_t i
    if am.size != a.size:
        return "size"
    if tuple([am.shape[i] for i in range(am.shape.size())]) != a.shape:
        return "shape"
    if tuple([am.strides[i] for i in range(am.strides.size())]) != a.strides:
        return "strides"
    if bool(am.c_contiguous) != a.flags.c_contiguous or bool(am.f_contiguous) != a.flags.f_contiguous:
        return "contiguity"
    if bool(am.index_32_bits) != bool(a._index_32_bits):
        return "index_32_bits"
    if am.dtype != <PyObject*>a.dtype or am.data != <PyObject*>a.data or am.base != <PyObject*>a.base:
        return "dtype, data or base"
    if am.data != <PyObject*>mp:
        return "data"
    mm = <MpMirror*>am.data
    if mm.ptr != mp.ptr or mm.device_id != mp.device_id:
        return "MemoryPointer"
    return None


cdef object _compare_made(b, a, mp):
    if type(b) is not type(a):
        return "type"
    for name in ("shape", "strides", "size", "ndim", "itemsize", "nbytes", "_index_32_bits"):
        if getattr(b, name) != getattr(a, name):
            return name
    if b.flags.c_contiguous != a.flags.c_contiguous or b.flags.f_contiguous != a.flags.f_contiguous:
        return "contiguity"
    if b.dtype is not a.dtype or b.data is not mp or b.base is not None:
        return "dtype, data or base"
    if b.data.ptr != mp.ptr or b.data.device_id != mp.device_id:
        return "data pointer"
    return None


def status():
    """How arrays are read and made: {'direct': the C layout is in use,
    'reason': why or why not, 'alloc'/'stream'/'device': 'c' where CuPy's
    exported C function is called, 'python' where its Python API is}."""
    if _TYPE is None:
        _setup()
    return dict(_STATUS)


def use_array_type(cls):
    """Treat ``cls`` as the array type (tests without a GPU: an object with
    shape, strides, dtype and data.ptr/device_id, read through its
    attributes); None: cupy.ndarray again, from the next call."""
    global _TYPE, _DIRECT
    _TYPE = cls
    _DIRECT = False
    _STATUS.clear()
    if cls is not None:
        _STATUS.update(direct=False, reason="a stand-in array type (%s), read by its attributes" % cls.__name__)


cdef object array_type():
    if _TYPE is None:
        _setup()
    return _TYPE


cdef int read_meta(object a, ArrayMeta* m) except -1:
    cdef NdMirror* am
    cdef MpMirror* mp
    cdef Py_ssize_t i, n
    if _TYPE is None:
        _setup()
    if type(a) is not _TYPE:
        return 0
    if _DIRECT:
        am = <NdMirror*><PyObject*>a
        n = <Py_ssize_t>am.shape.size()
        if n > MAX_DIMS or am.data == <PyObject*>None:
            return 0
        m.ndim = <int>n
        for i in range(n):
            m.shape[i] = am.shape[i]
            m.strides[i] = am.strides[i]
        m.dtype = am.dtype
        mp = <MpMirror*>am.data
        m.ptr = <size_t>mp.ptr
        m.device = mp.device_id
        return 1
    return _read_attributes(a, m)


cdef int _read_attributes(object a, ArrayMeta* m) except -1:
    cdef tuple shape = a.shape, strides = a.strides
    cdef Py_ssize_t i, n = len(shape)
    if n > MAX_DIMS or len(strides) != n:
        return 0
    m.ndim = <int>n
    for i in range(n):
        m.shape[i] = shape[i]
        m.strides[i] = strides[i]
    dt = a.dtype
    if a.dtype is not dt:
        return 0          # a dtype made on each read: nothing would keep the borrowed pointer alive
    m.dtype = <PyObject*>dt           # the array holds it
    data = a.data
    m.ptr = <size_t>data.ptr
    m.device = data.device_id
    return 1


cdef bint same_meta(const ArrayMeta* a, const ArrayMeta* b) noexcept nogil:
    cdef int i
    if a.ndim != b.ndim or a.dtype != b.dtype or a.device != b.device:
        return False
    for i in range(a.ndim):
        if a.shape[i] != b.shape[i] or a.strides[i] != b.strides[i]:
            return False
    return True


cdef int layout_of(object a, Layout* lay) except -1:
    lay.ndim = 0
    if not _DIRECT or type(a) is not _TYPE or len(a.shape) > MAX_DIMS:
        return 0          # only new_array's C path uses a layout
    return _layout(a, lay)


cdef int _layout(object a, Layout* lay) except -1:
    cdef tuple shape = a.shape, strides = a.strides
    cdef Py_ssize_t i, n = len(shape)
    for i in range(n):
        lay.shape[i] = shape[i]
        lay.strides[i] = strides[i]
    lay.size = a.size
    flags = a.flags
    lay.c_contiguous = flags.c_contiguous
    lay.f_contiguous = flags.f_contiguous
    lay.index_32_bits = a._index_32_bits
    lay.ndim = <int>n
    return 1


cdef object _make(const Layout* lay, object dtype, object mp):
    """A cupy.ndarray of layout ``lay`` on ``mp``, made as CuPy's internal
    constructors make one (base tp_new, then the fields)."""
    cdef object a = _BASE.tp_new(<type>_TYPE, <PyObject*>_EMPTY, NULL)
    cdef NdMirror* am = <NdMirror*><PyObject*>a
    am.shape.assign(lay.shape, lay.shape + lay.ndim)
    am.strides.assign(lay.strides, lay.strides + lay.ndim)
    am.size = lay.size
    am.c_contiguous = lay.c_contiguous
    am.f_contiguous = lay.f_contiguous
    am.index_32_bits = lay.index_32_bits
    Py_INCREF(dtype)
    Py_XDECREF(am.dtype)
    am.dtype = <PyObject*>dtype
    Py_INCREF(mp)
    Py_XDECREF(am.data)
    am.data = <PyObject*>mp
    return a


cdef object new_array(const Layout* lay, object dtype, object nbytes, tuple shape, tuple strides, size_t* ptr):
    if _DIRECT and lay.ndim > 0:
        mp = _c_alloc(nbytes, 0) if _c_alloc != NULL else _py_alloc(nbytes)
        if not isinstance(mp, _MEMPTR):
            raise TypeError("CuPy's current allocator returned %s for %d bytes, not a MemoryPointer"
                            % (type(mp).__name__, nbytes))
        ptr[0] = <size_t>(<MpMirror*><PyObject*>mp).ptr
        return _make(lay, dtype, mp)
    a = _TYPE(shape, dtype, _py_alloc(nbytes), strides)
    ptr[0] = <size_t>a.data.ptr
    return a


cdef bint _c_contiguity(const Py_ssize_t* shape, const Py_ssize_t* strides, int ndim, Py_ssize_t itemsize,
                        int step) noexcept:
    """CuPy's C-contiguity rule (cupy._core.internal.get_c_contiguity) over the dims in order
    (``step`` 1) or reversed (``step`` -1, its F-contiguity)."""
    cdef int k, i, prev_i = -1, index = 0
    cdef Py_ssize_t sh, st = 0
    if ndim == 0 or (ndim == 1 and strides[0] == itemsize):
        return True
    for k in range(ndim):
        i = k if step > 0 else ndim - 1 - k
        sh = shape[i]
        if sh == 0:
            return True
        if sh == 1:
            continue
        st = strides[i]
        if prev_i == -1 or strides[prev_i] != sh * st:
            index += 1
        prev_i = i
    return index == 0 or (index == 1 and st == itemsize)


def view(size_t ptr, shape, strides, dtype, Py_ssize_t itemsize, owner, int device):
    """A cupy.ndarray over memory that ``owner`` owns and the array keeps alive: ``shape``,
    ``strides`` in elements (as torch's ``stride()`` gives them), ``dtype`` a numpy dtype of
    ``itemsize`` bytes, on ``device``.  It is the array
    ``cupy.ndarray(shape, dtype, MemoryPointer(UnownedMemory(ptr, extent, owner, device), 0),
    byte_strides)`` makes, field for field (``extent``: the bytes from ``ptr`` to the end of its
    last element), made by the C layout where it is in use.  Strides must not be negative."""
    cdef Layout lay
    cdef Py_ssize_t i, n = len(shape), right = itemsize, left = 0, tmp, size = 1
    cdef int nz = 1
    if _TYPE is None:
        _setup()
    if n > MAX_DIMS or len(strides) != n:
        raise ValueError("view: %d dims and %d strides (at most %d dims)" % (n, len(strides), MAX_DIMS))
    lay.ndim = <int>n
    for i in range(n):
        lay.shape[i] = shape[i]
        lay.strides[i] = <Py_ssize_t>strides[i] * itemsize
        if lay.strides[i] < 0:
            raise ValueError("view: negative strides %s" % (tuple(strides),))
        size *= lay.shape[i]
        if lay.shape[i] == 0:
            nz = 0
        tmp = (lay.shape[i] - 1) * lay.strides[i]
        if tmp > 0:
            right += tmp
        else:
            left += tmp
    if not nz:
        left = right = 0
    mp = _MEMPTR(_UNOWNED(ptr, right, owner, device), 0)
    if not _DIRECT:
        return _TYPE(tuple(shape), dtype, mp, tuple([lay.strides[i] for i in range(n)]))
    lay.size = size
    if size == 0:
        lay.c_contiguous = lay.f_contiguous = True
    else:
        lay.c_contiguous = _c_contiguity(lay.shape, lay.strides, lay.ndim, itemsize, 1)
        if lay.c_contiguous:
            tmp = 0
            for i in range(n):
                if lay.shape[i] == 1:
                    tmp += 1
            lay.f_contiguous = n - tmp <= 1
        else:
            lay.f_contiguous = _c_contiguity(lay.shape, lay.strides, lay.ndim, itemsize, -1)
    lay.index_32_bits = max(right - left, size * itemsize) <= (<Py_ssize_t>1 << 31)
    return _make(&lay, dtype, mp)


cdef int current_device() except -1:
    if _TYPE is None:
        _setup()
    if _c_device != NULL:
        return _c_device(0)
    return _py_device()


cdef size_t current_stream() except? 0:
    if _TYPE is None:
        _setup()
    if _c_stream != NULL:
        return <size_t>_c_stream()
    return <size_t>_py_stream()


def runs_on(int device, size_t stream):
    """Whether CuPy's current device is ``device`` and its current stream is the one at ``stream``
    (the raw ``cudaStream_t`` value): then a call made now runs there with nothing entered.  One C
    read of each, for the torch bridge's per-call check."""
    return current_device() == device and current_stream() == stream


# ---------------------------------------------------------------------------
# Test hooks: the two ways of reading and making, side by side
# ---------------------------------------------------------------------------

def _read(a, bint direct):
    """(ndim, shape, strides, dtype, ptr, device) as ``read_meta`` reads ``a``:
    by the C layout (``direct``; only where it is in use) or by attributes;
    None where ``a`` is not read as an array."""
    cdef ArrayMeta m
    cdef bint was = _DIRECT
    cdef int ok
    global _DIRECT
    if _TYPE is None:
        _setup()
    if direct and not was:
        raise RuntimeError("the C layout is not in use: %s" % _STATUS.get("reason"))
    _DIRECT = direct
    try:
        ok = read_meta(a, &m)
    finally:
        _DIRECT = was
    if not ok:
        return None
    return (m.ndim, tuple([m.shape[i] for i in range(m.ndim)]), tuple([m.strides[i] for i in range(m.ndim)]),
            <object>m.dtype, m.ptr, m.device)


def _make_like(a, mp):
    """A new array with ``a``'s layout and dtype on MemoryPointer ``mp``, made
    by the C path (only where the C layout is in use)."""
    cdef Layout lay
    if _TYPE is None:
        _setup()
    if not _DIRECT:
        raise RuntimeError("the C layout is not in use: %s" % _STATUS.get("reason"))
    if not layout_of(a, &lay):
        raise TypeError("not a cupy.ndarray of at most %d dims" % MAX_DIMS)
    return _make(&lay, a.dtype, mp)


def _new_like(a):
    """A new array of ``a``'s layout and dtype on ``a.nbytes`` bytes from
    CuPy's current allocator, made as the typed path makes its outputs."""
    cdef Layout lay
    cdef size_t ptr = 0
    if _TYPE is None:
        _setup()
    layout_of(a, &lay)
    return new_array(&lay, a.dtype, a.nbytes, a.shape, a.strides, &ptr)


def _set_direct(bint on):
    """Turn the C layout off (tests: the attribute path, on the same arrays),
    or back on where it was checked."""
    global _DIRECT
    if _TYPE is None:
        _setup()
    _DIRECT = on and _TYPE is not None and _TYPE is _CHECKED
    return _DIRECT
