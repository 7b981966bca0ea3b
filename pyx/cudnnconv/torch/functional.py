"""torch.nn.functional's convolutions through cudnnconv, with autograd.

Each function takes the arguments of its torch.nn.functional namesake (and the unbatched
(C, *spatial) input it takes) and returns a torch tensor.  The backward runs cudnnconv's backward
functions: the input gradient through ``conv_backward_input`` (a transposed convolution's through
``conv``), the weight gradient through ``conv_backward_weight``, the bias gradient as a sum over
the gradient; each only where ``ctx.needs_input_grad`` asks for it.  Double backward is refused
(``once_differentiable``: "trying to differentiate twice a function that was marked with
@once_differentiable").

A call that needs no gradient (under ``torch.no_grad()``, or with no argument that requires grad)
runs the convolution directly, without an autograd.Function: its output is the same tensor the
Function's forward makes, with no ``grad_fn``, and inference pays none of autograd's per-call cost.

A forward convolution that records autograd (``conv1d/2d/3d`` and the modules) gets a C++ autograd
node, ``cudnnconv.torch.conv_node``, where it was built (setup.py builds it where torch imports at
build time): the convolution runs here, and ``conv_node.record`` adds the bias, saves x and w and
makes the node the output's grad_fn ("CudnnConvBackward").  Its backward is PyTorch's own kind of
node, entered by the autograd engine with no Python in between, and runs the two gradient
convolutions through the typed backward (``cudnnconv.torch.typed``); it computes what ``_Conv``'s
backward computes, and refuses double backward the same way.  ``use_autograd_node(False)`` (and a
torch other than the one it was built for) records ``_Conv`` instead.  docs/torch.md has the costs.

A call that records autograd through a Function runs it through torch's C entry (``_c_apply``),
without Function.apply's Python layer.  A call under forward-mode AD or a functorch transform
(``torch.func``), or with a functorch-wrapped argument, takes ``Function.apply``, which refuses
what it does not support with torch's own clear error.

A forward convolution (``conv1d/2d/3d`` and the modules) is first offered to the typed forward,
``cudnnconv.torch.typed``, which does this module's checks, route, argument resolution, output
allocation and flags in C for a repeated call and returns None for anything else; then this
module's Python path runs it (``_conv``).  Each convolution first tries the typed path for tensors
(``bridge.run``), then the public function on CuPy views; a bias is added after the convolution as PyTorch's own convolutions add it
(``_add_bias``), so calls with a bias take the typed path too.

Autocast: under ``torch.autocast("cuda")`` each function first casts its floating-point CUDA
tensors (not float64 ones) to autocast's dtype, as autocast does for PyTorch's own convolutions, so
a converted model trains in mixed precision as it did before; the casts are autograd ops, and
float32 master weights get float32 gradients.

torch.compile: the functions are ``torch.compiler.disable``d, so a compiled model breaks its graph
at each convolution and runs it eagerly here (docs/torch.md says why).  The wrapper costs about a
microsecond a call; calling a disabled twin only while dynamo traces would save it, but dynamo then
traces the function's own frame, guards on its arguments' shapes and compiles it again for every
convolution shape, up to its recompile limit.  The modules, whose forward dynamo traces anyway,
do call the typed forward directly when not compiling (modules.py).
"""
import torch
from torch.autograd.function import once_differentiable

import cudnnconv
from cudnnconv import activations
from cudnnconv import torch_rules as rules
from cudnnconv.params import check_bias as _check_bias_shape, finite_real as _finite_real
import cudnnconv.torch.bridge as bridge
import cudnnconv.torch.typed as _typed

try:
    import cudnnconv.torch.conv_node as _conv_node
    _conv_node.configure(_typed.backward_capsule())
    NODE_UNAVAILABLE = None
except ImportError as _e:          # not built (no torch at build time), or built for another torch
    _conv_node, NODE_UNAVAILABLE = None, "cudnnconv.torch.conv_node does not import: %s" % _e
_RECORD = None if _conv_node is None else _conv_node.record

