"""Forward convolution against the float64 reference (tests/gpu/reference.py)."""
import pytest

import cudnnconv
import reference as ref
from cudnnconv.core.state import state
from gpu_cases import DTYPE_BENCH, DTYPE_BENCH_IDS, DTYPES, ENGINES, FORWARD, LAYOUTS, ids, kwargs

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")


def _run_forward(engine, case, dtype, layout, bench, allow_tf32=False, bias=True):
    x = ref.random(case.x, dtype, layout)
    w = ref.random(case.w, dtype, layout)
    b = ref.random((case.w[0],), dtype) if bias else None
    expect = ref.conv(x, w, b, **kwargs(case))
    out = ref.poisoned(expect.shape, dtype, layout)
    y = cudnnconv.conv(x, w, b, **kwargs(case), out=out, benchmark=bench, allow_tf32=allow_tf32,
                       engine=engine)
    return x, w, b, y, out, expect


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype,bench", DTYPE_BENCH, ids=DTYPE_BENCH_IDS)
@pytest.mark.parametrize("case", FORWARD, ids=ids(FORWARD))
@pytest.mark.parametrize("engine", ENGINES)
def test_forward_matches_reference(engine, case, dtype, layout, bench):
    _, _, _, y, out, expect = _run_forward(engine, case, dtype, layout, bench)
    assert y is out
    assert y.shape == expect.shape
    err = ref.rel_error(y, expect)
    assert err <= ref.tolerance(dtype), "relative error %.3g > %.3g (last call: %s)" % (
        err, ref.tolerance(dtype), cudnnconv.last_call())
    assert cudnnconv.last_call()["function"] == "conv"
    assert cudnnconv.last_call()["engine"] == engine


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", FORWARD[:4] + FORWARD[10:12], ids=ids(FORWARD[:4] + FORWARD[10:12]))
@pytest.mark.parametrize("engine", ENGINES)
def test_forward_result_layout(engine, case, layout):
    """Without out=, the result comes back in the input's layout."""
    x = ref.random(case.x, "float32", layout)
    w = ref.random(case.w, "float32", layout)
    y = cudnnconv.conv(x, w, **kwargs(case), allow_tf32=False, engine=engine)
    assert isinstance(y, cupy.ndarray)
    if layout == "channels_last":
        assert ref.is_channels_last(y), y.strides
    else:
        assert ref.is_nchw(y), y.strides
    assert ref.rel_error(y, ref.conv(x, w, **kwargs(case))) <= ref.tolerance("float32")


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("engine", ENGINES)
def test_forward_weight_only_channels_last(engine, layout):
    """A channels-last weight alone makes the call channels-last (as PyTorch's rule does)."""
    x = ref.random((2, 8, 9, 9), "float32")
    w = ref.random((4, 8, 3, 3), "float32", "channels_last")
    y = cudnnconv.conv(x, w, padding=1, allow_tf32=False, engine=engine)
    assert ref.is_channels_last(y)
    assert ref.rel_error(y, ref.conv(x, w, padding=1)) <= ref.tolerance("float32")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("out_layout,in_layout", [("channels_last", "nchw"), ("nchw", "channels_last")])
@pytest.mark.parametrize("engine", ENGINES)
def test_forward_out_layout_honoured(engine, out_layout, in_layout, dtype):
    """out= in the other layout than the inputs: written in place, its strides kept."""
    case = FORWARD[3]
    x = ref.random(case.x, dtype, in_layout)
    w = ref.random(case.w, dtype, in_layout)
    expect = ref.conv(x, w, **kwargs(case))
    out = ref.poisoned(expect.shape, dtype, out_layout, value=6e4)
    strides = out.strides
    ptr = out.data.ptr
    y = cudnnconv.conv(x, w, **kwargs(case), out=out, allow_tf32=False, engine=engine)
    assert y is out and out.strides == strides and out.data.ptr == ptr
    assert ref.rel_error(out, expect) <= ref.tolerance(dtype)


