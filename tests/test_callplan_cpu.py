"""callplan: the typed helpers agree with params' definitions (no GPU).

The typed first pass itself needs CuPy arrays, so its agreement with the full
path is checked on the GPU (tests/gpu/test_gpu_forward.py); here: the layout
test, the byte spans, and that anything that is not a CuPy array is left to
the full path.
"""
import itertools

import numpy
import pytest

from cudnnconv import callplan, options, params
from conftest import MetaArray


class Strided:
    """What params.has_layout and params._span read of an array."""

    def __init__(self, shape, strides, itemsize, ptr=1 << 20):
        self.shape, self.strides, self.itemsize = tuple(shape), tuple(strides), itemsize
        self.ndim = len(shape)
        self.size = int(numpy.prod(shape)) if shape else 1

        class _Data:
            pass
        self.data = _Data()
        self.data.ptr = ptr


def _arrays():
    """Packed, permuted, sliced, broadcast and reversed stridings, 3-D to 5-D."""
    out = []
    for shape in ((2, 3, 5), (2, 3, 4, 5), (1, 3, 4, 5), (2, 1, 4, 5), (2, 3, 1, 1), (2, 3, 2, 3, 4), (3, 4, 1, 6)):
        for itemsize in (2, 4):
            for perm in set(itertools.permutations(range(len(shape)))):
                base = numpy.empty([shape[p] for p in perm], dtype="V%d" % itemsize)
                inv = numpy.argsort(perm)
                v = base.transpose(inv)
                out.append(Strided(v.shape, v.strides, itemsize))
            big = numpy.empty([2 * s for s in shape], dtype="V%d" % itemsize)
            v = big[tuple(slice(None, None, 2) for _ in shape)]
            out.append(Strided(v.shape, v.strides, itemsize))
            out.append(Strided(shape, (0,) * len(shape), itemsize))
            r = numpy.empty(shape, dtype="V%d" % itemsize)[..., ::-1]
            out.append(Strided(r.shape, r.strides, itemsize))
    return out


@pytest.mark.parametrize("layout", [params.NCHW, params.CHANNELS_LAST])
def test_has_layout_agrees_with_params(layout):
    seen = {True: 0, False: 0}
    for a in _arrays():
        want = params.has_layout(a, layout)
        got = callplan.has_layout(a.shape, a.strides, a.itemsize, layout == params.CHANNELS_LAST)
        assert got == want, (a.shape, a.strides, a.itemsize, layout)
        seen[want] += 1
    assert seen[True] > 10 and seen[False] > 10       # both answers were exercised


def test_rel_span_agrees_with_params_span():
    for a in _arrays():
        lo, hi = params._span(a)
        assert callplan.rel_span(a) == (lo - a.data.ptr, hi - a.data.ptr), (a.shape, a.strides)
    assert callplan.rel_span(None) is None
    assert callplan.rel_span(Strided((2, 0, 3), (0, 12, 4), 4)) is None        # empty: touches nothing


def test_non_cupy_arguments_take_the_full_path():
    opts = options.resolve()
    x = Strided((2, 3, 8, 8), (384, 128, 16, 2), 2)
    w = Strided((4, 3, 3, 3), (54, 18, 6, 2), 2)
    assert callplan.conv_plan(x, w, None, 1, 0, 1, 1, None, opts) is None
    assert callplan.conv_plan(numpy.zeros((2, 3, 8, 8)), numpy.zeros((4, 3, 3, 3)), None, 1, 0, 1, 1, None,
                              opts) is None
    memo = {}
    assert callplan.lookup(memo, "conv", (x, w, None), None, (1, 0, 1, 1), opts) == (None, None)
    assert memo == {}


def test_check_overlap_uses_the_plan_spans():
    plan = callplan.new_plan("conv", 0, params.NCHW, None, (1,), (False, False), [(0, 1)], None,
                             names=("input", "weight"), out_direct=True, out_span=(0, 50),
                             spans=((0, 100), None), pad=False)
    x = Strided((1,), (1,), 1, ptr=1000)
    w = Strided((1,), (1,), 1, ptr=1020)
    callplan.check_overlap(plan, (x, w), Strided((1,), (1,), 1, ptr=1100))      # just past the input
    callplan.check_overlap(plan, (x, w), Strided((1,), (1,), 1, ptr=950))       # ends at the input's start
    with pytest.raises(ValueError, match="out overlaps input"):
        callplan.check_overlap(plan, (x, w), Strided((1,), (1,), 1, ptr=1099))
    with pytest.raises(ValueError, match="out overlaps input"):
        callplan.check_overlap(plan, (x, w), Strided((1,), (1,), 1, ptr=951))
    callplan.check_overlap(plan, (x, w), None)