_pad = torch.nn.functional.pad
_grad_enabled = torch.is_grad_enabled
_forward_ad = torch.autograd.forward_ad
_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


_wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
_is_autocast = torch.is_autocast_enabled
_get_autocast_dtype = getattr(torch, "get_autocast_dtype", None)
try:
    _is_autocast("cuda")
    _PER_DEVICE_AUTOCAST = _get_autocast_dtype is not None
except TypeError:                  # a torch whose autocast queries take no device (CUDA's then)
    _PER_DEVICE_AUTOCAST = False


def _autocast_dtype():
    """The dtype ``torch.autocast("cuda")`` runs convolutions in here, or None where it is off."""
    if _PER_DEVICE_AUTOCAST:
        return _get_autocast_dtype("cuda") if _is_autocast("cuda") else None
    return torch.get_autocast_gpu_dtype() if _is_autocast() else None


_any_autocast = getattr(torch._C, "_is_any_autocast_enabled", None)


def _autocast_on():
    """Whether an autocast is on (any device's, where torch can say so cheaply: the typed forward
    then leaves the call to the Python path, which casts as autocast does for CUDA)."""
    return _any_autocast() if _any_autocast is not None else _autocast_dtype() is not None


def _autocast(t, dtype):
    """``t`` as autocast hands it to a convolution: a floating-point tensor other than float64 in
    ``dtype`` (through ``Tensor.to``, an autograd op), anything else as it is."""
    if t is None or t.dtype == dtype or t.dtype == torch.float64 or not t.is_floating_point():
        return t
    return t.to(dtype)


def _in_autocast_dtype(*tensors):
    """``tensors`` as a convolution under autocast takes them (``_autocast``), or as they are where
    autocast is off."""
    dtype = _autocast_dtype()
    if dtype is None:
        return tensors
    return tuple(_autocast(t, dtype) for t in tensors)


NO_GRAD, DIRECT, TRANSFORMED = 0, 1, 2


def _route(*tensors):
    """How the call runs: ``NO_GRAD`` (grad mode off, or no argument requires grad: the convolution
    alone), ``TRANSFORMED`` (forward-mode AD or a functorch transform is active, or an argument is
    a functorch wrapper: the autograd.Function through ``Function.apply``, which handles them; a
    dual or wrapped tensor must never reach cudnnconv as plain memory) or ``DIRECT`` (the
    autograd.Function through its C entry, ``_c_apply``)."""
    if getattr(_forward_ad, "_current_level", -1) >= 0 or _transforms_active():
        return TRANSFORMED
    if _wrapped is not None:
        for t in tensors:
            if t is not None and _wrapped(t):
                return TRANSFORMED
    if not _grad_enabled():
        return NO_GRAD
    for t in tensors:
        if t is not None and t.requires_grad:
            return DIRECT
    return NO_GRAD


def _needs_grad(*tensors):
    """Whether the call goes through its autograd.Function (``_route`` is not ``NO_GRAD``)."""
    return _route(*tensors) != NO_GRAD


def _c_apply(cls):
    """``cls.apply`` without its Python layer: torch's C entry bound to ``cls``.  Function.apply's
    Python layer binds default arguments where a ``setup_context`` is defined (these Functions
    define none), routes functorch transforms (``_route`` sends those to it) and unwraps dead
    functorch wrappers (a wrapper is sent there too); it costs about a third of the apply.  Where
    this torch has no such entry, ``cls.apply``."""
    entry = getattr(torch._C, "_FunctionBase", None)
    entry = None if entry is None else entry.__dict__.get("apply")
    return cls.apply if entry is None else entry.__get__(None, cls)


def _bias_grad(g, needed):
    return g.sum(dim=[d for d in range(g.dim()) if d != 1]) if needed else None


