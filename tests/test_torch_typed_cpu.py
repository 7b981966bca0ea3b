"""cudnnconv.torch.typed's forward against the Python path it stands in front of (skipped without torch).

The typed forward (C) takes a repeated forward convolution before functional's Python layer does,
and must give what that layer gives, call for call: the same tensor (values, shape, strides, dtype,
autograd record, gradients) or the same error, and decline (None) only where that layer would cast,
pad or unbatch something.  Here both run on the CPU with cudnnconv's functions replaced by PyTorch's
own CPU convolutions (torch_paths.on_the_cpu, as in test_torch_autograd_cpu.py); the typed forward is configured to take
CPU tensors and to run through a stand-in for the typed tensor path, which either declines (the
call then goes through functional._convolve, as on a first call) or runs the convolution itself.
tests/gpu/test_gpu_torch.py holds the same equality on a GPU, through cuDNN."""
import contextlib

import numpy
import pytest

torch = pytest.importorskip("torch", reason="cudnnconv.torch's tests need PyTorch")
cct = pytest.importorskip("cudnnconv.torch")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st, HealthCheck  # noqa: E402

from cudnnconv.torch import bridge, functional, typed  # noqa: E402
from torch_paths import on_the_cpu, outcome, python_path  # noqa: E402

TF = torch.nn.functional
_CALL_FLAGS = bridge.call_flags            # the real one: the fixture replaces bridge's for the Python path


_RAN = []


def _runs(spec, tensors, out, scalars, flags, dtypes, stream):
    """A stand-in for the typed tensor path that runs the call (and records what it was handed)."""
    _RAN.append((spec.name, scalars, flags, out.shape, out.stride()))
    x, w, _ = tensors
    functional.cudnnconv.conv(x, w, None, *scalars, out=out)
    return True


def _declines(*args):
    return False


@pytest.fixture
def cpu(monkeypatch, request):
    on_the_cpu(monkeypatch)
    yield lambda run: functional.configure_typed(cuda_only=False, run_strided=run, raw_stream=lambda i: 0,
                                                 call_flags=_CALL_FLAGS)
    functional.configure_typed()


def _arg(draw, nsp, lo, hi):
    if draw(st.booleans()):
        return draw(st.integers(lo, hi))
    return tuple(draw(st.integers(lo, hi)) for _ in range(nsp))


@st.composite
def calls(draw):
    nsp = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2]))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 3))
    n = draw(st.integers(1, 2))
    ks = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    sp = tuple(draw(st.integers(3, 6)) for _ in range(nsp))
    stride = _arg(draw, nsp, 1, 2)
    padding = draw(st.one_of(st.just(None), st.sampled_from(["same", "valid"])))
    if padding is None:
        padding = _arg(draw, nsp, 0, 2)
    dilation = _arg(draw, nsp, 1, 2)
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return dict(
        nsp=nsp, groups=groups, cin=cin, cout=cout, n=n, ks=ks, sp=sp, stride=stride, padding=padding,
        dilation=dilation, dtype=dtype,
        wdtype=draw(st.sampled_from([dtype] * 6 + [torch.float64 if dtype == torch.float32 else torch.float32])),
        layout=draw(st.sampled_from(["contiguous", "channels_last", "transposed", "sliced"])),
        wlayout=draw(st.sampled_from(["contiguous", "channels_last"])),
        bias=draw(st.sampled_from([None, "good", "good", "shape", "dtype"])),
        unbatched=draw(st.integers(0, 9)) == 0,
        np_groups=draw(st.integers(0, 9)) == 0,
        parameter=draw(st.booleans()),
        grads=(draw(st.booleans()), draw(st.booleans()), draw(st.booleans())),
        grad_mode=draw(st.booleans()),
        seed=draw(st.integers(0, 2 ** 16)),
    )


