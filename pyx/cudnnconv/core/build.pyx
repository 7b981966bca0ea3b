# cython: language_level=3
"""What this build contains, and which cuDNN it runs on (tier 2)."""
from cudnnconv.decl cimport config
from cudnnconv.decl.cudnn cimport cudnnGetVersion, CUDNN_VERSION

INDEX_LIMIT = <long long>config.CUDNNCONV_INDEX_LIMIT
LEGACY_API = bool(config.CUDNNCONV_LEGACY_API)
GRAPH_API = bool(config.CUDNNCONV_GRAPH_API)
DEBUG = bool(config.CUDNNCONV_DEBUG)
COMPILED_CUDNN_VERSION = <int>CUDNN_VERSION


def runtime_cudnn_version():
    """cuDNN's version as loaded at run time, e.g. 91900 for 9.19.0."""
    return <long>cudnnGetVersion()


def compile_options():
    return {
        "cudnn_headers_from": config.CUDNNCONV_CUDNN_HEADERS.decode(),
        "cuda_headers_from": config.CUDNNCONV_CUDA_HEADERS.decode(),
        "CUDNNCONV_INDEX_LIMIT": INDEX_LIMIT,
        "CUDNNCONV_LEGACY_API": LEGACY_API,
        "CUDNNCONV_GRAPH_API": GRAPH_API,
        "CUDNNCONV_DEBUG": DEBUG,
        "min_cudnn_version": <int>config.CUDNNCONV_MIN_CUDNN_VERSION,
        "compiled_cudnn_version": COMPILED_CUDNN_VERSION,
    }