def _check_bias(b, x, k):
    """The checks cudnnconv's public functions make of a bias, made here because ``_add_bias`` adds
    it with torch (whose broadcasting would take a bias of another shape): the input's dtype, and
    shape (k,) (``params.check_bias``, the public functions' own); the same errors and messages."""
    if b is None:
        return
    if b.dtype != x.dtype:
        raise TypeError("bias has dtype %s but input has dtype %s: all arrays must share one dtype"
                        % (bridge.dtype_name(b), bridge.dtype_name(x)))
    _check_bias_shape(b, k)


def _add_bias(y, b):
    """y += b over the channel dim, as PyTorch's own convolutions add it (one kernel, after the
    convolution; cudnnconv's full path adds it the same way), so that every call with a bias still
    takes the typed path."""
    if b is not None:
        y.add_(b.view((1, -1) + (1,) * (y.dim() - 2)))
    return y


# The public function of each typed-path spec, called on CuPy views with its arguments in its own order.
_PUBLIC = {
    "conv": lambda cc, a, s, out, kw: cc.conv(*a, *s, out=out, **kw),
    "conv_transpose": lambda cc, a, s, out, kw: cc.conv_transpose(*a, *s, out=out, **kw),
    "conv_backward_input": lambda cc, a, s, out, kw: cc.conv_backward_input(s[0], *a, *s[1:], out=out, **kw),
    "conv_backward_weight": lambda cc, a, s, out, kw: cc.conv_backward_weight(a[0], s[0], a[1], *s[1:], out=out,
                                                                              **kw),
}


def _convolve(spec, tensors, out, scalars, flags):
    """``spec``'s call on ``tensors`` with ``scalars`` (the public function's, a backward function's
    shape argument a tuple), writing ``out``: the typed path (``bridge.run``), else the public
    function on CuPy views over the tensors, on torch's stream.  Returns ``out``."""
    if not bridge.run(spec, tensors, out, scalars, flags, out.get_device()):
        with bridge.on_torch_stream(out):
            _PUBLIC[spec.name](cudnnconv, [None if t is None else bridge.as_array(t) for t in tensors], scalars,
                               bridge.as_array(out), bridge.flag_kwargs(flags))
    return out


def _conv_grads(x, w, g, r, flags, need):
    """(input gradient, weight gradient) of the convolution of x and w with ``Resolved`` arguments r,
    from its output gradient g (dense), each None unless need[0] / need[1] asks for it."""
    gx = gw = None
    geom = _grad_geom(x, w, r)
    if need[0]:
        gx = _convolve(bridge.BACKWARD_INPUT, (w, g), torch.empty_like(x), geom[0], flags)
    if need[1]:
        gw = _convolve(bridge.BACKWARD_WEIGHT, (x, g), torch.empty_like(w), geom[1], flags)
    return gx, gw


def _grad_geom(x, w, r):
    """The scalars of the input and the weight gradient calls of the convolution of x and w with
    ``Resolved`` arguments r: what ``_conv_grads`` passes, and the C++ node's ``geom`` (the typed
    forward's memo builds it here too, once per entry)."""
    tail = (r.stride, r.padding, r.dilation, r.groups)
    return (tuple(x.shape),) + tail, (tuple(w.shape),) + tail


def _conv_out(x, w, b, r, shape, flags):
    """The forward convolution into a new torch tensor of ``shape`` (the bias added by ``_add_bias``)."""
    y = _convolve(bridge.CONV, (x, w, None), bridge.empty_like_layout(shape, x, w),
                  (r.stride, r.padding, r.dilation, r.groups), flags)
    return _add_bias(y, b)


class _Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, r, shape):
        flags = bridge.call_flags()
        y = _conv_out(x, w, b, r, shape, flags)
        ctx.save_for_backward(x, w)
        ctx.r, ctx.flags = r, flags
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        r, flags = ctx.r, ctx.flags
        need = ctx.needs_input_grad
        gy = bridge.dense(gy, x)
        gx, gw = _conv_grads(x, w, gy, r, flags, need)
        return gx, gw, _bias_grad(gy, need[2]), None, None


def _conv_transpose_out(x, w, b, args, shape, flags):
    """The transposed convolution into a new torch tensor of ``shape``."""
    return _add_bias(_convolve(bridge.TRANSPOSE, (x, w, None), bridge.empty_like_layout(shape, x, w), args, flags), b)


