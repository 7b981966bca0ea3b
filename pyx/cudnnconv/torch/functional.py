"""torch.nn.functional's convolutions through cudnnconv, with autograd.

Each function takes the arguments of its torch.nn.functional namesake (and the unbatched
(C, *spatial) input it takes) and returns a torch tensor.  The backward runs cudnnconv's backward
functions: the input gradient through ``conv_backward_input`` (a transposed convolution's through
``conv``), the weight gradient through ``conv_backward_weight``, the bias gradient as a sum over
the gradient; each only where ``ctx.needs_input_grad`` asks for it.  Double backward is refused
(``once_differentiable``: "trying to differentiate twice a function that was marked with
@once_differentiable").

torch.compile: the functions are ``torch.compiler.disable``d, so a compiled model breaks its graph
at each convolution and runs it eagerly here (docs/torch.md says why).
"""
import torch
from torch.autograd.function import once_differentiable

import cudnnconv
from cudnnconv import torch_rules as rules
import cudnnconv.torch.bridge as bridge

_pad = torch.nn.functional.pad


def _bias_grad(g, needed):
    return g.sum(dim=[d for d in range(g.dim()) if d != 1]) if needed else None


def _conv_grads(x, w, g, r, flags, need):
    """(input gradient, weight gradient) of the convolution of x and w with ``Resolved`` arguments r,
    from its output gradient g (dense), each None unless need[0] / need[1] asks for it."""
    gx = gw = None
    with bridge.on_torch_stream(g.device):
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


class _Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, r, shape):
        flags = bridge.call_flags()
        y = bridge.empty_like_layout(shape, x, w)
        with bridge.on_torch_stream(x.device):
            cudnnconv.conv(bridge.as_array(x), bridge.as_array(w), None if b is None else bridge.as_array(b),
                           r.stride, r.padding, r.dilation, r.groups, out=bridge.as_array(y), **flags)
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


class _ConvTranspose(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, args, shape):
        stride, padding, opad, groups, dilation = args
        flags = bridge.call_flags()
        y = bridge.empty_like_layout(shape, x, w)
        with bridge.on_torch_stream(x.device):
            cudnnconv.conv_transpose(bridge.as_array(x), bridge.as_array(w), None if b is None else bridge.as_array(b),
                                     stride, padding, opad, groups, dilation, out=bridge.as_array(y), **flags)
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
        with bridge.on_torch_stream(gy.device):
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


class _ConvBiasAddRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, z, bias, alpha, r, shape):
        flags = bridge.call_flags()
        y = bridge.empty_like_layout(shape, x, w)
        with bridge.on_torch_stream(x.device):
            cudnnconv.conv_bias_add_relu(bridge.as_array(x), bridge.as_array(w), bridge.as_array(z), alpha,
                                         None if bias is None else bridge.as_array(bias), r.stride, r.padding,
                                         r.dilation, r.groups, out=bridge.as_array(y), **flags)
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
    y = _Conv.apply(x, weight, bias, r, shape)
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
    y = _ConvTranspose.apply(x, weight, bias, args, shape)
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
    return _ConvBiasAddRelu.apply(input, weight, z, bias, float(alpha), r, shape)
