"""Backward-input and backward-weight against the float64 reference, gradient
consistency with forward, and bitwise determinism."""
import pytest

import cudnnconv
import reference as ref
from gpu_cases import DTYPE_BENCH, DTYPE_BENCH_IDS, BACKWARD, DTYPES, ENGINES, LAYOUTS, ids, kwargs

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")


def _out_shape(case):
    return ref.conv_out_shape(case.x, case.w, case.stride, case.padding, case.dilation)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype,bench", DTYPE_BENCH, ids=DTYPE_BENCH_IDS)
@pytest.mark.parametrize("case", BACKWARD, ids=ids(BACKWARD))
@pytest.mark.parametrize("engine", ENGINES)
def test_backward_input_matches_reference(engine, case, dtype, layout, bench):
    w = ref.random(case.w, dtype, layout)
    gy = ref.random(_out_shape(case), dtype, layout)
    expect = ref.conv_backward_input(case.x, w, gy, **kwargs(case))
    out = ref.poisoned(case.x, dtype, layout)
    gx = cudnnconv.conv_backward_input(case.x, w, gy, **kwargs(case), out=out, benchmark=bench,
                                       allow_tf32=False, engine=engine)
    assert gx is out
    err = ref.rel_error(gx, expect)
    assert err <= ref.tolerance(dtype), "relative error %.3g (last call: %s)" % (err, cudnnconv.last_call())
    assert cudnnconv.last_call()["function"] == "conv_backward_input"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype,bench", DTYPE_BENCH, ids=DTYPE_BENCH_IDS)
@pytest.mark.parametrize("case", BACKWARD, ids=ids(BACKWARD))
@pytest.mark.parametrize("engine", ENGINES)
def test_backward_weight_matches_reference(engine, case, dtype, layout, bench):
    x = ref.random(case.x, dtype, layout)
    gy = ref.random(_out_shape(case), dtype, layout)
    expect = ref.conv_backward_weight(x, case.w, gy, **kwargs(case))
    out = ref.poisoned(case.w, dtype, layout)
    gw = cudnnconv.conv_backward_weight(x, case.w, gy, **kwargs(case), out=out, benchmark=bench,
                                        allow_tf32=False, engine=engine)
    assert gw is out
    err = ref.rel_error(gw, expect)
    assert err <= ref.tolerance(dtype), "relative error %.3g (last call: %s)" % (err, cudnnconv.last_call())
    assert cudnnconv.last_call()["function"] == "conv_backward_weight"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", [BACKWARD[0], BACKWARD[2], BACKWARD[3], BACKWARD[-3]], ids=lambda c: c.id)
@pytest.mark.parametrize("engine", ENGINES)
def test_backward_result_layout(engine, case, layout):
    """Without out=, the gradients come back in the layout of the arrays given."""
    w = ref.random(case.w, "float32", layout)
    x = ref.random(case.x, "float32", layout)
    gy = ref.random(_out_shape(case), "float32", layout)
    gx = cudnnconv.conv_backward_input(case.x, w, gy, **kwargs(case), allow_tf32=False, engine=engine)
    gw = cudnnconv.conv_backward_weight(x, case.w, gy, **kwargs(case), allow_tf32=False, engine=engine)
    check = ref.is_channels_last if layout == "channels_last" else ref.is_nchw
    assert check(gx), gx.strides
    assert check(gw), gw.strides
    assert ref.rel_error(gx, ref.conv_backward_input(case.x, w, gy, **kwargs(case))) <= 1e-5
    assert ref.rel_error(gw, ref.conv_backward_weight(x, case.w, gy, **kwargs(case))) <= 1e-5


@pytest.mark.parametrize("engine", ENGINES)
def test_backward_tf32(engine):
    case = BACKWARD[-1]
    w = ref.random(case.w, "float32")
    x = ref.random(case.x, "float32")
    gy = ref.random(_out_shape(case), "float32")
    gx = cudnnconv.conv_backward_input(case.x, w, gy, **kwargs(case), allow_tf32=True, engine=engine)
    gw = cudnnconv.conv_backward_weight(x, case.w, gy, **kwargs(case), allow_tf32=True, engine=engine)
    assert ref.rel_error(gx, ref.conv_backward_input(case.x, w, gy, **kwargs(case))) <= ref.TF32_TOLERANCE
    assert ref.rel_error(gw, ref.conv_backward_weight(x, case.w, gy, **kwargs(case))) <= ref.TF32_TOLERANCE


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", BACKWARD, ids=ids(BACKWARD))
@pytest.mark.parametrize("engine", ENGINES)
def test_gradients_consistent_with_forward(engine, case, layout):
    """<conv(x, w), g> = <x, conv_backward_input(g)> = <w, conv_backward_weight(x, g)> in float64."""
    x = ref.random(case.x, "float64", layout)
    w = ref.random(case.w, "float64", layout)
    y = cudnnconv.conv(x, w, **kwargs(case), engine=engine)
    g = ref.random(y.shape, "float64", layout)
    gx = cudnnconv.conv_backward_input(case.x, w, g, **kwargs(case), engine=engine)
    gw = cudnnconv.conv_backward_weight(x, case.w, g, **kwargs(case), engine=engine)
    lhs = float(cupy.vdot(y, g))
    scale = float(cupy.linalg.norm(y.ravel()) * cupy.linalg.norm(g.ravel()))
    assert abs(lhs - float(cupy.vdot(x, gx))) <= 1e-10 * scale
    assert abs(lhs - float(cupy.vdot(w, gw))) <= 1e-10 * scale


