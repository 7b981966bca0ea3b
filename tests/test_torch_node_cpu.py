"""cudnnconv.torch's C++ autograd node (conv_node) against its Python autograd.Function (_Conv), on
the CPU (skipped without torch, or where the node was not built).

Both record the same forward convolution; the node must give what the Function gives, call for
call: the output, its grad_fn's place in the graph, every gradient autograd asks for (and only
those: autograd.grad's inputs narrow them), bit for bit, and the same errors (an in-place change of
a saved tensor, a backward through a freed graph, a failing gradient call, double backward).  As in
test_torch_autograd_cpu.py, cudnnconv's functions are replaced by PyTorch's own CPU computations,
so what is compared is the recording and the wiring, not cuDNN; tests/gpu/test_gpu_torch.py holds
the same equality through cuDNN."""
import types

import pytest

torch = pytest.importorskip("torch", reason="cudnnconv.torch's tests need PyTorch")
cct = pytest.importorskip("cudnnconv.torch")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st, HealthCheck  # noqa: E402

from cudnnconv.torch import bridge, functional  # noqa: E402
from torch_paths import on_the_cpu  # noqa: E402

pytestmark = pytest.mark.skipif(functional.NODE_UNAVAILABLE is not None,
                                reason="the C++ node is not built here: %s" % functional.NODE_UNAVAILABLE)

_CALL_FLAGS = bridge.call_flags


@pytest.fixture
def cpu(monkeypatch):
    """cudnnconv's functions and the bridge replaced by CPU stand-ins; yields a function that
    configures the typed forward to take CPU tensors (``typed=True``) or to decline them."""
    fake = on_the_cpu(monkeypatch)

    def typed(on):
        if on:
            functional.configure_typed(cuda_only=False, run_strided=lambda *a: False, raw_stream=lambda i: 0,
                                       call_flags=_CALL_FLAGS)
        else:
            functional.configure_typed()
    yield types.SimpleNamespace(fake=fake, typed=typed)
    functional.configure_typed()
    functional.use_autograd_node(True)


def _recorded(node, f):
    """f() with forward convolutions recorded by the C++ node (``node``) or by the Function."""
    functional.use_autograd_node(node)
    try:
        return f()
    finally:
        functional.use_autograd_node(True)


@st.composite
def calls(draw):
    nsp = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2]))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 3))
    return dict(
        nsp=nsp, groups=groups, cin=cin, cout=cout, n=draw(st.integers(1, 2)),
        ks=tuple(draw(st.integers(1, 3)) for _ in range(nsp)),
        sp=tuple(draw(st.integers(3, 6)) for _ in range(nsp)),
        stride=draw(st.integers(1, 2)), padding=draw(st.integers(0, 2)), dilation=draw(st.integers(1, 2)),
        layout=draw(st.sampled_from(["contiguous", "channels_last", "sliced"])),
        bias=draw(st.booleans()),
        requires=draw(st.sampled_from([(1, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1)])),
        asked=draw(st.sampled_from(["all", "first", "last"])),
        grad_layout=draw(st.sampled_from(["contiguous", "channels_last", "expanded", "sliced"])),
        typed=draw(st.booleans()),
        seed=draw(st.integers(0, 2 ** 16)),
    )


def _fmt(nsp):
    return torch.channels_last if nsp == 2 else torch.channels_last_3d


