"""cudnnconv.torch's autograd wiring on the CPU (skipped without torch).

cudnnconv itself needs a GPU, so here its five functions are replaced by PyTorch's own CPU
computations with the same signatures (writing into ``out=``), and the bridge by pass-throughs.
What remains is this module's own logic: argument resolution ('same' with an explicit pre-pad,
unbatched inputs), which backward function each gradient comes from and with which arguments (the
transposed convolution's swapped roles), the bias and z gradients, and needs_input_grad.
torch.autograd.gradcheck in float64 then checks that logic's gradients against finite differences.
The same checks run on a GPU through cudnnconv in tests/gpu/test_gpu_torch.py."""
import types

import pytest

torch = pytest.importorskip("torch", reason="cudnnconv.torch's tests need PyTorch")
cct = pytest.importorskip("cudnnconv.torch")
from cudnnconv.torch import bridge, functional  # noqa: E402
from torch_paths import fake_cudnnconv, on_the_cpu  # noqa: E402

TF, G = torch.nn.functional, torch.nn.grad


_REAL_CALL_FLAGS = bridge.call_flags


@pytest.fixture(autouse=True)
def _on_the_cpu(monkeypatch):
    on_the_cpu(monkeypatch)                                         # the typed path never runs here


def _r(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


CASES = [
    ("conv1d", lambda x, w, b: cct.conv1d(x, w, b, 2, 1, 1, 1), (2, 4, 9), (6, 4, 3), 6),
    ("conv2d_groups_dilation", lambda x, w, b: cct.conv2d(x, w, b, 1, 2, 2, 2), (2, 4, 6, 5), (6, 2, 3, 3), 6),
    ("conv2d_same_even", lambda x, w, b: cct.conv2d(x, w, b, 1, "same"), (1, 3, 6, 5), (4, 3, 4, 2), 4),
    ("conv2d_unbatched", lambda x, w, b: cct.conv2d(x, w, b, 1, "valid"), (3, 6, 5), (4, 3, 2, 2), 4),
    ("conv3d", lambda x, w, b: cct.conv3d(x, w, b, (1, 2, 1), 1), (1, 2, 4, 5, 4), (3, 2, 3, 3, 2), 3),
    ("conv_transpose1d", lambda x, w, b: cct.conv_transpose1d(x, w, b, 2, 1, 1), (2, 4, 5), (4, 3, 3), 3),
    ("conv_transpose2d_groups", lambda x, w, b: cct.conv_transpose2d(x, w, b, 2, 1, 1, 2), (1, 4, 4, 3),
     (4, 2, 3, 3), 4),
    ("conv_transpose3d_dilation", lambda x, w, b: cct.conv_transpose3d(x, w, b, 1, 0, 0, 1, 2), (1, 2, 3, 3, 3),
     (2, 2, 2, 2, 2), 2),
]


@pytest.mark.parametrize("name,fn,xs,ws,k", CASES, ids=[c[0] for c in CASES])
def test_gradients_match_finite_differences_and_pytorchs_own(name, fn, xs, ws, k):
    torch.manual_seed(0)
    x, w, b = _r(*xs), _r(*ws), _r(k)
    assert torch.autograd.gradcheck(fn, (x, w, b), eps=1e-6, atol=1e-8, rtol=1e-6)
    ref_fn = {"conv1d": TF.conv1d, "conv2d": TF.conv2d, "conv3d": TF.conv3d}
    if name.startswith("conv") and not name.startswith("conv_transpose"):
        theirs = ref_fn[name[:6]]
        args = {"conv1d": (2, 1, 1, 1), "conv2d_groups_dilation": (1, 2, 2, 2), "conv2d_same_even": (1, "same"),
                "conv2d_unbatched": (1, "valid"), "conv3d": ((1, 2, 1), 1)}[name]
        torch.testing.assert_close(fn(x, w, b), theirs(x, w, b, *args))


def test_conv_bias_add_relu_gradients_through_all_four_inputs():
    torch.manual_seed(1)
    x, w, z, b = _r(2, 4, 6, 6), _r(5, 4, 3, 3), _r(2, 5, 6, 6), _r(5)
    assert torch.autograd.gradcheck(lambda x, w, z, b: cct.conv_bias_add_relu(x, w, z, 0.7, b, 1, 1),
                                    (x, w, z, b), eps=1e-6, atol=1e-8, rtol=1e-6)


ACTS = [None, "relu", ("leaky_relu", 0.2), ("leaky_relu", -0.3), ("elu", 0.7), ("elu", -0.4), "gelu", "gelu_tanh",
        "silu", "sigmoid", "tanh", ("clamp", -0.8, 1.1)]


@pytest.mark.parametrize("act", ACTS, ids=[str(a) for a in ACTS])
def test_conv_act_gradients_through_all_four_inputs(act):
    """Every activation, from the output where its derivative allows (one fused forward) and from
    the pre-activation otherwise, with both scales: finite differences agree."""
    torch.manual_seed(2)
    x, w, z, b = _r(2, 4, 6, 6), _r(5, 4, 3, 3), _r(2, 5, 6, 6), _r(5)
    assert torch.autograd.gradcheck(
        lambda x, w, z, b: cct.conv_act(x, w, b, 1, 1, z=z, act=act, alpha1=0.75, alpha2=-1.5),
        (x, w, z, b), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_conv_act_without_z_or_bias_and_without_grad():
    torch.manual_seed(3)
    x, w = _r(1, 3, 5, 5), _r(4, 3, 3, 3)
    assert torch.autograd.gradcheck(lambda x, w: cct.conv_act(x, w, None, 1, 0, act="silu"), (x, w),
                                    eps=1e-6, atol=1e-8, rtol=1e-6)
    with torch.no_grad():
        y = cct.conv_act(x, w, None, 2, 1, act=("clamp", -0.5, 0.5))
    assert y.grad_fn is None
    torch.testing.assert_close(y, torch.clamp(TF.conv2d(x, w, None, 2, 1), -0.5, 0.5))
    with pytest.raises(ValueError, match="unknown activation 'swiglu'"):
        cct.conv_act(x, w, act="swiglu")
    with pytest.raises(TypeError, match="alpha1 must be a finite real number"):
        cct.conv_act(x, w, act="relu", alpha1="2")


def test_needs_input_grad_skips_the_gradients_nobody_asked_for(monkeypatch):
    calls = []
    fake = fake_cudnnconv()
    for name in ("conv_backward_input", "conv_backward_weight"):
        f = getattr(fake, name)
        setattr(fake, name, lambda *a, _f=f, _n=name, **k: (calls.append(_n), _f(*a, **k))[1])
    monkeypatch.setattr(functional, "cudnnconv", fake)
    x, w = _r(2, 3, 5, 5), torch.randn(4, 3, 3, 3, dtype=torch.float64)
    cct.conv2d(x, w, None, 1, 1).sum().backward()
    assert calls == ["conv_backward_input"] and x.grad is not None
    calls.clear()
    x2, w2 = torch.randn(2, 3, 5, 5, dtype=torch.float64), _r(4, 3, 3, 3)
    cct.conv2d(x2, w2, None, 1, 1).sum().backward()
    assert calls == ["conv_backward_weight"] and w2.grad is not None


def test_a_flags_block_reaches_the_backward_run_on_another_thread(monkeypatch):
    """A cudnnconv.flags() block around the forward also governs its backward, which autograd runs
    on a thread of its own for CUDA tensors (here a thread of the test's): the flags travel with
    the graph, spelled out."""
    import threading

    import cudnnconv
    seen = {}
    fake = fake_cudnnconv()
    for name in ("conv", "conv_backward_input", "conv_backward_weight"):
        f = getattr(fake, name)
        setattr(fake, name, lambda *a, _f=f, _n=name, **k: (seen.__setitem__(_n, {
            key: v for key, v in k.items() if key != "out"}), _f(*a, **k))[1])
    monkeypatch.setattr(functional, "cudnnconv", fake)
    monkeypatch.setattr(bridge, "call_flags", _REAL_CALL_FLAGS)          # the real one, not NO_FLAGS
    x, w = _r(2, 3, 5, 5), _r(4, 3, 3, 3)
    with cudnnconv.flags(deterministic=True, workspace_limit=1 << 16, engine="graph"):
        loss = cct.conv2d(x, w, None, 1, 1).sum()
    t = threading.Thread(target=loss.backward)
    t.start()
    t.join()
    want = {"benchmark": False, "deterministic": True, "allow_tf32": True, "workspace_limit": 1 << 16,
            "engine": "graph"}
    assert seen == {"conv": want, "conv_backward_input": want, "conv_backward_weight": want}
    assert x.grad is not None and w.grad is not None


def test_autocast_casts_as_it_does_for_pytorchs_own_convolutions(monkeypatch):
    """Under autocast every floating-point argument but a float64 one reaches cudnnconv in
    autocast's dtype (CUDA autocast is stood in for: this test runs on the CPU), the result is in
    that dtype, and float32 leaves get float32 gradients through the casts."""
    seen = []
    fake = fake_cudnnconv()
    for name in ("conv", "conv_transpose", "conv_bias_add_relu"):
        f = getattr(fake, name)
        setattr(fake, name, lambda *a, _f=f, _n=name, **k: (seen.append(
            (_n, tuple(t.dtype for t in a if isinstance(t, torch.Tensor)))), _f(*a, **k))[1])
    monkeypatch.setattr(functional, "cudnnconv", fake)
    assert functional._autocast_dtype() is None                       # autocast off
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert functional._autocast_dtype() is None                   # only CUDA's autocast counts
    monkeypatch.setattr(functional, "_autocast_dtype", lambda: torch.bfloat16)
    torch.manual_seed(3)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    y = cct.conv2d(x, w, b, 1, 1)
    assert y.dtype == torch.bfloat16 and seen[-1] == ("conv", (torch.bfloat16,) * 2)
    # (the bias is added after the convolution, as _add_bias does: one more bfloat16 rounding)
    torch.testing.assert_close(y, TF.conv2d(x.bfloat16(), w.bfloat16(), None, 1, 1) + b.bfloat16().view(1, -1, 1, 1))
    y.float().square().sum().backward()
    assert (x.grad.dtype, w.grad.dtype, b.grad.dtype) == (torch.float32,) * 3
    with torch.no_grad():
        assert cct.conv_transpose2d(x, w.transpose(0, 1), None, 2, 1).dtype == torch.bfloat16
        z = torch.randn(2, 4, 6, 6)
        assert cct.conv_bias_add_relu(x, w, z, 0.5, b, 1, 1).dtype == torch.bfloat16
    assert seen[-1] == ("conv_bias_add_relu", (torch.bfloat16,) * 4)
    # float64, integer and already-cast tensors are left as they are
    d, i, h = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.int32), torch.zeros(2).bfloat16()
    assert functional._autocast(d, torch.bfloat16) is d and functional._autocast(i, torch.bfloat16) is i
    assert functional._autocast(h, torch.bfloat16) is h and functional._autocast(None, torch.bfloat16) is None


def test_double_backward_is_refused():
    x, w = _r(2, 3, 5, 5), _r(4, 3, 3, 3)
    (gx,) = torch.autograd.grad(cct.conv2d(x, w, None, 1, 1).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        gx.sum().backward()


def test_transposed_backward_with_large_output_padding_is_refused_up_front():
    x, w = _r(1, 2, 4, 4), _r(2, 2, 3, 3)
    with pytest.raises(NotImplementedError, match="output_padding"):
        cct.conv_transpose2d(x, w, None, 1, 0, 1, 1, 2)          # output_padding 1 >= stride 1 (< dilation 2)
    with torch.no_grad():
        assert cct.conv_transpose2d(x, w, None, 1, 0, 1, 1, 2).shape == (1, 2, 9, 9)


def _refuse_autograd(monkeypatch):
    """Make every autograd.Function of the module raise: a call that reaches one fails the test."""
    for cls in (functional._Conv, functional._ConvTranspose, functional._ConvBiasAddRelu):
        monkeypatch.setattr(cls, "apply", staticmethod(lambda *a: pytest.fail("autograd.Function used")))


NO_GRAD_CASES = [
    ("conv2d", lambda x, w, b: cct.conv2d(x, w, b, 2, 1, 1, 1), lambda x, w, b: TF.conv2d(x, w, b, 2, 1, 1, 1),
     (2, 4, 7, 6), (6, 4, 3, 3), 6),
    ("conv2d_same_even", lambda x, w, b: cct.conv2d(x, w, b, 1, "same"), lambda x, w, b: TF.conv2d(x, w, b, 1, "same"),
     (1, 3, 6, 5), (4, 3, 4, 2), 4),
    ("conv_transpose2d", lambda x, w, b: cct.conv_transpose2d(x, w, b, 2, 1, 1, 2),
     lambda x, w, b: TF.conv_transpose2d(x, w, b, 2, 1, 1, 2), (1, 4, 4, 3), (4, 2, 3, 3), 4),
    ("conv_bias_add_relu", lambda x, w, b: cct.conv_bias_add_relu(x, w, torch.ones(2, 5, 6, 6, dtype=x.dtype), 0.5,
                                                                    b, 1, 1),
     lambda x, w, b: torch.relu(TF.conv2d(x, w, b, 1, 1) + 0.5), (2, 4, 6, 6), (5, 4, 3, 3), 5),
]


@pytest.mark.parametrize("name,ours,theirs,xs,ws,k", NO_GRAD_CASES, ids=[c[0] for c in NO_GRAD_CASES])
def test_a_call_that_needs_no_gradient_skips_autograd_and_agrees_with_the_recorded_one(
        monkeypatch, name, ours, theirs, xs, ws, k):
    torch.manual_seed(3)
    x, w, b = _r(*xs), _r(*ws), _r(k)
    recorded = ours(x, w, b)                          # through the autograd.Function
    assert recorded.grad_fn is not None
    want = theirs(x, w, b).detach()
    _refuse_autograd(monkeypatch)
    with torch.no_grad():                             # grad mode off
        y = ours(x, w, b)
    assert y.grad_fn is None and not y.requires_grad
    torch.testing.assert_close(y, recorded.detach(), rtol=0, atol=0)
    torch.testing.assert_close(y, want)
    y2 = ours(x.detach(), w.detach(), b.detach())     # grad mode on, nothing requires grad
    assert y2.grad_fn is None
    torch.testing.assert_close(y2, want)


def test_a_call_with_any_argument_that_requires_grad_is_recorded(monkeypatch):
    torch.manual_seed(4)
    x, w, b = torch.randn(2, 3, 5, 5, dtype=torch.float64), torch.randn(4, 3, 3, 3, dtype=torch.float64), _r(4)
    y = cct.conv2d(x, w, b, 1, 1)                     # only the bias requires grad
    assert y.grad_fn is not None
    y.sum().backward()
    torch.testing.assert_close(b.grad, torch.full((4,), 50.0, dtype=torch.float64))


def test_forward_mode_ad_takes_the_autograd_function_not_the_direct_path(monkeypatch):
    """A dual tensor requires no grad, yet must not reach cudnnconv as plain memory: the call goes
    through the autograd.Function, which refuses forward-mode AD with torch's own error."""
    fwd = torch.autograd.forward_ad
    x, w = torch.randn(1, 2, 5, 5, dtype=torch.float64), torch.randn(3, 2, 3, 3, dtype=torch.float64)
    assert cct.conv2d(x, w, None, 1, 1).grad_fn is None          # no dual: the direct path
    with fwd.dual_level():
        dx = fwd.make_dual(x, torch.ones_like(x))
        with pytest.raises((NotImplementedError, RuntimeError), match="jvp|forward"):
            cct.conv2d(dx, w, None, 1, 1)


def test_the_route_sends_transforms_and_wrappers_through_function_apply(monkeypatch):
    """Plain tensors that require grad take the Function's C entry; under forward-mode AD or a
    functorch transform, or with a functorch-wrapped tensor, Function.apply (which handles them);
    nothing that requires grad under grad mode: no Function at all."""
    x, w = _r(1, 2, 5, 5), torch.randn(3, 2, 3, 3, dtype=torch.float64)
    assert functional._route(x, w, None) == functional.DIRECT
    assert functional._route(x.detach(), w, None) == functional.NO_GRAD
    with torch.no_grad():
        assert functional._route(x, w, None) == functional.NO_GRAD
    with torch.autograd.forward_ad.dual_level():
        assert functional._route(x.detach(), w, None) == functional.TRANSFORMED
    seen = []

    def f(w):
        seen.append(functional._route(x.detach(), w, None))
        return cct.conv2d(x.detach(), w, None, 1, 1).sum()
    with pytest.raises(RuntimeError, match="setup_context"):      # torch's own refusal, from Function.apply
        torch.func.grad(f)(w)
    assert seen == [functional.TRANSFORMED]
    calls = []
    monkeypatch.setattr(functional, "_CONV_APPLY", lambda *a: calls.append("c") or functional._Conv.apply(*a))
    node = functional.autograd_node()
    functional.use_autograd_node(False)         # the Function, as where the C++ node is not built
    try:
        y = cct.conv2d(x, w, None, 1, 1)
    finally:
        functional.use_autograd_node(node)
    assert calls == ["c"] and type(y.grad_fn).__name__ == "_ConvBackward"
    if node:                                    # the C++ node records it, and no Function is entered
        y = cct.conv2d(x, w, None, 1, 1)
        assert calls == ["c"] and type(y.grad_fn).__name__ == "CudnnConvBackward"


def test_the_c_entry_records_the_same_graph_as_function_apply():
    torch.manual_seed(3)
    x, w, b = _r(2, 3, 6, 6), _r(4, 3, 3, 3), _r(4)
    r, shape = functional.rules.forward_plan(2, x.shape, w.shape, 1, 1, 1, 1)
    assert functional._CONV_APPLY != functional._Conv.apply          # torch's C entry was found
    grads = []
    for apply in (functional._CONV_APPLY, functional._Conv.apply):
        y = apply(x, w, b, r, shape)
        assert type(y.grad_fn).__name__ == "_ConvBackward"
        grads.append(torch.autograd.grad(y.square().sum(), (x, w, b)))
    for a, b_ in zip(*grads):
        assert torch.equal(a, b_)


@pytest.mark.parametrize("call", [lambda x, w, b: cct.conv2d(x, w, b, 1, 1),
                                  lambda x, w, b: cct.conv_transpose2d(x, w.transpose(0, 1), b, 1, 1)],
                         ids=["conv2d", "conv_transpose2d"])
def test_a_bias_is_checked_as_cudnnconv_checks_it(call):
    """The bias is added with torch, after the convolution; torch would broadcast a bias of another
    shape, so the layer checks it first, with cudnnconv's errors."""
    x, w = _r(2, 3, 5, 5), _r(4, 3, 3, 3)
    for bad in (torch.randn(1, dtype=torch.float64), torch.randn(4, 1, dtype=torch.float64),
                torch.tensor(1.0, dtype=torch.float64), torch.randn(5, dtype=torch.float64)):
        with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
            call(x, w, bad)
    with pytest.raises(TypeError, match="bias has dtype float32 but input has dtype float64"):
        call(x, w, torch.randn(4))
    assert call(x, w, _r(4)).shape[1] == 4


def test_the_typed_path_is_offered_what_the_public_function_then_receives(monkeypatch):
    """For each function, bridge.run gets the tensors, output and scalars that the public function
    receives when the typed path declines: the same call, so the plan the public call binds is the
    one the next call's typed path finds."""
    offered, received = [], []
    monkeypatch.setattr(bridge, "run", lambda spec, tensors, out, scalars, flags, index:
                        offered.append((spec.name, tensors, out, tuple(scalars))) and False)
    fake = fake_cudnnconv()

    def recording(name, f, order):
        def g(*args, out, **kw):
            received.append((name, order(args), out))
            return f(*args, out=out, **kw)
        return g
    monkeypatch.setattr(functional, "cudnnconv", types.SimpleNamespace(
        conv=recording("conv", fake.conv, lambda a: (a[:3], a[3:])),
        conv_transpose=recording("conv_transpose", fake.conv_transpose, lambda a: (a[:3], a[3:])),
        conv_backward_input=recording("conv_backward_input", fake.conv_backward_input,
                                      lambda a: (a[1:3], (tuple(a[0]),) + a[3:])),
        conv_backward_weight=recording("conv_backward_weight", fake.conv_backward_weight,
                                       lambda a: ((a[0], a[2]), (tuple(a[1]),) + a[3:])),
        conv_bias_add_relu=fake.conv_bias_add_relu))
    x, w, b = _r(2, 3, 7, 6), _r(4, 3, 3, 3), _r(4)
    cct.conv2d(x, w, b, 2, 1, 1, 1).sum().backward()
    xt, wt = _r(2, 4, 5, 5), _r(4, 3, 3, 3)
    cct.conv_transpose2d(xt, wt, _r(3), 2, 1, 1, 1, 1).sum().backward()
    assert [o[0] for o in offered] == [r[0] for r in received] == [
        "conv", "conv_backward_input", "conv_backward_weight",
        "conv_transpose", "conv", "conv_backward_weight"]
    for (name, tensors, out, scalars), (_, (arrays, args), out2) in zip(offered, received):
        assert out is out2, name
        assert len(tensors) == len(arrays) and all(a is b_ for a, b_ in zip(tensors, arrays)), name
        assert scalars == tuple(args), name
