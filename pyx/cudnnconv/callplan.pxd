# The call plan and the typed entries a cached call runs through (see callplan.pyx).
from libc.stdint cimport int64_t

from cudnnconv.core.arrays cimport ArrayMeta, Layout
from cudnnconv.core.executor cimport Executor

cdef enum:
    MAX_ARRAYS = 4       # array arguments of a public function (fused: x, w, z, bias)

# The arrays of a call as its signature reads them (None arguments marked absent).
cdef struct Sig:
    int n
    bint has[MAX_ARRAYS]
    ArrayMeta a[MAX_ARRAYS]
    bint has_out
    ArrayMeta out


cdef class FnSpec:
    cdef readonly str name, op
    cdef readonly int n_arrays, out_role
    cdef readonly bint bindable
    cdef readonly object redo
    cdef int roles[MAX_ARRAYS]
    cdef Py_hash_t name_hash


cdef class Miss:
    cdef readonly object sig, plan, opts, scalars
    cdef readonly unsigned long long gen


cdef class CallPlan:
    cdef readonly object fn, device, layout, geom, shape, pack, chunks, repro, out_direct
    cdef readonly object spans, out_span, names, pad, extra
    # memoized with: its signature's parts and resolved flags
    cdef readonly FnSpec spec
    cdef readonly tuple metas
    cdef readonly object om, scalars, opts
    cdef object owner               # a weak reference to the ThreadState whose memo holds it
    cdef Sig raw                    # the signature's arrays, read as the typed path reads a call's
    cdef bint has_raw
    cdef int n_spans                # the input spans, relative to each array's pointer (overlap check)
    cdef bint has_span[MAX_ARRAYS]
    cdef long long span_lo[MAX_ARRAYS]
    cdef long long span_hi[MAX_ARRAYS]
    cdef bint has_out_span
    cdef long long out_lo, out_hi
    # bound: the executor, the generation it was bound in, the alignments
    # (x, w, y roles) it was chosen for, and the output it allocates
    cdef readonly Executor executor
    cdef unsigned long long gen
    cdef int device_id
    cdef int64_t align[3]
    cdef readonly object dtype
    cdef readonly tuple out_strides
    cdef object nbytes_obj          # the output's size in bytes, as the allocator takes it
    cdef Layout out_layout          # the output's layout, from an array CuPy made
    cdef ArrayMeta alloc_meta       # ... as a signature reads it (an out= given to a plan made without)
    cdef long long alloc_lo, alloc_hi
    cdef bint alloc_span

    cdef bint _matches(self, Sig* s) except -1


# A strided tensor (torch's) read through its own accessors as the signature of a CuPy array over
# the same memory reads: 1, or 0 where its dtype is not in ``dtypes`` or its shape does not fit.
cdef int read_strided(object t, ArrayMeta* m, dict dtypes) except -1

# A signature's array as a tuple (shape, byte strides, dtype, pointer, device): what
# ``strided_signature`` and ``array_signature`` return, for tests.
cdef object meta_tuple(const ArrayMeta* m)

# run_strided's run, for a signature its caller has read already (``s``, with ``out`` its output):
# 1 where this thread's bound plan ran it on ``stream``, 0 where the caller takes the public function.
cdef int run_strided_sig(FnSpec spec, Sig* s, object out, object scalars, tuple flags, size_t stream) except -1
