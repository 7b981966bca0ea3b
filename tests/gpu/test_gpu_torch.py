"""cudnnconv.torch on a GPU (skipped without torch): gradients against torch.autograd.gradcheck in
float64, module parity with torch.nn (outputs, every gradient, state_dict), convert() on
torchvision's resnet18 with one training step against PyTorch's, torch's current stream, CUDA-graph
capture and replay of a training step, and torch.compile."""
import copy

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch", reason="cudnnconv.torch's tests need PyTorch")
cct = pytest.importorskip("cudnnconv.torch")

if not torch.cuda.is_available():
    pytest.skip("no CUDA device for torch", allow_module_level=True)

DEV = "cuda"
TF = torch.nn.functional


@pytest.fixture(autouse=True)
def _exact_fp32():
    """fp32 without TF32 on both sides (cudnnconv.torch reads torch.backends.cudnn's flags)."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _r(*shape, dtype=torch.float64, grad=True):
    return torch.randn(*shape, device=DEV, dtype=dtype).requires_grad_(grad)


GRADCHECK = [
    ("conv1d", lambda x, w, b: cct.conv1d(x, w, b, 2, 1, 1, 1), (2, 4, 9), (6, 4, 3), 6),
    ("conv2d_groups_dilation", lambda x, w, b: cct.conv2d(x, w, b, 1, 2, 2, 2), (2, 4, 6, 5), (6, 2, 3, 3), 6),
    ("conv2d_same_even", lambda x, w, b: cct.conv2d(x, w, b, 1, "same"), (1, 3, 6, 5), (4, 3, 4, 2), 4),
    ("conv3d", lambda x, w, b: cct.conv3d(x, w, b, (1, 2, 1), 1), (1, 2, 4, 5, 4), (3, 2, 3, 3, 2), 3),
    ("conv_transpose1d", lambda x, w, b: cct.conv_transpose1d(x, w, b, 2, 1, 1), (2, 4, 5), (4, 3, 3), 3),
    ("conv_transpose2d_groups", lambda x, w, b: cct.conv_transpose2d(x, w, b, 2, 1, 1, 2), (1, 4, 4, 3),
     (4, 2, 3, 3), 4),
    ("conv_transpose3d", lambda x, w, b: cct.conv_transpose3d(x, w, b, 1, 0, 0, 1, 2), (1, 2, 3, 3, 3),
     (2, 2, 2, 2, 2), 2),
]


@pytest.fixture
def _deterministic():
    """gradcheck runs each backward twice and wants equal results: deterministic algorithms."""
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        yield


@pytest.mark.usefixtures("_deterministic")
@pytest.mark.parametrize("name,fn,xs,ws,k", GRADCHECK, ids=[c[0] for c in GRADCHECK])
def test_gradcheck_float64(name, fn, xs, ws, k):
    torch.manual_seed(1)
    x, w, b = _r(*xs), _r(*ws), _r(k)
    assert torch.autograd.gradcheck(fn, (x, w, b), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.usefixtures("_deterministic")
def test_gradcheck_conv_bias_add_relu_float64():
    torch.manual_seed(2)
    x, w = _r(2, 4, 6, 6), _r(5, 4, 3, 3)
    z, b = _r(2, 5, 6, 6), _r(5)

    def f(x, w, z, b):
        return cct.conv_bias_add_relu(x, w, z, 0.7, b, 1, 1)

    with torch.no_grad():
        ref = torch.relu(TF.conv2d(x, w, b, 1, 1) + 0.7 * z)
        assert _rel(f(x, w, z, b), ref) < 1e-12
    assert torch.autograd.gradcheck(f, (x, w, z, b), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.usefixtures("_deterministic")
@pytest.mark.parametrize("act", ["relu", "silu", "gelu", "sigmoid", ("leaky_relu", 0.1), ("clamp", -0.5, 0.5)])
def test_gradcheck_conv_act_float64(act):
    """cudnnconv.torch.conv_act through cudnnconv.conv_epilogue: PyTorch's own composition, and
    finite differences through all four inputs."""
    from cudnnconv import activations
    from cudnnconv.torch.functional import torch_activation
    torch.manual_seed(3)
    x, w = _r(2, 4, 6, 6), _r(5, 4, 3, 3)
    z, b = _r(2, 5, 6, 6), _r(5)

    def f(x, w, z, b):
        return cct.conv_act(x, w, b, 1, 1, z=z, act=act, alpha1=0.5, alpha2=2.0)

    with torch.no_grad():
        ref = torch_activation(activations.activation(act))(0.5 * TF.conv2d(x, w, None, 1, 1) + 2.0 * z
                                                      + b.view(1, -1, 1, 1))
        assert _rel(f(x, w, z, b), ref) < 1e-12
    assert torch.autograd.gradcheck(f, (x, w, z, b), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_needs_input_grad_is_respected_and_double_backward_is_refused():
    x, w = _r(2, 3, 5, 5), _r(4, 3, 3, 3, grad=False)
    y = cct.conv2d(x, w, None, 1, 1)
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert gx.shape == x.shape and w.grad is None
    y = cct.conv2d(x, w, None, 1, 1)
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        gx.sum().backward()


MODULES = [
    ("Conv1d", dict(in_channels=4, out_channels=6, kernel_size=3, padding=2, dilation=2), (3, 4, 17)),
    ("Conv2d", dict(in_channels=4, out_channels=8, kernel_size=3, padding=1, padding_mode="reflect", groups=2),
     (2, 4, 9, 11)),
    ("Conv2d", dict(in_channels=4, out_channels=4, kernel_size=4, padding="same", padding_mode="circular"),
     (2, 4, 8, 7)),
    ("Conv2d", dict(in_channels=4, out_channels=6, kernel_size=(1, 3), stride=2, padding_mode="replicate",
                    padding=(0, 1)), (2, 4, 9, 9)),
    ("Conv3d", dict(in_channels=2, out_channels=4, kernel_size=3, stride=(1, 2, 2), padding=1), (2, 2, 5, 6, 6)),
    ("ConvTranspose1d", dict(in_channels=4, out_channels=3, kernel_size=4, stride=2, padding=1), (2, 4, 7)),
    ("ConvTranspose2d", dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, output_padding=1, groups=2),
     (2, 4, 5, 6)),
    ("ConvTranspose3d", dict(in_channels=2, out_channels=3, kernel_size=2, stride=2, bias=False),
     (1, 2, 3, 4, 3)),
]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 5e-3)])
@pytest.mark.parametrize("name,kw,shape", MODULES, ids=["%s-%d" % (c[0], i) for i, c in enumerate(MODULES)])
def test_module_parity_with_torch_nn(name, kw, shape, dtype, tol):
    torch.manual_seed(3)
    theirs = getattr(torch.nn, name)(**kw).to(DEV, dtype)
    ours = getattr(cct, name)(**kw).to(DEV, dtype)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(shape, device=DEV, dtype=dtype)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), theirs(xb)
    assert ya.shape == yb.shape and ya.dtype == dtype
    assert _rel(ya, yb) < tol
    g = torch.randn_like(yb)
    ya.backward(g)
    yb.backward(g)
    assert _rel(xa.grad, xb.grad) < tol
    for (n, pa), (_, pb) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert _rel(pa.grad, pb.grad) < tol, n
    back = getattr(torch.nn, name)(**kw).to(DEV, dtype)
    back.load_state_dict(ours.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), theirs.state_dict().values()))


def test_unbatched_and_channels_last_inputs():
    torch.manual_seed(4)
    w = torch.randn(8, 4, 3, 3, device=DEV)
    x = torch.randn(4, 10, 10, device=DEV)
    assert _rel(cct.conv2d(x, w, None, 1, 1), TF.conv2d(x, w, None, 1, 1)) < 1e-5
    xc = torch.randn(2, 4, 10, 10, device=DEV, dtype=torch.float16).to(memory_format=torch.channels_last)
    wc = w.half().to(memory_format=torch.channels_last)
    y = cct.conv2d(xc, wc, None, 1, 1)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert _rel(y, TF.conv2d(xc, wc, None, 1, 1)) < 5e-3


def test_runs_on_torchs_current_stream():
    torch.manual_seed(5)
    x, w = torch.randn(8, 16, 32, 32, device=DEV), torch.randn(16, 16, 3, 3, device=DEV)
    want = TF.conv2d(x, w, None, 1, 1)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        torch.cuda._sleep(50_000_000)               # s is busy for a while ...
        xs = x * 1.0                                # ... then writes the input: a conv on another stream
        y = cct.conv2d(xs, w, None, 1, 1)           # would read it before it is written
    s.synchronize()
    assert _rel(y, want) < 1e-5


def _resnet18():
    tv = pytest.importorskip("torchvision", reason="the conversion test needs torchvision")
    torch.manual_seed(6)
    return tv.models.resnet18(num_classes=10)


def test_convert_resnet18_one_training_step_matches_pytorch():
    theirs = _resnet18().to(DEV)
    ours = cct.convert(copy.deepcopy(theirs))
    convs = [n for n, m in ours.named_modules() if isinstance(m, cct.Conv2d)]
    assert len(convs) == 20
    x = torch.randn(4, 3, 64, 64, device=DEV)
    t = torch.randint(0, 10, (4,), device=DEV)
    losses = []
    for m in (ours, theirs):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        opt.zero_grad()
        loss = TF.cross_entropy(m(x), t)
        loss.backward()
        losses.append(loss.detach())
        grads = {n + ".weight": mod.weight.grad.clone() for n, mod in m.named_modules()
                 if isinstance(mod, torch.nn.Conv2d)}
        opt.step()
        m.grads = grads
    assert _rel(losses[0], losses[1]) < 1e-5
    worst = max(_rel(ours.grads[k], theirs.grads[k]) for k in theirs.grads)
    assert worst < 1e-5, worst
    for (n, pa), (_, pb) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert _rel(pa, pb) < 1e-5, n
    cct.revert(ours)
    assert not any(isinstance(m, cct.Conv2d) for m in ours.modules())


def _small_net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                               torch.nn.Conv2d(16, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                               torch.nn.ConvTranspose2d(16, 8, 2, stride=2), torch.nn.Flatten(),
                               torch.nn.Linear(8 * 16 * 16, 10)).to(DEV)


def test_cuda_graph_capture_of_a_training_step_replays_as_eager_runs():
    torch.manual_seed(7)
    theirs = _small_net()
    ours = cct.convert(copy.deepcopy(theirs))
    opt_a, opt_b = (torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (ours, theirs))
    data = [(torch.randn(8, 3, 16, 16, device=DEV), torch.randint(0, 10, (8,), device=DEV)) for _ in range(6)]

    def step(m, opt, x, t):
        opt.zero_grad(set_to_none=True)
        loss = TF.cross_entropy(m(x), t)
        loss.backward()
        opt.step()
        return loss

    sx, st = data[0][0].clone(), data[0][1].clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):                   # warm-up on a side stream, as torch.cuda.graph asks
        for x, t in data[:3]:
            sx.copy_(x)
            st.copy_(t)
            step(ours, opt_a, sx, st)
    torch.cuda.current_stream().wait_stream(side)
    for x, t in data[:3]:
        step(theirs, opt_b, x, t)
    g = torch.cuda.CUDAGraph()
    opt_a.zero_grad(set_to_none=True)
    # captured on the warm-up stream: the workspace block each cached choice keeps for that stream is
    # already there, so nothing calls cudaMalloc under torch's global capture mode (docs/torch.md)
    with torch.cuda.graph(g, stream=side):
        static_loss = step(ours, opt_a, sx, st)
    for x, t in data[3:]:
        sx.copy_(x)
        st.copy_(t)
        g.replay()
        want = step(theirs, opt_b, x, t)
        assert _rel(static_loss, want) < 1e-4
    torch.cuda.synchronize()
    for (n, pa), (_, pb) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert _rel(pa, pb) < 1e-4, n


def test_a_converted_model_runs_under_torch_compile():
    torch.manual_seed(8)
    theirs = _small_net().eval()
    ours = cct.convert(copy.deepcopy(theirs))
    compiled = torch.compile(ours)
    x = torch.randn(4, 3, 16, 16, device=DEV, requires_grad=True)
    y = compiled(x)
    want = theirs(x)
    assert _rel(y, want) < 1e-5
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


NO_GRAD = [
    ("conv2d", lambda x, w, b: cct.conv2d(x, w, b, 1, 1), lambda x, w, b: TF.conv2d(x, w, b, 1, 1),
     (4, 8, 12, 10), (6, 8, 3, 3), 6),
    ("conv_transpose2d", lambda x, w, b: cct.conv_transpose2d(x, w, b, 2, 1, 1),
     lambda x, w, b: TF.conv_transpose2d(x, w, b, 2, 1, 1), (2, 8, 6, 5), (8, 6, 3, 3), 6),
    ("conv_bias_add_relu", lambda x, w, b: cct.conv_bias_add_relu(x, w, torch.ones(4, 6, 12, 10, device=DEV), 0.5,
                                                                    b, 1, 1),
     lambda x, w, b: torch.relu(TF.conv2d(x, w, b, 1, 1) + 0.5), (4, 8, 12, 10), (6, 8, 3, 3), 6),
]


@pytest.mark.usefixtures("_deterministic")
@pytest.mark.parametrize("name,ours,theirs,xs,ws,k", NO_GRAD, ids=[c[0] for c in NO_GRAD])
def test_a_call_that_needs_no_gradient_runs_without_autograd_and_equals_the_recorded_call(
        name, ours, theirs, xs, ws, k):
    """Under no_grad (and with no argument requiring grad) the convolution runs directly, without the
    autograd.Function (tests/test_torch_autograd_cpu.py shows that it is skipped): the same values as
    the call autograd records, bit for bit (the same deterministic choice), and no grad_fn."""
    torch.manual_seed(8)
    x, w, b = _r(*xs, dtype=torch.float32), _r(*ws, dtype=torch.float32), _r(k, dtype=torch.float32)
    recorded = ours(x, w, b)
    assert recorded.grad_fn is not None
    with torch.no_grad():
        y = ours(x, w, b)
    assert y.grad_fn is None and not y.requires_grad
    assert torch.equal(y, recorded.detach())
    assert _rel(y, theirs(x, w, b).detach()) < 1e-5
    y2 = ours(x.detach(), w.detach(), b.detach())
    assert y2.grad_fn is None and torch.equal(y2, y)


# ---------------------------------------------------------------------------------------------------------
# The typed path for torch tensors (bridge.run: callplan.run_strided)
# ---------------------------------------------------------------------------------------------------------

def _cl(*shape, dtype=torch.float16):
    return torch.randn(*shape, device=DEV, dtype=dtype).to(memory_format=torch.channels_last)


def _poisoned_like(t):
    return torch.full_like(t, float("nan"))


def _views_call(name, tensors, out, scalars):
    """The same call through the public function on CuPy views (the path that plans and binds), with
    torch's flags, as the bridge makes it."""
    import cudnnconv
    from cudnnconv.torch import bridge
    kw = bridge.flag_kwargs(bridge.call_flags())
    arrays = [None if t is None else bridge.as_array(t) for t in tensors]
    fn = {"conv": cudnnconv.conv, "conv_transpose": cudnnconv.conv_transpose}.get(name)
    with bridge.on_torch_stream(out):
        if name == "conv_backward_input":
            cudnnconv.conv_backward_input(scalars[0], *arrays, *scalars[1:], out=bridge.as_array(out), **kw)
        elif name == "conv_backward_weight":
            cudnnconv.conv_backward_weight(arrays[0], scalars[0], arrays[1], *scalars[1:], out=bridge.as_array(out),
                                           **kw)
        else:
            fn(*arrays, *scalars, out=bridge.as_array(out), **kw)