class _ConvTranspose(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, args, shape):
        flags = bridge.call_flags()
        y = _conv_transpose_out(x, w, b, args, shape, flags)
        ctx.save_for_backward(x, w)
        ctx.args, ctx.flags = args, flags
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        # y = conv_transpose(x, w) is the input gradient of the convolution conv(y, w) -> x, so
        # dx = conv(gy, w) and dw = conv_backward_weight(gy, w.shape, x), both with that convolution's geometry.
        x, w = ctx.saved_tensors
        stride, padding, opad, groups, dilation = ctx.args
        flags = ctx.flags
        need = ctx.needs_input_grad
        gy = bridge.dense(gy, x)
        gx = gw = None
        if need[0]:
            gx = _convolve(bridge.CONV, (gy, w, None), torch.empty_like(x), (stride, padding, dilation, groups), flags)
        if need[1]:
            gw = _convolve(bridge.BACKWARD_WEIGHT, (gy, x), torch.empty_like(w),
                           (tuple(w.shape), stride, padding, dilation, groups), flags)
        return gx, gw, _bias_grad(gy, need[2]), None, None


def _fused_out(x, w, z, bias, alpha, r, shape, flags):
    """relu(conv(x, w) + alpha * z + bias) into a new torch tensor of ``shape``."""
    y = bridge.empty_like_layout(shape, x, w)
    with bridge.on_torch_stream(x):
        cudnnconv.conv_bias_add_relu(bridge.as_array(x), bridge.as_array(w), bridge.as_array(z), alpha,
                                     None if bias is None else bridge.as_array(bias), r.stride, r.padding,
                                     r.dilation, r.groups, out=bridge.as_array(y), **bridge.flag_kwargs(flags))
    return y


class _ConvBiasAddRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, z, bias, alpha, r, shape):
        flags = bridge.call_flags()
        y = _fused_out(x, w, z, bias, alpha, r, shape, flags)
        ctx.save_for_backward(x, w, y)
        ctx.r, ctx.flags, ctx.alpha = r, flags, alpha
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        x, w, y = ctx.saved_tensors
        r, flags = ctx.r, ctx.flags
        need = ctx.needs_input_grad
        g = bridge.dense(gy * (y > 0), x)               # through the relu
        gx, gw = _conv_grads(x, w, g, r, flags, need)
        gz = g * ctx.alpha if need[2] else None
        return gx, gw, gz, _bias_grad(g, need[3]), None, None, None


def torch_activation(act):
    """The activation as PyTorch's own function of the pre-activation (``act``: canonical); also
    what bench/epilogue.py times as PyTorch's sequence."""
    TF, p = torch.nn.functional, act.params
    return {
        "identity": lambda v: v, "relu": TF.relu, "leaky_relu": lambda v: TF.leaky_relu(v, p[0] if p else 0.01),
        "elu": lambda v: TF.elu(v, p[0] if p else 1.0), "gelu": TF.gelu,
        "gelu_tanh": lambda v: TF.gelu(v, approximate="tanh"), "silu": TF.silu, "sigmoid": torch.sigmoid,
        "tanh": torch.tanh, "clamp": lambda v: torch.clamp(v, p[0], p[1]) if p else v,
    }[act.name]


def torch_activation_grad(act, g, saved):
    """``g * act'(pre)``, with ``saved`` the output where ``activations.needs`` says "output" and the
    pre-activation otherwise, in PyTorch's own backward kernels (what its autograd runs, and what
    bench/epilogue.py times)."""
    aten, name, p = torch.ops.aten, act.name, act.params
    if name == "identity":
        return g
    if name == "relu":
        return aten.threshold_backward(g, saved, 0)
    if name == "leaky_relu":
        return aten.leaky_relu_backward(g, saved, p[0], p[0] >= 0)          # from the output where it may
    if name == "elu":
        return aten.elu_backward(g, p[0], 1, 1, p[0] > 0, saved)
    if name == "clamp":
        return aten.hardtanh_backward(g, saved, p[0], p[1])
    if name == "sigmoid":
        return aten.sigmoid_backward(g, saved)
    if name == "tanh":
        return aten.tanh_backward(g, saved)
    if name in ("gelu", "gelu_tanh"):
        return aten.gelu_backward(g, saved, approximate="tanh" if name == "gelu_tanh" else "none")
    return aten.silu_backward(g, saved)


