"""Arguments in, validated problem out (policy tier, no GPU needed).

Everything here runs before any GPU work: a bad argument raises ValueError or
TypeError with the offending values, never a crash inside cuDNN.  The module
also owns the two layouts, the one function that builds the cache key, and the
one-line Python repro that errors carry.
"""
import collections
import collections.abc
import math
import numbers
import operator

import numpy

# Layouts.  The layout lives only in the strides; these names say which
# strides we give cuDNN.
NCHW = "NCHW"                  # (N, C, *spatial) row-major; also NCL / NCDHW
CHANNELS_LAST = "NHWC"         # (N, *spatial, C) in memory; also NLC / NDHWC

# cuDNN's data-type codes (cudnnDataType_t; stable across cuDNN 9).
_CUDNN_DTYPE = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 9}


_DTYPE_CODES = {}          # dtype (object or name) -> code, filled as seen (numpy's dtype.name is slow)


def cudnn_dtype(dtype):
    """The cudnnDataType_t code for a NumPy/CuPy dtype, or TypeError."""
    try:
        return _DTYPE_CODES[dtype]
    except (KeyError, TypeError):
        pass
    dt = numpy.dtype(dtype)
    name = dt.name
    try:
        code = _CUDNN_DTYPE[name]
    except KeyError:
        hint = ""
        if dt.kind == "V" and dt.itemsize == 2:
            # cupy.asarray(torch bfloat16 tensor) gives raw 2-byte void: the
            # array interface has no bfloat16.  It may be anything, so no guess.
            hint = ("; 2-byte void is what the CUDA array interface makes of bfloat16: pass the tensor "
                    "itself (cudnnconv reads bfloat16 through DLPack), use cupy.from_dlpack(tensor), or, "
                    "if the array holds bfloat16, view it as ml_dtypes.bfloat16")
        raise TypeError("unsupported dtype %s: cudnnconv supports float16, bfloat16, "
                        "float32 and float64%s" % (name, hint)) from None
    if len(_DTYPE_CODES) < 64:
        try:
            _DTYPE_CODES[dtype] = code
        except TypeError:
            pass
    return code


# ---------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------

class ArrayArg:
    """An argument as seen before any GPU work: name, shape, dtype, and the
    object itself.  Reading these needs no GPU (CuPy attributes, or the
    ``__cuda_array_interface__`` dict), so every argument check runs on a
    machine without one."""
    __slots__ = ("name", "obj", "shape", "dtype")

    def __init__(self, name, obj, shape, dtype):
        self.name, self.obj, self.shape, self.dtype = name, obj, shape, dtype

    @property
    def ndim(self):
        return len(self.shape)

    def materialize(self):
        """The argument as a cupy.ndarray viewing the same memory (no copy)."""
        import cupy
        obj = self.obj
        if isinstance(obj, cupy.ndarray):
            return obj
        try:
            return cupy.asarray(obj)
        except Exception:
            if hasattr(obj, "__dlpack__"):
                return cupy.from_dlpack(obj)
            raise


def _host_type_error(name, obj):
    return TypeError("%s must be a CUDA array (cupy.ndarray or an object with __cuda_array_interface__), "
                     "got %s in host memory; move it to the GPU first, e.g. cupy.asarray(%s)"
                     % (name, type(obj).__name__, name))


_ADDRESS_LIMIT = 1 << 63          # pointers and byte strides at or past this are no device addresses


def _is_int(v):
    """An exact integer (Python or NumPy), not a bool or a float."""
    return not isinstance(v, (bool, numpy.bool_)) and isinstance(v, numbers.Integral)