STRIDED = [
    ("conv", lambda: ((_cl(4, 16, 10, 9), _cl(8, 16, 3, 3), None), (4, 8, 10, 9),
                      ((1, 1), (1, 1), (1, 1), 1))),
    ("conv_backward_input", lambda: ((_cl(8, 16, 3, 3), _cl(4, 8, 5, 5)), (4, 16, 10, 9),
                                     ((4, 16, 10, 9), (2, 2), (1, 1), (1, 1), 1))),
    ("conv_backward_weight", lambda: ((_cl(4, 16, 10, 9), _cl(4, 8, 5, 5)), (8, 16, 3, 3),
                                      ((8, 16, 3, 3), (2, 2), (1, 1), (1, 1), 1))),
    ("conv_transpose", lambda: ((_cl(2, 8, 6, 5), _cl(8, 4, 3, 3), None), (2, 4, 12, 10),
                                ((2, 2), (1, 1), (1, 1), 1, (1, 1)))),
]


@pytest.mark.usefixtures("_deterministic")
@pytest.mark.parametrize("name,make", STRIDED, ids=[c[0] for c in STRIDED])
def test_the_typed_tensor_path_runs_bound_plans_and_equals_the_public_function(name, make):
    """A first call through the public function binds the plan; then the typed path runs the same
    signature on fresh tensors (new pointers), writing every element of a NaN-poisoned output, bit for
    bit what the public function writes; a signature it has no bound plan for is declined."""
    from cudnnconv.torch import bridge
    spec = {"conv": bridge.CONV, "conv_backward_input": bridge.BACKWARD_INPUT,
            "conv_backward_weight": bridge.BACKWARD_WEIGHT, "conv_transpose": bridge.TRANSPOSE}[name]
    flags = bridge.call_flags()
    torch.manual_seed(11)
    tensors, out_shape, scalars = make()
    out = torch.empty(out_shape, device=DEV, dtype=torch.float16).to(memory_format=torch.channels_last)
    _views_call(name, tensors, out, scalars)                   # plans and binds
    tensors2, _, _ = make()
    fast, ref = _poisoned_like(out), _poisoned_like(out)
    assert bridge.run(spec, tensors2, fast, scalars, flags, 0)
    _views_call(name, tensors2, ref, scalars)
    torch.cuda.synchronize()
    assert not torch.isnan(fast).any()
    assert torch.equal(fast, ref)
    # what it declines: an output of another layout, another dtype, a shape it has no plan for
    assert not bridge.run(spec, tensors2, _poisoned_like(out).contiguous(), scalars, flags, 0)
    other = tuple(None if t is None else t.float() for t in tensors2)
    assert not bridge.run(spec, other, out.float(), scalars, flags, 0)


