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

A call that records autograd runs its Function through torch's C entry (``_c_apply``), without
Function.apply's Python layer.  A call under forward-mode AD or a functorch transform
(``torch.func``), or with a functorch-wrapped argument, takes ``Function.apply``, which refuses
what it does not support with torch's own clear error.

Each convolution first tries the typed path for tensors (``bridge.run``), then the public function
on CuPy views; a bias is added after the convolution as PyTorch's own convolutions add it
(``_add_bias``), so calls with a bias take the typed path too.

torch.compile: the functions are ``torch.compiler.disable``d, so a compiled model breaks its graph
at each convolution and runs it eagerly here (docs/torch.md says why).  The wrapper costs about a
microsecond a call; calling a disabled twin only while dynamo traces would save it, but dynamo then
traces the function's own frame, guards on its arguments' shapes and compiles it again for every
convolution shape, up to its recompile limit.
"""
import torch
from torch.autograd.function import once_differentiable

import cudnnconv
from cudnnconv import torch_rules as rules
import cudnnconv.torch.bridge as bridge

_pad = torch.nn.functional.pad
_grad_enabled = torch.is_grad_enabled
_forward_ad = torch.autograd.forward_ad
_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


_wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
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
    it with torch (whose broadcasting would take a bias of another shape): shape (k,), the input's
    dtype; the same errors and messages."""
    if b is None:
        return
    if b.dtype != x.dtype:
        raise TypeError("bias has dtype %s but input has dtype %s: all arrays must share one dtype"
                        % (bridge.dtype_name(b), bridge.dtype_name(x)))
    if b.dim() != 1 or b.shape[0] != k:
        raise ValueError("bias must have shape (%d,) (one value per output channel), got %s" % (k, tuple(b.shape)))


def _add_bias(y, b):
    """y += b over the channel dim, as PyTorch's own convolutions add it (one kernel, after the
    convolution; cudnnconv's full path adds it the same way), so that every call with a bias still
    takes the typed path."""
    if b is not None:
        y.add_(b.view((1, -1) + (1,) * (y.dim() - 2)))
    return y


def _conv_grads(x, w, g, r, flags, need):
    """(input gradient, weight gradient) of the convolution of x and w with ``Resolved`` arguments r,
    from its output gradient g (dense), each None unless need[0] / need[1] asks for it."""
    gx = gw = None
    index = g.get_device()
    if need[0]:
        gx = torch.empty_like(x)
        if not bridge.run(bridge.BACKWARD_INPUT, (w, g), gx, (tuple(x.shape), r.stride, r.padding, r.dilation,
                                                               r.groups), flags, index):
            with bridge.on_torch_stream(g):
                cudnnconv.conv_backward_input(x.shape, bridge.as_array(w), bridge.as_array(g), r.stride, r.padding,
                                              r.dilation, r.groups, out=bridge.as_array(gx), **bridge.flag_kwargs(flags))
    if need[1]:
        gw = torch.empty_like(w)
        if not bridge.run(bridge.BACKWARD_WEIGHT, (x, g), gw, (tuple(w.shape), r.stride, r.padding, r.dilation,
                                                                r.groups), flags, index):
            with bridge.on_torch_stream(g):
                cudnnconv.conv_backward_weight(bridge.as_array(x), w.shape, bridge.as_array(g), r.stride, r.padding,
                                               r.dilation, r.groups, out=bridge.as_array(gw), **bridge.flag_kwargs(flags))
    return gx, gw


def _conv_out(x, w, b, r, shape, flags):
    """The forward convolution into a new torch tensor of ``shape`` (the bias added by ``_add_bias``)."""
    y = bridge.empty_like_layout(shape, x, w)
    if not bridge.run(bridge.CONV, (x, w, None), y, (r.stride, r.padding, r.dilation, r.groups), flags,
                      x.get_device()):
        with bridge.on_torch_stream(x):
            cudnnconv.conv(bridge.as_array(x), bridge.as_array(w), None, r.stride, r.padding, r.dilation, r.groups,
                           out=bridge.as_array(y), **bridge.flag_kwargs(flags))
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
    y = bridge.empty_like_layout(shape, x, w)
    if not bridge.run(bridge.TRANSPOSE, (x, w, None), y, args, flags, x.get_device()):
        stride, padding, opad, groups, dilation = args
        with bridge.on_torch_stream(x):
            cudnnconv.conv_transpose(bridge.as_array(x), bridge.as_array(w), None, stride, padding, opad, groups,
                                     dilation, out=bridge.as_array(y), **bridge.flag_kwargs(flags))
    return _add_bias(y, b)


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
        index = gy.get_device()
        if need[0]:
            gx = torch.empty_like(x)
            if not bridge.run(bridge.CONV, (gy, w, None), gx, (stride, padding, dilation, groups), flags, index):
                with bridge.on_torch_stream(gy):
                    cudnnconv.conv(bridge.as_array(gy), bridge.as_array(w), None, stride, padding, dilation, groups,
                                   out=bridge.as_array(gx), **bridge.flag_kwargs(flags))
        if need[1]:
            gw = torch.empty_like(w)
            if not bridge.run(bridge.BACKWARD_WEIGHT, (gy, x), gw, (tuple(w.shape), stride, padding, dilation, groups),
                              flags, index):
                with bridge.on_torch_stream(gy):
                    cudnnconv.conv_backward_weight(bridge.as_array(gy), w.shape, bridge.as_array(x), stride, padding,
                                                   dilation, groups, out=bridge.as_array(gw),
                                                   **bridge.flag_kwargs(flags))
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