@pytest.mark.parametrize("engine", ENGINES)
def test_forward_out_non_contiguous_view(engine):
    """out= a strided view into a bigger buffer: only the view is written."""
    x = ref.random((2, 4, 8, 8), "float64")
    w = ref.random((6, 4, 3, 3), "float64")
    expect = ref.conv(x, w, padding=1)
    big = cupy.full((2, 12, 8, 8), cupy.nan)
    out = big[:, ::2]
    y = cudnnconv.conv(x, w, padding=1, out=out, engine=engine)
    assert y is out
    assert ref.rel_error(out, expect) <= ref.tolerance("float64")
    assert bool(cupy.isnan(big[:, 1::2]).all()), "wrote outside the out= view"


@pytest.mark.parametrize("case", [FORWARD[2], FORWARD[3], FORWARD[10], FORWARD[13]], ids=lambda c: c.id)
@pytest.mark.parametrize("bench", [False, True], ids=["heur", "bench"])
@pytest.mark.parametrize("engine", ENGINES)
def test_forward_tf32(engine, bench, case):
    """allow_tf32=True: fp32 data within TF32's tolerance; allow_tf32=False is checked
    at fp32 level by every fp32 test above, and its choices must be FMA math."""
    _, _, _, y, out, expect = _run_forward(engine, case, "float32", "nchw", bench, allow_tf32=True)
    assert ref.rel_error(y, expect) <= ref.tolerance("float32", tf32=True)
    _, _, _, y, out, expect = _run_forward(engine, case, "float32", "nchw", bench, allow_tf32=False)
    assert ref.rel_error(y, expect) <= ref.tolerance("float32")
    if engine == "legacy":
        for c in cudnnconv.last_call()["choices"]:
            assert c["math_type"] == "FMA_MATH", c


