from cudnnconv.decl.cudnn_legacy cimport (
    cudnnTensorDescriptor_t, cudnnFilterDescriptor_t,
    cudnnConvolutionDescriptor_t, cudnnActivationDescriptor_t)

cdef class TensorDescriptor:
    cdef cudnnTensorDescriptor_t ptr
    cdef readonly tuple dims
    cdef readonly tuple strides
    cdef readonly int dtype

cdef class FilterDescriptor:
    cdef cudnnFilterDescriptor_t ptr
    cdef readonly tuple dims
    cdef readonly str layout
    cdef readonly int dtype

cdef class ConvolutionDescriptor:
    cdef cudnnConvolutionDescriptor_t ptr
    cdef readonly tuple padding
    cdef readonly tuple stride
    cdef readonly tuple dilation
    cdef readonly int groups
    cdef readonly int compute_type
    cdef readonly int math_type
    cpdef set_math_type(self, int math_type)

cdef class ActivationDescriptor:
    cdef cudnnActivationDescriptor_t ptr
