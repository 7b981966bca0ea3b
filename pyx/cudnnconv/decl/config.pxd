# Tier 1: our compile-time configuration (include/cudnnconv_config.h).
cdef extern from "cudnnconv_config.h" nogil:
    long long CUDNNCONV_INDEX_LIMIT
    int CUDNNCONV_LEGACY_API
    int CUDNNCONV_GRAPH_API
    int CUDNNCONV_DEBUG
    int CUDNNCONV_MIN_CUDNN_VERSION
    const char* CUDNNCONV_CUDNN_HOME
    const char* CUDNNCONV_CUDA_HOME