def _interface(name, cai):
    """(shape, dtype) of a ``__cuda_array_interface__`` dict, every field
    checked here rather than left to CuPy: a missing or mistyped field, a
    big-endian dtype or a mask (CuPy refuses both) is a TypeError, a value
    no array can have (a negative dim, 2**63 elements or more, a NULL,
    out-of-range or misaligned pointer for a non-empty array, strides that
    are no multiple of the item size or past 2**63) a ValueError, each
    naming ``name``."""
    def bad(why):
        return TypeError("%s has an invalid __cuda_array_interface__: %s" % (name, why))
    for field in ("shape", "typestr", "data"):
        if field not in cai:
            raise bad("it has no %r entry" % field)
    shape, typestr, data = cai["shape"], cai["typestr"], cai["data"]
    if not isinstance(shape, (tuple, list)) or not all(_is_int(s) for s in shape):
        raise bad("shape must be a tuple of ints, got %r" % (shape,))
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError("%s has a negative dim: shape %s" % (name, shape))
    if not isinstance(typestr, str):
        raise bad("typestr must be a string such as '<f4', got %r" % (typestr,))
    try:
        dtype = numpy.dtype(typestr)
    except Exception as e:
        raise bad("typestr %r is no dtype (%s)" % (typestr, e)) from None
    if not dtype.isnative:           # its name would pass for a supported dtype ('>f4' is float32)
        raise TypeError("%s has the big-endian dtype %r: CUDA arrays are little-endian" % (name, typestr))
    if cai.get("mask") is not None:  # CuPy refuses masked arrays, with a message naming none
        raise TypeError("%s is a masked array (its __cuda_array_interface__ has a mask): cudnnconv takes "
                        "no masks" % name)
    if not isinstance(data, (tuple, list)) or len(data) != 2 or not _is_int(data[0]):
        raise bad("data must be (pointer, read_only), got %r" % (data,))
    ptr, size = int(data[0]), math.prod(shape)
    if size >= _ADDRESS_LIMIT:
        raise ValueError("%s has %d elements (shape %s): more than a 64-bit size can count" % (name, size, shape))
    if not 0 <= ptr < _ADDRESS_LIMIT:
        raise ValueError("%s has the data pointer %d, which is no device address" % (name, ptr))
    if ptr == 0 and size:
        raise ValueError("%s has a NULL data pointer but %d elements (shape %s)" % (name, size, shape))
    if size and ptr % dtype.itemsize:
        raise ValueError("%s has the data pointer %#x, not aligned to its item size %d" % (name, ptr, dtype.itemsize))
    strides = cai.get("strides")
    if strides is not None:
        if not isinstance(strides, (tuple, list)) or len(strides) != len(shape) or \
                not all(_is_int(s) for s in strides):
            raise bad("strides must be None or one int per dim, got %r (shape %s)" % (strides, shape))
        if any(abs(int(s)) >= _ADDRESS_LIMIT or int(s) % max(dtype.itemsize, 1) for s in strides):
            raise ValueError("%s has byte strides %s: each must be a multiple of the item size %d and below "
                             "2**63" % (name, tuple(strides), dtype.itemsize))
    return shape, dtype


def inspect_array(obj, name):
    """An ArrayArg for ``obj``, or TypeError for anything that is not a CUDA array.

    Accepts CuPy arrays, objects with ``__cuda_array_interface__`` (PyTorch
    CUDA tensors, Numba arrays, ...) and CUDA DLPack producers (which is how
    bfloat16 PyTorch tensors come in: their array interface refuses bf16).
    None is refused too: a caller passes None only where the argument is
    optional, and does not call this then.
    """
    if obj is None:
        raise TypeError("%s must be a CUDA array (cupy.ndarray or an object with __cuda_array_interface__), "
                        "got None" % name)
    try:
        import cupy
        if isinstance(obj, cupy.ndarray):
            return ArrayArg(name, obj, tuple(obj.shape), obj.dtype)
    except ImportError:
        pass
    if isinstance(obj, numpy.ndarray) or numpy.isscalar(obj) or isinstance(obj, (list, tuple)):
        raise _host_type_error(name, obj)
    try:
        cai = obj.__cuda_array_interface__
    except Exception:        # absent, or a property that refuses (torch bf16)
        cai = None
    has_dlpack = hasattr(obj, "__dlpack__") and hasattr(obj, "__dlpack_device__")
    if isinstance(cai, dict):
        shape, dtype = _interface(name, cai)
        # The array interface has no bfloat16: PyTorch reports it as raw
        # 2-byte void ('<V2').  DLPack names it, so take that route then.
        if dtype.kind != "V" or not has_dlpack:
            return ArrayArg(name, obj, shape, dtype)
    if has_dlpack:
        try:
            kind = int(obj.__dlpack_device__()[0])
        except Exception as e:
            raise TypeError("%s has an invalid __dlpack_device__() (it must return (device_type, device_id)): "
                            "%s: %s" % (name, type(e).__name__, e)) from None
        if kind in (2, 13):       # kDLCUDA, kDLCUDAManaged
            import cupy
            a = cupy.from_dlpack(obj)
            return ArrayArg(name, a, tuple(a.shape), a.dtype)
        raise _host_type_error(name, obj)
    raise TypeError("%s must be a CUDA array (cupy.ndarray or an object with __cuda_array_interface__), "
                    "got %s" % (name, type(obj).__name__))


