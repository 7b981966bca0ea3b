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

A call under forward-mode AD or a functorch transform (``torch.func``) always takes the
autograd.Function, which refuses what it does not support with torch's own clear error.

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


def _needs_grad(*tensors):
    """Whether the call goes through its autograd.Function: grad mode is on and some argument
    requires grad, or forward-mode AD or a functorch transform is active (a dual or wrapped tensor
    must never reach cudnnconv as plain memory)."""
    if getattr(_forward_ad, "_current_level", -1) >= 0 or _transforms_active():
        return True
    if not _grad_enabled():
        return False
    for t in tensors:
        if t is not None and t.requires_grad:
            return True
    return False


def _bias_grad(g, needed):
    return g.sum(dim=[d for d in range(g.dim()) if d != 1]) if needed else None


def _conv_grads(x, w, g, r, flags, need):
    """(input gradient, weight gradient) of the convolution of x and w with ``Resolved`` arguments r,
    from its output gradient g (dense), each None unless need[0] / need[1] asks for it."""
    gx = gw = None
    with bridge.on_torch_stream(g):
        ga = bridge.as_array(g)
        if need[0]:
            gx = torch.empty_like(x)
            cudnnconv.conv_backward_input(x.shape, bridge.as_array(w), ga, r.stride, r.padding, r.dilation,
                                          r.groups, out=bridge.as_array(gx), **flags)
        if need[1]:
            gw = torch.empty_like(w)
            cudnnconv.conv_backward_weight(bridge.as_array(x), w.shape, ga, r.stride, r.padding, r.dilation,
                                           r.groups, out=bridge.as_array(gw), **flags)
    return gx, gw


def _conv_out(x, w, b, r, shape, flags):
    """The forward convolution into a new torch tensor of ``shape``."""
    y = bridge.empty_like_layout(shape, x, w)
    with bridge.on_torch_stream(x):
        cudnnconv.conv(bridge.as_array(x), bridge.as_array(w), None if b is None else bridge.as_array(b),
                       r.stride, r.padding, r.dilation, r.groups, out=bridge.as_array(y), **flags)
    return y


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
    stride, padding, opad, groups, dilation = args
    y = bridge.empty_like_layout(shape, x, w)
    with bridge.on_torch_stream(x):
        cudnnconv.conv_transpose(bridge.as_array(x), bridge.as_array(w), None if b is None else bridge.as_array(b),
                                 stride, padding, opad, groups, dilation, out=bridge.as_array(y), **flags)
    return y


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
        with bridge.on_torch_stream(gy):
            g = bridge.as_array(gy)
            if need[0]:
                gx = torch.empty_like(x)
                cudnnconv.conv(g, bridge.as_array(w), None, stride, padding, dilation, groups,
                               out=bridge.as_array(gx), **flags)
            if need[1]:
                gw = torch.empty_like(w)
                cudnnconv.conv_backward_weight(g, w.shape, bridge.as_array(x), stride, padding, dilation, groups,
                                               out=bridge.as_array(gw), **flags)
        return gx, gw, _bias_grad(gy, need[2]), None, None


def _fused_out(x, w, z, bias, alpha, r, shape, flags):
    """relu(conv(x, w) + alpha * z + bias) into a new torch tensor of ``shape``."""
    y = bridge.empty_like_layout(shape, x, w)
    with bridge.on_torch_stream(x):
        cudnnconv.conv_bias_add_relu(bridge.as_array(x), bridge.as_array(w), bridge.as_array(z), alpha,
                                     None if bias is None else bridge.as_array(bias), r.stride, r.padding,
                                     r.dilation, r.groups, out=bridge.as_array(y), **flags)
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


def _batched(nsp, input):
    """(input with a batch dim, whether one was added): the unbatched (C, *spatial) form (the rank is
    checked with the arguments, torch_rules.forward_plan / transpose_plan)."""
    if input.dim() == nsp + 1:
        return input.unsqueeze(0), True
    return input, False


def _conv(nsp, input, weight, bias, stride, padding, dilation, groups):
    for t, name in ((input, "input"), (weight, "weight")) + (((bias, "bias"),) if bias is not None else ()):
        bridge.check_tensor(t, name)
    x, added = _batched(nsp, input)
    r, shape = rules.forward_plan(nsp, x.shape, weight.shape, stride, padding, dilation, groups)
    if r.pre_pad is not None:                    # 'same' with an odd total: PyTorch's extra element at the end
        x = _pad(x, r.pre_pad)
    if _needs_grad(x, weight, bias):
        y = _Conv.apply(x, weight, bias, r, shape)
    else:
        y = _conv_out(x, weight, bias, r, shape, bridge.call_flags())
    return y.squeeze(0) if added else y


def _conv_transpose(nsp, input, weight, bias, stride, padding, output_padding, groups, dilation):
    for t, name in ((input, "input"), (weight, "weight")) + (((bias, "bias"),) if bias is not None else ()):
        bridge.check_tensor(t, name)
    x, added = _batched(nsp, input)
    args, shape = rules.transpose_plan(nsp, x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    if any(o >= s for o, s in zip(args[2], args[0])) and torch.is_grad_enabled() and (
            input.requires_grad or weight.requires_grad):
        raise NotImplementedError("output_padding %s not smaller than stride %s: its backward is not supported"
                                  % (args[2], args[0]))
    if _needs_grad(x, weight, bias):
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
