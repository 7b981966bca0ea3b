"""Shared by cudnnconv.torch's tests: the two paths of a forward call, for the tests that hold them
equal (test_torch_typed_cpu.py, gpu/test_gpu_torch.py): the Python path alone, and a call's outcome;
and the CPU stand-ins for cudnnconv and the bridge (the *_cpu tests).  Imported only where torch
imports."""
import contextlib
import types


def python_path(nsp, *args):
    """functional._conv without the typed forward in front of it: the Python path, with every check."""
    from cudnnconv.torch import functional
    saved = functional._typed_forward
    functional._typed_forward = lambda *a: None
    try:
        return functional._conv(nsp, *args)
    finally:
        functional._typed_forward = saved


def outcome(f):
    """("ok", what f returns) or ("raised", (the exception's type, its message))."""
    try:
        return "ok", f()
    except Exception as e:          # the error itself is what is compared
        return "raised", (type(e), str(e))


def fake_cudnnconv():
    """cudnnconv's convolution functions as PyTorch's own CPU computations with the same signatures, each
    writing into ``out=`` under no_grad: cudnnconv records nothing in torch's autograd, nor do they."""
    import torch
    TF, G = torch.nn.functional, torch.nn.grad

    def conv(x, w, b, stride, padding, dilation, groups, *, out, **flags):
        out.copy_(getattr(TF, "conv%dd" % (x.dim() - 2))(x, w, b, stride, padding, dilation, groups))

    def conv_backward_input(shape, w, g, stride, padding, dilation, groups, *, out, **flags):
        out.copy_(getattr(G, "conv%dd_input" % (g.dim() - 2))(shape, w, g, stride, padding, dilation, groups))

    def conv_backward_weight(x, wshape, g, stride, padding, dilation, groups, *, out, **flags):
        out.copy_(getattr(G, "conv%dd_weight" % (x.dim() - 2))(x, wshape, g, stride, padding, dilation, groups))

    def conv_transpose(x, w, b, stride, padding, opad, groups, dilation, *, out, **flags):
        out.copy_(getattr(TF, "conv_transpose%dd" % (x.dim() - 2))(x, w, b, stride, padding, opad, groups, dilation))

    def conv_bias_add_relu(x, w, z, alpha, b, stride, padding, dilation, groups, *, out, **flags):
        y = getattr(TF, "conv%dd" % (x.dim() - 2))(x, w, None, stride, padding, dilation, groups) + alpha * z
        out.copy_(torch.relu(y if b is None else y + b.view((1, -1) + (1,) * (x.dim() - 2))))

    def conv_epilogue(x, w, b, stride, padding, dilation, groups, *, z, act, alpha1, alpha2, out, **flags):
        from cudnnconv import activations
        from cudnnconv.torch.functional import torch_activation
        y = alpha1 * getattr(TF, "conv%dd" % (x.dim() - 2))(x, w, None, stride, padding, dilation, groups)
        if z is not None:
            y = y + alpha2 * z
        if b is not None:
            y = y + b.view((1, -1) + (1,) * (x.dim() - 2))
        out.copy_(torch_activation(activations.activation(act))(y))

    def untracked(f):
        def run(*args, **kwargs):
            with torch.no_grad():
                return f(*args, **kwargs)
        return run

    return types.SimpleNamespace(conv=untracked(conv), conv_backward_input=untracked(conv_backward_input),
                                 conv_backward_weight=untracked(conv_backward_weight),
                                 conv_transpose=untracked(conv_transpose),
                                 conv_bias_add_relu=untracked(conv_bias_add_relu),
                                 conv_epilogue=untracked(conv_epilogue))


def on_the_cpu(monkeypatch):
    """cudnnconv.torch run on the CPU: cudnnconv's functions replaced by ``fake_cudnnconv()`` and the
    bridge by pass-throughs (no CuPy view, no stream switch, no flags per call, the typed tensor path
    declining, no CUDA check).  Returns the stand-ins."""
    from cudnnconv.torch import bridge, functional
    fake = fake_cudnnconv()
    monkeypatch.setattr(functional, "cudnnconv", fake)
    monkeypatch.setattr(bridge, "as_array", lambda t: t)
    monkeypatch.setattr(bridge, "on_torch_stream", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(bridge, "call_flags", lambda: bridge.NO_FLAGS)
    monkeypatch.setattr(bridge, "run", lambda *args: False)
    monkeypatch.setattr(bridge, "check_tensor", lambda t, name: None)
    return fake
