# Tier 1: the part of cuDNN's backend ("graph") API that the graph engine
# calls, restated from cudnn_graph.h.  Extern only: no code.  Every name here
# exists, with the same value, in cuDNN 9.19 and 9.27/9.28.
from libc.stdint cimport int64_t

from cudnnconv.decl.cudnn cimport cudnnStatus_t, cudnnHandle_t

cdef extern from "cudnn.h" nogil:
    ctypedef void* cudnnBackendDescriptor_t

    ctypedef enum cudnnBackendDescriptorType_t:
        CUDNN_BACKEND_POINTWISE_DESCRIPTOR
        CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR
        CUDNN_BACKEND_ENGINE_DESCRIPTOR
        CUDNN_BACKEND_ENGINECFG_DESCRIPTOR
        CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR
        CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR
        CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR
        CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR
        CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR
        CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR
        CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR
        CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR
        CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR
        CUDNN_BACKEND_TENSOR_DESCRIPTOR

    ctypedef enum cudnnBackendAttributeType_t:
        CUDNN_TYPE_HANDLE
        CUDNN_TYPE_DATA_TYPE
        CUDNN_TYPE_BOOLEAN
        CUDNN_TYPE_INT64
        CUDNN_TYPE_FLOAT
        CUDNN_TYPE_DOUBLE
        CUDNN_TYPE_VOID_PTR
        CUDNN_TYPE_CONVOLUTION_MODE
        CUDNN_TYPE_HEUR_MODE
        CUDNN_TYPE_KNOB_TYPE
        CUDNN_TYPE_NUMERICAL_NOTE
        CUDNN_TYPE_POINTWISE_MODE
        CUDNN_TYPE_BACKEND_DESCRIPTOR
        CUDNN_TYPE_BEHAVIOR_NOTE
        CUDNN_TYPE_CHAR

    ctypedef enum cudnnBackendAttributeName_t:
        CUDNN_ATTR_POINTWISE_MODE
        CUDNN_ATTR_POINTWISE_MATH_PREC
        CUDNN_ATTR_CONVOLUTION_COMP_TYPE
        CUDNN_ATTR_CONVOLUTION_CONV_MODE
        CUDNN_ATTR_CONVOLUTION_DILATIONS
        CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES
        CUDNN_ATTR_CONVOLUTION_POST_PADDINGS
        CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS
        CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS
        CUDNN_ATTR_ENGINEHEUR_MODE
        CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH
        CUDNN_ATTR_ENGINEHEUR_RESULTS
        CUDNN_ATTR_ENGINECFG_ENGINE
        CUDNN_ATTR_ENGINECFG_KNOB_CHOICES
        CUDNN_ATTR_ENGINECFG_WORKSPACE_SIZE
        CUDNN_ATTR_EXECUTION_PLAN_HANDLE
        CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG
        CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE
        CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION
        CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE
        CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE
        CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA
        CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA
        CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC
        CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W
        CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X
        CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY
        CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR
        CUDNN_ATTR_OPERATION_POINTWISE_XDESC
        CUDNN_ATTR_OPERATION_POINTWISE_BDESC
        CUDNN_ATTR_OPERATION_POINTWISE_YDESC
        CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1
        CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2
        CUDNN_ATTR_OPERATIONGRAPH_HANDLE
        CUDNN_ATTR_OPERATIONGRAPH_OPS
        CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT
        CUDNN_ATTR_TENSOR_DATA_TYPE
        CUDNN_ATTR_TENSOR_DIMENSIONS
        CUDNN_ATTR_TENSOR_STRIDES
        CUDNN_ATTR_TENSOR_UNIQUE_ID
        CUDNN_ATTR_TENSOR_IS_VIRTUAL
        CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS
        CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS
        CUDNN_ATTR_VARIANT_PACK_WORKSPACE
        CUDNN_ATTR_ENGINE_GLOBAL_INDEX
        CUDNN_ATTR_ENGINE_OPERATION_GRAPH
        CUDNN_ATTR_ENGINE_NUMERICAL_NOTE
        CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE

    ctypedef enum cudnnBackendHeurMode_t:
        CUDNN_HEUR_MODE_INSTANT
        CUDNN_HEUR_MODE_B
        CUDNN_HEUR_MODE_FALLBACK
        CUDNN_HEUR_MODE_A

    ctypedef enum cudnnBackendNumericalNote_t:
        CUDNN_NUMERICAL_NOTE_TENSOR_CORE
        CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS
        CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION
        CUDNN_NUMERICAL_NOTE_FFT
        CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC
        CUDNN_NUMERICAL_NOTE_WINOGRAD
        CUDNN_NUMERICAL_NOTE_TYPE_COUNT

    ctypedef enum cudnnBackendBehaviorNote_t:
        CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION
        CUDNN_BEHAVIOR_NOTE_TYPE_COUNT

    ctypedef enum cudnnBackendKnobType_t:
        CUDNN_KNOB_TYPE_COUNTS

    ctypedef enum cudnnPointwiseMode_t:
        CUDNN_POINTWISE_ADD
        CUDNN_POINTWISE_MUL
        CUDNN_POINTWISE_RELU_FWD

    cudnnStatus_t cudnnBackendCreateDescriptor(cudnnBackendDescriptorType_t descriptorType,
                                               cudnnBackendDescriptor_t* descriptor)
    cudnnStatus_t cudnnBackendDestroyDescriptor(cudnnBackendDescriptor_t descriptor)
    cudnnStatus_t cudnnBackendFinalize(cudnnBackendDescriptor_t descriptor)
    cudnnStatus_t cudnnBackendSetAttribute(cudnnBackendDescriptor_t descriptor,
                                           cudnnBackendAttributeName_t attributeName,
                                           cudnnBackendAttributeType_t attributeType,
                                           int64_t elementCount, const void* arrayOfElements)
    cudnnStatus_t cudnnBackendGetAttribute(cudnnBackendDescriptor_t descriptor,
                                           cudnnBackendAttributeName_t attributeName,
                                           cudnnBackendAttributeType_t attributeType,
                                           int64_t requestedElementCount, int64_t* elementCount,
                                           void* arrayOfElements)
    cudnnStatus_t cudnnBackendExecute(cudnnHandle_t handle, cudnnBackendDescriptor_t executionPlan,
                                      cudnnBackendDescriptor_t variantPack)