def test_the_typed_tensor_path_declines_another_stream_and_explain():
    """On a torch stream CuPy is not on, and while explain() runs, the call takes the public function
    (which enters the stream, and lets explain see the search)."""
    import importlib
    from cudnnconv.torch import bridge
    explain_module = importlib.import_module("cudnnconv.explain")
    torch.manual_seed(12)
    x, w = _cl(4, 16, 10, 9), _cl(8, 16, 3, 3)
    args = ((1, 1), (1, 1), (1, 1), 1)
    y = torch.empty(4, 8, 10, 9, device=DEV, dtype=torch.float16).to(memory_format=torch.channels_last)
    _views_call("conv", (x, w, None), y, args)
    assert bridge.run(bridge.CONV, (x, w, None), y, args, bridge.call_flags(), 0)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        assert not bridge.run(bridge.CONV, (x, w, None), y, args, bridge.call_flags(), 0)
    with explain_module.intercept_search(lambda *a: None):       # what explain() and warm-up install
        assert not bridge.run(bridge.CONV, (x, w, None), y, args, bridge.call_flags(), 0)
    assert bridge.run(bridge.CONV, (x, w, None), y, args, bridge.call_flags(), 0)


@pytest.mark.parametrize("node", [True, False], ids=["cpp_node", "python_function"])
def test_a_warm_training_step_runs_every_convolution_on_the_typed_path(monkeypatch, node):
    """After one step, every convolution call of a converted resnet18's training step (forward, input
    and weight gradients) runs on the typed tensor path: the public functions are never reached.
    With the C++ node, the forward is the typed forward's and the gradients the typed backward's;
    with the Python Function, each goes through ``bridge.run``."""
    from cudnnconv.torch import bridge, functional, typed
    if node and not functional.autograd_node():
        pytest.skip(functional.NODE_UNAVAILABLE)
    model = cct.convert(_resnet18().to(DEV, torch.float16).to(memory_format=torch.channels_last))
    x = _cl(4, 3, 64, 64)
    t = torch.randint(0, 10, (4,), device=DEV)

    def step():
        model.zero_grad(set_to_none=True)
        TF.cross_entropy(model(x), t).backward()
    before = functional.autograd_node()
    try:
        functional.use_autograd_node(node)
        step()
        fast, slow = [], []
        run = bridge.run
        monkeypatch.setattr(bridge, "run", lambda *a: fast.append(a[0].name) or run(*a))
        real = functional.cudnnconv

        class Counting:
            def __getattr__(self, name):
                slow.append(name)
                return getattr(real, name)
        monkeypatch.setattr(functional, "cudnnconv", Counting())
        taken, grads = typed.taken(), typed.gradients()
        step()
        torch.cuda.synchronize()
    finally:
        functional.use_autograd_node(before)
    assert slow == []
    if node:
        assert fast == [] and typed.taken() - taken == 20
        assert typed.gradients() - grads == 20 + 19               # conv1's input needs no gradient
    else:
        assert fast.count("conv") == 20 and fast.count("conv_backward_weight") == 20
        assert fast.count("conv_backward_input") == 19


