# cython: language_level=3
"""Legacy-API descriptors: each class owns one cuDNN descriptor.

Created in ``__cinit__``, freed in ``__dealloc__`` (which never raises).  Their
reprs show dims, strides, dtype and layout; errors quote them.  None of these
needs a GPU: cuDNN checks and infers shapes on the host, which is how the CPU
tests check our shape inference against cuDNN's.
"""
from libc.stdlib cimport malloc, free

from cudnnconv.decl.cudnn cimport (
    CUDNN_DATA_FLOAT, CUDNN_DATA_DOUBLE, CUDNN_DATA_HALF, CUDNN_DATA_BFLOAT16,
    CUDNN_CROSS_CORRELATION, CUDNN_NOT_PROPAGATE_NAN, CUDNN_DIM_MAX,
    cudnnDataType_t, cudnnMathType_t, CUDNN_DEFAULT_MATH)
from cudnnconv.decl.cudnn_legacy cimport *
from cudnnconv.core.status cimport check

DTYPE_NAMES = {0: "float32", 1: "float64", 2: "float16", 9: "bfloat16"}
MATH_NAMES = {0: "DEFAULT_MATH", 1: "TENSOR_OP_MATH", 2: "TENSOR_OP_MATH_ALLOW_CONVERSION", 3: "FMA_MATH"}

# Descriptors created and not yet destroyed, all four kinds: the leak tests read it, through
# cudnnconv.engine_registry.live_descriptors().  The GIL guards it.
cdef Py_ssize_t _live = 0


cdef inline void _count_created():
    global _live
    _live += 1


cdef inline void _count_destroyed():
    global _live
    _live -= 1


def live_descriptors():
    """Legacy descriptors (tensor, filter, convolution, activation) alive now."""
    return _live


cdef int _fill(int* dst, values, str what) except -1:
    cdef int i = 0
    for v in values:
        if v < -2147483648 or v > 2147483647:
            raise ValueError("%s value %d does not fit the legacy API's 32-bit ints" % (what, v))
        dst[i] = v
        i += 1
    return 0


def compute_type_for(int dtype):
    """Accumulation type of the convolution: FLOAT for 16- and 32-bit data,
    DOUBLE for double."""
    return <int>CUDNN_DATA_DOUBLE if dtype == <int>CUDNN_DATA_DOUBLE else <int>CUDNN_DATA_FLOAT


cdef class TensorDescriptor:
    """An N-d tensor descriptor: logical dims (N, C, *spatial) and element
    strides (the layout lives only in the strides)."""

    def __cinit__(self, int dtype, dims, strides):
        self.ptr = NULL
        self.dims = tuple(int(d) for d in dims)
        self.strides = tuple(int(s) for s in strides)
        self.dtype = dtype
        cdef int nd = len(self.dims)
        if nd < 3 or nd > CUDNN_DIM_MAX or len(self.strides) != nd:
            raise ValueError("tensor descriptor needs 3..%d dims and as many strides, got %s / %s"
                             % (CUDNN_DIM_MAX, self.dims, self.strides))
        cdef int d[8]
        cdef int s[8]
        _fill(d, self.dims, "tensor dim")
        _fill(s, self.strides, "tensor stride")
        check(cudnnCreateTensorDescriptor(&self.ptr))
        _count_created()
        check(cudnnSetTensorNdDescriptor(self.ptr, <cudnnDataType_t>dtype, nd, d, s))

    def __dealloc__(self):
        if self.ptr != NULL:
            cudnnDestroyTensorDescriptor(self.ptr)
            _count_destroyed()
            self.ptr = NULL

    @property
    def layout(self):
        return _layout_of(self.dims, self.strides)

    def __repr__(self):
        return "TensorDescriptor(dims=%s, strides=%s, dtype=%s, layout=%s)" % (
            self.dims, self.strides, DTYPE_NAMES.get(self.dtype, self.dtype), self.layout)


def _layout_of(dims, strides):
    if len(dims) >= 3 and strides[1] == 1 and dims[1] != 1:
        return "NHWC"
    return "NCHW"


