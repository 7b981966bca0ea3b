# Tier 1: declarations shared by every engine, restated from cudnn_graph.h
# (cuDNN 9).  Extern only: no code.  We declare just what we call.
from libc.stdint cimport int64_t

cdef extern from "cuda_runtime_api.h" nogil:
    ctypedef void* cudaStream_t

cdef extern from "cudnn.h" nogil:
    ctypedef struct cudnnContext
    ctypedef cudnnContext* cudnnHandle_t

    ctypedef enum cudnnStatus_t:
        CUDNN_STATUS_SUCCESS
        CUDNN_STATUS_NOT_INITIALIZED
        CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH
        CUDNN_STATUS_SERIALIZATION_VERSION_MISMATCH
        CUDNN_STATUS_BAD_PARAM
        CUDNN_STATUS_NOT_SUPPORTED
        CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH
        CUDNN_STATUS_INTERNAL_ERROR
        CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED
        CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED
        CUDNN_STATUS_EXECUTION_FAILED

    ctypedef enum cudnnDataType_t:
        CUDNN_DATA_FLOAT
        CUDNN_DATA_DOUBLE
        CUDNN_DATA_HALF
        CUDNN_DATA_BFLOAT16

    ctypedef enum cudnnMathType_t:
        CUDNN_DEFAULT_MATH
        CUDNN_TENSOR_OP_MATH
        CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
        CUDNN_FMA_MATH

    ctypedef enum cudnnConvolutionMode_t:
        CUDNN_CONVOLUTION
        CUDNN_CROSS_CORRELATION

    ctypedef enum cudnnNanPropagation_t:
        CUDNN_NOT_PROPAGATE_NAN
        CUDNN_PROPAGATE_NAN

    ctypedef enum libraryPropertyType:
        MAJOR_VERSION
        MINOR_VERSION
        PATCH_LEVEL

    int CUDNN_VERSION
    int CUDNN_DIM_MAX

    size_t cudnnGetVersion()
    size_t cudnnGetCudartVersion()
    const char* cudnnGetErrorString(cudnnStatus_t status)
    void cudnnGetLastErrorString(char* message, size_t max_size)
    cudnnStatus_t cudnnCreate(cudnnHandle_t* handle)
    cudnnStatus_t cudnnDestroy(cudnnHandle_t handle)
    cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t streamId)
