# cython: language_level=3
"""Backend-API descriptors for the graph engine (tier 2).

``BackendDescriptor`` owns exactly one ``cudnnBackendDescriptor_t``: created
in ``create``, freed in ``__dealloc__`` (which never raises, and leaks during
interpreter shutdown, as PyTorch does: cuDNN >= 9.10 has been seen to crash
when its objects are destroyed while the process tears down).  Its typed
setters pass each attribute type the way cuDNN expects it (cuDNN's backend
API reference, cudnnBackendSetAttribute: a handle attribute takes the
address of the handle, a descriptor attribute an array of descriptors, a
scalar a one-element array); every status goes through ``check``.

The builders below (tensor, convolution, operations, graph) make the
descriptors of one problem.  Tensor, convolution and operation descriptors
finalize without a GPU (cuDNN only needs libcuda.so.1 to be loadable), which
is how the CPU tests check our descriptors against cuDNN's own shape rules.
"""
import sys

from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from cudnnconv.decl.cudnn cimport cudnnHandle_t, cudnnStatus_t, CUDNN_STATUS_SUCCESS, CUDNN_DATA_FLOAT, CUDNN_DATA_DOUBLE, CUDNN_CROSS_CORRELATION
from cudnnconv.decl.cudnn_backend cimport *
from cudnnconv.core.status cimport check

_is_finalizing = sys.is_finalizing

DTYPE_NAMES = {0: "float32", 1: "float64", 2: "float16", 9: "bfloat16"}

cdef enum:
    MAX_DIMS = 8
    MAX_OPS = 8

# Backend descriptors created and not yet destroyed (leaks at shutdown not counted back): the leak
# tests read it, through cudnnconv.engine_registry.live_descriptors().  The GIL guards it.
cdef Py_ssize_t _live = 0


def live_descriptors():
    """Backend descriptors of this engine alive now (plans, graphs, variant packs, tensors...)."""
    return _live


cdef class BackendDescriptor:
    """One backend descriptor of one type, finalized at most once."""

    def __cinit__(self):
        self.ptr = NULL
        self.kind = -1
        self.finalized = False
        self._refs = None
        self.text = ""

    def __dealloc__(self):
        global _live
        if self.ptr == NULL:
            return
        fin = _is_finalizing
        if fin is None or fin():
            return                   # leak at shutdown, never crash
        cudnnBackendDestroyDescriptor(self.ptr)
        self.ptr = NULL
        _live -= 1

    cdef int keep(self, obj) except -1:
        if self._refs is None:
            self._refs = [obj]
        else:
            self._refs.append(obj)
        return 0

    cdef int set_int64s(self, cudnnBackendAttributeName_t name, const int64_t* values, int64_t n) except -1:
        check(cudnnBackendSetAttribute(self.ptr, name, CUDNN_TYPE_INT64, n, <const void*>values))
        return 0

    cdef int set_int64(self, cudnnBackendAttributeName_t name, int64_t value) except -1:
        check(cudnnBackendSetAttribute(self.ptr, name, CUDNN_TYPE_INT64, 1, <const void*>&value))
        return 0

    cdef int set_enum(self, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t t, int value) except -1:
        # cuDNN's enums are 32-bit.
        check(cudnnBackendSetAttribute(self.ptr, name, t, 1, <const void*>&value))
        return 0

    cdef int set_bool(self, cudnnBackendAttributeName_t name, bint value) except -1:
        cdef bint v = value
        check(cudnnBackendSetAttribute(self.ptr, name, CUDNN_TYPE_BOOLEAN, 1, <const void*>&v))
        return 0

    cdef int set_scalar(self, cudnnBackendAttributeName_t name, bint as_double, double value) except -1:
        cdef float f = <float>value
        cdef double d = value
        if as_double:
            check(cudnnBackendSetAttribute(self.ptr, name, CUDNN_TYPE_DOUBLE, 1, <const void*>&d))
        else:
            check(cudnnBackendSetAttribute(self.ptr, name, CUDNN_TYPE_FLOAT, 1, <const void*>&f))
        return 0

    cdef int set_desc(self, cudnnBackendAttributeName_t name, BackendDescriptor d) except -1:
        check(cudnnBackendSetAttribute(self.ptr, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, <const void*>&d.ptr))
        self.keep(d)
        return 0

    cdef int set_descs(self, cudnnBackendAttributeName_t name, list ds) except -1:
        cdef cudnnBackendDescriptor_t arr[MAX_OPS]
        cdef int n = len(ds)
        cdef BackendDescriptor d
        if n > MAX_OPS:
            raise ValueError("at most %d descriptors per attribute" % MAX_OPS)
        for i in range(n):
            d = ds[i]
            arr[i] = d.ptr
            self.keep(d)
        check(cudnnBackendSetAttribute(self.ptr, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, n, <const void*>arr))
        return 0

    cdef int set_handle(self, cudnnBackendAttributeName_t name, cudnnHandle_t h) except -1:
        check(cudnnBackendSetAttribute(self.ptr, name, CUDNN_TYPE_HANDLE, 1, <const void*>&h))
        return 0

    cdef int set_ptrs(self, cudnnBackendAttributeName_t name, void** values, int64_t n) except -1:
        check(cudnnBackendSetAttribute(self.ptr, name, CUDNN_TYPE_VOID_PTR, n, <const void*>values))
        return 0

    cdef int finalize(self) except -1:
        check(cudnnBackendFinalize(self.ptr))
        self.finalized = True
        return 0

    cdef int64_t get_int64(self, cudnnBackendAttributeName_t name) except? -1:
        cdef int64_t v = 0
        cdef int64_t count = 0
        check(cudnnBackendGetAttribute(self.ptr, name, CUDNN_TYPE_INT64, 1, &count, <void*>&v))
        return v

    cdef int get_enums(self, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t t,
                       int* out, int capacity) except -1:
        cdef int64_t count = 0
        check(cudnnBackendGetAttribute(self.ptr, name, t, capacity, &count, <void*>out))
        return <int>count

    def __repr__(self):
        return "<BackendDescriptor type=%d %s%s>" % (self.kind, "finalized " if self.finalized else "", self.text)


