"""The two memory layouts: their strides, which one a call uses, and arrays made or packed in one."""

import numpy

# Layouts.  The layout lives only in the strides; these names say which
# strides we give cuDNN.
NCHW = "NCHW"                  # (N, C, *spatial) row-major; also NCL / NCDHW
CHANNELS_LAST = "NHWC"         # (N, *spatial, C) in memory; also NLC / NDHWC


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


def memory_order(a):
    """The axes of ``a`` from its largest stride to its smallest (ties keep their order).

    CuPy runs an elementwise kernel over an array's axes in the order given and merges only
    neighbouring axes whose strides chain: a channels-last array seen as (N, C, H, W) is indexed
    as three or four strided dims, element by element.  Transposed to this order, a packed array
    is one contiguous run that CuPy indexes as one dim."""
    return sorted(range(a.ndim), key=lambda i: -abs(a.strides[i]))


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
