"""The rules ``cudnnconv.torch`` follows, written without importing torch (policy tier, no GPU).

``cudnnconv.torch`` maps PyTorch's convolution arguments and modules onto cudnnconv's functions.
What that mapping decides, and nothing that needs torch, lives here so that it is tested on a
machine without PyTorch:

* the functional arguments: stride, padding (ints, tuples, 'valid', 'same'), dilation, groups and
  output_padding as PyTorch takes them, checked with messages that name the argument, and
  padding='same' resolved the way PyTorch resolves it (an odd total padding puts the extra element
  at the end, which the library's backward functions cannot express, so it becomes an explicit
  pad of the input that autograd differentiates);
* the output shapes (the library's own geometry, so one formula serves both);
* the conversion plan: which of a model's modules ``convert`` swaps (exact ``torch.nn``
  convolution classes only; a subclass may override ``forward``) and which ``revert`` swaps back;
* ``forward_plan`` / ``transpose_plan``: the resolved arguments and the output shape of a call
  signature, memoized, so that a repeated call does not validate its arguments again.  Only
  plain arguments (exactly int, str, or a tuple of exact ints) are memoized: a bool or a numpy
  integer hashes like an int but must still be checked (or refused), so those calls always take
  the full validation.
"""
from cudnnconv.params import geometry

# torch.nn's convolution classes (by module and name) -> cudnnconv.torch's, and the number of spatial dims.
TORCH_MODULE = "torch.nn.modules.conv"
CONVERSIONS = {"Conv1d": 1, "Conv2d": 2, "Conv3d": 3, "ConvTranspose1d": 1, "ConvTranspose2d": 2,
               "ConvTranspose3d": 3}
OUR_MODULE = "cudnnconv.torch.modules"
SPATIAL_NAMES = {1: "L", 2: "H, W", 3: "D, H, W"}


class Resolved:
    """A forward convolution's arguments as cudnnconv takes them: ``padding`` a tuple of ints, and
    ``pre_pad`` the (left, right) amounts per spatial dim, last dim first, as torch.nn.functional.pad
    takes them, or None where the input needs no explicit pad."""
    __slots__ = ("stride", "padding", "dilation", "groups", "pre_pad")

    def __init__(self, stride, padding, dilation, groups, pre_pad):
        self.stride, self.padding, self.dilation, self.groups, self.pre_pad = stride, padding, dilation, groups, \
            pre_pad

    def __eq__(self, other):
        return isinstance(other, Resolved) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self):
        return "Resolved(stride=%s, padding=%s, dilation=%s, groups=%d, pre_pad=%s)" % (
            self.stride, self.padding, self.dilation, self.groups, self.pre_pad)


def _groups(groups):
    if isinstance(groups, bool) or not isinstance(groups, int):
        raise TypeError("groups must be an int, got %r" % (groups,))
    if groups < 1:
        raise ValueError("groups must be positive, got %d" % groups)
    return groups