cdef class VariantPacks:
    """The variant packs of one execution plan's last ``VP_SLOTS`` pointer
    sets.  A finalized pack is read-only, so new pointers need a new pack; a
    loop over a few buffers reuses its packs, and a network's fresh pointers
    build one per call.  This object owns its packs as raw descriptors (a
    cached call builds no Python object for its pack) and destroys them when
    a slot is reused, in ``clear`` and in ``__dealloc__`` (leaked at
    interpreter shutdown, as BackendDescriptor does)."""

    def __cinit__(self):
        cdef int s
        for s in range(VP_SLOTS):
            self.packs[s] = NULL
            self.ws[s] = NULL
        self.n = 0
        self.next = 0

    def __dealloc__(self):
        fin = _is_finalizing
        if fin is None or fin():
            return                   # leak at shutdown, never crash
        self.clear()

    cdef void clear(self) noexcept:
        """Destroy every pack (their pointers may be about to be freed, such
        as a search's workspace)."""
        global _live
        cdef int s
        for s in range(VP_SLOTS):
            if self.packs[s] != NULL:
                cudnnBackendDestroyDescriptor(self.packs[s])
                self.packs[s] = NULL
                _live -= 1
        self.next = 0

    cdef cudnnBackendDescriptor_t get(self, void** ptrs, void* ws) except NULL:
        """The finalized pack binding ``ptrs`` (one per uid, in order) and
        ``ws``: a kept one, or a new one in the oldest slot."""
        global _live
        cdef int i, s
        cdef cudnnBackendDescriptor_t d
        for s in range(VP_SLOTS):
            if self.packs[s] != NULL and self.ws[s] == ws:
                for i in range(self.n):
                    if ptrs[i] != self.ptrs[s][i]:
                        break
                else:
                    return self.packs[s]
        d = self.build(ptrs, ws)
        s = self.next
        self.next = (s + 1) % VP_SLOTS
        if self.packs[s] != NULL:
            cudnnBackendDestroyDescriptor(self.packs[s])
        else:
            _live += 1
        self.packs[s] = d
        for i in range(self.n):
            self.ptrs[s][i] = ptrs[i]
        self.ws[s] = ws
        return d

    cdef cudnnBackendDescriptor_t build(self, void** ptrs, void* ws) except NULL:
        """A new finalized pack binding ``ptrs`` and ``ws``, owned by the caller (a failed
        one is destroyed before the status is raised)."""
        cdef cudnnBackendDescriptor_t d = NULL
        cdef cudnnStatus_t st
        check(cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &d))
        st = cudnnBackendSetAttribute(d, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, self.n,
                                      <const void*>self.uids)
        if st == CUDNN_STATUS_SUCCESS:
            st = cudnnBackendSetAttribute(d, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, self.n,
                                          <const void*>ptrs)
        if st == CUDNN_STATUS_SUCCESS:
            st = cudnnBackendSetAttribute(d, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1,
                                          <const void*>&ws)
        if st == CUDNN_STATUS_SUCCESS:
            st = cudnnBackendFinalize(d)
        if st != CUDNN_STATUS_SUCCESS:
            cudnnBackendDestroyDescriptor(d)
            check(st)
        return d

    def build_cost_us(self, int repeats=2000):
        """µs to build a new pack (create, set, finalize, destroy), timed
        ``repeats`` times on the pointers of the last pack built here: what a
        call with new pointers spends in cuDNN before its execute.  A
        diagnostic (bench/host.py reports it); None before any pack."""
        cdef int s = (self.next + VP_SLOTS - 1) % VP_SLOTS
        cdef int r
        cdef timespec t0, t1
        if self.packs[s] == NULL or repeats <= 0:
            return None
        clock_gettime(CLOCK_MONOTONIC, &t0)
        for r in range(repeats):
            cudnnBackendDestroyDescriptor(self.build(self.ptrs[s], self.ws[s]))
        clock_gettime(CLOCK_MONOTONIC, &t1)
        return ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) * 1e-3 / repeats