def _epilogue_out(x, w, z, bias, act, alpha1, alpha2, r, shape, flags):
    """act(alpha1 * conv(x, w) + alpha2 * z + bias) into a new torch tensor of ``shape``."""
    y = bridge.empty_like_layout(shape, x, w)
    with bridge.on_torch_stream(x):
        cudnnconv.conv_epilogue(bridge.as_array(x), bridge.as_array(w), None if bias is None else bridge.as_array(bias),
                                r.stride, r.padding, r.dilation, r.groups,
                                z=None if z is None else bridge.as_array(z), act=act, alpha1=alpha1, alpha2=alpha2,
                                out=bridge.as_array(y), **bridge.flag_kwargs(flags))
    return y


class _ConvAct(torch.autograd.Function):
    """act(alpha1 * conv(x, w) + alpha2 * z + bias) with autograd.  Where the activation's derivative
    follows from its output (relu, leaky_relu with a slope of 0 or more, elu with a positive alpha,
    clamp, sigmoid, tanh), the forward is one fused call and the output is saved; otherwise the
    forward fuses everything but the activation, saves the pre-activation, and applies the
    activation with PyTorch's own function.  The backward: ``g_pre = g * act'(...)`` in PyTorch's
    backward kernel, then the input and weight gradients of ``alpha1 * g_pre``, z's ``alpha2 * g_pre``
    and the bias's sum of ``g_pre``."""

    @staticmethod
    def forward(ctx, x, w, z, bias, act, alpha1, alpha2, r, shape):
        flags = bridge.call_flags()
        if activations.needs(act) in (None, "output"):
            y = _epilogue_out(x, w, z, bias, act, alpha1, alpha2, r, shape, flags)
            saved = y
        else:
            saved = _epilogue_out(x, w, z, bias, None, alpha1, alpha2, r, shape, flags)
            y = torch_activation(act)(saved)
        ctx.save_for_backward(x, w, saved)
        ctx.r, ctx.flags, ctx.act, ctx.alpha1, ctx.alpha2 = r, flags, act, alpha1, alpha2
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        x, w, saved = ctx.saved_tensors
        need = ctx.needs_input_grad
        g = bridge.dense(torch_activation_grad(ctx.act, gy, saved), x)
        gs = g if ctx.alpha1 == 1.0 else g * ctx.alpha1
        gx, gw = _conv_grads(x, w, gs, ctx.r, ctx.flags, need)
        gz = (g if ctx.alpha2 == 1.0 else g * ctx.alpha2) if need[2] else None
        return gx, gw, gz, _bias_grad(g, need[3]), None, None, None, None, None


_CONV_APPLY, _TRANSPOSE_APPLY = _c_apply(_Conv), _c_apply(_ConvTranspose)


def configure_typed(**overrides):
    """Hand cudnnconv.torch.typed the objects and functions its forward calls: this module's, with
    ``overrides`` (CPU tests hand over stand-ins for the CUDA calls, and ``cuda_only=False``)."""
    conf = dict(Tensor=torch.Tensor, Parameter=torch.nn.Parameter, strided=torch.strided, dtypes=bridge._STRIDED,
                grad_enabled=_grad_enabled, forward_ad=_forward_ad, transforms_active=_transforms_active,
                wrapped=_wrapped, autocast_on=_any_autocast or _autocast_on, flag_getters=bridge.FLAG_GETTERS,
                call_flags=bridge.call_flags, raw_stream=bridge.raw_stream, run_strided=bridge._run_strided,
                conv_spec=bridge.CONV, input_grad_spec=bridge.BACKWARD_INPUT,
                weight_grad_spec=bridge.BACKWARD_WEIGHT, convolve=_convolve, forward_plan=rules.forward_plan,
                out_strides=bridge.out_strides, grad_geom=_grad_geom, record=_RECORD)
    conf.update(overrides)
    _typed.configure(**conf)


