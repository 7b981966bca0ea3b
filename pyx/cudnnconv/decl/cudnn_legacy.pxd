# Tier 1: the legacy (v7) convolution API, restated from cudnn_ops.h and
# cudnn_cnn.h (cuDNN 9).  Only the legacy engine cimports this file, so a
# build with CUDNNCONV_LEGACY_API=0 references none of these symbols.
from cudnnconv.decl.cudnn cimport (
    cudnnHandle_t, cudnnStatus_t, cudnnDataType_t, cudnnMathType_t,
    cudnnConvolutionMode_t, cudnnNanPropagation_t)

cdef extern from "cudnn.h" nogil:
    ctypedef struct cudnnTensorStruct
    ctypedef cudnnTensorStruct* cudnnTensorDescriptor_t
    ctypedef struct cudnnFilterStruct
    ctypedef cudnnFilterStruct* cudnnFilterDescriptor_t
    ctypedef struct cudnnConvolutionStruct
    ctypedef cudnnConvolutionStruct* cudnnConvolutionDescriptor_t
    ctypedef struct cudnnActivationStruct
    ctypedef cudnnActivationStruct* cudnnActivationDescriptor_t

    ctypedef enum cudnnTensorFormat_t:
        CUDNN_TENSOR_NCHW
        CUDNN_TENSOR_NHWC

    ctypedef enum cudnnActivationMode_t:
        CUDNN_ACTIVATION_RELU
        CUDNN_ACTIVATION_IDENTITY

    ctypedef enum cudnnDeterminism_t:
        CUDNN_NON_DETERMINISTIC
        CUDNN_DETERMINISTIC

    ctypedef enum cudnnConvolutionFwdAlgo_t:
        CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM
        CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM
        CUDNN_CONVOLUTION_FWD_ALGO_GEMM
        CUDNN_CONVOLUTION_FWD_ALGO_DIRECT
        CUDNN_CONVOLUTION_FWD_ALGO_FFT
        CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING
        CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD
        CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED
        CUDNN_CONVOLUTION_FWD_ALGO_COUNT

    ctypedef enum cudnnConvolutionBwdDataAlgo_t:
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_0
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_1
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT

    ctypedef enum cudnnConvolutionBwdFilterAlgo_t:
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT

    # The three perf structs share one layout; each is declared as it is.
    ctypedef struct cudnnConvolutionFwdAlgoPerf_t:
        cudnnConvolutionFwdAlgo_t algo
        cudnnStatus_t status
        float time
        size_t memory
        cudnnDeterminism_t determinism
        cudnnMathType_t mathType
    ctypedef struct cudnnConvolutionBwdDataAlgoPerf_t:
        cudnnConvolutionBwdDataAlgo_t algo
        cudnnStatus_t status
        float time
        size_t memory
        cudnnDeterminism_t determinism
        cudnnMathType_t mathType
    ctypedef struct cudnnConvolutionBwdFilterAlgoPerf_t:
        cudnnConvolutionBwdFilterAlgo_t algo
        cudnnStatus_t status
        float time
        size_t memory
        cudnnDeterminism_t determinism
        cudnnMathType_t mathType

    cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* d)
    cudnnStatus_t cudnnSetTensorNdDescriptor(cudnnTensorDescriptor_t d, cudnnDataType_t dataType,
                                             int nbDims, const int* dimA, const int* strideA)
    cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d)

    cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* d)
    cudnnStatus_t cudnnSetFilterNdDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t dataType,
                                             cudnnTensorFormat_t fmt, int nbDims, const int* filterDimA)
    cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d)

    cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* d)
    cudnnStatus_t cudnnSetConvolutionNdDescriptor(cudnnConvolutionDescriptor_t d, int arrayLength,
                                                  const int* padA, const int* filterStrideA,
                                                  const int* dilationA, cudnnConvolutionMode_t mode,
                                                  cudnnDataType_t computeType)
    cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groupCount)
    cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t mathType)
    cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d)
    cudnnStatus_t cudnnGetConvolutionNdForwardOutputDim(cudnnConvolutionDescriptor_t convDesc,
                                                        cudnnTensorDescriptor_t inputTensorDesc,
                                                        cudnnFilterDescriptor_t filterDesc,
                                                        int nbDims, int* tensorOuputDimA)

    cudnnStatus_t cudnnCreateActivationDescriptor(cudnnActivationDescriptor_t* d)
    cudnnStatus_t cudnnSetActivationDescriptor(cudnnActivationDescriptor_t d, cudnnActivationMode_t mode,
                                               cudnnNanPropagation_t reluNanOpt, double coef)
    cudnnStatus_t cudnnDestroyActivationDescriptor(cudnnActivationDescriptor_t d)

    # forward
    cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(
        cudnnHandle_t handle, cudnnTensorDescriptor_t xDesc, cudnnFilterDescriptor_t wDesc,
        cudnnConvolutionDescriptor_t convDesc, cudnnTensorDescriptor_t yDesc,
        int requestedAlgoCount, int* returnedAlgoCount, cudnnConvolutionFwdAlgoPerf_t* perfResults)
    cudnnStatus_t cudnnFindConvolutionForwardAlgorithmEx(
        cudnnHandle_t handle, cudnnTensorDescriptor_t xDesc, const void* x,
        cudnnFilterDescriptor_t wDesc, const void* w, cudnnConvolutionDescriptor_t convDesc,
        cudnnTensorDescriptor_t yDesc, void* y, int requestedAlgoCount, int* returnedAlgoCount,
        cudnnConvolutionFwdAlgoPerf_t* perfResults, void* workSpace, size_t workSpaceSizeInBytes)
    cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(
        cudnnHandle_t handle, cudnnTensorDescriptor_t xDesc, cudnnFilterDescriptor_t wDesc,
        cudnnConvolutionDescriptor_t convDesc, cudnnTensorDescriptor_t yDesc,
        cudnnConvolutionFwdAlgo_t algo, size_t* sizeInBytes)
    cudnnStatus_t cudnnConvolutionForward(
        cudnnHandle_t handle, const void* alpha, cudnnTensorDescriptor_t xDesc, const void* x,
        cudnnFilterDescriptor_t wDesc, const void* w, cudnnConvolutionDescriptor_t convDesc,
        cudnnConvolutionFwdAlgo_t algo, void* workSpace, size_t workSpaceSizeInBytes,
        const void* beta, cudnnTensorDescriptor_t yDesc, void* y)
    cudnnStatus_t cudnnConvolutionBiasActivationForward(
        cudnnHandle_t handle, const void* alpha1, cudnnTensorDescriptor_t xDesc, const void* x,
        cudnnFilterDescriptor_t wDesc, const void* w, cudnnConvolutionDescriptor_t convDesc,
        cudnnConvolutionFwdAlgo_t algo, void* workSpace, size_t workSpaceSizeInBytes,
        const void* alpha2, cudnnTensorDescriptor_t zDesc, const void* z,
        cudnnTensorDescriptor_t biasDesc, const void* bias,
        cudnnActivationDescriptor_t activationDesc, cudnnTensorDescriptor_t yDesc, void* y)

    # backward data
    cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(
        cudnnHandle_t handle, cudnnFilterDescriptor_t wDesc, cudnnTensorDescriptor_t dyDesc,
        cudnnConvolutionDescriptor_t convDesc, cudnnTensorDescriptor_t dxDesc,
        int requestedAlgoCount, int* returnedAlgoCount, cudnnConvolutionBwdDataAlgoPerf_t* perfResults)
    cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithmEx(
        cudnnHandle_t handle, cudnnFilterDescriptor_t wDesc, const void* w,
        cudnnTensorDescriptor_t dyDesc, const void* dy, cudnnConvolutionDescriptor_t convDesc,
        cudnnTensorDescriptor_t dxDesc, void* dx, int requestedAlgoCount, int* returnedAlgoCount,
        cudnnConvolutionBwdDataAlgoPerf_t* perfResults, void* workSpace, size_t workSpaceSizeInBytes)
    cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(
        cudnnHandle_t handle, cudnnFilterDescriptor_t wDesc, cudnnTensorDescriptor_t dyDesc,
        cudnnConvolutionDescriptor_t convDesc, cudnnTensorDescriptor_t dxDesc,
        cudnnConvolutionBwdDataAlgo_t algo, size_t* sizeInBytes)
    cudnnStatus_t cudnnConvolutionBackwardData(
        cudnnHandle_t handle, const void* alpha, cudnnFilterDescriptor_t wDesc, const void* w,
        cudnnTensorDescriptor_t dyDesc, const void* dy, cudnnConvolutionDescriptor_t convDesc,
        cudnnConvolutionBwdDataAlgo_t algo, void* workSpace, size_t workSpaceSizeInBytes,
        const void* beta, cudnnTensorDescriptor_t dxDesc, void* dx)

    # backward filter
    cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        cudnnHandle_t handle, cudnnTensorDescriptor_t xDesc, cudnnTensorDescriptor_t dyDesc,
        cudnnConvolutionDescriptor_t convDesc, cudnnFilterDescriptor_t dwDesc,
        int requestedAlgoCount, int* returnedAlgoCount, cudnnConvolutionBwdFilterAlgoPerf_t* perfResults)
    cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithmEx(
        cudnnHandle_t handle, cudnnTensorDescriptor_t xDesc, const void* x,
        cudnnTensorDescriptor_t dyDesc, const void* y, cudnnConvolutionDescriptor_t convDesc,
        cudnnFilterDescriptor_t dwDesc, void* dw, int requestedAlgoCount, int* returnedAlgoCount,
        cudnnConvolutionBwdFilterAlgoPerf_t* perfResults, void* workSpace, size_t workSpaceSizeInBytes)
    cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(
        cudnnHandle_t handle, cudnnTensorDescriptor_t xDesc, cudnnTensorDescriptor_t dyDesc,
        cudnnConvolutionDescriptor_t convDesc, cudnnFilterDescriptor_t gradDesc,
        cudnnConvolutionBwdFilterAlgo_t algo, size_t* sizeInBytes)
    cudnnStatus_t cudnnConvolutionBackwardFilter(
        cudnnHandle_t handle, const void* alpha, cudnnTensorDescriptor_t xDesc, const void* x,
        cudnnTensorDescriptor_t dyDesc, const void* dy, cudnnConvolutionDescriptor_t convDesc,
        cudnnConvolutionBwdFilterAlgo_t algo, void* workSpace, size_t workSpaceSizeInBytes,
        const void* beta, cudnnFilterDescriptor_t dwDesc, void* dw)