cdef VariantPacks variant_packs(const int64_t* uids, int n):
    """An empty ring of packs for tensors ``uids`` (n of them)."""
    if n < 0 or n > VP_MAX_TENSORS:
        raise ValueError("a variant pack binds at most %d tensors, not %d" % (VP_MAX_TENSORS, n))
    cdef VariantPacks v = VariantPacks.__new__(VariantPacks)
    cdef int i
    for i in range(n):
        v.uids[i] = uids[i]
    v.n = n
    return v


def _ring_walk(list pointer_sets, int n, size_t ws=0, int cost_repeats=0):
    """Test hook: a fresh ring for ``n`` tensors (uids 1..n) walked through ``pointer_sets`` (ints,
    n per set; nothing reads them before an execute).  Returns (the pack address each step got,
    live descriptors after the walk, ``build_cost_us(cost_repeats)``); the ring is gone on return."""
    cdef int64_t uids[VP_MAX_TENSORS]
    cdef void* ptrs[VP_MAX_TENSORS]
    cdef int i
    for i in range(min(n, VP_MAX_TENSORS)):
        uids[i] = i + 1
    cdef VariantPacks v = variant_packs(uids, n)
    got = []
    for ps in pointer_sets:
        for i in range(n):
            ptrs[i] = <void*><size_t>ps[i]
        got.append(<size_t>v.get(ptrs, <void*>ws))
    return got, _live, v.build_cost_us(cost_repeats) if cost_repeats else None


cdef BackendDescriptor create(cudnnBackendDescriptorType_t kind):
    global _live
    cdef BackendDescriptor d = BackendDescriptor.__new__(BackendDescriptor)
    check(cudnnBackendCreateDescriptor(kind, &d.ptr))
    _live += 1
    d.kind = <int>kind
    return d


cdef int _fill(int64_t* dst, tuple values, int cap, str what) except -1:
    cdef int n = len(values)
    if n > cap:
        raise ValueError("%s has %d entries; at most %d" % (what, n, cap))
    for i in range(n):
        dst[i] = values[i]
    return n