def _inputs(c):
    g = torch.Generator().manual_seed(c["seed"])
    nsp = c["nsp"]
    shape = (c["n"], c["cin"]) + c["sp"]
    if c["layout"] == "sliced":
        x = torch.randn(shape[:-1] + (2 * shape[-1],), generator=g, dtype=torch.float64)[..., ::2]
    else:
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        if c["layout"] == "channels_last" and nsp > 1:
            x = x.contiguous(memory_format=_fmt(nsp))
    w = torch.randn((c["cout"], c["cin"] // c["groups"]) + c["ks"], generator=g, dtype=torch.float64)
    b = torch.randn(c["cout"], generator=g, dtype=torch.float64) if c["bias"] else None
    return x, w, b, g


def _leaves(c, x, w, b):
    rx, rw, rb = c["requires"]
    x = x.detach().clone().requires_grad_(bool(rx))
    w = torch.nn.Parameter(w.detach().clone(), requires_grad=bool(rw))
    b = None if b is None else b.detach().clone().requires_grad_(bool(rb))
    return x, w, b


def _grad_output(c, y, g):
    u = torch.randn(y.shape, generator=g, dtype=y.dtype)
    if c["grad_layout"] == "channels_last" and y.dim() in (4, 5):
        return u.contiguous(memory_format=_fmt(y.dim() - 2))
    if c["grad_layout"] == "expanded":
        return torch.randn((1,) + tuple(y.shape[1:]), generator=g, dtype=y.dtype).expand(y.shape)
    if c["grad_layout"] == "sliced":
        return torch.randn(tuple(y.shape[:-1]) + (2 * y.shape[-1],), generator=g, dtype=y.dtype)[..., ::2]
    return u


def _run(c, node, x0, w0, b0, g0):
    x, w, b = _leaves(c, x0, w0, b0)
    conv = getattr(cct, "conv%dd" % c["nsp"])
    y = _recorded(node, lambda: conv(x, w, b, c["stride"], c["padding"], c["dilation"], c["groups"]))
    wanted = [t for t in (x, w, b) if t is not None and t.requires_grad]
    if not wanted:
        return y, None
    if c["asked"] == "first":
        wanted = wanted[:1]
    elif c["asked"] == "last":
        wanted = wanted[-1:]
    grads = torch.autograd.grad(y, wanted, _grad_output(c, y, torch.Generator().manual_seed(g0)))
    return y, grads


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(c=calls())
def test_the_node_records_and_differentiates_what_the_function_does(cpu, c):
    hypothesis.assume(all(n + 2 * c["padding"] - c["dilation"] * (k - 1) - 1 >= 0 for n, k in zip(c["sp"], c["ks"])))
    cpu.typed(c["typed"])
    x0, w0, b0, _ = _inputs(c)
    yn, gn = _run(c, True, x0, w0, b0, c["seed"] + 1)
    yf, gf = _run(c, False, x0, w0, b0, c["seed"] + 1)
    assert (yn.shape, yn.stride(), yn.dtype, yn.requires_grad) == (yf.shape, yf.stride(), yf.dtype, yf.requires_grad)
    assert torch.equal(yn, yf)
    if gf is None:                             # nothing requires grad: nothing recorded
        assert gn is None and yn.grad_fn is None and yf.grad_fn is None
        return
    assert type(yn.grad_fn).__name__ == "CudnnConvBackward" and type(yf.grad_fn).__name__ == "_ConvBackward"
    # the same edges (the node also has one, empty, for an absent bias, as PyTorch's own
    # ConvolutionBackward0 has; the Function has none for a None argument)
    assert [(type(f).__name__, i) for f, i in yn.grad_fn.next_functions if f is not None] == \
        [(type(f).__name__, i) for f, i in yf.grad_fn.next_functions if f is not None]
    assert len(gn) == len(gf)
    for a, b in zip(gn, gf):
        assert (a.shape, a.stride(), a.dtype) == (b.shape, b.stride(), b.dtype)
        assert torch.equal(a, b)


def test_gradcheck_through_the_node(cpu):
    torch.manual_seed(5)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = cct.conv2d(x, w, b, 2, 1)
    assert type(y.grad_fn).__name__ == "CudnnConvBackward" and y.grad_fn.name() == "CudnnConvBackward"
    assert torch.autograd.gradcheck(lambda x, w, b: cct.conv2d(x, w, b, 2, 1), (x, w, b))


def _both(f):
    """f(node) for the node and for the Function: (what each returned, or the error's type and message)."""
    out = []
    for node in (True, False):
        try:
            out.append(("ok", _recorded(node, lambda: f(node))))
        except Exception as e:                 # the error itself is what is compared
            out.append(("raised", (type(e), str(e).replace("CudnnConvBackward", "_ConvBackward"))))
    return out


def _xw():
    torch.manual_seed(6)
    return (torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True),
            torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True))


def test_an_in_place_change_of_a_saved_tensor_is_refused_as_the_function_refuses_it(cpu):
    def f(node):
        x, w = _xw()
        xs = x * 1.0
        y = cct.conv2d(xs, w, None, 1, 1)
        xs.add_(1.0)
        y.sum().backward()
    (kn, en), (kf, ef) = _both(f)
    assert kn == kf == "raised" and en[0] is ef[0] is RuntimeError
    assert "modified by an inplace operation" in en[1] and "modified by an inplace operation" in ef[1]


def test_a_second_backward_needs_retain_graph_as_with_the_function(cpu):
    def f(node):
        x, w = _xw()
        y = cct.conv2d(x, w, None, 1, 1)
        y.sum().backward(retain_graph=True)
        first = x.grad.clone()
        y.sum().backward(retain_graph=True)
        assert torch.equal(x.grad, 2 * first)
        y.sum().backward()
        y.sum().backward()
    (kn, en), (kf, ef) = _both(f)
    assert kn == kf == "raised" and en[0] is ef[0] is RuntimeError
    assert "second time" in en[1] and "second time" in ef[1]