def test_a_flags_block_governs_the_backward_autograd_runs_on_its_own_thread(monkeypatch, request):
    """Autograd runs a CUDA graph's backward on a thread of its own, where a cudnnconv.flags()
    block around the forward does not apply: the block's flags travel with the graph, and the
    backward's calls run on that thread with them (here the legacy engine and deterministic
    choices), with PyTorch's gradients."""
    import threading

    from cudnnconv.torch import functional
    real, seen = functional._convolve, []

    def spy(spec, tensors, out, scalars, flags):
        seen.append((spec.name, flags, threading.get_ident()))
        return real(spec, tensors, out, scalars, flags)

    monkeypatch.setattr(functional, "_convolve", spy)
    functional.configure_typed()             # the typed forward and backward call the spy too
    request.addfinalizer(lambda: functional.configure_typed(convolve=real))
    torch.manual_seed(13)
    x, w = _r(2, 4, 9, 8, dtype=torch.float32), _r(6, 4, 3, 3, dtype=torch.float32)
    with cct.flags(deterministic=True, allow_tf32=False, workspace_limit=1 << 20, engine="legacy"):
        loss = (cct.conv2d(x, w, None, 1, 1) ** 2).sum()
    loss.backward()
    want = (False, True, False, 1 << 20, "legacy")
    main = threading.get_ident()
    assert [(n, f) for n, f, _ in seen] == [("conv", want), ("conv_backward_input", want),
                                           ("conv_backward_weight", want)], seen
    assert seen[0][2] == main and {t for _, _, t in seen[1:]} != {main}      # backward: autograd's thread
    xr, wr = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    (TF.conv2d(xr, wr, None, 1, 1) ** 2).sum().backward()
    assert _rel(x.grad, xr.grad) < 1e-5 and _rel(w.grad, wr.grad) < 1e-5


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 1e-2), (torch.bfloat16, 4e-2)])
def test_a_converted_model_under_autocast_runs_in_its_dtype_as_pytorchs_does(dtype, tol):
    """torch.autocast("cuda"): the converted convolutions take autocast's dtype as PyTorch's own do
    (float32 input and weights in, autocast's dtype out), and the float32 weights get float32
    gradients equal to PyTorch's within the dtype's tolerance."""
    from cudnnconv.torch import bridge
    if dtype not in bridge._DTYPES:
        pytest.skip("bfloat16 needs ml_dtypes")
    torch.manual_seed(14)
    theirs = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
                                 torch.nn.ConvTranspose2d(16, 4, 2, stride=2)).to(DEV)
    ours = cct.convert(copy.deepcopy(theirs))
    x = torch.randn(2, 8, 12, 12, device=DEV)
    with torch.autocast("cuda", dtype=dtype):
        yt, yo = theirs(x), ours(x)
    assert yo.dtype == yt.dtype == dtype and yo.shape == yt.shape
    assert _rel(yo, yt) < tol
    yt.float().square().sum().backward()
    yo.float().square().sum().backward()
    for (name, pt), po in zip(theirs.named_parameters(), ours.parameters()):
        assert po.dtype == po.grad.dtype == torch.float32, name
        assert _rel(po.grad, pt.grad) < tol, name