cdef BackendDescriptor tensor(int64_t uid, int dtype, tuple dims, tuple strides, int64_t alignment,
                              bint is_virtual):
    """A tensor: logical dims (N, C, *spatial), element strides (the layout),
    a unique id, and the guaranteed byte alignment of its pointer."""
    cdef int64_t d[MAX_DIMS]
    cdef int64_t s[MAX_DIMS]
    cdef int n = _fill(d, dims, MAX_DIMS, "tensor dims")
    if _fill(s, strides, MAX_DIMS, "tensor strides") != n:
        raise ValueError("tensor dims %s and strides %s differ in length" % (dims, strides))
    cdef BackendDescriptor t = create(CUDNN_BACKEND_TENSOR_DESCRIPTOR)
    t.text = "tensor(uid=%d, dims=%s, strides=%s, dtype=%s, alignment=%d%s)" % (
        uid, dims, strides, DTYPE_NAMES.get(dtype, dtype), alignment, ", virtual" if is_virtual else "")
    t.set_enum(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, dtype)
    t.set_int64s(CUDNN_ATTR_TENSOR_DIMENSIONS, d, n)
    t.set_int64s(CUDNN_ATTR_TENSOR_STRIDES, s, n)
    t.set_int64(CUDNN_ATTR_TENSOR_UNIQUE_ID, uid)
    t.set_int64(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, alignment)
    if is_virtual:
        t.set_bool(CUDNN_ATTR_TENSOR_IS_VIRTUAL, True)
    t.finalize()
    return t


cdef BackendDescriptor convolution(int compute_type, tuple padding, tuple post_padding, tuple stride,
                                   tuple dilation):
    """Cross-correlation over len(padding) spatial dims.  Groups have no
    attribute: they follow from the tensors' channel dims."""
    cdef int64_t pad[MAX_DIMS]
    cdef int64_t post[MAX_DIMS]
    cdef int64_t st[MAX_DIMS]
    cdef int64_t dil[MAX_DIMS]
    cdef int nsp = _fill(pad, padding, 3, "padding")
    if _fill(st, stride, 3, "stride") != nsp or _fill(dil, dilation, 3, "dilation") != nsp \
            or _fill(post, post_padding, 3, "post_padding") != nsp:
        raise ValueError("padding %s, stride %s and dilation %s must have one entry per spatial dim"
                         % (padding, stride, dilation))
    cdef BackendDescriptor c = create(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR)
    c.text = "convolution(padding=%s/%s, stride=%s, dilation=%s, compute=%s)" % (
        padding, post_padding, stride, dilation, DTYPE_NAMES.get(compute_type, compute_type))
    c.set_enum(CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, compute_type)
    c.set_enum(CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, <int>CUDNN_CROSS_CORRELATION)
    c.set_int64(CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, nsp)
    c.set_int64s(CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, pad, nsp)
    c.set_int64s(CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, post, nsp)
    c.set_int64s(CUDNN_ATTR_CONVOLUTION_DILATIONS, dil, nsp)
    c.set_int64s(CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, st, nsp)
    c.finalize()
    return c


cdef BackendDescriptor conv_operation(str op, BackendDescriptor x, BackendDescriptor w,
                                      BackendDescriptor y, BackendDescriptor conv, bint as_double):
    """One convolution node, alpha = 1 and beta = 0, in the roles of the
    forward convolution (x input, w filter, y output) whatever the op."""
    cdef BackendDescriptor o
    if op == "forward" or op == "fused":
        o = create(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR)
        o.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, x)
        o.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, w)
        o.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, y)
        o.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, conv)
        o.set_scalar(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, as_double, 1.0)
        o.set_scalar(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, as_double, 0.0)
    elif op == "backward_data":
        o = create(CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR)
        o.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, x)
        o.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W, w)
        o.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY, y)
        o.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC, conv)
        o.set_scalar(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA, as_double, 1.0)
        o.set_scalar(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA, as_double, 0.0)
    elif op == "backward_filter":
        o = create(CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR)
        o.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, x)
        o.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW, w)
        o.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY, y)
        o.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC, conv)
        o.set_scalar(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA, as_double, 1.0)
        o.set_scalar(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA, as_double, 0.0)
    else:
        raise ValueError("unknown convolution op %r" % op)
    o.text = "%s operation" % op
    o.finalize()
    return o