def test_canonical_writes_int_parameters_as_the_tuples_they_stand_for():
    canon = callplan._canonical
    assert canon("conv", (2, 1, 1, 1), 2) == ((2, 2), (1, 1), (1, 1), 1)            # groups stays an int
    assert canon("conv", ((2, 2), 1, (1, 1), 3), 2) == ((2, 2), (1, 1), (1, 1), 3)
    assert canon("conv", (3, 0, 2, 1), 3) == ((3, 3, 3), (0, 0, 0), (2, 2, 2), 1)
    assert canon("conv", ((2, 2), (1, 1), (1, 1), 1), 2) is None                     # nothing to change
    assert canon("conv", ((1,), (1,), (1,), 1), 2) is None                           # a 1-tuple is left alone
    assert canon("conv", (1, "same", 1, 1), 2) == ((1, 1), "same", (1, 1), 1)
    # exact ints only: a bool or a NumPy integer keeps its own signature
    assert canon("conv", (True, (0, 0), (1, 1), 1), 2) is None
    assert canon("conv", (numpy.int64(1), (0, 0), (1, 1), 1), 2) is None
    # the shape argument of the backward functions, groups, alpha and fusion are not spatial
    assert canon("conv_backward_input", ((2, 3, 8, 8), 2, 1, 1, 1), 2) == ((2, 3, 8, 8), (2, 2), (1, 1), (1, 1), 1)
    assert canon("conv_backward_weight", ((4, 3, 3, 3), (1, 1), 0, 1, 2), 2) == (
        (4, 3, 3, 3), (1, 1), (0, 0), (1, 1), 2)
    assert canon("conv_transpose", (2, 1, 1, 4, 1), 2) == ((2, 2), (1, 1), (1, 1), 4, (1, 1))
    assert canon("conv_bias_add_relu", (1, 1, 1, 1, 1.0, "relu"), 2) == ((1, 1), (1, 1), (1, 1), 1, 1.0, "relu")
    assert canon("something_else", (1, 1), 2) is None
    assert canon("conv", None, 2) is None


def test_canonical_agrees_with_spatial_tuple():
    """The memo may serve an int parameter with the plan of its tuple only
    because the full path reads them the same way."""
    for nsp in (1, 2, 3):
        for v in (0, 1, 2, 5):
            (s, p, d, g) = callplan._canonical("conv", (v, v, v, 1), nsp)
            assert s == p == d == params.spatial_tuple(v, nsp, "stride", 0)


def test_remember_stores_the_canonical_signature_too(fake_cupy):
    """A plan remembered under a signature is found by the same call with its
    int parameters written as tuples, and the other way round."""
    opts = options.resolve()
    x, w = _FakeArray((2, 3, 8, 8), channels_last=False), _FakeArray((4, 3, 3, 3), channels_last=False)
    plan = callplan.CallPlan()
    memo = {}
    sig, found = callplan.lookup(memo, "conv", (x, w, None), None, (2, (1, 1), 1, 1), opts)
    assert found is None and sig == ("conv", ((x.shape, x.strides, x.dtype, 0), (w.shape, w.strides, w.dtype, 0),
                                              None), None, (2, (1, 1), 1, 1), opts)
    callplan.remember(memo, sig, plan)
    assert len(memo) == 2                                   # the signature and its canonical form
    for scalars in ((2, (1, 1), 1, 1), ((2, 2), (1, 1), (1, 1), 1), (2, 1, 1, 1), ((2, 2), 1, (1, 1), 1)):
        assert callplan.lookup(memo, "conv", (x, w, None), None, scalars, opts)[1] is plan, scalars
    # not the same call: other parameters, another array layout, other flags, out given
    assert callplan.lookup(memo, "conv", (x, w, None), None, (1, (1, 1), 1, 1), opts)[1] is None
    assert callplan.lookup(memo, "conv", (w, x, None), None, (2, (1, 1), 1, 1), opts)[1] is None
    assert callplan.lookup(memo, "conv", (x, w, None), None, (2, (1, 1), 1, 1),
                           options.resolve(benchmark=True))[1] is None
    assert callplan.lookup(memo, "conv", (x, w, None), x, (2, (1, 1), 1, 1), opts)[1] is None
    assert callplan.lookup(memo, "conv_transpose", (x, w, None), None, (2, (1, 1), 1, 1), opts)[1] is None
    # a signature already canonical is stored once; None is not stored
    memo2 = {}
    canon = sig[:3] + (((2, 2), (1, 1), (1, 1), 1),) + sig[4:]
    callplan.remember(memo2, canon, plan)
    callplan.remember(memo2, None, plan)
    assert len(memo2) == 1
    assert callplan.lookup(memo2, "conv", (x, w, None), None, (2, 1, 1, 1), opts)[1] is plan
    # a full memo starts over
    full = {("x", i): plan for i in range(callplan.MEMO_MAX)}
    callplan.remember(full, sig, plan)
    assert len(full) == 2 and callplan.lookup(full, "conv", (x, w, None), None, sig[3], opts)[1] is plan


