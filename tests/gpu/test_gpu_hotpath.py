"""The bound call plan: a repeat call runs on the typed path, right, and
anything that differs from what the plan was bound for takes the full path.

Whether a call ran on the typed path is read from the thread's state: a
bound run leaves its CallPlan as the last call's record (the full path
leaves a tuple), and the stage trace has a ``total`` only for such a run.
"""
import sys
import threading

import pytest

import cudnnconv
import reference as ref
from cudnnconv.core.state import state

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")


def _bound_ran():
    return type(state().last) is cudnnconv.CallPlan


def _conv_case(dtype="float16", layout="channels_last"):
    return (ref.random((4, 16, 10, 10), dtype, layout), ref.random((24, 16, 3, 3), dtype, layout),
            dict(stride=1, padding=1))


@pytest.mark.parametrize("dtype,layout", [("float16", "channels_last"), ("float32", "nchw"),
                                          ("bfloat16", "channels_last")])
@pytest.mark.parametrize("engine", ["auto", "graph"])
def test_repeat_calls_run_bound_and_match_the_reference(engine, dtype, layout):
    cudnnconv.clear_cache()
    x, w, kw = _conv_case(dtype, layout)
    cudnnconv.conv(x, w, **kw, engine=engine)            # the first call: full path, then bound
    assert not _bound_ran()
    for i in range(3):                                   # fresh data and pointers every call
        x = ref.random(x.shape, dtype, layout)
        y = cudnnconv.conv(x, w, **kw, engine=engine)
        assert _bound_ran(), i
        assert ref.rel_error(y, ref.conv(x, w, **kw)) <= ref.tolerance(dtype, tf32=True)
        assert (ref.is_channels_last if layout == "channels_last" else ref.is_nchw)(y)
        out = ref.poisoned(y.shape, dtype, layout)
        assert cudnnconv.conv(x, w, **kw, out=out, engine=engine) is out
        assert ref.rel_error(out, ref.conv(x, w, **kw)) <= ref.tolerance(dtype, tf32=True)
    assert cudnnconv.last_call()["engine"] == "graph" and cudnnconv.last_call()["path"] == "direct"
    assert cudnnconv.last_call()["choices"][0]["engine"] == "graph"


def test_backward_and_transposed_calls_run_bound():
    cudnnconv.clear_cache()
    dt, lay = "float16", "channels_last"
    x, w, kw = _conv_case(dt, lay)
    gy = ref.random((4, 24, 10, 10), dt, lay)
    wt = ref.random((16, 8, 4, 4), dt, lay)
    calls = [
        (lambda x, gy: cudnnconv.conv_backward_input(x.shape, w, gy, **kw),
         lambda x, gy: ref.conv_backward_input(x.shape, w, gy, **kw)),
        (lambda x, gy: cudnnconv.conv_backward_weight(x, w.shape, gy, **kw),
         lambda x, gy: ref.conv_backward_weight(x, w.shape, gy, **kw)),
        (lambda x, gy: cudnnconv.conv_transpose(x, wt, None, stride=2, padding=1),
         lambda x, gy: ref.conv_transpose(x, wt, None, stride=2, padding=1)),
    ]
    for ours, theirs in calls:
        ours(x, gy)
        for _ in range(2):
            x, gy = ref.random(x.shape, dt, lay), ref.random(gy.shape, dt, lay)
            got = ours(x, gy)
            assert _bound_ran()
            assert ref.rel_error(got, theirs(x, gy)) <= ref.tolerance(dt)