# The pointwise descriptor's activation parameters, by the names cudnnconv.activations gives them.
cdef dict _POINTWISE_ATTRIBUTES = {
    "relu_lower_clip": <int>CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP,
    "relu_upper_clip": <int>CUDNN_ATTR_POINTWISE_RELU_UPPER_CLIP,
    "relu_lower_clip_slope": <int>CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP_SLOPE,
    "elu_alpha": <int>CUDNN_ATTR_POINTWISE_ELU_ALPHA,
    "swish_beta": <int>CUDNN_ATTR_POINTWISE_SWISH_BETA,
}


cdef BackendDescriptor _pointwise_descriptor(int mode, int math_prec, bint as_double, dict attributes):
    """The pointwise descriptor of one mode, with its activation parameters set (``as_double`` is
    the math precision's; the parameters go as doubles)."""
    cdef BackendDescriptor pw = create(CUDNN_BACKEND_POINTWISE_DESCRIPTOR)
    pw.set_enum(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, mode)
    pw.set_enum(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, math_prec)
    if attributes:                  # as doubles whatever the math precision, as cudnn-frontend sets them
        for name, value in attributes.items():
            pw.set_scalar(<cudnnBackendAttributeName_t><int>_POINTWISE_ATTRIBUTES[name], True, value)
    pw.finalize()
    return pw


cdef BackendDescriptor pointwise_operation(int mode, int math_prec, BackendDescriptor x,
                                           BackendDescriptor b, BackendDescriptor y, double alpha2,
                                           bint as_double, double alpha1=1.0, dict attributes=None):
    """y = mode(alpha1 * x, alpha2 * b); b may be None for unary modes (ReLU).  The
    scalars are passed as doubles for double math, else as floats.  ``attributes``: the
    pointwise descriptor's activation parameters ({"relu_lower_clip": 0.0, ...}, as
    cudnnconv.activations.cudnn_forward gives them); a scale of 1 is left unset."""
    cdef BackendDescriptor pw = _pointwise_descriptor(mode, math_prec, as_double, attributes)
    cdef BackendDescriptor o = create(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR)
    o.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw)
    o.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x)
    if alpha1 != 1.0:
        o.set_scalar(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, as_double, alpha1)
    if b is not None:
        o.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b)
        if alpha2 != 1.0:
            o.set_scalar(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, as_double, alpha2)
    o.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y)
    o.text = "pointwise(mode=%d, alpha1=%r, alpha2=%r%s)" % (
        mode, alpha1, alpha2, "".join(", %s=%r" % kv for kv in sorted((attributes or {}).items())))
    o.finalize()
    return o


cdef BackendDescriptor pointwise_backward_operation(int mode, int math_prec, BackendDescriptor x,
                                                    BackendDescriptor dy, BackendDescriptor dx, bint as_double,
                                                    dict attributes):
    """dx = dy * act'(x): an activation's backward mode (RELU_BWD, ...), from the gradient ``dy``
    and the activation's input ``x``, with the pointwise descriptor's ``attributes`` as
    ``pointwise_operation`` takes them."""
    cdef BackendDescriptor pw = _pointwise_descriptor(mode, math_prec, as_double, attributes)
    cdef BackendDescriptor o = create(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR)
    o.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw)
    o.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x)
    o.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_DYDESC, dy)
    o.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_DXDESC, dx)
    o.text = "pointwise backward(mode=%d%s)" % (
        mode, "".join(", %s=%r" % kv for kv in sorted((attributes or {}).items())))
    o.finalize()
    return o


cdef BackendDescriptor operation_graph(list ops, cudnnHandle_t handle):
    """The graph of ``ops``.  The handle attribute is deprecated but needed:
    without it plans build and then fail at execute with
    NOT_SUPPORTED_ARCH_MISMATCH (measured with cuDNN 9)."""
    cdef BackendDescriptor g = create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR)
    g.set_descs(CUDNN_ATTR_OPERATIONGRAPH_OPS, ops)
    if handle != NULL:
        g.set_handle(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, handle)
    g.text = "operation graph of %d ops" % len(ops)
    g.finalize()
    return g