# ---------------------------------------------------------------------------------------------------------
# The typed forward (cudnnconv.torch.typed): the Python layer of a repeated forward call, in C
# ---------------------------------------------------------------------------------------------------------

from torch_paths import outcome, python_path  # noqa: E402

def _typed_case(seed, nsp, layout, dtype, bias, grad, groups, stride, padding, dilation):
    g = torch.Generator(device=DEV).manual_seed(seed)
    sp = (9, 8, 7)[:nsp]
    x = torch.randn((3, 4 * groups) + sp, device=DEV, dtype=dtype, generator=g)
    w = torch.randn((6, 4) + (3,) * nsp, device=DEV, dtype=dtype, generator=g)
    if layout == "channels_last" and nsp in (2, 3):
        fmt = torch.channels_last if nsp == 2 else torch.channels_last_3d
        x, w = x.contiguous(memory_format=fmt), w.contiguous(memory_format=fmt)
    elif layout == "sliced":
        x = torch.randn((3, 4 * groups) + sp[:-1] + (2 * sp[-1],), device=DEV, dtype=dtype, generator=g)[..., ::2]
    b = {None: None, "good": torch.randn(6, device=DEV, dtype=dtype, generator=g),
         "shape": torch.randn(7, device=DEV, dtype=dtype, generator=g)}[bias]
    leaves = []
    for _ in range(2):
        leaves.append((x.clone().requires_grad_(grad), torch.nn.Parameter(w.clone(), requires_grad=grad),
                       None if b is None else b.clone().requires_grad_(grad)))
    return leaves