@pytest.mark.parametrize("bench", [False, True], ids=["heur", "bench"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("engine", ENGINES)
def test_backward_deterministic_bitwise(engine, dtype, layout, bench):
    """deterministic=True: backward results identical bit for bit over repeats
    (a problem big enough that atomics-based algorithms would differ)."""
    case = BACKWARD[-1]
    x = ref.random(case.x, dtype, layout)
    w = ref.random(case.w, dtype, layout)
    gy = ref.random(_out_shape(case), dtype, layout)
    gxs, gws = [], []
    for _ in range(3):
        gx = ref.poisoned(case.x, dtype, layout)
        gw = ref.poisoned(case.w, dtype, layout)
        cudnnconv.conv_backward_input(case.x, w, gy, **kwargs(case), out=gx, deterministic=True,
                                      benchmark=bench, engine=engine)
        cudnnconv.conv_backward_weight(x, case.w, gy, **kwargs(case), out=gw, deterministic=True,
                                       benchmark=bench, engine=engine)
        gxs.append(ref.bits(gx))
        gws.append(ref.bits(gw))
    for a in gxs[1:]:
        assert bool((a == gxs[0]).all()), "backward-input not bitwise reproducible"
    for a in gws[1:]:
        assert bool((a == gws[0]).all()), "backward-weight not bitwise reproducible"
    assert ref.rel_error(gx, ref.conv_backward_input(case.x, w, gy, **kwargs(case))) <= \
        ref.tolerance(dtype, tf32=True)
    assert ref.rel_error(gw, ref.conv_backward_weight(x, case.w, gy, **kwargs(case))) <= \
        ref.tolerance(dtype, tf32=True)


@pytest.mark.parametrize("engine", ENGINES)
def test_backward_torch_tensors(engine):
    """PyTorch tensors (bf16 and fp32) as weight/grad_output/input."""
    torch = pytest.importorskip("torch")
    for tdt, name in ((torch.float32, "float32"), (torch.bfloat16, "bfloat16")):
        x = torch.randn(2, 4, 8, 8, device="cuda", dtype=torch.float64).to(tdt)
        w = torch.randn(6, 4, 3, 3, device="cuda", dtype=torch.float64).to(tdt)
        gy = torch.randn(2, 6, 8, 8, device="cuda", dtype=torch.float64).to(tdt)
        xd, wd, gyd = (cupy.asarray(t.double()) for t in (x, w, gy))
        torch.cuda.synchronize()
        gx = cudnnconv.conv_backward_input(x.shape, w, gy, padding=1, allow_tf32=False, engine=engine)
        gw = cudnnconv.conv_backward_weight(x, w.shape, gy, padding=1, allow_tf32=False, engine=engine)
        assert ref.rel_error(gx, ref.conv_backward_input(x.shape, wd, gyd, padding=1)) <= ref.tolerance(name)
        assert ref.rel_error(gw, ref.conv_backward_weight(xd, w.shape, gyd, padding=1)) <= ref.tolerance(name)


@pytest.mark.parametrize("engine", ENGINES)
def test_float64_channels_last_computes_in_nchw(engine):
    """float64 follows PyTorch's layout rule (always NCHW: cuDNN's legacy API
    refuses channels-last double backward); channels-last float64 arrays are
    accepted, the results are NCHW and correct, and a channels-last out= is
    still honoured."""
    case = BACKWARD[2]
    x = ref.random(case.x, "float64", "channels_last")
    w = ref.random(case.w, "float64", "channels_last")
    gy = ref.random(_out_shape(case), "float64", "channels_last")
    y = cudnnconv.conv(x, w, **kwargs(case), engine=engine)
    gx = cudnnconv.conv_backward_input(case.x, w, gy, **kwargs(case), engine=engine)
    gw = cudnnconv.conv_backward_weight(x, case.w, gy, **kwargs(case), engine=engine)
    for a in (y, gx, gw):
        assert ref.is_nchw(a), a.strides
    assert ref.rel_error(y, ref.conv(x, w, **kwargs(case))) <= 1e-10
    assert ref.rel_error(gx, ref.conv_backward_input(case.x, w, gy, **kwargs(case))) <= 1e-10
    assert ref.rel_error(gw, ref.conv_backward_weight(x, case.w, gy, **kwargs(case))) <= 1e-10
    out = ref.poisoned(case.x, "float64", "channels_last")
    assert cudnnconv.conv_backward_input(case.x, w, gy, **kwargs(case), out=out, engine=engine) is out
    assert ref.is_channels_last(out)
    assert ref.rel_error(out, gx) <= 1e-12