def test_an_error_in_a_gradient_call_reaches_the_caller(cpu, monkeypatch):
    def boom(*args, **kwargs):
        raise ValueError("conv_backward_weight failed: CUDNN_STATUS_EXECUTION_FAILED (x (1, 2, 5, 5))")
    monkeypatch.setattr(cpu.fake, "conv_backward_weight", boom)

    def f(node):
        x, w = _xw()
        cct.conv2d(x, w, None, 1, 1).sum().backward()
    (kn, en), (kf, ef) = _both(f)
    assert kn == kf == "raised" and en == ef
    assert en[0] is ValueError and "CUDNN_STATUS_EXECUTION_FAILED" in en[1]


def test_double_backward_is_refused_only_when_it_is_taken(cpu):
    def f(node):
        x, w = _xw()
        (gx,) = torch.autograd.grad(cct.conv2d(x, w, None, 1, 1).square().sum(), x, create_graph=True)
        assert gx.requires_grad                # create_graph itself works; differentiating gx does not
        gx.sum().backward()
    (kn, en), (kf, ef) = _both(f)
    assert kn == kf == "raised" and en == ef and "differentiate twice" in en[1]


def test_saved_tensor_hooks_see_what_the_function_saves(cpu):
    def f(node):
        x, w = _xw()
        packed, unpacked = [], []

        def pack(t):
            packed.append(tuple(t.shape))
            return t

        def unpack(t):
            unpacked.append(tuple(t.shape))
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            y = cct.conv2d(x, w, None, 1, 1)
        y.sum().backward()
        return packed, unpacked, x.grad, w.grad
    (kn, rn), (kf, rf) = _both(f)
    assert kn == kf == "ok"
    assert rn[0] == rf[0] == [(1, 2, 5, 5), (3, 2, 3, 3)] and rn[1] == rf[1]
    assert torch.equal(rn[2], rf[2]) and torch.equal(rn[3], rf[3])


def test_hooks_on_the_node_and_its_inputs_run(cpu):
    x, w = _xw()
    y = cct.conv2d(x, w, None, 1, 1)
    seen = []
    y.grad_fn.register_hook(lambda grad_inputs, grad_outputs: seen.append(len(grad_inputs)))
    x.register_hook(lambda g: seen.append("x") or g * 2)
    y.sum().backward()
    assert seen == [3, "x"]
    x2 = x.detach().clone().requires_grad_()
    torch.nn.functional.conv2d(x2, w.detach(), None, 1, 1).sum().backward()
    torch.testing.assert_close(x.grad, 2 * x2.grad, rtol=0, atol=1e-12)


def test_use_autograd_node_says_why_where_it_is_not_built(cpu, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(functional, "_conv_node", None)
        m.setattr(functional, "NODE_UNAVAILABLE", "cudnnconv.torch.conv_node does not import: test")
        with pytest.raises(RuntimeError, match="does not import: test"):
            functional.use_autograd_node(True)
        assert functional.use_autograd_node(False) is False and not functional.autograd_node()
    assert functional.use_autograd_node(True) is True and functional.autograd_node()


@st.composite
def tensors(draw):
    dtype = draw(st.sampled_from([torch.float16, torch.float32, torch.float64, torch.bfloat16, torch.int32,
                                  torch.uint8, torch.complex64]))
    ndim = draw(st.integers(0, 10))
    shape = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    t = torch.zeros(shape, dtype=dtype)
    kind = draw(st.sampled_from(["plain", "transposed", "sliced", "expanded", "offset"]))
    if kind == "transposed" and ndim >= 2:
        t = t.transpose(0, ndim - 1)
    elif kind == "sliced" and ndim >= 1:
        t = torch.zeros(shape[:-1] + (2 * shape[-1],), dtype=dtype)[..., ::2]
    elif kind == "expanded" and ndim >= 1:
        t = torch.zeros((1,) + shape[1:], dtype=dtype).expand(shape)
    elif kind == "offset":
        t = torch.zeros((2,) + shape, dtype=dtype)[1]
    return t


@settings(max_examples=300, deadline=None)
@given(t=tensors())
def test_the_node_reads_a_tensor_as_the_typed_path_reads_it(t):
    """What the typed backward makes of the node's read of a tensor (C++, through ATen) is what the
    typed path makes of it through its Python accessors (``read_strided``): the same signature, or
    None for both (a dtype cudnnconv does not run, more than 8 dims)."""
    from cudnnconv import callplan
    from cudnnconv.torch import conv_node, typed
    got = conv_node.read_probe(t, typed.node_signature_capsule())
    assert got == callplan.strided_signature(t, bridge._STRIDED)
    if t.dtype in bridge._STRIDED and t.dim() <= 8:
        assert got is not None and got[3] == t.data_ptr()


def test_an_output_gradient_a_consumer_leaves_undefined_is_zeros_as_for_the_function(cpu):
    """A consumer whose backward gives None for our output: the Function's backward sees zeros
    (PyTorch materializes them), and so does the node's: x.grad and w.grad are zeros, not None."""
    class Drop(torch.autograd.Function):
        @staticmethod
        def forward(ctx, y):
            return y * 2

        @staticmethod
        def backward(ctx, g):
            return None

    def f(node):
        x, w = _xw()
        y = cct.conv2d(x, w, None, 1, 1)
        Drop.apply(y).sum().backward()
        gx, gw = torch.autograd.grad(Drop.apply(cct.conv2d(x, w, None, 1, 1)).sum(), (x, w))
        return x.grad, w.grad, gx, gw
    (kn, rn), (kf, rf) = _both(f)
    assert kn == kf == "ok"
    for a, b in zip(rn, rf):
        assert b is not None and not b.any() and torch.equal(a, b)


def test_record_refuses_arguments_it_cannot_hold():
    from cudnnconv.torch import conv_node
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(1, 3, 5, 5, dtype=torch.float64)
    geom = functional._grad_geom(x, w, functional.rules.forward_plan(2, x.shape, w.shape, 1, 1, 1, 1)[0])
    for bad_geom, bad_flags in ((5, ()), ((), ()), ([geom[0], geom[1]], ()), (geom, [])):
        with pytest.raises(TypeError, match="geom must be a tuple of two tuples"):
            conv_node.record(x, w, None, y, bad_geom, bad_flags)
    with pytest.raises(TypeError, match="must be tensors"):
        conv_node.record(x, "w", None, y, geom, ())
    with pytest.raises(ValueError, match="channel dim"):
        conv_node.record(x, w, torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), geom, ())
    assert y.grad_fn is None                    # nothing was recorded by a refused call