cdef class FilterDescriptor:
    """A filter descriptor (K, C/groups, *kernel) in NCHW (KCRS) or NHWC
    (KRSC) format.  Filters have no strides: the weight must be packed."""

    def __cinit__(self, int dtype, dims, str layout):
        self.ptr = NULL
        self.dims = tuple(int(d) for d in dims)
        self.layout = layout
        self.dtype = dtype
        cdef int nd = len(self.dims)
        if nd < 3 or nd > CUDNN_DIM_MAX:
            raise ValueError("filter descriptor needs 3..%d dims, got %s" % (CUDNN_DIM_MAX, self.dims))
        if layout not in ("NCHW", "NHWC"):
            raise ValueError("layout must be 'NCHW' or 'NHWC', got %r" % layout)
        cdef int d[8]
        _fill(d, self.dims, "filter dim")
        cdef cudnnTensorFormat_t fmt = CUDNN_TENSOR_NHWC if layout == "NHWC" else CUDNN_TENSOR_NCHW
        check(cudnnCreateFilterDescriptor(&self.ptr))
        _count_created()
        check(cudnnSetFilterNdDescriptor(self.ptr, <cudnnDataType_t>dtype, fmt, nd, d))

    def __dealloc__(self):
        if self.ptr != NULL:
            cudnnDestroyFilterDescriptor(self.ptr)
            _count_destroyed()
            self.ptr = NULL

    def __repr__(self):
        return "FilterDescriptor(dims=%s, dtype=%s, layout=%s)" % (
            self.dims, DTYPE_NAMES.get(self.dtype, self.dtype), self.layout)


cdef class ConvolutionDescriptor:
    """Padding, stride, dilation and groups; cross-correlation, like every
    framework's "convolution"."""

    def __cinit__(self, int dtype, padding, stride, dilation, int groups):
        self.ptr = NULL
        self.padding = tuple(padding)
        self.stride = tuple(stride)
        self.dilation = tuple(dilation)
        self.groups = groups
        self.compute_type = compute_type_for(dtype)
        self.math_type = <int>CUDNN_DEFAULT_MATH
        cdef int nsp = len(self.padding)
        if not (1 <= nsp <= 6) or len(self.stride) != nsp or len(self.dilation) != nsp:
            raise ValueError("padding, stride and dilation need one entry per spatial dim: %s %s %s"
                             % (self.padding, self.stride, self.dilation))
        cdef int p[8]
        cdef int s[8]
        cdef int d[8]
        _fill(p, self.padding, "padding")
        _fill(s, self.stride, "stride")
        _fill(d, self.dilation, "dilation")
        check(cudnnCreateConvolutionDescriptor(&self.ptr))
        _count_created()
        check(cudnnSetConvolutionNdDescriptor(self.ptr, nsp, p, s, d, CUDNN_CROSS_CORRELATION,
                                              <cudnnDataType_t>self.compute_type))
        check(cudnnSetConvolutionGroupCount(self.ptr, groups))

    cpdef set_math_type(self, int math_type):
        check(cudnnSetConvolutionMathType(self.ptr, <cudnnMathType_t>math_type))
        self.math_type = math_type

    def __dealloc__(self):
        if self.ptr != NULL:
            cudnnDestroyConvolutionDescriptor(self.ptr)
            _count_destroyed()
            self.ptr = NULL

    def __repr__(self):
        return ("ConvolutionDescriptor(padding=%s, stride=%s, dilation=%s, groups=%d, compute=%s, math=%s)"
                % (self.padding, self.stride, self.dilation, self.groups,
                   DTYPE_NAMES.get(self.compute_type), MATH_NAMES.get(self.math_type)))


cdef class ActivationDescriptor:
    """ReLU, without NaN propagation (the fused conv+bias+add+relu)."""

    def __cinit__(self):
        self.ptr = NULL
        check(cudnnCreateActivationDescriptor(&self.ptr))
        _count_created()
        check(cudnnSetActivationDescriptor(self.ptr, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0))

    def __dealloc__(self):
        if self.ptr != NULL:
            cudnnDestroyActivationDescriptor(self.ptr)
            _count_destroyed()
            self.ptr = NULL

    def __repr__(self):
        return "ActivationDescriptor(RELU)"


def forward_output_dims(ConvolutionDescriptor conv, TensorDescriptor x, FilterDescriptor w):
    """The output dims cuDNN infers for ``x`` convolved with ``w``."""
    cdef int nd = len(x.dims)
    cdef int out[8]
    check(cudnnGetConvolutionNdForwardOutputDim(conv.ptr, x.ptr, w.ptr, nd, out))
    return tuple(out[i] for i in range(nd))