@pytest.mark.usefixtures("_deterministic")
def test_the_typed_forward_gives_what_the_python_path_gives_on_cudnn():
    """Property test (hypothesis): on random convolutions (1-3 spatial dims, plain and channels-last and
    sliced inputs, fp16 and fp32, groups, stride, padding ints / tuples / 'same' / 'valid', dilation,
    a good or a misshapen bias, recording autograd or not) the typed forward gives what the Python
    path gives: the same error, or the same tensor bit for bit (the same bound plan runs both), with
    the same strides, dtype and autograd record, and the same gradients; it declines (None) only a
    misshapen bias or a 'same' that needs an extra element; a fresh no-grad output is written in full
    (NaN-poisoned memory that torch's allocator hands back) and matches a float64 reference."""
    hyp = pytest.importorskip("hypothesis")
    st = hyp.strategies
    from cudnnconv.torch import functional, typed
    poisoned = []

    @hyp.settings(max_examples=60, deadline=None, derandomize=True)
    @hyp.given(seed=st.integers(0, 1000), nsp=st.integers(1, 3),
               layout=st.sampled_from(["contiguous", "channels_last", "sliced"]),
               dtype=st.sampled_from([torch.float16, torch.float32]), bias=st.sampled_from([None, "good", "shape"]),
               grad=st.booleans(), groups=st.sampled_from([1, 2]), stride=st.sampled_from([1, 2, (2, 1, 1)]),
               padding=st.sampled_from([0, 1, (1, 0, 1), "same", "valid"]), dilation=st.sampled_from([1, 2]))
    def check(seed, nsp, layout, dtype, bias, grad, groups, stride, padding, dilation):
        fix = (lambda v: v[:nsp] if isinstance(v, tuple) else v)
        stride, padding = fix(stride), fix(padding)
        (xp, wp, bp), (xt, wt, bt) = _typed_case(seed, nsp, layout, dtype, bias, grad, groups, stride, padding,
                                                 dilation)
        args = (stride, padding, dilation, groups)
        want = outcome(lambda: python_path(nsp, xp, wp, bp, *args))
        got = outcome(lambda: typed.forward(nsp, xt, wt, bt, *args, functional._CONV_APPLY))
        if got == ("ok", None):
            r = functional.rules.forward_plan(nsp, xt.shape, wt.shape, *args)[0]
            assert bias == "shape" or r.pre_pad is not None
            return
        if got[0] == "raised" or want[0] == "raised":
            assert got == want
            return
        yp, yt = want[1], got[1]
        assert (yt.shape, yt.stride(), yt.dtype, yt.requires_grad) == (yp.shape, yp.stride(), yp.dtype,
                                                                       yp.requires_grad)
        assert type(yt.grad_fn).__name__ == type(yp.grad_fn).__name__
        assert torch.equal(yt, yp)
        if grad:
            up = torch.randn_like(yp)
            yp.backward(up)
            yt.backward(up)
            for a, b_ in ((xp, xt), (wp, wt), (bp, bt)):
                if a is not None:
                    assert torch.equal(a.grad, b_.grad)
            return
        # a fresh output on poisoned memory: the block torch's allocator hands back after a NaN fill
        nan = torch.full_like(yt, float("nan"))
        ptr = nan.data_ptr()
        del nan
        y = typed.forward(nsp, xt, wt, bt, *args, functional._CONV_APPLY)
        if y.data_ptr() == ptr:
            poisoned.append(1)
        ref = getattr(TF, "conv%dd" % nsp)(xt.double(), wt.double(), None if bt is None else bt.double(), *args)
        assert not torch.isnan(y).any()
        assert _rel(y, ref) < (5e-3 if dtype == torch.float16 else 1e-5)

    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        check()
    assert poisoned, "torch's allocator never handed back the poisoned block"