def test_what_differs_from_the_plan_takes_the_full_path():
    """Shape, strides, dtype, alignment and out each change what runs: the
    call takes the full path (and is right), never the bound plan."""
    cudnnconv.clear_cache()
    x, w, kw = _conv_case("float16", "channels_last")
    cudnnconv.conv(x, w, **kw)
    cudnnconv.conv(x, w, **kw)
    assert _bound_ran()
    bound = state().last

    def full_path_and_right(xx, ww=w, out=None):
        y = cudnnconv.conv(xx, ww, **kw, out=out)
        assert state().last is not bound
        expect = ref.conv(xx, ww, **kw)
        assert ref.rel_error(y, expect) <= ref.tolerance(xx.dtype.name)
        return y

    full_path_and_right(ref.random((2, 16, 10, 10), "float16", "channels_last"))      # shape
    full_path_and_right(ref.random((4, 16, 10, 10), "float16", "nchw"))               # strides
    full_path_and_right(ref.random((4, 16, 10, 10), "float32", "channels_last"),      # dtype
                        ref.random((24, 16, 3, 3), "float32", "channels_last"))
    # alignment: same shape and strides, a pointer 2 bytes past a 16-byte boundary
    buf = cupy.empty(x.size + 8, dtype=x.dtype)
    xa = buf[1:1 + x.size].reshape(4, 10, 10, 16).transpose(0, 3, 1, 2)
    xa[...] = ref.random(x.shape, "float16", "channels_last")
    assert xa.shape == x.shape and xa.strides == x.strides and xa.data.ptr % 16 == 2
    full_path_and_right(xa)
    # out that overlaps the input: refused on a repeat call as on the first
    w1 = ref.random((16, 16, 1, 1), "float16", "channels_last")
    cudnnconv.conv(x, w1)
    cudnnconv.conv(x, w1, out=ref.poisoned(x.shape, "float16", "channels_last"))
    with pytest.raises(ValueError, match="overlaps"):
        cudnnconv.conv(x, w1, out=x)
    with pytest.raises(ValueError, match="overlaps"):
        cudnnconv.conv(x, w1, out=x)
    # and the plan runs bound again for its own signature
    x2 = ref.random(x.shape, "float16", "channels_last")
    y = cudnnconv.conv(x2, w, **kw)
    assert _bound_ran()
    assert ref.rel_error(y, ref.conv(x2, w, **kw)) <= ref.tolerance("float16")


def test_another_device_takes_the_full_path():
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    x, w, kw = _conv_case()
    cudnnconv.conv(x, w, **kw)
    cudnnconv.conv(x, w, **kw)
    with cupy.cuda.Device(1):
        x1, w1 = cupy.asarray(x), cupy.asarray(w)
        y = cudnnconv.conv(x1, w1, **kw)
        assert y.device.id == 1
    assert ref.rel_error(y, ref.conv(x, w, **kw)) <= ref.tolerance("float16")


def test_clear_cache_and_a_replaced_choice_unbind():
    x, w, kw = _conv_case()
    cudnnconv.clear_cache()
    cudnnconv.conv(x, w, **kw)
    cudnnconv.conv(x, w, **kw)
    assert _bound_ran()
    hits = cudnnconv.cache_info()["graph"].hits
    cudnnconv.conv(x, w, **kw)
    assert cudnnconv.cache_info()["graph"].hits == hits + 1            # a bound run counts as a hit
    cudnnconv.clear_cache()
    y = cudnnconv.conv(x, w, **kw)
    assert not _bound_ran() and cudnnconv.cache_info()["graph"].misses >= 1
    assert ref.rel_error(y, ref.conv(x, w, **kw)) <= ref.tolerance("float16")
    cudnnconv.conv(x, w, **kw)
    assert _bound_ran()
    # benchmark=True re-searches the heuristic entry and replaces it: every
    # plan bound to the old choice goes back through the full path once
    plan = state().last
    cudnnconv.conv(x, w, **kw, benchmark=True)
    assert not plan.bound
    cudnnconv.conv(x, w, **kw)                           # the full path binds it again
    cudnnconv.conv(x, w, **kw)
    assert _bound_ran() and state().last is plan and plan.bound


def test_explain_sees_the_search_while_a_plan_is_bound():
    x, w, kw = _conv_case()
    cudnnconv.conv(x, w, **kw)
    cudnnconv.conv(x, w, **kw)
    assert _bound_ran()
    before = cudnnconv.last_call()
    report = cudnnconv.explain(x, w, **kw)
    assert len(report.candidates) >= 1 and report.chosen is not None
    assert cudnnconv.last_call() == before                # explain is not a call
    assert cudnnconv.last_choice(x, w, **kw) is not None


def test_stage_trace_covers_the_whole_call():
    x, w, kw = _conv_case()
    cudnnconv.conv(x, w, **kw)
    cudnnconv.trace_stages(True)
    try:
        cudnnconv.conv(ref.random(x.shape, "float16", "channels_last"), w, **kw)
        st = cudnnconv.stage_times()
    finally:
        cudnnconv.trace_stages(False)
    assert {"signature", "output", "handle", "variant_pack", "execute", "return", "total"} <= set(st)
    assert 0 < st["execute"] < st["total"]
    assert abs(st["outside_execute"] - (st["total"] - st["execute"])) < 1e-9
    assert cudnnconv.stage_times() == {}                  # off: nothing stamped