def check_same_dtype(args):
    """All ArrayArgs (None entries skipped) share one supported dtype."""
    args = [a for a in args if a is not None]
    first = args[0]
    cudnn_dtype(first.dtype)
    for a in args[1:]:
        if a.dtype != first.dtype:
            raise TypeError("%s has dtype %s but %s has dtype %s: all arrays must share one dtype"
                            % (a.name, a.dtype, first.name, first.dtype))
    return first.dtype


def check_same_device(named_devices):
    """``named_devices`` is [(name, device_id)]; all must be equal."""
    name0, dev0 = named_devices[0]
    for name, dev in named_devices[1:]:
        if dev != dev0:
            raise ValueError("%s is on device %d but %s is on device %d: all arrays must be on one device "
                             "(cudnnconv never copies between devices)" % (name, dev, name0, dev0))
    return dev0


def _read_only(obj):
    """Whether an array's ``__cuda_array_interface__`` marks its memory
    read-only.  A CuPy array never is (and its interface is built, stream
    field included, on each read: not asked for)."""
    try:
        import cupy
        if isinstance(obj, cupy.ndarray):
            return False
    except ImportError:
        pass
    try:
        data = obj.__cuda_array_interface__["data"]
    except Exception:          # no interface (a DLPack producer): nothing says so
        return False
    return isinstance(data, (tuple, list)) and len(data) == 2 and data[1] is True


def check_out(out, shape, dtype, name="out"):
    """``out`` (an ArrayArg) has exactly the result's shape and dtype, and
    its memory is not marked read-only."""
    if _read_only(out.obj):
        raise ValueError("%s is read-only (its __cuda_array_interface__ says so): the result cannot be written "
                         "into it" % name)
    if tuple(out.shape) != tuple(shape):
        raise ValueError("%s has shape %s but the result has shape %s" % (name, tuple(out.shape), tuple(shape)))
    if out.dtype != dtype:
        raise TypeError("%s has dtype %s but the result has dtype %s" % (name, out.dtype, dtype))


def overlaps(a, b):
    """Whether the memory spans of two arrays intersect (bounds check)."""
    if a.size == 0 or b.size == 0:
        return False
    lo_a, hi_a = _span(a)
    lo_b, hi_b = _span(b)
    return lo_a < hi_b and lo_b < hi_a


def _span(a):
    lo = hi = a.data.ptr
    for n, s in zip(a.shape, a.strides):
        if s > 0:
            hi += (n - 1) * s
        else:
            lo += (n - 1) * s
    return lo, hi + a.itemsize


# ---------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------

_STRIDES_MEMO = {}
_STRIDES_MEMO_MAX = 4096


def layout_strides(shape, layout):
    """Element strides of a packed array of ``shape`` in ``layout`` (memoized:
    every call's first pass asks for the same few shapes several times)."""
    try:
        return _STRIDES_MEMO[(shape, layout)]
    except (KeyError, TypeError):
        pass
    strides = _layout_strides(shape, layout)
    try:
        if len(_STRIDES_MEMO) >= _STRIDES_MEMO_MAX:
            _STRIDES_MEMO.clear()
        _STRIDES_MEMO[(shape, layout)] = strides
    except TypeError:           # an unhashable shape (a list): not memoized
        pass
    return strides


