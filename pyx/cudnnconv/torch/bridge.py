"""Torch tensors as cudnnconv arrays, on torch's device and stream, with torch's flags.

Every tensor a call reads or writes is seen by cudnnconv as a CuPy array over the tensor's own
memory (``as_array``: no copy, no DLPack capsule, made in C; the array keeps the tensor alive).  Outputs and
gradients are allocated by torch (its caching allocator, and the graph's private pool under
``torch.cuda.graph``) and written through ``out=``; only cuDNN's workspace comes from CuPy's pool.

A call runs on torch's current stream of the tensor's device (``on_torch_stream``).  Where CuPy's
current device and stream already are those (both default to the legacy default stream on the
current device), nothing is entered: one C read of CuPy's device and stream and one of torch's raw
stream, about a microsecond, where a context manager that makes torch and CuPy stream objects costs
ten.  Otherwise the call runs inside CuPy's device context and a CuPy stream over torch's.

Flags: inside a ``cudnnconv.flags()`` block, its flags; outside, the ones PyTorch's own
convolutions read, ``torch.backends.cudnn.benchmark``, ``deterministic`` (or
``torch.use_deterministic_algorithms``) and ``allow_tf32`` (``call_flags``).
"""
import contextlib

import cupy
import numpy
import torch

from cudnnconv.core import arrays as _arrays
from cudnnconv.core.state import state as _thread_state

_DTYPES = {torch.float16: numpy.dtype(numpy.float16), torch.float32: numpy.dtype(numpy.float32),
           torch.float64: numpy.dtype(numpy.float64)}
try:
    import ml_dtypes as _ml
    _DTYPES[torch.bfloat16] = numpy.dtype(_ml.bfloat16)
except ImportError:                # bfloat16 tensors then get the TypeError below
    pass

_ITEMSIZE = {k: v.itemsize for k, v in _DTYPES.items()}
_cudnn = torch.backends.cudnn
_view = _arrays.view


def check_tensor(t, name):
    """``t`` is a CUDA tensor of a dtype cudnnconv takes; else TypeError naming it."""
    if not isinstance(t, torch.Tensor):
        raise TypeError("%s must be a torch.Tensor, got %s" % (name, type(t).__name__))
    if not t.is_cuda:
        raise TypeError("%s is on %s: cudnnconv.torch runs CUDA tensors (the modules run torch's own "
                        "convolution for CPU tensors)" % (name, t.device))
    if t.dtype not in _DTYPES:
        raise TypeError("%s has dtype %s; cudnnconv takes float16, bfloat16 (with ml_dtypes), float32 and "
                        "float64" % (name, t.dtype))


def as_array(t):
    """A CuPy array over ``t``'s memory: same shape, strides, dtype and device; it holds ``t``
    (``cudnnconv.core.arrays.view``: the array CuPy's constructor would make, made in C)."""
    dt = t.dtype
    return _view(t.data_ptr(), t.shape, t.stride(), _DTYPES[dt], _ITEMSIZE[dt], t, t.get_device())


def memory_format(t):
    """The memory format a convolution output next to ``t`` takes: channels-last where ``t`` is
    channels-last and not also plainly contiguous (as PyTorch's own convolutions suggest it)."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if t.dim() == 5 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


def empty_like_layout(shape, x, w):
    """A new tensor of ``shape`` for a convolution of ``x`` and ``w``: channels-last when either is."""
    fmt = memory_format(x)
    if fmt is torch.contiguous_format:
        fmt = memory_format(w)
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)


def dense(g, like):
    """``g`` (an incoming gradient) in ``like``'s memory format where it is not dense in either
    layout (an expanded gradient has zero strides, which cudnnconv refuses as overlapping)."""
    fmt = memory_format(like)
    if 0 in g.stride() or not (g.is_contiguous() or g.is_contiguous(memory_format=fmt)):
        return g.contiguous(memory_format=fmt)
    return g


def _public_flags():
    return {"benchmark": bool(_cudnn.benchmark),
            "deterministic": bool(_cudnn.deterministic or torch.are_deterministic_algorithms_enabled()),
            "allow_tf32": bool(_cudnn.allow_tf32)}


_GETTERS = ("_get_cudnn_benchmark", "_get_cudnn_deterministic", "_get_deterministic_algorithms",
            "_get_cudnn_allow_tf32")
if all(hasattr(torch._C, g) for g in _GETTERS):
    _benchmark, _deterministic, _det_algorithms, _allow_tf32 = (getattr(torch._C, g) for g in _GETTERS)

    def torch_flags():
        """torch.backends.cudnn's flags, read through the C getters its properties call (a fifth of
        the properties' cost; tests/test_torch_bridge_cpu.py holds the two equal)."""
        return {"benchmark": bool(_benchmark()), "deterministic": bool(_deterministic() or _det_algorithms()),
                "allow_tf32": bool(_allow_tf32())}
else:                                  # a torch without them: its public properties
    torch_flags = _public_flags


def call_flags():
    """Per-call flags: None (the active ``cudnnconv.flags()`` block's) or torch.backends.cudnn's."""
    if _thread_state().options is not None:
        return {}
    return torch_flags()


_NOTHING = contextlib.nullcontext()
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)   # torch's own C++ getter: an int
_runs_on = _arrays.runs_on


def torch_stream(index):
    """The raw ``cudaStream_t`` of torch's current stream on device ``index``."""
    if _raw_stream is not None:
        return _raw_stream(index)
    return torch.cuda.current_stream(index).cuda_stream


def on_torch_stream(t):
    """A context manager under which CuPy's current device is ``t``'s and its current stream is
    torch's current stream there: a shared no-op one where that already holds (the common case)."""
    index = t.get_device()
    ptr = torch_stream(index)
    if _runs_on(index, ptr):
        return _NOTHING
    return _switched(index, ptr)


class _TorchStream:
    """A raw stream pointer with the CUDA stream protocol, for ``cupy.cuda.Stream.from_external``."""
    __slots__ = ("ptr",)

    def __init__(self, ptr):
        self.ptr = ptr

    def __cuda_stream__(self):
        return 0, self.ptr


def _cupy_stream(ptr, index):
    """A CuPy stream over the raw stream ``ptr`` of device ``index`` (``Stream.from_external`` where
    CuPy has it, as CuPy 14 asks; ``ExternalStream`` before)."""
    if hasattr(cupy.cuda.Stream, "from_external"):
        return cupy.cuda.Stream.from_external(_TorchStream(ptr))
    return cupy.cuda.ExternalStream(ptr, index)


@contextlib.contextmanager
def _switched(index, ptr):
    with cupy.cuda.Device(index):
        if cupy.cuda.get_current_stream().ptr == ptr:
            yield
        else:
            with _cupy_stream(ptr, index):
                yield
