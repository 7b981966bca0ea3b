# Tier 1: our compile-time configuration (include/cudnnconv_config.h).
cdef extern from "cudnnconv_config.h" nogil:
    long long CUDNNCONV_INDEX_LIMIT
    int CUDNNCONV_LEGACY_API
    int CUDNNCONV_GRAPH_API
    int CUDNNCONV_DEBUG
    int CUDNNCONV_MIN_CUDNN_VERSION
    const char* CUDNNCONV_CUDNN_HEADERS     # where the build found cudnn.h: a label, not a path
    const char* CUDNNCONV_CUDA_HEADERS      # where it found cuda_runtime_api.h: a label, not a path
