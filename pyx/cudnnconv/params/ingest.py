"""Arguments in: what a CUDA array (cupy.ndarray, ``__cuda_array_interface__``, DLPack) is,
checked on its metadata before any GPU work; dtypes, devices, ``out`` and overlap; and the scalar
scales (``finite_real``)."""
import math
import numbers

import numpy

from cudnnconv.params.dtypes import cudnn_dtype


def finite_real(name, value):
    """A scale argument (``alpha``, ``alpha1``, ...) as a float: TypeError for a bool, a string or
    anything float() does not take (float() would read '1.5' and True), ValueError where it is not
    finite."""
    if isinstance(value, (str, bytes, bytearray, bool, numpy.bool_)):
        raise TypeError("%s must be a finite real number, got %r" % (name, value))
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        raise TypeError("%s must be a finite real number, got %r" % (name, value)) from None
    if not math.isfinite(value):
        raise ValueError("%s must be a finite real number, got %r" % (name, value))
    return value

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