# ---------------------------------------------------------------------------
# Binding: which plans the typed path may run, and when a binding goes stale
# ---------------------------------------------------------------------------

class _FakeArray(MetaArray):
    """A CuPy array's metadata, packed NCHW or channels-last."""

    def __init__(self, shape, dtype="float16", channels_last=True, ptr=1 << 32, device=0):
        layout = params.CHANNELS_LAST if channels_last and len(shape) >= 3 else params.NCHW
        MetaArray.__init__(self, shape, params.layout_strides(tuple(shape), layout), dtype, ptr, device)


@pytest.fixture
def fake_cupy(monkeypatch):
    monkeypatch.setattr(params.ArrayArg, "materialize", lambda self: self.obj)
    callplan._use_array_type(_FakeArray)
    from cudnnconv.core.state import state
    state().memo.clear()
    yield
    state().memo.clear()
    callplan._use_array_type(None)


def _first_call(x, w, b=None, out=None, **kw):
    """What api.conv does on a miss, up to the engine: (miss, plan, y)."""
    from cudnnconv import api
    flags = (kw.get("benchmark"), None, None, None, None)
    miss = callplan.call(api._CONV, (x, w, b), out, (1, 1, 1, 1), flags)
    assert type(miss) is callplan.Miss and miss.plan is None and miss.sig is not None
    plan, _, _ = api._conv_first_pass(x, w, b, 1, 1, 1, 1, out, miss.opts)
    api._remember(api._CONV, miss, plan)
    y = out if out is not None else _FakeArray(plan.shape, x.dtype.name, plan.layout == params.CHANNELS_LAST,
                                              ptr=1 << 36)
    return miss, plan, y


def test_a_plan_binds_where_the_typed_path_can_run_the_whole_call(fake_cupy):
    from cudnnconv.core.executor import Executor
    x, w = _FakeArray((2, 8, 6, 6)), _FakeArray((4, 8, 3, 3))
    miss, plan, y = _first_call(x, w)
    from cudnnconv.core.state import state
    assert state().last_plan is plan and not plan.bound and plan.executor is None
    ex = Executor()
    assert callplan.bind(plan, ex, x, w, y, miss)
    assert plan.bound and plan.executor is ex and plan.dtype == x.dtype
    assert plan.out_strides == y.strides and plan.metas[0][0] == x.shape
    # the plan is read-only from Python
    with pytest.raises(AttributeError):
        plan.executor = None
    # anything the typed path cannot run is not bound
    xp, wp = _FakeArray((2, 8, 9, 9), ptr=2 << 32), _FakeArray((4, 8, 3, 3), channels_last=False)
    m, p, yy = _first_call(xp, wp)                                           # the weight needs packing
    assert p.layout == params.CHANNELS_LAST and p.pack == (False, True)
    assert not callplan.bind(p, ex, xp, wp, yy, m)
    xb, wb, b = _FakeArray((2, 8, 7, 7)), _FakeArray((4, 8, 3, 3)), _FakeArray((4,), ptr=3 << 32)
    m, p, yy = _first_call(xb, wb, b)
    assert not callplan.bind(p, ex, xb, wb, yy, m)                          # a bias: the full path adds it
    xo = _FakeArray((2, 8, 5, 5))
    strided_out = _FakeArray((2, 4, 5, 5), channels_last=False, ptr=5 << 32)      # NCHW out of an NHWC call
    m, p, yy = _first_call(xo, w, out=strided_out)
    assert not p.out_direct and not callplan.bind(p, ex, xo, w, yy, m)
    assert not callplan.bind(plan, None, x, w, y, miss)                       # an engine without an executor