@pytest.mark.usefixtures("_deterministic")
def test_the_cpp_node_gives_what_the_python_function_gives_on_cudnn():
    """Property test (hypothesis): on random convolutions (1-3 spatial dims, plain, channels-last and
    sliced inputs, fp16 and fp32, groups, stride, padding, dilation, with and without a bias, each of
    x, w and b requiring grad or not, autograd.grad asking for all or some of them, a plain,
    channels-last or expanded output gradient), the C++ node records what the Python Function
    records: the same output, and the same gradients bit for bit (the same deterministic plans run
    both), with no NaN (the gradients come from torch's allocator right after NaN-filled blocks of
    their sizes were freed) and within a dtype's tolerance of a float64 reference."""
    hyp = pytest.importorskip("hypothesis")
    st = hyp.strategies
    from cudnnconv.torch import functional
    if not functional.autograd_node():
        pytest.skip(functional.NODE_UNAVAILABLE)

    def run(node, nsp, x, w, b, args, asked, gy):
        functional.use_autograd_node(node)
        try:
            y = getattr(cct, "conv%dd" % nsp)(x, w, b, *args)
            wanted = [t for t in (x, w, b) if t is not None and t.requires_grad]
            wanted = {"all": wanted, "first": wanted[:1], "last": wanted[-1:]}[asked]
            g_out = gy(y)
            # NaN-filled blocks of the gradients' sizes, freed: torch's allocator hands them back
            # to the gradients of the same sizes
            poison = [torch.full_like(t, float("nan")) for t in (x, w)]
            del poison
            return y, torch.autograd.grad(y, wanted, g_out)
        finally:
            functional.use_autograd_node(True)

    @hyp.settings(max_examples=50, deadline=None, derandomize=True)
    @hyp.given(seed=st.integers(0, 1000), nsp=st.integers(1, 3),
               layout=st.sampled_from(["contiguous", "channels_last", "sliced"]),
               dtype=st.sampled_from([torch.float16, torch.float32]), bias=st.booleans(),
               requires=st.sampled_from([(1, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0)]),
               asked=st.sampled_from(["all", "first", "last"]),
               grad_layout=st.sampled_from(["contiguous", "channels_last", "expanded"]),
               groups=st.sampled_from([1, 2]), stride=st.sampled_from([1, 2]), padding=st.sampled_from([0, 1]),
               dilation=st.sampled_from([1, 2]))
    def check(seed, nsp, layout, dtype, bias, requires, asked, grad_layout, groups, stride, padding, dilation):
        hyp.assume(bias or requires != (0, 0, 1))
        (x0, w0, b0), _ = _typed_case(seed, nsp, layout, dtype, "good" if bias else None, False, groups, stride,
                                      padding, dilation)
        args = (stride, padding, dilation, groups)
        g = torch.Generator(device=DEV).manual_seed(seed + 1)

        def gy(y):
            if grad_layout == "expanded":
                return torch.randn((1,) + tuple(y.shape[1:]), device=DEV, dtype=y.dtype, generator=g).expand(y.shape)
            u = torch.randn(y.shape, device=DEV, dtype=y.dtype, generator=g)
            if grad_layout == "channels_last" and nsp in (2, 3):
                u = u.contiguous(memory_format=torch.channels_last if nsp == 2 else torch.channels_last_3d)
            return u
        out = []
        for node in (True, False):
            g.manual_seed(seed + 1)
            leaves = (x0.detach().clone().requires_grad_(bool(requires[0])),
                      torch.nn.Parameter(w0.detach().clone(), requires_grad=bool(requires[1])),
                      None if b0 is None else b0.detach().clone().requires_grad_(bool(requires[2])))
            out.append((leaves,) + run(node, nsp, *leaves, args, asked, gy))
        (ln, yn, gn), (lf, yf, gf) = out
        assert type(yn.grad_fn).__name__ == "CudnnConvBackward" and type(yf.grad_fn).__name__ == "_ConvBackward"
        assert (yn.shape, yn.stride(), yn.dtype) == (yf.shape, yf.stride(), yf.dtype) and torch.equal(yn, yf)
        assert len(gn) == len(gf)
        for a, b_ in zip(gn, gf):
            assert (a.shape, a.stride(), a.dtype) == (b_.shape, b_.stride(), b_.dtype)
            assert not torch.isnan(a).any()
            assert torch.equal(a, b_)
        # against float64: PyTorch's own gradients of the same call
        ld = [None if t is None else t.detach().double().requires_grad_(t.requires_grad) for t in ln]
        yd = getattr(TF, "conv%dd" % nsp)(*ld, *args)
        wanted = [t for t in ld if t is not None and t.requires_grad]
        wanted = {"all": wanted, "first": wanted[:1], "last": wanted[-1:]}[asked]
        g.manual_seed(seed + 1)
        ref = torch.autograd.grad(yd, wanted, gy(yf).double())
        for a, r in zip(gn, ref):
            assert _rel(a, r) < (1e-2 if dtype == torch.float16 else 1e-5)

    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        check()


def test_a_converted_models_repeated_forward_takes_the_typed_forward_for_every_convolution(monkeypatch):
    """After a first forward, every convolution of a converted resnet18's forward, under no_grad and
    recording autograd, is taken by the typed forward (no Python layer, no public function), and the
    outputs equal PyTorch's."""
    from cudnnconv.torch import functional, typed
    theirs = _resnet18().to(DEV, torch.float16).to(memory_format=torch.channels_last).eval()
    ours = cct.convert(copy.deepcopy(theirs))
    x = _cl(2, 3, 64, 64)
    with torch.no_grad():
        ours(x)
    ours(x)
    real, slow = functional.cudnnconv, []

    class Counting:
        def __getattr__(self, name):
            slow.append(name)
            return getattr(real, name)
    monkeypatch.setattr(functional, "cudnnconv", Counting())
    monkeypatch.setattr(functional, "_checked", lambda *a: slow.append("python layer"))
    for record in (False, True):
        before = typed.taken()
        with torch.set_grad_enabled(record):
            y = ours(x)
            want = theirs(x)
        assert typed.taken() - before == 20
        assert (y.grad_fn is not None) == record
        assert _rel(y.float(), want.float()) < 1e-2
    assert slow == []