def test_plan_object_runs_its_call_and_reports_it():
    cudnnconv.clear_cache()
    x, w, kw = _conv_case()
    p = cudnnconv.plan(cudnnconv.conv, x, w, None, 1, 1)
    assert isinstance(p, cudnnconv.CallPlan) and p.bound and p.engine == "graph"
    assert p.choice["engine"] == "graph" and p.workspace >= 0 and "graph" in p.describe()
    for _ in range(3):
        x2 = ref.random(x.shape, "float16", "channels_last")
        y = p(x2, w)
        assert _bound_ran()
        assert ref.rel_error(y, ref.conv(x2, w, **kw)) <= ref.tolerance("float16")
        assert ref.rel_error(p(x2, w, None), ref.conv(x2, w, **kw)) <= ref.tolerance("float16")
        out = ref.poisoned(y.shape, "float16", "channels_last")
        assert p(x2, w, out=out) is out
        assert _bound_ran()                # an out of the layout the plan allocates: the typed path too
        assert ref.rel_error(out, ref.conv(x2, w, **kw)) <= ref.tolerance("float16")
    # arrays of another signature go through the public function
    x3 = ref.random((2, 16, 7, 7), "float16", "channels_last")
    assert ref.rel_error(p(x3, w), ref.conv(x3, w, **kw)) <= ref.tolerance("float16")
    with pytest.raises(ValueError, match="overlaps"):
        w1 = ref.random((16, 16, 1, 1), "float16", "channels_last")
        cudnnconv.plan(cudnnconv.conv, x, w1)(x, w1, out=x)
    # the backward plans take their arrays in the function's order
    gy = ref.random((4, 24, 10, 10), "float16", "channels_last")
    pi = cudnnconv.plan("conv_backward_input", x.shape, w, gy, 1, 1)
    pw = cudnnconv.plan(cudnnconv.conv_backward_weight, x, w.shape, gy, 1, 1)
    for _ in range(2):
        gy = ref.random(gy.shape, "float16", "channels_last")
        assert ref.rel_error(pi(w, gy), ref.conv_backward_input(x.shape, w, gy, **kw)) <= ref.tolerance("float16")
        assert _bound_ran()
        assert ref.rel_error(pw(x, gy), ref.conv_backward_weight(x, w.shape, gy, **kw)) <= ref.tolerance("float16")
        assert _bound_ran()
    with pytest.raises(TypeError, match="plan"):
        cudnnconv.plan(print, x, w)
    with pytest.raises(TypeError, match="cannot be planned"):
        cudnnconv.plan(cudnnconv.conv, x, w, None, [1, 1], 1)     # a list does not hash


def test_plan_object_inside_cuda_graph_capture():
    x, w, kw = _conv_case()
    out = ref.poisoned((4, 24, 10, 10), "float16", "channels_last")
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        p = cudnnconv.plan(cudnnconv.conv, x, w, None, 1, 1, out=out)
        stream.synchronize()
        ref.capture_then_launch(stream, lambda: p(x, w, out=out), out, x, "float16", "channels_last")
    assert ref.rel_error(out, ref.conv(x, w, **kw)) <= ref.tolerance("float16")


def test_streams_change_between_bound_calls():
    x, w, kw = _conv_case()
    cudnnconv.conv(x, w, **kw)
    for _ in range(2):
        for s in (cupy.cuda.Stream(non_blocking=True), cupy.cuda.Stream.null):
            with s:
                x2 = ref.random(x.shape, "float16", "channels_last")
                y = cudnnconv.conv(x2, w, **kw)
                assert _bound_ran()
                s.synchronize()
            assert ref.rel_error(y, ref.conv(x2, w, **kw)) <= ref.tolerance("float16")


def test_threads_have_their_own_plans():
    x, w, kw = _conv_case()
    p = cudnnconv.plan(cudnnconv.conv, x, w, None, 1, 1)
    expect = ref.conv(x, w, **kw)
    errors, bound = [], []

    def work():
        try:
            for _ in range(20):
                y = cudnnconv.conv(x, w, **kw)
                bound.append(_bound_ran())
                if ref.rel_error(y, expect) > ref.tolerance("float16"):
                    errors.append("conv")
                if ref.rel_error(p(x, w), expect) > ref.tolerance("float16"):   # another thread's plan
                    errors.append("plan")
            cupy.cuda.get_current_stream().synchronize()
        except Exception as e:           # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert sum(bound) >= 8 * 18                          # each thread binds its own plan after its first call


def test_legacy_engine_keeps_the_full_path():
    x, w, kw = _conv_case("float32", "nchw")
    for _ in range(3):
        y = cudnnconv.conv(x, w, **kw, engine="legacy")
    assert not _bound_ran() and cudnnconv.last_call()["engine"] == "legacy"
    assert ref.rel_error(y, ref.conv(x, w, **kw)) <= ref.tolerance("float32", tf32=True)