def test_a_bound_plan_accepts_exactly_its_signature(fake_cupy):
    """What a plan object runs on the typed path (CallPlan.accepts, the
    checks of its call): its arrays' layouts, out absent or of the layout it
    allocates, the alignments it was bound for; an overlapping out raises."""
    from cudnnconv.core.executor import Executor
    x, w = _FakeArray((2, 8, 6, 6)), _FakeArray((4, 8, 3, 3), ptr=3 << 32)
    miss, plan, y = _first_call(x, w)
    assert not plan.accepts(x, w)                                             # not bound yet
    assert callplan.bind(plan, Executor(), x, w, y, miss)
    x2 = _FakeArray((2, 8, 6, 6), ptr=7 << 32)
    assert plan.accepts(x2, w) and plan.accepts(x2, w, None)
    assert plan.accepts(x2, w, out=_FakeArray(plan.shape, ptr=9 << 32))       # the layout it allocates
    assert not plan.accepts(x2, w, out=_FakeArray(plan.shape, channels_last=False, ptr=9 << 32))
    assert not plan.accepts(x2, w, out=_FakeArray(plan.shape, "float32", ptr=9 << 32))
    assert not plan.accepts(x2, w, out=_FakeArray(plan.shape, ptr=(9 << 32) + 2))        # less aligned
    assert not plan.accepts(_FakeArray((2, 8, 6, 6), ptr=(7 << 32) + 2), w)
    assert not plan.accepts(_FakeArray((2, 8, 6, 7), ptr=7 << 32), w)
    assert not plan.accepts(_FakeArray((2, 8, 6, 6), channels_last=False, ptr=7 << 32), w)
    assert not plan.accepts(_FakeArray((2, 8, 6, 6), device=1, ptr=7 << 32), w)
    assert not plan.accepts(w, x2) and not plan.accepts(x2, w, x2) and not plan.accepts(x2, numpy.zeros(3))
    with pytest.raises(ValueError, match="out overlaps input"):
        plan.accepts(x2, w, out=_FakeArray(plan.shape, ptr=(7 << 32) + 64))
    # only on its own thread, and not while explain() runs there
    import threading
    from cudnnconv.core.state import state
    st = state()
    st.explain = object()
    try:
        assert not plan.accepts(x2, w)
    finally:
        st.explain = None
    res = []
    t = threading.Thread(target=lambda: res.append(plan.accepts(x2, w)))
    t.start()
    t.join(30)
    assert res == [False] and plan.accepts(x2, w)
    # an equal dtype that is another object: not this plan's (dtypes compare by identity)
    odd = _FakeArray((2, 8, 6, 6), ptr=7 << 32)
    odd.dtype = numpy.dtype(numpy.float16, metadata={"k": 1})
    assert odd.dtype == x2.dtype and not plan.accepts(odd, w)
    # a plan made with out= takes an out of that out's layout only, and checks overlap
    xo, yo = _FakeArray((2, 8, 5, 5)), _FakeArray((2, 4, 5, 5), ptr=5 << 32)
    m, p, yy = _first_call(xo, w, out=yo)
    assert p.out_direct and callplan.bind(p, Executor(), xo, w, yy, m)
    assert p.accepts(xo, w, out=_FakeArray((2, 4, 5, 5), ptr=6 << 32)) and not p.accepts(xo, w)
    with pytest.raises(ValueError, match="out overlaps input"):
        p.accepts(xo, w, out=_FakeArray((2, 4, 5, 5), ptr=(1 << 32) + 16))


def test_binding_keeps_the_best_alignment_and_goes_stale_with_the_cache(fake_cupy):
    import importlib
    from cudnnconv import api
    from cudnnconv.core import state as core_state
    from cudnnconv.core.executor import Executor
    explain = importlib.import_module("cudnnconv.explain")
    x, w = _FakeArray((2, 8, 6, 6)), _FakeArray((4, 8, 3, 3))
    miss, plan, y = _first_call(x, w)
    first = Executor()
    assert callplan.bind(plan, first, x, w, y, miss)
    # a call on a less aligned input (a view 2 bytes in) does not rebind the plan
    odd = _FakeArray(x.shape, ptr=(1 << 32) + 2)
    assert not callplan.bind(plan, Executor(), odd, w, y, miss)
    assert plan.executor is first
    # a stale binding (a cache entry was dropped or replaced) is replaced by the next full-path call
    core_state.invalidate()
    assert not plan.bound
    second = Executor()
    m2 = callplan.call(api._CONV, (x, w, None), None, (1, 1, 1, 1), (None,) * 5)
    assert type(m2) is callplan.Miss and m2.plan is plan            # memoized, but not run: stale
    assert callplan.bind(plan, second, x, w, y, m2) and plan.bound and plan.executor is second
    # a generation bumped while the call ran leaves the new binding stale at once
    core_state.invalidate()
    assert callplan.bind(plan, Executor(), x, w, y, m2) and not plan.bound
    # while explain()/last_choice()/warm-up runs on the thread, nothing binds
    m3 = callplan.call(api._CONV, (x, w, None), None, (1, 1, 1, 1), (None,) * 5)
    with explain.intercept_search(lambda *a: None):
        assert not callplan.bind(plan, Executor(), x, w, y, m3)
    assert callplan.bind(plan, Executor(), x, w, y, m3) and plan.bound