configure_typed()
_typed_forward = _typed.forward


def use_autograd_node(on=True):
    """Record forward convolutions with the C++ autograd node (``on``, the default where it is
    built) or with the Python autograd.Function ``_Conv`` (for a comparison: bench/torch_train.py
    measures both).  Returns whether the node is in use; asking for it where it is not built raises
    RuntimeError with the reason (``NODE_UNAVAILABLE``)."""
    global _RECORD
    if on and _conv_node is None:
        raise RuntimeError(NODE_UNAVAILABLE)
    _RECORD = _conv_node.record if on else None
    _typed.set_record(_RECORD)
    return _RECORD is not None


def autograd_node():
    """Whether forward convolutions that record autograd get the C++ node (``use_autograd_node``)."""
    return _RECORD is not None


def _batched(nsp, input):
    """(input with a batch dim, whether one was added): the unbatched (C, *spatial) form (the rank is
    checked with the arguments, torch_rules.forward_plan / transpose_plan)."""
    if input.dim() == nsp + 1:
        return input.unsqueeze(0), True
    return input, False


def _checked(nsp, input, weight, bias):
    """(input with a batch dim, weight, bias, whether a batch dim was added), once the three
    tensors are checked, each in autocast's dtype where autocast is on."""
    bridge.check_tensor(input, "input")
    bridge.check_tensor(weight, "weight")
    if bias is not None:
        bridge.check_tensor(bias, "bias")
    input, weight, bias = _in_autocast_dtype(input, weight, bias)
    x, added = _batched(nsp, input)
    return x, weight, bias, added


def _dispatch(fn, c_apply, out, x, weight, bias, args, shape, geom=None):
    """The call of autograd.Function ``fn`` (``c_apply``: its C entry) or, where no gradient is
    recorded, of ``out`` alone, as ``_route`` says; where ``geom`` (``_grad_geom``) is given and
    the C++ node is in use, ``out`` recorded by the node in place of ``fn``."""
    route = _route(x, weight, bias)
    if route == DIRECT:
        if geom is not None and _RECORD is not None:
            flags = bridge.call_flags()
            return _RECORD(x, weight, bias, out(x, weight, None, args, shape, flags), geom(x, weight, args), flags)
        return c_apply(x, weight, bias, args, shape)
    if route == TRANSFORMED:
        return fn.apply(x, weight, bias, args, shape)
    return out(x, weight, bias, args, shape, bridge.call_flags())


def _conv(nsp, input, weight, bias, stride, padding, dilation, groups):
    y = _typed_forward(nsp, input, weight, bias, stride, padding, dilation, groups, _CONV_APPLY)
    if y is not None:
        return y
    x, weight, bias, added = _checked(nsp, input, weight, bias)
    r, shape = rules.forward_plan(nsp, x.shape, weight.shape, stride, padding, dilation, groups)
    _check_bias(bias, x, shape[1])
    if r.pre_pad is not None:                    # 'same' with an odd total: PyTorch's extra element at the end
        x = _pad(x, r.pre_pad)
    y = _dispatch(_Conv, _CONV_APPLY, _conv_out, x, weight, bias, r, shape, _grad_geom)
    return y.squeeze(0) if added else y