@pytest.mark.parametrize("bench", [False, True], ids=["heur", "bench"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("engine", ENGINES)
def test_forward_deterministic_bitwise(engine, dtype, layout, bench):
    case = FORWARD[13]
    x = ref.random(case.x, dtype, layout)
    w = ref.random(case.w, dtype, layout)
    results = []
    for _ in range(3):
        out = ref.poisoned(ref.conv_out_shape(case.x, case.w, **{k: v for k, v in kwargs(case).items()
                                                                    if k != "groups"}), dtype, layout)
        cudnnconv.conv(x, w, **kwargs(case), out=out, deterministic=True, benchmark=bench,
                       engine=engine)
        results.append(ref.bits(out))
    for r in results[1:]:
        assert bool((r == results[0]).all()), "deterministic=True gave different bits on a repeat"
    assert ref.rel_error(out, ref.conv(x, w, **kwargs(case))) <= ref.tolerance(dtype, tf32=True)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("engine", ENGINES)
def test_forward_torch_tensor_input(engine, dtype, layout):
    torch = pytest.importorskip("torch")
    tdt = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    x = torch.randn(2, 6, 10, 9, device="cuda", dtype=torch.float64).to(tdt)
    w = torch.randn(4, 3, 3, 3, device="cuda", dtype=torch.float64).to(tdt)
    b = torch.randn(4, device="cuda", dtype=torch.float64).to(tdt)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    expect = ref.conv(cupy.asarray(x.double()), cupy.asarray(w.double()), cupy.asarray(b.double()),
                      padding=1, groups=2)
    torch.cuda.synchronize()
    y = cudnnconv.conv(x, w, b, padding=1, groups=2, allow_tf32=False, engine=engine)
    assert isinstance(y, cupy.ndarray)
    assert y.dtype == ref.dtype_of(dtype)
    if layout == "channels_last":
        assert ref.is_channels_last(y)
    assert ref.rel_error(y, expect) <= ref.tolerance(dtype)
    # The torch tensors were read, not modified or moved.
    assert x.is_cuda and w.is_cuda


@pytest.mark.parametrize("engine", ENGINES)
def test_forward_torch_out(engine):
    """A PyTorch tensor as out=: the result lands in the tensor's memory."""
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 4, 8, 8, device="cuda", dtype=torch.float64)
    w = torch.randn(5, 4, 3, 3, device="cuda", dtype=torch.float64)
    out = torch.full((2, 5, 8, 8), float("nan"), device="cuda", dtype=torch.float64)
    expect = ref.conv(cupy.asarray(x), cupy.asarray(w), padding=1)
    torch.cuda.synchronize()
    cudnnconv.conv(x, w, padding=1, out=out, engine=engine)
    cupy.cuda.get_current_stream().synchronize()
    assert ref.rel_error(cupy.asarray(out), expect) <= ref.tolerance("float64")


@pytest.mark.parametrize("engine", ENGINES)
def test_forward_oom_fallback(engine):
    """With a CuPy pool limit that rules out the big-workspace algorithms, a
    benchmarking call still finds one that fits, and its result is correct:
    first with the big-workspace choice cached (on the legacy engine its
    workspace runs out of memory, so the call searches again), then with an
    empty cache (the search itself skips what does not fit)."""
    pool = cupy.get_default_memory_pool()
    # The reference's temporaries would leave split, partly used chunks in the
    # pool (memory it can hand out under any limit): compute it first, then
    # start from an empty pool with fresh, exactly sized arrays.
    xh = ref.random((16, 64, 48, 48), "float32").get()
    wh = ref.random((64, 64, 5, 5), "float32").get()
    expect_h = ref.conv(cupy.asarray(xh), cupy.asarray(wh), padding=2).get()
    pool.free_all_blocks()
    x, w, expect = cupy.asarray(xh), cupy.asarray(wh), cupy.asarray(expect_h)
    out = ref.poisoned(expect.shape, "float32")
    # What the unconstrained search picks, and how much workspace it wants.
    cudnnconv.clear_cache()
    cudnnconv.conv(x, w, padding=2, out=out, benchmark=True, allow_tf32=False, engine=engine)
    unconstrained = max(c["workspace"] for c in cudnnconv.last_call()["choices"])
    print("unconstrained choice:", cudnnconv.last_call()["choices"])
    err = ref.rel_error(out, expect)
    assert err <= ref.tolerance("float32"), (err, cudnnconv.last_call()["choices"])
    cupy.cuda.Device().synchronize()
    old = pool.get_limit()
    margin = 1 << 20
    runs = []
    try:
        for clear in (False, True):
            if clear:
                cudnnconv.clear_cache()
            out.fill(cupy.nan)
            pool.free_all_blocks()
            reusable = pool.free_bytes()        # cached memory the pool can still hand out
            pool.set_limit(size=pool.total_bytes() + margin)
            y = cudnnconv.conv(x, w, padding=2, out=out, benchmark=True, allow_tf32=False, engine=engine)
            cupy.cuda.Device().synchronize()
            pool.set_limit(size=old)
            runs.append((cudnnconv.last_call()["choices"], ref.rel_error(y, expect), y is out, reusable))
    finally:
        pool.set_limit(size=old)
        cudnnconv.clear_cache()
    print("constrained choices:", runs)
    for (choices, err, same, reusable), cleared in zip(runs, (False, True)):
        assert same
        assert err <= ref.tolerance("float32"), (err, choices)
        # With the cache kept, an engine may run the cached choice on the
        # workspace it still holds (the graph engine keeps it with the plan);
        # after clear_cache() nothing is held and the limit must rule.
        if cleared or engine == "legacy":
            assert all(c["workspace"] <= margin + reusable for c in choices), (choices, unconstrained)


@pytest.mark.parametrize("engine", ENGINES)
def test_forward_flags_context(engine):
    """flags() defaults apply (deterministic + benchmark off) and per-call arguments win."""
    case = FORWARD[2]
    x = ref.random(case.x, "float32")
    w = ref.random(case.w, "float32")
    expect = ref.conv(x, w, **kwargs(case))
    with cudnnconv.flags(deterministic=True, allow_tf32=False, engine=engine):
        y1 = cudnnconv.conv(x, w, **kwargs(case))
        y2 = cudnnconv.conv(x, w, **kwargs(case))
    assert bool((ref.bits(y1) == ref.bits(y2)).all())
    assert ref.rel_error(y1, expect) <= ref.tolerance("float32")


@pytest.mark.parametrize("engine", ENGINES)
def test_forward_nonstandard_strides_copied(engine):
    """Inputs that are neither NCHW- nor channels-last-packed (a slice) still compute right."""
    xb = ref.random((2, 8, 12, 13), "float32")
    x = xb[:, 1:7, 1:11, ::2]
    w = ref.random((4, 6, 3, 3), "float32")[:, :, ::-1]
    y = cudnnconv.conv(x, w, padding=1, allow_tf32=False, engine=engine)
    assert ref.rel_error(y, ref.conv(x, w, padding=1)) <= ref.tolerance("float32")


# ---------------------------------------------------------------------------
# conv()'s typed first pass (callplan.conv_plan) against the full path
# ---------------------------------------------------------------------------

_PLAN_FIELDS = ("fn", "device", "layout", "geom", "shape", "pack", "chunks", "repro", "names", "out_direct",
                "out_span", "spans", "pad", "extra")


def _first_pass_cases():
    """(x, w, b, kwargs, out) for calls the typed first pass must plan."""
    r = ref.random
    cases = []
    for layout in ("nchw", "channels_last"):
        for dt in ("float16", "float32", "bfloat16"):
            x, w = r((2, 8, 9, 10), dt, layout), r((4, 8, 3, 3), dt, layout)
            cases.append((x, w, None, dict(padding=1), None))
            cases.append((x, w, r((4,), dt), dict(stride=(2, 1), padding=[1, 0], dilation=2), None))
            cases.append((x, w, None, dict(padding=1), ref.poisoned((2, 4, 9, 10), dt, layout)))
    x, w = r((2, 8, 9, 10), "float32"), r((4, 8, 3, 3), "float32", "channels_last")
    cases.append((x, w, None, {}, None))                                        # weight alone channels-last
    cases.append((x, r((4, 8, 3, 3), "float32"), None, dict(padding=1),
                  cupy.empty((2, 4, 18, 10), "float32")[:, :, ::2]))           # a strided out
    cases.append((r((2, 8, 9, 10), "float64", "channels_last"), r((4, 8, 3, 3), "float64"), None, {}, None))
    cases.append((r((2, 6, 11), "float32"), r((6, 2, 3), "float32"), None, dict(groups=3, stride=2), None))
    cases.append((r((1, 4, 5, 6, 7), "float16", "channels_last"), r((8, 4, 3, 3, 3), "float16", "channels_last"),
                  r((8,), "float16"), dict(padding=(1, 0, 1), stride=[1]), None))
    xb = r((2, 8, 12, 13), "float32")
    cases.append((xb[:, 1:7, 1:11, ::2], r((4, 6, 3, 3), "float32")[:, :, ::-1], None, dict(padding=1), None))
    cases.append((r((0, 3, 5, 5), "float32"), r((2, 3, 3, 3), "float32"), None, {}, None))   # an empty batch
    return cases


def test_fast_first_pass_plans_what_the_full_path_plans(monkeypatch):
    from cudnnconv import api, callplan, options
    for x, w, b, kw, out in _first_pass_cases():
        opts = options.resolve(allow_tf32=False)
        full_kw = dict(stride=kw.get("stride", 1), padding=kw.get("padding", 0), dilation=kw.get("dilation", 1),
                       groups=kw.get("groups", 1))
        fast = callplan.conv_plan(x, w, b, full_kw["stride"], full_kw["padding"], full_kw["dilation"],
                                  full_kw["groups"], out, opts)
        assert fast is not None, (x.shape, x.strides, w.shape, kw)
        # A call with a list parameter is not memoized (a list does not
        # hash), so it never reaches the typed pass; the full path is asked
        # with the same values as tuples, which it plans the same way.
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
        state().memo.clear()
        with monkeypatch.context() as m:
            m.setattr(api, "conv_plan", lambda *a: None)
            y = cudnnconv.conv(x, w, b, **kw, out=out, allow_tf32=False)
        (full,) = callplan.memoized()
        for f in _PLAN_FIELDS:
            assert getattr(fast, f) == getattr(full, f), (f, getattr(fast, f), getattr(full, f), x.shape, kw)
        # and the call through the typed plan computes the same result
        state().memo.clear()
        y2 = cudnnconv.conv(x, w, b, **kw, out=None if out is None else out.copy(), allow_tf32=False)
        (plan,) = callplan.memoized()
        assert type(plan) is callplan.CallPlan
        if y.size:
            assert ref.rel_error(y2, ref.conv(x, w, b, **kw)) <= ref.tolerance(x.dtype.name)
            assert ref.rel_error(y, ref.conv(x, w, b, **kw)) <= ref.tolerance(x.dtype.name)


def test_fast_first_pass_leaves_the_rest_to_the_full_path():
    """Uncommon and invalid calls get no typed plan (the full path checks and explains them)."""
    import numpy
    from cudnnconv import callplan, options
    opts = options.resolve()
    r = ref.random
    x, w = r((2, 8, 9, 10), "float32"), r((4, 8, 3, 3), "float32")
    def args(x=x, w=w, b=None, stride=1, padding=0, dilation=1, groups=1, out=None):
        return (x, w, b, stride, padding, dilation, groups, out, opts)

    none_cases = [
        args(padding="same"),                                  # string padding
        args(stride=numpy.int64(1)),                           # a numpy int
        args(stride=True),                                     # a bool
        args(groups=2),                                        # weight has C/groups = 8, not 4
        args(w=r((4, 8, 3, 3), "float16")),                    # mixed dtypes
        args(w=r((4, 4, 3, 3), "float32")),                    # C/groups mismatch
        args(b=r((5,), "float32")),                            # bias of the wrong size
        args(out=cupy.empty((2, 4, 7, 7), "float32")),         # out of the wrong shape
        args(w=r((4, 8, 11, 3), "float32")),                   # kernel larger than the input
        args(stride=0),                                        # stride 0
        args(padding=-1),                                      # negative padding
        args(dilation=(1, 1, 1)),                              # one entry too many
        args(x=x.get()),                                       # a host array
    ]
    assert callplan.conv_plan(*args()) is not None             # the baseline is planned
    for i, a in enumerate(none_cases):
        assert callplan.conv_plan(*a) is None, i
    # out overlapping the input: left to the full path, which refuses it
    big = r((2, 8, 9, 10), "float32")
    o = big[:, :4, 1:, 1:]
    assert callplan.conv_plan(big, r((4, 8, 2, 2), "float32"), None, 1, 0, 1, 1, o, opts) is None
    with pytest.raises(ValueError, match="overlaps"):
        cudnnconv.conv(big, r((4, 8, 2, 2), "float32"), out=o)


def test_int_and_tuple_parameters_share_one_plan():
    """conv(x, w, stride=2, padding=1) finds the plan of stride=(2, 2),
    padding=(1, 1) (and remembers it under its own signature), and both
    compute the reference."""
    from cudnnconv import api, callplan, options
    r = ref.random
    x, w = r((2, 8, 9, 10), "float32"), r((4, 8, 3, 3), "float32")
    state().memo.clear()
    out = ref.poisoned((2, 4, 5, 5), "float32")
    y1 = cudnnconv.conv(x, w, stride=(2, 2), padding=(1, 1), out=out, allow_tf32=False)
    (plan,) = callplan.memoized()
    assert ref.rel_error(y1, ref.conv(x, w, stride=2, padding=1)) <= ref.tolerance("float32")
    out2 = ref.poisoned((2, 4, 5, 5), "float32")
    y2 = cudnnconv.conv(x, w, stride=2, padding=1, out=out2, allow_tf32=False)
    assert ref.rel_error(y2, ref.conv(x, w, stride=2, padding=1)) <= ref.tolerance("float32")
    # under the first call's signature, its canonical form, and the second call's signature
    assert len(state().memo) == 3 and callplan.memoized() == [plan]
    opts = options.resolve(allow_tf32=False)
    assert callplan.lookup(state().memo, "conv", (x, w, None), out2, (2, 1, 1, 1), opts)[1] is plan
    # a different int is a different problem: not served by that plan
    assert callplan.lookup(state().memo, "conv", (x, w, None), out2, (2, 2, 1, 1), opts)[1] is None
    y3 = cudnnconv.conv(x, w, stride=2, padding=2, allow_tf32=False)
    assert y3.shape == (2, 4, 6, 6)
    assert ref.rel_error(y3, ref.conv(x, w, stride=2, padding=2)) <= ref.tolerance("float32")
