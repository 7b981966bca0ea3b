# CuPy arrays read and made at C speed (see arrays.pyx).

from cpython.ref cimport PyObject
from libc.stdint cimport uint64_t

cdef enum:
    MAX_DIMS = 8            # arrays with more dims are read as "not an array" (no convolution takes them)

# What a call signature holds of one array, and where its data is.
cdef struct ArrayMeta:
    int ndim
    int device
    PyObject* dtype         # borrowed: the array (or the plan that copied it) keeps it alive
    size_t ptr
    Py_ssize_t shape[MAX_DIMS]
    Py_ssize_t strides[MAX_DIMS]    # bytes

# A new array's layout, taken once from an array CuPy made (``layout_of``).
cdef struct Layout:
    int ndim
    int c_contiguous, f_contiguous, index_32_bits
    Py_ssize_t size
    Py_ssize_t shape[MAX_DIMS]
    Py_ssize_t strides[MAX_DIMS]

# 1: ``a`` is an array of the array type (cupy.ndarray, exactly) and ``m``
# holds it; 0: it is not (anything else, a subclass, more than MAX_DIMS dims).
cdef int read_meta(object a, ArrayMeta* m) except -1

# Same shape, strides, dtype and device (not the pointer).
cdef bint same_meta(const ArrayMeta* a, const ArrayMeta* b) noexcept nogil

# A memo digest's step, and the fields same_meta compares mixed into one (ndim, dtype by identity,
# device, shape, strides; not the pointer): equal metas mix alike.
cdef inline uint64_t mix(uint64_t h, uint64_t v) noexcept nogil:
    h ^= v * <uint64_t>0x9E3779B97F4A7C15ULL
    h = (h << 27) | (h >> 37)
    return h * <uint64_t>0xBF58476D1CE4E5B9ULL + <uint64_t>0x94D049BB133111EBULL


cdef inline uint64_t mix_meta(uint64_t h, const ArrayMeta* m) noexcept nogil:
    cdef int i
    h = mix(h, <uint64_t>(m.ndim + 1))
    h = mix(h, <uint64_t><size_t>m.dtype)
    h = mix(h, <uint64_t>m.device)
    for i in range(m.ndim):
        h = mix(h, <uint64_t>m.shape[i])
        h = mix(h, <uint64_t>m.strides[i])
    return h

# Fill ``lay`` from ``a`` (an array CuPy made): 1, or 0 where ``a`` is not one.
cdef int layout_of(object a, Layout* lay) except -1

# A new array of layout ``lay`` and dtype ``dtype`` on fresh memory of
# ``nbytes`` bytes (a Python int) from CuPy's current allocator; its data
# pointer in ``ptr``.  Without the C layout (or with ``lay.ndim`` 0) it is
# cupy.ndarray(shape, dtype, memptr, strides).
cdef object new_array(const Layout* lay, object dtype, object nbytes, tuple shape, tuple strides, size_t* ptr)

# This thread's current CuPy device and stream (CuPy's own C entry points).
cdef int current_device() except -1
cdef size_t current_stream() except? 0

# The array type (cupy.ndarray, imported on first use), or a test's stand-in.
cdef object array_type()