def conv_args(nsp, kernel, stride, padding, dilation, groups):
    """``Resolved`` arguments of a forward convolution over ``nsp`` spatial dims with kernel sizes
    ``kernel``.  padding='same' needs stride 1 (as in PyTorch)."""
    if len(kernel) != nsp:
        raise ValueError("a %d-d convolution needs a weight with %d kernel dims, got %d" % (nsp, nsp, len(kernel)))
    stride = geometry.spatial_tuple(stride, nsp, "stride", 1)
    dilation = geometry.spatial_tuple(dilation, nsp, "dilation", 1)
    groups = _groups(groups)
    if isinstance(padding, str):
        if padding == "valid":
            return Resolved(stride, (0,) * nsp, dilation, groups, None)
        if padding != "same":
            raise ValueError("padding must be an int, a tuple, 'valid' or 'same', got %r" % padding)
        if any(s != 1 for s in stride):
            raise ValueError("padding='same' is not supported for strided convolutions (stride=%s)" % (stride,))
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        if all(t % 2 == 0 for t in totals):
            return Resolved(stride, tuple(t // 2 for t in totals), dilation, groups, None)
        pre = []
        for t in reversed(totals):            # F.pad order: the last dim first
            pre += [t // 2, t - t // 2]
        return Resolved(stride, (0,) * nsp, dilation, groups, tuple(pre))
    return Resolved(stride, geometry.spatial_tuple(padding, nsp, "padding", 0), dilation, groups, None)


def transpose_args(nsp, stride, padding, output_padding, groups, dilation):
    """(stride, padding, output_padding, groups, dilation) of a transposed convolution, checked."""
    if isinstance(padding, str):
        raise ValueError("conv_transpose%dd takes integer padding, got %r" % (nsp, padding))
    return (geometry.spatial_tuple(stride, nsp, "stride", 1), geometry.spatial_tuple(padding, nsp, "padding", 0),
            geometry.spatial_tuple(output_padding, nsp, "output_padding", 0), _groups(groups),
            geometry.spatial_tuple(dilation, nsp, "dilation", 1))


def check_ndim(nsp, shape, name):
    """A ``nsp``-d convolution takes (N, C, *spatial) inputs: refuse other ranks by name (PyTorch's
    unbatched (C, *spatial) form is not taken)."""
    if len(shape) != nsp + 2:
        raise ValueError("%s must be %d-d (N, C, %s) for a %d-d convolution, got shape %s"
                         % (name, nsp + 2, SPATIAL_NAMES[nsp], nsp, tuple(shape)))


def conv_output_shape(x_shape, w_shape, r):
    """The output shape of a forward convolution with ``Resolved`` arguments ``r`` (after pre_pad)."""
    return geometry.conv_geometry(x_shape, w_shape, r.stride, r.padding, r.dilation, r.groups)[1]


def padded_shape(x_shape, pre_pad):
    """``x_shape`` after torch.nn.functional.pad by ``pre_pad`` (last dim first)."""
    if not pre_pad:
        return tuple(x_shape)
    s = list(x_shape)
    for i in range(len(pre_pad) // 2):
        s[len(s) - 1 - i] += pre_pad[2 * i] + pre_pad[2 * i + 1]
    return tuple(s)


def transpose_output_shape(x_shape, w_shape, stride, padding, output_padding, groups, dilation):
    return geometry.transpose_geometry(x_shape, w_shape, stride, padding, output_padding, groups, dilation)[1]


def conversion_plan(modules, reverse=False):
    """[(name, class name)] of the modules to swap: ``modules`` is (name, module class) pairs, as
    ``named_modules()`` gives with type().  Forward: exactly torch.nn's convolution classes.
    Reverse: exactly cudnnconv.torch's.  Subclasses are left alone (they may override forward)."""
    home = OUR_MODULE if reverse else TORCH_MODULE
    return [(name, cls.__name__) for name, cls in modules
            if cls.__name__ in CONVERSIONS and getattr(cls, "__module__", None) == home]


_MEMO = {}
MEMO_MAX = 4096               # signatures kept; the memo starts over when full


def _plain(v):
    t = type(v)
    if t is int or t is str:
        return True
    if t is not tuple:
        return False
    for e in v:                # a loop, not all(genexpr): this runs three times a call
        if type(e) is not int:
            return False
    return True


def _remember(key, value):
    """``value``, kept under ``key`` unless that is None (a signature that is not plain)."""
    if key is not None:
        if len(_MEMO) >= MEMO_MAX:
            _MEMO.clear()
        _MEMO[key] = value
    return value


def forward_plan(nsp, x_shape, w_shape, stride, padding, dilation, groups):
    """(``Resolved``, output shape) of a forward convolution of an input of ``x_shape`` (before
    any pre_pad) and a weight of ``w_shape`` (int tuples, such as torch.Size); memoized per plain
    signature."""
    plain = _plain(stride) and _plain(padding) and _plain(dilation) and type(groups) is int
    key = ("forward", nsp, x_shape, w_shape, stride, padding, dilation, groups) if plain else None
    got = _MEMO.get(key)
    if got is not None:
        return got
    check_ndim(nsp, x_shape, "input")
    r = conv_args(nsp, tuple(w_shape[2:]), stride, padding, dilation, groups)
    return _remember(key, (r, conv_output_shape(padded_shape(x_shape, r.pre_pad), w_shape, r)))


def transpose_plan(nsp, x_shape, w_shape, stride, padding, output_padding, groups, dilation):
    """((stride, padding, output_padding, groups, dilation), output shape) of a transposed
    convolution; memoized per plain signature."""
    plain = _plain(stride) and _plain(padding) and _plain(output_padding) and _plain(dilation) and \
        type(groups) is int
    key = ("transpose", nsp, x_shape, w_shape, stride, padding, output_padding, groups, dilation) if plain else None
    got = _MEMO.get(key)
    if got is not None:
        return got
    check_ndim(nsp, x_shape, "input")
    args = transpose_args(nsp, stride, padding, output_padding, groups, dilation)
    return _remember(key, (args, transpose_output_shape(x_shape, w_shape, *args)))
