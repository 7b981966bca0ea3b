"""Torch tensors as cudnnconv arrays, on torch's device and stream, with torch's flags.

A call first takes the typed path for strided tensors (``run``: ``cudnnconv.callplan.run_strided``).
Each tensor is read in C through its own accessors (pointer, shape, strides, dtype, device), with
no array made, and the call runs where this thread already holds a bound plan for its signature on
torch's current stream.  Otherwise (the first call of a signature, a flag block that changed, a
stream CuPy is not on, explain()), the call goes through the public function on CuPy arrays over
the tensors' own memory (``as_array``: no copy, no DLPack capsule, made in C; the array keeps the
tensor alive), which checks, plans and binds the plan that the next call's typed path finds.
Outputs and gradients are allocated by torch (its caching allocator, and the graph's private pool
under ``torch.cuda.graph``) and written through ``out=``; only cuDNN's workspace comes from CuPy's
pool.

A call runs on torch's current stream of the tensor's device.  The typed path runs only where
CuPy's current device and stream already are those (both default to the legacy default stream on
the current device).  The public function runs under ``on_torch_stream``: nothing is entered where
that holds, one C read of CuPy's device and stream and one of torch's raw stream, about a
microsecond, where a context manager that makes torch and CuPy stream objects costs ten;
otherwise the call runs inside CuPy's device context and a CuPy stream over torch's.

Flags (``call_flags``, the public functions' ``benchmark``, ``deterministic``, ``allow_tf32``,
``workspace_limit`` and ``engine``, as a tuple): inside a ``cudnnconv.flags()`` block, that block's
five, spelled out; outside, the ones PyTorch's own convolutions read,
``torch.backends.cudnn.benchmark``, ``deterministic`` (or ``torch.use_deterministic_algorithms``)
and ``allow_tf32``.  They are read when the forward runs and carried to its backward, which
autograd runs on a thread of its own (for CUDA tensors), where the block does not apply.
"""
import contextlib

import cupy
import numpy
import torch

from cudnnconv import api as _api
from cudnnconv import callplan as _callplan
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
_STRIDED = {k: (v, v.itemsize) for k, v in _DTYPES.items()}       # what run_strided reads a dtype as
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


def dtype_name(t):
    """``t``'s dtype as cudnnconv's messages name it (numpy's name: 'float16'), torch's where it has none."""
    dt = _DTYPES.get(t.dtype)
    return dt.name if dt is not None else str(t.dtype).replace("torch.", "")


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


_STRIDES = {}          # (shape, memory format) -> the strides torch.empty gives that pair


def out_strides(shape, x, w):
    """The strides of a new convolution output of ``shape`` next to ``x`` and ``w``: channels-last
    when either is (``memory_format``), as ``torch.empty(shape, memory_format=...)`` gives them,
    taken from torch once per (shape, format)."""
    fmt = memory_format(x)
    if fmt is torch.contiguous_format:
        fmt = memory_format(w)
    strides = _STRIDES.get((shape, fmt))
    if strides is None:
        strides = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt).stride()
        if len(_STRIDES) < 4096:       # a bound: a program of endless shapes keeps working, uncached
            _STRIDES[(shape, fmt)] = strides
    return strides


def empty_like_layout(shape, x, w):
    """A new tensor of ``shape`` for a convolution of ``x`` and ``w``, laid out as ``out_strides``
    says: ``x.new_empty_strided``, which on an H200 costs 3.9 us a call where ``torch.empty`` with a
    dtype, a device and a memory format costs 6.0 (docs/torch.md)."""
    return x.new_empty_strided(shape, out_strides(shape, x, w))


def dense(g, like):
    """``g`` (an incoming gradient) in ``like``'s memory format where it is not dense in either
    layout (an expanded gradient has zero strides, which cudnnconv refuses as overlapping)."""
    if 0 in g.stride():
        return g.contiguous(memory_format=memory_format(like))
    if g.is_contiguous():
        return g
    fmt = memory_format(like)
    if fmt is torch.contiguous_format or not g.is_contiguous(memory_format=fmt):
        return g.contiguous(memory_format=fmt)
    return g


def _public_flags():
    return (bool(_cudnn.benchmark), bool(_cudnn.deterministic or torch.are_deterministic_algorithms_enabled()),
            bool(_cudnn.allow_tf32))


_GETTERS = ("_get_cudnn_benchmark", "_get_cudnn_deterministic", "_get_deterministic_algorithms",
            "_get_cudnn_allow_tf32")
if all(hasattr(torch._C, g) for g in _GETTERS):
    _benchmark, _deterministic, _det_algorithms, _allow_tf32 = (getattr(torch._C, g) for g in _GETTERS)

    FLAG_GETTERS = (_benchmark, _deterministic, _det_algorithms, _allow_tf32)

    def torch_flags():
        """(benchmark, deterministic, allow_tf32) of torch.backends.cudnn, read through the C getters
        its properties call (a fifth of the properties' cost; tests/test_torch_bridge_cpu.py holds the
        two equal)."""
        return (bool(_benchmark()), bool(_deterministic() or _det_algorithms()), bool(_allow_tf32()))
else:                                  # a torch without them: its public properties
    FLAG_GETTERS = None
    torch_flags = _public_flags

NO_FLAGS = (None, None, None, None, None)      # nothing set per call: the thread's defaults apply


def call_flags():
    """Per-call flags, as the public functions' (benchmark, deterministic, allow_tf32,
    workspace_limit, engine): inside a ``cudnnconv.flags()`` block, the block's five (spelled out,
    so that a backward on autograd's own thread keeps them; a workspace_limit of None is no limit
    there too, the default), else torch.backends.cudnn's three."""
    o = _thread_state().options
    if o is not None:
        return tuple(o)
    return torch_flags() + (None, None)


def flag_kwargs(flags):
    """``call_flags()``'s tuple as the public functions' keyword arguments (the ones set)."""
    kw = {} if flags[0] is None else {"benchmark": flags[0], "deterministic": flags[1], "allow_tf32": flags[2]}
    if flags[3] is not None:
        kw["workspace_limit"] = flags[3]
    if flags[4] is not None:
        kw["engine"] = flags[4]
    return kw


CONV, BACKWARD_INPUT, BACKWARD_WEIGHT, TRANSPOSE = _api._CONV, _api._BACKWARD_INPUT, _api._BACKWARD_WEIGHT, \
    _api._TRANSPOSE
_run_strided = _callplan.run_strided


def run(spec, tensors, out, scalars, flags, index):
    """The call of ``spec`` (one of the four above) on tensors of device ``index``, writing
    ``out``, through the typed path for strided tensors on torch's current stream: True where it
    ran, False where the caller takes the public function (see the module doc).  ``tensors`` and
    ``scalars`` are the public function's, a backward function's shape argument as a tuple."""
    return _run_strided(spec, tensors, out, scalars, flags, _STRIDED, torch_stream(index))


_NOTHING = contextlib.nullcontext()
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)   # torch's own C++ getter: an int
_runs_on = _arrays.runs_on


def torch_stream(index):
    """The raw ``cudaStream_t`` of torch's current stream on device ``index``."""
    if _raw_stream is not None:
        return _raw_stream(index)
    return torch.cuda.current_stream(index).cuda_stream


raw_stream = _raw_stream if _raw_stream is not None else torch_stream      # the typed forward's getter


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