def _conv_transpose(nsp, input, weight, bias, stride, padding, output_padding, groups, dilation):
    x, weight, bias, added = _checked(nsp, input, weight, bias)
    args, shape = rules.transpose_plan(nsp, x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    _check_bias(bias, x, shape[1])
    if any(o >= s for o, s in zip(args[2], args[0])) and torch.is_grad_enabled() and (
            input.requires_grad or weight.requires_grad):
        raise NotImplementedError("output_padding %s not smaller than stride %s: its backward is not supported"
                                  % (args[2], args[0]))
    y = _dispatch(_ConvTranspose, _TRANSPOSE_APPLY, _conv_transpose_out, x, weight, bias, args, shape)
    return y.squeeze(0) if added else y


@torch.compiler.disable
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv1d through cudnnconv."""
    return _conv(1, input, weight, bias, stride, padding, dilation, groups)


@torch.compiler.disable
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv2d through cudnnconv."""
    return _conv(2, input, weight, bias, stride, padding, dilation, groups)


@torch.compiler.disable
def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv3d through cudnnconv."""
    return _conv(3, input, weight, bias, stride, padding, dilation, groups)


@torch.compiler.disable
def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """torch.nn.functional.conv_transpose1d through cudnnconv."""
    return _conv_transpose(1, input, weight, bias, stride, padding, output_padding, groups, dilation)


@torch.compiler.disable
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """torch.nn.functional.conv_transpose2d through cudnnconv."""
    return _conv_transpose(2, input, weight, bias, stride, padding, output_padding, groups, dilation)


@torch.compiler.disable
def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """torch.nn.functional.conv_transpose3d through cudnnconv."""
    return _conv_transpose(3, input, weight, bias, stride, padding, output_padding, groups, dilation)


def _residual_args(fn, input, weight, z, bias, stride, padding, dilation, groups, required=("input", "weight")):
    """The checks and argument resolution conv_bias_add_relu and conv_act share: the tensors (z
    and the bias where given), autocast, and the geometry, which must not need an asymmetric
    'same' pre-pad; ``required``: the tensors that may not be None.  Returns (input, weight, z,
    bias, the resolved arguments, the output shape)."""
    for t, name in ((input, "input"), (weight, "weight"), (z, "z"), (bias, "bias")):
        if t is not None or name in required:
            bridge.check_tensor(t, name)
    input, weight, z, bias = _in_autocast_dtype(input, weight, z, bias)
    r, shape = rules.forward_plan(weight.dim() - 2, input.shape, weight.shape, stride, padding, dilation, groups)
    if r.pre_pad is not None:
        raise ValueError("%s takes padding='same' only where it is symmetric; give explicit ints" % fn)
    return input, weight, z, bias, r, shape


@torch.compiler.disable
def conv_bias_add_relu(input, weight, z, alpha, bias, stride=1, padding=0, dilation=1, groups=1):
    """relu(conv(input, weight) + alpha * z + bias), fused where cuDNN can (as
    ``torch.cudnn_convolution_add_relu``), with autograd through input, weight, z and bias."""
    input, weight, z, bias, r, shape = _residual_args("conv_bias_add_relu", input, weight, z, bias, stride, padding,
                                                      dilation, groups, required=("input", "weight", "z"))
    if _needs_grad(input, weight, z, bias):
        return _ConvBiasAddRelu.apply(input, weight, z, bias, float(alpha), r, shape)
    return _fused_out(input, weight, z, bias, float(alpha), r, shape, bridge.call_flags())


@torch.compiler.disable
def conv_act(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, z=None, act=None,
             alpha1=1.0, alpha2=1.0):
    """act(alpha1 * conv(input, weight) + alpha2 * z + bias) through ``cudnnconv.conv_epilogue``
    (fused where cuDNN can), with autograd through input, weight, z and bias (``_ConvAct`` says
    what the forward saves).  ``act``: as ``cudnnconv.conv_epilogue`` takes it."""
    a = activations.activation(act)
    alpha1, alpha2 = _finite_real("alpha1", alpha1), _finite_real("alpha2", alpha2)
    input, weight, z, bias, r, shape = _residual_args("conv_act", input, weight, z, bias, stride, padding, dilation,
                                                      groups)
    if _needs_grad(input, weight, z, bias):
        return _ConvAct.apply(input, weight, z, bias, a, alpha1, alpha2, r, shape)
    return _epilogue_out(input, weight, z, bias, a, alpha1, alpha2, r, shape, bridge.call_flags())
