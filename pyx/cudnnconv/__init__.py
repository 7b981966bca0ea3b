"""cudnnconv: cuDNN convolutions on CuPy arrays.

Public API::

    conv, conv_backward_input, conv_backward_weight, conv_transpose,
    conv_bias_add_relu, conv_epilogue, conv_backward_input_act, conv_backward_weight_bias, plan, CallPlan,
    flags, version, build_info,
    clear_cache, cache_info, last_call, save_tuning, load_tuning, explain,
    last_choice, benchmark_settings, CuDNNError, CuDNNOutOfMemoryError,
    CaptureError, CudaUnavailableError; diagnostics: trace_stages, stage_times

The package imports on a machine without a GPU (cuDNN's host-side library
loads without a driver); ``cuda_available()`` says whether calls can run.
"""
from cudnnconv import _loader

_loader.preload()

try:
    from cudnnconv.core import build as _build  # noqa: E402
except ImportError as _e:       # the extensions' libcudnn.so.9 is nowhere to be found
    if "libcudnn" not in str(_e):
        raise
    raise ImportError(_loader.MISSING) from _e
from cudnnconv.core import state as _state  # noqa: E402
from cudnnconv.core.status import CuDNNError, CuDNNOutOfMemoryError  # noqa: E402
from cudnnconv.search import CaptureError  # noqa: E402
from cudnnconv.options import flags  # noqa: E402
from cudnnconv import engine_registry, one_sided, _log  # noqa: E402
from cudnnconv.engine_registry import EngineUnavailable  # noqa: E402
from cudnnconv.api import (  # noqa: E402
    conv, conv_backward_input, conv_backward_weight, conv_transpose, conv_bias_add_relu, conv_epilogue,
    conv_backward_input_act, conv_backward_weight_bias, last_call, plan,
    CudaUnavailableError, cuda_available)
from cudnnconv.callplan import CallPlan  # noqa: E402
from cudnnconv.core.executor import trace_stages, stage_times  # noqa: E402
from cudnnconv.tuning import save_tuning  # noqa: E402
from cudnnconv.warmup import load_tuning  # noqa: E402
from cudnnconv.explain import explain, last_choice  # noqa: E402
from cudnnconv.gpu_timing import benchmark_settings  # noqa: E402
from cudnnconv import warmup as _warmup  # noqa: E402

_warmup.install_from_environment()      # CUDNNCONV_TUNING_CACHE=path: load at first use, add as found

__version__ = "0.1.0"

if _build.DEBUG:
    _log.enable_debug_output()


def version():
    """The cuDNN version loaded at run time, e.g. 91900 for 9.19.0."""
    return _build.runtime_cudnn_version()


def build_info():
    """How this build was configured, and what it runs on: compile-time
    options (``cudnn_headers_from`` and ``cuda_headers_from`` say where the
    build found the headers: "nvidia-cudnn-cu13 wheel", "CUDNN_HOME",
    "CUDA_HOME", "/usr/local/cuda" or "nvidia-cuda-runtime wheel", never a
    path of the machine that built it), the cuDNN it was compiled against
    and the one loaded, the engines it contains, and the libcudnn.so.9 this
    process runs (``libcudnn_loaded``; ``libcudnn_preloaded_from`` is the one
    the package loaded itself, None where the system loader found it)."""
    info = dict(_build.compile_options())
    info["runtime_cudnn_version"] = _build.runtime_cudnn_version()
    info["engines"] = engine_registry.available()
    info["libcudnn_preloaded_from"] = _loader.preload()
    info["libcudnn_loaded"] = _loader.loaded()
    info["cudnnconv_version"] = __version__
    return info


def clear_cache():
    """Forget every cached algorithm choice and reset the statistics (every
    bound call plan goes back through the full path once, and binds again)."""
    _state.invalidate()
    _state.clear_memos()        # the call plans bound to the choices, and their workspaces
    for c in engine_registry.caches():
        c.clear()
    if engine_registry.AUTO is not None:
        engine_registry.AUTO.clear()   # and auto's per-problem graph->legacy fallbacks
    one_sided.forget()                 # and which plans of tiles with one-sided padding agreed


def cache_info():
    """Per engine: size, maxsize, hits and misses of its choice cache."""
    return {c.name: c.info() for c in engine_registry.caches()}


__all__ = [
    "conv", "conv_backward_input", "conv_backward_weight", "conv_transpose", "conv_bias_add_relu", "conv_epilogue",
    "conv_backward_input_act", "conv_backward_weight_bias",
    "plan", "CallPlan", "trace_stages", "stage_times", "flags", "version", "build_info", "clear_cache", "cache_info", "last_call", "cuda_available",
    "CuDNNError", "CuDNNOutOfMemoryError", "CaptureError", "EngineUnavailable", "CudaUnavailableError",
    "save_tuning", "load_tuning", "explain", "last_choice", "benchmark_settings",
]