def _layout_strides(shape, layout):
    nd = len(shape)
    order = list(range(nd)) if layout == NCHW else [0] + list(range(2, nd)) + [1]
    strides = [0] * nd
    acc = 1
    for d in reversed(order):
        strides[d] = acc
        acc *= shape[d]
    return tuple(strides)


def has_layout(a, layout):
    """``a`` is packed in ``layout`` (strides of size-1 dims are ignored)."""
    want = layout_strides(a.shape, layout)
    isz = a.itemsize
    for n, s, w in zip(a.shape, a.strides, want):
        if n != 1 and s != w * isz:
            return False
    return True


def suggest_layout(x, w):
    """Channels-last when the input or the weight is channels-last (and not
    also plainly contiguous, as a tensor with C == 1 is), else NCHW; the rule
    of PyTorch's cudnn_conv_suggest_memory_format, extended to 1-D.  Like
    that rule, float64 is always NCHW: cuDNN's legacy API refuses
    channels-last double backward convolutions (CUDNN_STATUS_NOT_SUPPORTED)."""
    if x.dtype == numpy.float64:          # all arrays of a call share its dtype
        return NCHW
    for a in (x, w):
        if a.ndim >= 3 and has_layout(a, CHANNELS_LAST) and not has_layout(a, NCHW):
            return CHANNELS_LAST
    return NCHW


def empty_in_layout(shape, dtype, layout):
    import cupy
    if layout == NCHW:
        return cupy.empty(shape, dtype=dtype)
    nd = len(shape)
    perm = (0,) + tuple(range(2, nd)) + (1,)
    inv = (0, nd - 1) + tuple(range(1, nd - 1))
    return cupy.empty(tuple(shape[p] for p in perm), dtype=dtype).transpose(inv)


def to_layout(a, layout):
    """``a`` itself if packed in ``layout``, else a packed copy."""
    if has_layout(a, layout):
        return a
    out = empty_in_layout(a.shape, a.dtype, layout)
    out[...] = a
    return out


# ---------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------

Geometry = collections.namedtuple(
    "Geometry", "nsp stride padding dilation groups same_extra")
Geometry.__doc__ = """Normalised convolution parameters.

``padding`` is symmetric; ``same_extra`` holds, per spatial dim, the one extra
element of padding that 'same' needs at the end when the total is odd (the
input is then padded explicitly, as PyTorch does)."""


def _as_int(v, what):
    if type(v) is int:
        return v
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        try:
            if isinstance(v, bool):
                raise TypeError
            return operator.index(v)
        except TypeError:
            raise TypeError("%s must be an int or a tuple of ints, got %r" % (what, v)) from None
    return int(v)


def spatial_tuple(value, nsp, name, minimum):
    if isinstance(value, (list, tuple)):
        if len(value) == 1 and nsp > 1:
            value = tuple(value) * nsp
        if len(value) != nsp:
            raise ValueError("%s must have %d entries (one per spatial dim), got %r" % (name, nsp, tuple(value)))
        vals = tuple(_as_int(v, name) for v in value)
    else:
        vals = (_as_int(value, name),) * nsp
    for v in vals:
        if v < minimum:
            kind = "positive" if minimum == 1 else "non-negative"
            raise ValueError("%s must be %s, got %r" % (name, kind, vals))
    return vals


def _check_ndim(x_shape, w_shape, xname="input", wname="weight"):
    if not 3 <= len(x_shape) <= 5:
        raise ValueError("%s must have shape (N, C, *spatial) with 1 to 3 spatial dims, got shape %s (ndim=%d)"
                         % (xname, tuple(x_shape), len(x_shape)))
    if len(w_shape) != len(x_shape):
        raise ValueError("%s must have ndim %d like %s (K, C/groups, *kernel), got shape %s"
                         % (wname, len(x_shape), xname, tuple(w_shape)))