def test_the_node_takes_only_a_backward_of_its_own_layout():
    from cudnnconv.torch import conv_node, typed
    import ctypes
    wrong = ctypes.pythonapi.PyCapsule_New
    wrong.restype, wrong.argtypes = ctypes.py_object, (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)
    with pytest.raises(ValueError):
        conv_node.configure(wrong(1, b"cudnnconv.torch.typed.conv_backward/0", None))
    conv_node.configure(typed.backward_capsule())   # (the right one stays configured)


def test_under_compiled_autograd_the_function_records_what_the_node_cannot(cpu):
    """docs/torch.md's limitation and its way out: the node has no compiled_args, so a backward
    compiled by compiled autograd raises PyTorch's NotImplementedError naming it; recorded by the
    Python Function (use_autograd_node(False)), the same backward runs, with the eager gradients."""
    compiled_autograd = pytest.importorskip("torch._dynamo.compiled_autograd")
    if not hasattr(compiled_autograd, "_enable"):
        pytest.skip("this torch has no compiled_autograd._enable")
    got = {}
    for node in (True, False):
        x, w = _xw()
        y = _recorded(node, lambda: cct.conv2d(x, w, None, 1, 1))
        try:
            with compiled_autograd._enable(torch.compile(backend="eager")):
                y.sum().backward()
            got[node] = ("ok", x.grad)
        except NotImplementedError as e:
            got[node] = ("raised", str(e))
    assert got[True][0] == "raised" and "compiled_args not implemented: CudnnConvBackward" in got[True][1]
    assert got[False][0] == "ok"
    x, w = _xw()
    _recorded(False, lambda: cct.conv2d(x, w, None, 1, 1)).sum().backward()
    assert torch.equal(got[False][1], x.grad)


def test_the_package_offers_the_switch():
    assert cct.use_autograd_node is functional.use_autograd_node and cct.autograd_node is functional.autograd_node
    assert cct.autograd_node() is True          # built here (the module's skip says otherwise)


def test_under_another_torch_version_the_node_refuses_to_load_and_the_function_records():
    """The node is compiled against one torch: under any other version its import fails with a
    message that says so, and cudnnconv.torch records with its Python Function (a fresh process in
    which torch reports another version)."""
    import subprocess
    import sys
    code = ("import torch\n"
            "torch.__version__ = '0.0.1+other'\n"
            "import cudnnconv.torch as cct\n"
            "from cudnnconv.torch import functional\n"
            "print(cct.autograd_node())\n"
            "print(functional.NODE_UNAVAILABLE)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "False"
    assert "built for torch %s, running torch 0.0.1+other: rebuild cudnnconv" % torch.__version__ in lines[1]