def test_a_choice_cache_bumps_the_generation_when_it_drops_or_replaces(fake_cupy):
    from cudnnconv.cache import AlgoCache
    from cudnnconv.core import state as core_state
    c = AlgoCache("t", maxsize=2)
    g = core_state.current_generation()
    c.put("a", 1)
    c.put("b", 2)
    c.put("a", 1)                          # the same value again: nothing dropped
    assert core_state.current_generation() == g
    c.put("a", 3)                          # replaced
    assert core_state.current_generation() == g + 1
    c.put("c", 4)                          # evicts the least recently used
    assert core_state.current_generation() == g + 2
    c.clear()
    assert core_state.current_generation() == g + 3


def test_an_equal_choice_put_again_leaves_bound_plans_alone(fake_cupy):
    """A deterministic search without benchmark puts a new default choice object on every call; the
    same choice put again must not make every bound plan stale.  A different one must."""
    legacy = pytest.importorskip("cudnnconv.engines.legacy", reason="this build has no legacy engine")
    from cudnnconv.cache import AlgoCache
    from cudnnconv.core import state as core_state
    c = AlgoCache("t")
    first = legacy.LegacyChoice("forward", 1, 3, 1024, -1.0, True, False)
    c.put("k", first)
    g = core_state.current_generation()
    c.put("k", legacy.LegacyChoice("forward", 1, 3, 1024, -1.0, True, False))    # equal, another object
    assert core_state.current_generation() == g
    assert c.peek("k") is first            # the cached object stays: its kept workspace with it
    c.put("k", legacy.LegacyChoice("forward", 1, 3, 2048, -1.0, True, False))    # another workspace
    assert core_state.current_generation() == g + 1
    c.put("k", legacy.LegacyChoice("forward", 1, 3, 2048, 0.5, True, True))      # now benchmarked
    assert core_state.current_generation() == g + 2


def test_plan_factory_refuses_what_cannot_be_planned():
    from cudnnconv import api
    with pytest.raises(TypeError, match="plan\\(\\) takes one of"):
        api.plan(print)
    with pytest.raises(TypeError, match="plan\\(\\) takes one of"):
        api.plan("conv2d")


def test_the_memo_serves_only_exactly_typed_parameters(fake_cupy):
    """True == 1 == 1.0 and they hash alike, but only 1 is a valid stride: a
    call with a bool or a float must not find the plan of an int (the full
    path refuses it), while a NumPy integer, which the full path reads as the
    int, shares the int's plan."""
    from cudnnconv import api
    x, w = _FakeArray((2, 8, 6, 6)), _FakeArray((4, 8, 3, 3))
    miss, plan, y = _first_call(x, w)
    flags = (None,) * 5

    def lookup(scalars, fl=flags):
        return callplan.call(api._CONV, (x, w, None), None, scalars, fl)

    assert lookup((1, 1, 1, 1)).plan is plan
    m = lookup((1, [1, 1], 1, 1))                    # a list is valid but does not hash: no memo
    assert m.sig is None and m.plan is None
    assert api._conv_first_pass(x, w, None, 1, [1, 1], 1, 1, None, m.opts)[0].shape == plan.shape
    for scalars in ((True, 1, 1, 1), (1, 1.0, 1, 1), (1, 1, (1, True), 1), (1, 1, 1, True)):
        m = lookup(scalars)
        assert m.plan is None, scalars              # not the int call's plan: the full path checks it
        with pytest.raises(TypeError):
            api._conv_first_pass(x, w, None, *scalars, None, m.opts)
    m = lookup((numpy.int64(1), (numpy.int32(1), 1), 1, numpy.int16(1)))
    assert m.plan is plan and m.sig[3] == (1, (1, 1), 1, 1)
    assert all(type(v) is int for v in (m.sig[3][0], m.sig[3][1][0], m.sig[3][3]))
    # flags: a memo of benchmark=True does not answer benchmark=1
    assert lookup((1, 1, 1, 1), (True, None, None, None, None)).opts.benchmark is True
    with pytest.raises(TypeError, match="benchmark must be True, False or None, got 1"):
        lookup((1, 1, 1, 1), (1, None, None, None, None))
    with pytest.raises(ValueError, match="workspace_limit"):
        lookup((1, 1, 1, 1), (None, None, None, True, None))
    assert lookup((1, 1, 1, 1), (None, None, None, numpy.int64(8), None)).opts.workspace_limit == 8