def test_cached_calls_allocate_no_lasting_objects():
    x, w, kw = _conv_case()
    out = ref.poisoned((4, 24, 10, 10), "float16", "channels_last")
    p = cudnnconv.plan(cudnnconv.conv, x, w, None, 1, 1)
    for f in (lambda: cudnnconv.conv(x, w, **kw), lambda: cudnnconv.conv(x, w, **kw, out=out),
              lambda: p(x, w), lambda: p(x, w, out=out)):
        for _ in range(50):
            f()
        assert _bound_ran()
        cupy.cuda.get_current_stream().synchronize()
        before = sys.getallocatedblocks()
        for _ in range(1000):
            f()
        cupy.cuda.get_current_stream().synchronize()
        after = sys.getallocatedblocks()
        assert after - before < 100, (after - before)


def test_bound_outputs_are_ordinary_cupy_arrays():
    """The typed path makes its output by CuPy's C layout
    (cudnnconv.core.arrays): it must be the array CuPy's constructor makes,
    usable by CuPy, with its memory back in the pool once dropped."""
    from cudnnconv.core import arrays
    assert arrays.status()["direct"], arrays.status()["reason"]
    cudnnconv.clear_cache()
    x, w, kw = _conv_case("float16", "channels_last")
    first = cudnnconv.conv(x, w, **kw)                    # full path: CuPy's constructor
    x = ref.random(x.shape, "float16", "channels_last")
    y = cudnnconv.conv(x, w, **kw)
    assert _bound_ran()
    assert type(y) is cupy.ndarray and y.shape == first.shape and y.strides == first.strides
    assert y.flags.c_contiguous == first.flags.c_contiguous and y.flags.f_contiguous == first.flags.f_contiguous
    assert y.dtype is first.dtype and y.base is None and y.data.device_id == 0
    assert ref.rel_error(y, ref.conv(x, w, **kw)) <= ref.tolerance("float16")
    # CuPy's own kernels read it right (its strides and contiguity flags)
    assert bool(cupy.all((y + 0) == y)) and bool(cupy.all(y.copy(order="C") == y))
    assert float(abs(cupy.ascontiguousarray(y).astype(cupy.float64).sum() - y.astype(cupy.float64).sum())) < 1e-6 * (
        1 + float(abs(y.astype(cupy.float64)).sum()))
    pool = cupy.get_default_memory_pool()
    cupy.cuda.Device().synchronize()
    used = pool.used_bytes()
    ys = [cudnnconv.conv(x, w, **kw) for _ in range(50)]
    assert _bound_ran() and pool.used_bytes() >= used + 50 * y.nbytes
    del ys
    assert pool.used_bytes() == used


def test_the_attribute_path_gives_the_same_results():
    """With CuPy's C layout off, the typed path reads and makes arrays
    through CuPy's Python API: the same plans, outputs and errors."""
    from cudnnconv.core import arrays
    cudnnconv.clear_cache()
    x, w, kw = _conv_case("float16", "channels_last")
    y = cudnnconv.conv(x, w, **kw)
    for direct in (False, True):
        try:
            assert arrays._set_direct(direct) == direct
            xs, out = _sharing(x, y, 0)          # out right after x: a plan made with out=
            xs[...] = ref.random(x.shape, "float16", "channels_last")
            assert cudnnconv.conv(xs, w, **kw, out=out) is out
            assert cudnnconv.conv(xs, w, **kw, out=out) is out and _bound_ran()
            assert ref.rel_error(out, ref.conv(xs, w, **kw)) <= ref.tolerance("float16")
            for _ in range(2):
                x = ref.random(x.shape, "float16", "channels_last")
                got = cudnnconv.conv(x, w, **kw)
                assert _bound_ran() and ref.is_channels_last(got) and got.strides == y.strides
                assert ref.rel_error(got, ref.conv(x, w, **kw)) <= ref.tolerance("float16")
            xs, out = _sharing(x, y, -64)        # the same layouts, out's memory inside x's
            with pytest.raises(ValueError, match="out overlaps input"):
                cudnnconv.conv(xs, w, **kw, out=out)
        finally:
            arrays._set_direct(True)


def _sharing(x, y, gap):
    """(xs, out): arrays of x's and y's layouts in one buffer, out starting
    ``gap`` bytes after xs ends (negative: inside it)."""
    start = x.nbytes + gap
    buf = cupy.zeros(start + y.nbytes + 1024, cupy.uint8)
    xs = cupy.ndarray(x.shape, x.dtype, buf.data, x.strides)
    out = cupy.ndarray(y.shape, y.dtype, buf.data + start, y.strides)
    return xs, out
