"""Convolution geometry: stride, padding, dilation and groups checked against the shapes, and the
output shape, for every direction (PyTorch's shape formulas)."""
import collections
import collections.abc
import numbers
import operator

Geometry = collections.namedtuple(
    "Geometry", "nsp stride padding dilation groups same_extra")
Geometry.__doc__ = """Normalised convolution parameters.

``padding`` is symmetric; ``same_extra`` holds, per spatial dim, the one extra
element of padding that 'same' needs at the end when the total is odd (the
input is then padded explicitly, as PyTorch does).  Inside the library alone, a spatial
tile's geometry can carry one-sided padding: ``padding`` is then one (before, after) pair per
dim (``tile_padding``), which only the graph engine takes."""


def tile_padding(pads):
    """A tile's ``(before, after)`` pair per dim as a Geometry's padding: one int per dim where
    every dim's two are equal (the form every call has, and so the same cache key), else the pairs
    themselves (``one_sided``)."""
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    return tuple(lo for lo, _ in pads) if all(lo == hi for lo, hi in pads) else pads


def one_sided(padding):
    """Whether a Geometry's (or a problem key's) padding is ``tile_padding``'s pairs."""
    return bool(padding) and type(padding[0]) is tuple


def padding_pairs(padding):
    """A Geometry's padding as one (before, after) pair per dim, whichever form it has."""
    return tuple(padding) if one_sided(padding) else tuple((int(p), int(p)) for p in padding)


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
    return _backward_geometry(input_shape, w_shape, gy_shape, stride, padding, dilation, groups, "input_shape",
                              "weight", dict(xname="input_shape"))


def backward_weight_geometry(x_shape, weight_shape, gy_shape, stride, padding, dilation, groups):
    weight_shape = _as_shape(weight_shape, "weight_shape")
    return _backward_geometry(x_shape, weight_shape, gy_shape, stride, padding, dilation, groups, "input",
                              "weight_shape", dict(wname="weight_shape"))


def _backward_geometry(x_shape, w_shape, gy_shape, stride, padding, dilation, groups, xname, wname, names):
    """The backward functions' geometry: the forward's, with grad_output's shape checked against its
    output shape; asymmetric 'same' padding is refused (the backward functions have no end padding)."""
    geom, y_shape = conv_geometry(x_shape, w_shape, stride, padding, dilation, groups, allow_string_padding=True,
                                  **names)
    if any(geom.same_extra):
        raise ValueError("padding='same' with an even dilated kernel needs asymmetric padding, which the "
                         "backward functions do not support; give explicit ints")
    if tuple(gy_shape) != y_shape:
        raise ValueError("grad_output has shape %s but %s %s and %s %s give an output of shape %s"
                         % (tuple(gy_shape), xname, tuple(x_shape), wname, tuple(w_shape), y_shape))
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