def test_fused_alpha_is_tagged_so_it_never_matches_an_int(fake_cupy):
    from cudnnconv import api
    x, w = _FakeArray((2, 8, 6, 6)), _FakeArray((4, 8, 3, 3))
    z = _FakeArray((2, 4, 6, 6), ptr=7 << 32)
    m = callplan.call(api._FUSED, (x, w, z, None), None, (1, 1, 1, 1, 2.0, "auto"), (None,) * 5)
    assert m.sig[3] == (1, 1, 1, 1, (float, 2.0), "auto") and m.scalars == (1, 1, 1, 1, 2.0, "auto")


def test_a_dead_threads_plans_go_with_it_and_clear_cache_drops_them(fake_cupy):
    """Plans hold their thread's state weakly: when the thread ends, its state,
    memo and bound executors go at once (no garbage collection needed), and
    clear_cache() empties every live thread's memo.  A stale executor is let
    go by the next call that finds it."""
    import gc
    import threading
    import weakref
    from cudnnconv import api
    from cudnnconv.core import state as core_state
    from cudnnconv.core.executor import Executor
    refs = []

    class Tracked(Executor):          # a Python subclass can be weakly referenced
        pass

    def work():
        x, w = _FakeArray((2, 8, 6, 6)), _FakeArray((4, 8, 3, 3))
        miss, plan, y = _first_call(x, w)
        ex = Tracked()
        assert callplan.bind(plan, ex, x, w, y, miss)
        refs.append(weakref.ref(core_state.state()))
        refs.append(weakref.ref(ex))

    gc.disable()
    try:
        t = threading.Thread(target=work)
        t.start()
        t.join(timeout=30)
        assert not t.is_alive()
        assert len(refs) == 2
        assert refs[0]() is None and refs[1]() is None      # freed by reference counting alone
    finally:
        gc.enable()
    # clear_cache() empties this thread's memo too, and a held plan's executor goes when it is found stale
    x, w = _FakeArray((2, 8, 6, 6)), _FakeArray((4, 8, 3, 3))
    miss, plan, y = _first_call(x, w)
    ex = Tracked()
    assert callplan.bind(plan, ex, x, w, y, miss)
    ex_ref, ex = weakref.ref(ex), None
    assert core_state.state().memo
    cudnnconv_pkg = __import__("cudnnconv")
    cudnnconv_pkg.clear_cache()
    assert core_state.state().memo == {} and not plan.bound and plan.executor is not None
    api._remember(api._CONV, miss, plan)                        # memoized again, still stale
    m = callplan.call(api._CONV, (x, w, None), None, (1, 1, 1, 1), (None,) * 5)
    assert m.plan is plan and plan.executor is None and ex_ref() is None


def test_a_plans_full_path_runs_with_the_plans_flags(fake_cupy, monkeypatch):
    """A plan made with no workspace limit keeps none when a call of it goes
    through the public function inside a flags() block that sets one."""
    from cudnnconv import api
    seen = {}

    def fake_conv(*args, **kw):
        seen["opts"] = options.resolve(kw["benchmark"], kw["deterministic"], kw["allow_tf32"],
                                       kw["workspace_limit"], kw["engine"])
        return "ran"

    monkeypatch.setattr(api, "conv", fake_conv)
    opts = options.resolve(benchmark=True)
    import cudnnconv as pkg
    with pkg.flags(workspace_limit=1024, engine="legacy"):
        assert api._redo_conv((None, None, None), (1, 1, 1, 1), None, opts) == "ran"
        assert options.current().workspace_limit == 1024                 # the block's flags are back
    assert seen["opts"] == opts and seen["opts"].workspace_limit is None and seen["opts"].engine == "auto"