_CONV_APPLY, _TRANSPOSE_APPLY = _c_apply(_Conv), _c_apply(_ConvTranspose)


def _batched(nsp, input):
    """(input with a batch dim, whether one was added): the unbatched (C, *spatial) form (the rank is
    checked with the arguments, torch_rules.forward_plan / transpose_plan)."""
    if input.dim() == nsp + 1:
        return input.unsqueeze(0), True
    return input, False


def _conv(nsp, input, weight, bias, stride, padding, dilation, groups):
    bridge.check_tensor(input, "input")
    bridge.check_tensor(weight, "weight")
    if bias is not None:
        bridge.check_tensor(bias, "bias")
    x, added = _batched(nsp, input)
    r, shape = rules.forward_plan(nsp, x.shape, weight.shape, stride, padding, dilation, groups)
    _check_bias(bias, x, shape[1])
    if r.pre_pad is not None:                    # 'same' with an odd total: PyTorch's extra element at the end
        x = _pad(x, r.pre_pad)
    route = _route(x, weight, bias)
    if route == DIRECT:
        y = _CONV_APPLY(x, weight, bias, r, shape)
    elif route == TRANSFORMED:
        y = _Conv.apply(x, weight, bias, r, shape)
    else:
        y = _conv_out(x, weight, bias, r, shape, bridge.call_flags())
    return y.squeeze(0) if added else y


def _conv_transpose(nsp, input, weight, bias, stride, padding, output_padding, groups, dilation):
    bridge.check_tensor(input, "input")
    bridge.check_tensor(weight, "weight")
    if bias is not None:
        bridge.check_tensor(bias, "bias")
    x, added = _batched(nsp, input)
    args, shape = rules.transpose_plan(nsp, x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    _check_bias(bias, x, shape[1])
    if any(o >= s for o, s in zip(args[2], args[0])) and torch.is_grad_enabled() and (
            input.requires_grad or weight.requires_grad):
        raise NotImplementedError("output_padding %s not smaller than stride %s: its backward is not supported"
                                  % (args[2], args[0]))
    route = _route(x, weight, bias)
    if route == DIRECT:
        y = _TRANSPOSE_APPLY(x, weight, bias, args, shape)
    elif route == TRANSFORMED:
        y = _ConvTranspose.apply(x, weight, bias, args, shape)
    else:
        y = _conv_transpose_out(x, weight, bias, args, shape, bridge.call_flags())
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


@torch.compiler.disable
def conv_bias_add_relu(input, weight, z, alpha, bias, stride=1, padding=0, dilation=1, groups=1):
    """relu(conv(input, weight) + alpha * z + bias), fused where cuDNN can (as
    ``torch.cudnn_convolution_add_relu``), with autograd through input, weight, z and bias."""
    for t, name in ((input, "input"), (weight, "weight"), (z, "z")) + (((bias, "bias"),) if bias is not None
                                                                       else ()):
        bridge.check_tensor(t, name)
    nsp = weight.dim() - 2
    r, shape = rules.forward_plan(nsp, input.shape, weight.shape, stride, padding, dilation, groups)
    if r.pre_pad is not None:
        raise ValueError("conv_bias_add_relu takes padding='same' only where it is symmetric; give explicit ints")
    if _needs_grad(input, weight, z, bias):
        return _ConvBiasAddRelu.apply(input, weight, z, bias, float(alpha), r, shape)
    return _fused_out(input, weight, z, bias, float(alpha), r, shape, bridge.call_flags())