def _tensors(c):
    g = torch.Generator().manual_seed(c["seed"])
    nsp = c["nsp"]
    shape = (c["n"], c["cin"]) + c["sp"]
    if c["layout"] == "sliced":
        x = torch.randn(shape[:-1] + (2 * shape[-1],), generator=g, dtype=c["dtype"])[..., ::2]
    elif c["layout"] == "transposed":
        x = torch.randn(shape[:-2] + (shape[-1], shape[-2]) if nsp > 1 else shape, generator=g,
                        dtype=c["dtype"])
        x = x.transpose(-1, -2) if nsp > 1 else x
    else:
        x = torch.randn(shape, generator=g, dtype=c["dtype"])
        if c["layout"] == "channels_last" and nsp in (2, 3):
            x = x.contiguous(memory_format=torch.channels_last if nsp == 2 else torch.channels_last_3d)
    w = torch.randn((c["cout"], c["cin"] // c["groups"]) + c["ks"], generator=g, dtype=c["wdtype"])
    if c["wlayout"] == "channels_last" and nsp in (2, 3):
        w = w.contiguous(memory_format=torch.channels_last if nsp == 2 else torch.channels_last_3d)
    b = None
    if c["bias"] is not None:
        k = c["cout"] + (1 if c["bias"] == "shape" else 0)
        b = torch.randn(k, generator=g, dtype=torch.float16 if c["bias"] == "dtype" else c["dtype"])
    if c["unbatched"]:
        x = x[0]
    return x, w, b


def _leaves(c, x, w, b):
    """Fresh leaves of x, w, b with the call's requires_grad (w a Parameter where asked)."""
    gx, gw, gb = c["grads"]
    x = x.detach().clone().requires_grad_(gx and x.is_floating_point())
    w = torch.nn.Parameter(w.detach().clone(), requires_grad=gw) if c["parameter"] else \
        w.detach().clone().requires_grad_(gw)
    b = None if b is None else b.detach().clone().requires_grad_(gb)
    return x, w, b


def _declined_by_design(c, x, w):
    """The calls the typed forward leaves to the Python path: it would unbatch, or pad first ('same'
    with an odd total), or a dtype or bias differs (the Python path raises there), or an argument
    is not plain (a NumPy integer)."""
    if c["unbatched"] or c["np_groups"] or c["wdtype"] != c["dtype"] or c["bias"] in ("shape", "dtype"):
        return True
    if c["padding"] == "same":
        try:
            r, _ = functional.rules.forward_plan(c["nsp"], x.shape, w.shape, c["stride"], "same", c["dilation"],
                                                 c["groups"])
        except Exception:
            return False
        return r.pre_pad is not None
    return False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(c=calls(), runs=st.booleans())
def test_the_typed_forward_gives_what_the_python_path_gives(cpu, c, runs):
    cpu(_runs if runs else _declines)
    x0, w0, b0 = _tensors(c)
    groups = numpy.int64(c["groups"]) if c["np_groups"] else c["groups"]
    args = (c["stride"], c["padding"], c["dilation"], groups)
    mode = contextlib.nullcontext() if c["grad_mode"] else torch.no_grad()
    xp, wp, bp = _leaves(c, x0, w0, b0)
    xt, wt, bt = _leaves(c, x0, w0, b0)
    with mode:
        want = outcome(lambda: python_path(c["nsp"], xp, wp, bp, *args))
        taken = typed.taken()
        got = outcome(lambda: typed.forward(c["nsp"], xt, wt, bt, *args, functional._CONV_APPLY))
    if got == ("ok", None):
        assert _declined_by_design(c, x0, w0), c
        assert typed.taken() == taken
        return
    if got[0] == "raised" or want[0] == "raised":
        assert got == want                         # an error it meets first is the Python path's too
        return
    assert not _declined_by_design(c, x0, w0), c
    yp, yt = want[1], got[1]
    assert (yt.shape, yt.stride(), yt.dtype, yt.requires_grad) == (yp.shape, yp.stride(), yp.dtype, yp.requires_grad)
    assert type(yt.grad_fn).__name__ == type(yp.grad_fn).__name__
    assert torch.equal(yt, yp)
    assert typed.taken() == taken + 1
    if yp.requires_grad:
        up = torch.randn(yp.shape, dtype=yp.dtype, generator=torch.Generator().manual_seed(c["seed"] + 1))
        yp.backward(up)
        yt.backward(up)
        for a, b in ((xp, xt), (wp, wt), (bp, bt)):
            if a is not None and a.requires_grad:
                assert torch.equal(a.grad, b.grad)


def test_a_repeated_call_finds_its_entry_and_runs_with_the_entrys_arguments(cpu):
    cpu(_runs)
    typed.clear()
    x = torch.randn(2, 4, 7, 7).contiguous(memory_format=torch.channels_last)
    w = torch.randn(6, 2, 3, 3)
    _RAN.clear()
    with torch.no_grad():
        ys = [typed.forward(2, x, w, None, 2, (1, 1), 1, 2, None) for _ in range(3)]
    assert typed.entries() == 1
    want = TF.conv2d(x, w, None, 2, 1, 1, 2)
    for y in ys:
        assert torch.equal(y, want) and y.stride() == want.stride()            # channels-last, as torch's
    assert len(_RAN) == 3 and len({(r[1], r[2], r[3], r[4]) for r in _RAN}) == 1
    assert _RAN[0][0] == "conv" and _RAN[0][1] == ((2, 2), (1, 1), (1, 1), 2)
    assert _RAN[0][2] == bridge.torch_flags() + (None, None)                   # torch's flags outside a block
    with cct.flags(benchmark=False, deterministic=True, allow_tf32=False, workspace_limit=1 << 20):
        with torch.no_grad():
            typed.forward(2, x, w, None, 2, (1, 1), 1, 2, None)
        block = _CALL_FLAGS()
    assert _RAN[-1][2] == block and block[:4] == (False, True, False, 1 << 20)   # the block's, spelled out
    other = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        typed.forward(2, other, w, None, 2, (1, 1), 1, 2, None)
    assert typed.entries() == 2


def test_it_takes_nothing_before_it_is_configured_and_no_subclass_or_transform(cpu):
    cpu(_runs)

    class Sub(torch.Tensor):
        pass
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with torch.no_grad():
        assert typed.forward(2, x.as_subclass(Sub), w, None, 1, 1, 1, 1, None) is None
        assert typed.forward(2, x, w, None, [1, 1], 1, 1, 1, None) is None           # a list: not plain
        assert typed.forward(2, x, w, None, 1, 1, 1, True, None) is None             # a bool group count
        assert typed.forward(2, x.to_sparse(), w, None, 1, 1, 1, 1, None) is None    # no strided memory
        with torch.autocast("cpu"):
            assert typed.forward(2, x, w, None, 1, 1, 1, 1, None) is None
    seen = []

    def f(w):
        seen.append(typed.forward(2, x, w, None, 1, 1, 1, 1, None))
        return w.sum()
    torch.func.grad(f)(w)                          # a functorch transform: its tensors are never read
    assert seen == [None]
    functional.configure_typed()                   # CUDA tensors only again
    with torch.no_grad():
        assert typed.forward(2, x, w, None, 1, 1, 1, 1, None) is None


def test_a_device_with_an_index_that_is_not_cuda_is_not_taken():
    """CUDA is what the Python path says it is (``is_cuda``): a lazy tensor has a device index (0)
    too, and the typed forward must leave it alone, so that the Python path refuses it with its
    TypeError and a converted module runs torch's own convolution on it, as before."""
    lazy = pytest.importorskip("torch._lazy.ts_backend", reason="torch's lazy backend (a non-CUDA indexed device)")
    lazy.init()
    functional.configure_typed()
    x, w = torch.randn(1, 2, 5, 5, device="lazy"), torch.randn(3, 2, 3, 3, device="lazy")
    assert x.get_device() == 0 and not x.is_cuda
    with torch.no_grad():
        assert typed.forward(2, x, w, None, 1, 1, 1, 1, functional._CONV_APPLY) is None
        with pytest.raises(TypeError, match="runs CUDA tensors"):
            cct.conv2d(x, w, None, 1, 1)
        theirs = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False)
        ours = cct.convert(torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1, bias=False)))[0]
        ours.weight.copy_(theirs.weight)
        xc = torch.randn(1, 2, 5, 5)
        assert torch.equal(ours.to("lazy")(xc.to("lazy")).cpu(), theirs.to("lazy")(xc.to("lazy")).cpu())