def _check_groups(groups):
    if type(groups) is int and groups >= 1:
        return groups
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral):
        raise TypeError("groups must be an int, got %r" % (groups,))
    if groups < 1:
        raise ValueError("groups must be positive, got %d" % groups)
    return int(groups)


def conv_geometry(x_shape, w_shape, stride, padding, dilation, groups, *, xname="input", wname="weight",
                  allow_string_padding=True):
    """Validate a forward convolution and return (Geometry, output_shape)."""
    x_shape = tuple(int(s) for s in x_shape)
    w_shape = tuple(int(s) for s in w_shape)
    _check_ndim(x_shape, w_shape, xname, wname)
    nsp = len(x_shape) - 2
    groups = _check_groups(groups)
    n, c = x_shape[:2]
    k, cg = w_shape[:2]
    ksz = w_shape[2:]
    if n < 0:
        raise ValueError("%s has a negative batch size: shape %s" % (xname, x_shape))
    for d, s in enumerate(x_shape[1:]):
        if s < 1:
            raise ValueError("%s has a zero-sized dim: shape %s" % (xname, x_shape))
    if min(w_shape) < 1:
        raise ValueError("%s has a zero-sized dim: shape %s" % (wname, w_shape))
    if c % groups:
        raise ValueError("%s channels C=%d are not divisible by groups=%d" % (xname, c, groups))
    if cg * groups != c:
        raise ValueError("%s has C/groups=%d (shape %s) but %s has C=%d with groups=%d, "
                         "so C/groups should be %d" % (wname, cg, w_shape, xname, c, groups, c // groups))
    if k % groups:
        raise ValueError("%s output channels K=%d are not divisible by groups=%d" % (wname, k, groups))
    stride = spatial_tuple(stride, nsp, "stride", 1)
    dilation = spatial_tuple(dilation, nsp, "dilation", 1)
    extra = (0,) * nsp
    if isinstance(padding, str):
        if not allow_string_padding:
            raise ValueError("padding=%r is not supported here; give ints" % padding)
        if padding == "valid":
            pad = (0,) * nsp
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError("padding='same' needs stride 1, got stride=%s" % (stride,))
            totals = [d * (kk - 1) for d, kk in zip(dilation, ksz)]
            pad = tuple(t // 2 for t in totals)
            extra = tuple(t - 2 * (t // 2) for t in totals)
        else:
            raise ValueError("padding must be an int, a tuple, 'valid' or 'same', got %r" % padding)
    else:
        pad = spatial_tuple(padding, nsp, "padding", 0)
    out_sp = []
    for i in range(nsp):
        eff_k = dilation[i] * (ksz[i] - 1) + 1
        padded = x_shape[2 + i] + 2 * pad[i] + extra[i]
        if eff_k > padded:
            raise ValueError("kernel size %d (dilated to %d) is larger than the padded input size %d in "
                             "spatial dim %d (input %s, padding %s)"
                             % (ksz[i], eff_k, padded, i, x_shape, pad))
        out_sp.append((padded - eff_k) // stride[i] + 1)
    geom = Geometry(nsp, stride, pad, dilation, groups, extra)
    return geom, (n, k) + tuple(out_sp)


def check_bias(bias, k, name="bias"):
    if bias is None:
        return
    if bias.ndim != 1 or bias.shape[0] != k:
        raise ValueError("%s must have shape (%d,) (one value per output channel), got %s"
                         % (name, k, tuple(bias.shape)))


def _as_shape(shape, name):
    """A shape argument as a tuple of ints.  Only a sequence (a tuple, a list,
    torch.Size): an iterator would be consumed by the first look at it."""
    if not isinstance(shape, collections.abc.Sequence) or isinstance(shape, (str, bytes, bytearray)):
        raise TypeError("%s must be a sequence of ints (a tuple or a list), got %s"
                        % (name, repr(shape) if isinstance(shape, (str, bytes, bytearray)) else
                           "a " + type(shape).__name__))
    try:
        return tuple(_as_int(s, name) for s in shape)
    except TypeError:
        raise TypeError("%s must be a sequence of ints, got %r" % (name, shape)) from None


def backward_input_geometry(input_shape, w_shape, gy_shape, stride, padding, dilation, groups):
    input_shape = _as_shape(input_shape, "input_shape")
    geom, y_shape = conv_geometry(input_shape, w_shape, stride, padding, dilation, groups,
                                  xname="input_shape", allow_string_padding=True)
    if any(geom.same_extra):
        raise ValueError("padding='same' with an even dilated kernel needs asymmetric padding, which the "
                         "backward functions do not support; give explicit ints")
    if tuple(gy_shape) != y_shape:
        raise ValueError("grad_output has shape %s but input_shape %s and weight %s give an output of shape %s"
                         % (tuple(gy_shape), input_shape, tuple(w_shape), y_shape))
    return geom


def backward_weight_geometry(x_shape, weight_shape, gy_shape, stride, padding, dilation, groups):
    weight_shape = _as_shape(weight_shape, "weight_shape")
    geom, y_shape = conv_geometry(x_shape, weight_shape, stride, padding, dilation, groups,
                                  wname="weight_shape", allow_string_padding=True)
    if any(geom.same_extra):
        raise ValueError("padding='same' with an even dilated kernel needs asymmetric padding, which the "
                         "backward functions do not support; give explicit ints")
    if tuple(gy_shape) != y_shape:
        raise ValueError("grad_output has shape %s but input %s and weight_shape %s give an output of shape %s"
                         % (tuple(gy_shape), tuple(x_shape), weight_shape, y_shape))
    return geom


def transpose_geometry(x_shape, w_shape, stride, padding, output_padding, groups, dilation):
    """Validate a transposed convolution; return (Geometry, output_shape).

    The transposed convolution of ``x`` is the backward-input computation of
    a forward convolution whose output is ``x`` and whose input has the
    returned shape.
    """
    x_shape = tuple(int(s) for s in x_shape)
    w_shape = tuple(int(s) for s in w_shape)
    _check_ndim(x_shape, w_shape)
    nsp = len(x_shape) - 2
    groups = _check_groups(groups)
    if isinstance(padding, str):
        raise ValueError("conv_transpose takes integer padding, got %r" % padding)
    if x_shape[0] < 0:
        raise ValueError("input has a negative batch size: shape %s" % (x_shape,))
    if min(x_shape[1:]) < 1 or min(w_shape) < 1:
        raise ValueError("zero-sized dims: input %s, weight %s" % (x_shape, w_shape))
    cin = x_shape[1]
    if w_shape[0] != cin:
        raise ValueError("weight must have shape (C_in, C_out/groups, *kernel) with C_in=%d, got %s"
                         % (cin, w_shape))
    if cin % groups:
        raise ValueError("input channels C_in=%d are not divisible by groups=%d" % (cin, groups))
    stride = spatial_tuple(stride, nsp, "stride", 1)
    dilation = spatial_tuple(dilation, nsp, "dilation", 1)
    pad = spatial_tuple(padding, nsp, "padding", 0)
    opad = spatial_tuple(output_padding, nsp, "output_padding", 0)
    for i in range(nsp):
        if opad[i] >= stride[i] and opad[i] >= dilation[i]:
            raise ValueError("output_padding must be smaller than either stride or dilation, got "
                             "output_padding=%s, stride=%s, dilation=%s" % (opad, stride, dilation))
    out_sp = []
    for i in range(nsp):
        o = (x_shape[2 + i] - 1) * stride[i] - 2 * pad[i] + dilation[i] * (w_shape[2 + i] - 1) + opad[i] + 1
        if o < 1:
            raise ValueError("the transposed convolution's output would be empty in spatial dim %d "
                             "(input %s, weight %s, stride %s, padding %s)" % (i, x_shape, w_shape, stride, pad))
        out_sp.append(o)
    out_shape = (x_shape[0], w_shape[1] * groups) + tuple(out_sp)
    geom = Geometry(nsp, stride, pad, dilation, groups, (0,) * nsp)
    return geom, out_shape


# ---------------------------------------------------------------------------
# The cache key
# ---------------------------------------------------------------------------

ProblemKey = collections.namedtuple(
    "ProblemKey",
    "op engine device dtype input_shape weight_shape layout padding stride dilation groups "
    "deterministic allow_tf32 workspace_limit extra")


def make_key(op, engine, device, dtype_code, x_shape, w_shape, layout, geom, opts, extra=()):
    """The one function that builds a cache key: an immutable, hashable value.

    It holds everything that decides whether a cached choice is valid.  Left
    out, on purpose:
      * the output shape: a function of the input, weight and geometry;
      * the bias: always added outside the convolution kernel (or, fused,
        through its own descriptor of shape (1, K, 1...) fixed by K);
      * strides beyond the layout: inputs are packed into one of the two
        layouts before the engine sees them, so the layout names them all;
      * the stream and the data pointers: they do not change which algorithm
        is valid (the graph engine puts pointer *alignment* in ``extra``);
      * benchmark: a benchmarked choice is also a valid answer for a
        heuristic call; the search re-benchmarks a heuristic entry when
        benchmark=True asks for it (see search.try_all);
      * same_extra: 'same' padding's asymmetric part is applied to the input
        before the engine sees it, so the input shape already carries it.
    """
    return ProblemKey(op, engine, device, dtype_code, tuple(x_shape), tuple(w_shape), layout,
                      geom.padding, geom.stride, geom.dilation, geom.groups,
                      bool(opts.deterministic), bool(opts.allow_tf32), opts.workspace_limit, tuple(extra))


# ---------------------------------------------------------------------------
# Repro
# ---------------------------------------------------------------------------

def _rand_expr(shape, dtype, layout):
    dt = numpy.dtype(dtype).name
    dt_expr = "ml_dtypes.bfloat16" if dt == "bfloat16" else repr(dt)
    base = "cupy.random.standard_normal(%r).astype(%s)" % (tuple(shape), dt_expr)
    if layout == CHANNELS_LAST and len(shape) >= 3:
        nd = len(shape)
        perm = (0,) + tuple(range(2, nd)) + (1,)
        inv = (0, nd - 1) + tuple(range(1, nd - 1))
        pshape = tuple(shape[p] for p in perm)
        base = ("cupy.ascontiguousarray(cupy.random.standard_normal(%r).astype(%s)).transpose(%r)"
                % (pshape, dt_expr, inv))
    return base


def repro_kwargs(geom, opts, extra=()):
    """The keyword arguments of a repro line, normalised: ``extra`` first
    (the function's own, e.g. ``[("fusion", "auto")]``), then the geometry,
    then the resolved flags."""
    return list(extra) + [("stride", geom.stride), ("padding", geom.padding), ("dilation", geom.dilation),
                          ("groups", geom.groups), ("benchmark", opts.benchmark),
                          ("deterministic", opts.deterministic), ("allow_tf32", opts.allow_tf32),
                          ("workspace_limit", opts.workspace_limit), ("engine", opts.engine)]


def repro(fn, arrays, dtype, layout, call_kwargs):
    """A one-line Python snippet that repeats a call on fresh random data.

    ``arrays`` lists the positional arguments as (name, value): a tuple is
    the shape of a random array (or, for a name ending in ``_shape``, the
    shape itself); anything else (a scalar, None) is written as a literal.
    ``call_kwargs`` are the keyword arguments after them, already normalised.
    """
    head = "import cupy, cudnnconv" + (", ml_dtypes" if numpy.dtype(dtype).name == "bfloat16" else "")
    args = []
    for name, value in arrays:
        if isinstance(value, tuple) and not name.endswith("_shape"):
            args.append(_rand_expr(value, dtype, layout))     # an array of this shape
        else:
            args.append(repr(value))                          # a shape, a scalar or None
    kw = ", ".join("%s=%r" % kv for kv in call_kwargs)
    return "%s; cudnnconv.%s(%s%s)" % (head, fn, ", ".join(args), (", " + kw) if kw else "")
