"""fusion='auto' under benchmark=True (cudnnconv.fusion_choice, api._fused_or_decided) without a GPU:
the decision rule on measured times, and the call flow on a fake engine: what runs on the first
call of a signature, what the Decision keeps, and what later calls run."""
import types

import pytest

import cudnnconv
from cudnnconv import activations, api, fusion_choice, options
from cudnnconv.core import state


class Choice:
    def __init__(self, ms, benchmarked=True):
        self.time_ms, self.benchmarked = ms, benchmarked


@pytest.mark.parametrize("choices, expect", [
    ([Choice(0.2)], 0.2), ([Choice(0.2), Choice(0.3)], 0.5), ([Choice(0.2), Choice(0.3, False)], None),
    ([Choice(-1.0)], None), ([Choice(0.0)], None), ([], None), (None, None), ([object()], None)])
def test_measured_time_sums_benchmarked_chunks_only(choices, expect):
    got = fusion_choice.measured_time(choices)
    assert got == pytest.approx(expect) if expect is not None else got is None


@pytest.mark.parametrize("fused, conv, kernel, margin, expect", [
    (1.0, 0.5, 0.3, 0.03, "composed"),      # 0.8 * 1.03 < 1.0
    (1.0, 0.9, 0.08, 0.03, "fused"),        # 0.98 * 1.03 > 1.0: a near tie keeps the fused plan
    (1.0, 0.9, 0.08, 0.0, "composed"),
    (0.5, 0.4, 0.3, 0.03, "fused"),
    (1.0, 0.2, None, 0.03, "fused"),        # the kernel's time unknown
    (1.0, None, 0.1, 0.03, "fused"),        # the convolution's unknown
    (None, 0.2, 0.1, 0.03, "fused"),        # the fused plan's unknown
])
def test_decide_composes_only_when_measurably_faster(fused, conv, kernel, margin, expect):
    fc = None if fused is None else [Choice(fused)]
    cc = None if conv is None else [Choice(conv)]
    d = fusion_choice.decide(fc, cc, kernel, margin)
    assert d.path == expect
    assert (d.fused_ms, d.conv_ms, d.kernel_ms) == (fused, conv, kernel)
    assert d.as_dict()["path"] == expect and expect in repr(d)


def test_a_host_bound_fused_plan_is_kept(monkeypatch):
    """Under HOST_AWARE_BELOW_MS a call is bound by its host time, and composing launches one kernel
    more: the fused plan stays however much faster the composed path's GPU time is."""
    monkeypatch.setattr(fusion_choice.gpu_timing, "HOST_AWARE_BELOW_MS", 0.1)
    assert fusion_choice.decide([Choice(0.09)], [Choice(0.01)], 0.01, 0.0).path == "fused"
    assert fusion_choice.decide([Choice(0.1)], [Choice(0.01)], 0.01, 0.0).path == "composed"


def test_a_decision_goes_stale_when_the_plans_generation_moves():
    slot = fusion_choice.Slot()
    slot.decision = fusion_choice.decide([Choice(1.0)], [Choice(0.1)], 0.1, 0.0)
    assert slot.current() is slot.decision and slot.current().path == "composed"
    state.invalidate()              # what benchmark_settings() and load_tuning(override=True) do
    assert slot.current() is None and slot.decision is None


def test_decide_takes_the_rankings_margin_by_default(monkeypatch):
    monkeypatch.setattr(fusion_choice.gpu_timing, "MARGIN", 0.5)
    assert fusion_choice.decide([Choice(1.0)], [Choice(0.5)], 0.2).path == "fused"      # 0.7 * 1.5 > 1
    monkeypatch.setattr(fusion_choice.gpu_timing, "MARGIN", 0.1)
    assert fusion_choice.decide([Choice(1.0)], [Choice(0.5)], 0.2).path == "composed"


def test_nothing_is_timed_without_benchmark_or_under_explain(monkeypatch):
    assert not fusion_choice.should_time(options.Options(False, False, True, None, "graph"))
    watched = types.SimpleNamespace(explain=lambda *a: None)
    monkeypatch.setattr(fusion_choice._state, "state", lambda: watched)
    assert not fusion_choice.should_time(options.Options(True, False, True, None, "graph"))


# ---------------------------------------------------------------------------
# the call flow, on a fake engine
# ---------------------------------------------------------------------------

class FakeEngine:
    """Stands in for an engine and the graph engine (the fuser) at once: records each run's op, and
    answers with the choice its table gives the op (or raises it)."""
    ENGINE = "graph"

    def __init__(self, answers):
        self.answers, self.ran = answers, []

    def run(self, op, x, w, y, geom, opts, layout, device, repro, z=None, bias=None, alpha=1.0, epilogue=None):
        self.ran.append(op)
        a = self.answers[op]
        if isinstance(a, Exception):
            raise a
        return a


def _plan(chunks=((0, 4),)):
    return types.SimpleNamespace(chunks=list(chunks), geom=None, layout="NHWC", device=0, repro=None,
                                 extra=fusion_choice.Slot(activations.epilogue(1.0, 1.0, "silu", False, True)))


OPTS = options.Options(True, False, True, None, "graph")


@pytest.fixture
def timing(monkeypatch):
    """should_time says yes; kernel_ms answers ``timing.kernel`` and records what it timed."""
    rec = types.SimpleNamespace(kernel=0.1, timed=[], may=True)
    monkeypatch.setattr(fusion_choice, "should_time", lambda opts: rec.may and opts.benchmark)

    def kernel_ms(kernel, a):
        rec.timed.append(a)
        if isinstance(rec.kernel, Exception):
            raise rec.kernel
        return rec.kernel
    monkeypatch.setattr(fusion_choice, "kernel_ms", kernel_ms)
    return rec


KERNEL = object()          # the composed kernel, as the caller hands it over


def _call(eng, plan, op="epilogue", plain="forward", fusion="auto", opts=OPTS):
    return api._fused_or_decided(eng, eng, op, plain, plan, "x", "w", "y", None, "b", plan.extra.epilogue, opts,
                                 fusion, KERNEL)


@pytest.mark.parametrize("op, plain, result", [("epilogue", "forward", "y"), ("dgrad_act", "backward_data", "x")])
def test_first_call_times_both_and_composes_where_faster(timing, op, plain, result):
    fused, conv = Choice(1.0), Choice(0.4)
    eng = FakeEngine({op: fused, plain: conv})
    plan = _plan()
    assert _call(eng, plan, op, plain) == ("composed", [])
    assert eng.ran == [op, plain]                   # the caller composes: the plain op again, then the kernel
    assert timing.timed == [result]                 # timed on the plain op's output
    d = plan.extra.decision
    assert (d.path, d.fused_ms, d.conv_ms, d.kernel_ms) == ("composed", 1.0, 0.4, 0.1)
    eng.ran.clear()
    assert _call(eng, plan, op, plain) == ("composed", [])       # later calls: no fused run, no timing
    assert eng.ran == [] and len(timing.timed) == 1


def test_first_call_that_keeps_the_fused_plan_fuses_again(timing):
    fused, conv = Choice(0.3), Choice(0.4)
    eng = FakeEngine({"epilogue": fused, "forward": conv})
    plan = _plan()
    assert _call(eng, plan) == ("fused", [fused])
    assert eng.ran == ["epilogue", "forward", "epilogue"]       # y holds the fused result it reports
    assert plan.extra.decision.path == "fused"
    eng.ran.clear()
    assert _call(eng, plan) == ("fused", [fused]) and eng.ran == ["epilogue"]


def test_batch_chunks_sum(timing):
    eng = FakeEngine({"epilogue": Choice(0.5), "forward": Choice(0.3)})
    plan = _plan(chunks=((0, 2), (2, 2)))
    timing.kernel = 0.25          # composed: 2 * 0.3 + 0.25 = 0.85 against fused 2 * 0.5 = 1.0
    assert _call(eng, plan) == ("composed", [])
    assert plan.extra.decision.fused_ms == pytest.approx(1.0) and plan.extra.decision.conv_ms == pytest.approx(0.6)


@pytest.mark.parametrize("how", ["not benchmark", "may not time", "fusion fused", "heuristic choice"])
def test_no_timing_where_nothing_may_be_timed_or_weighed(timing, how):
    eng = FakeEngine({"epilogue": Choice(1.0, benchmarked=how != "heuristic choice"), "forward": Choice(0.1)})
    plan = _plan()
    opts = options.Options(how != "not benchmark", False, True, None, "graph")
    timing.may = how != "may not time"
    fusion = "fused" if how == "fusion fused" else "auto"
    path, _ = _call(eng, plan, fusion=fusion, opts=opts)
    assert path == "fused" and eng.ran == ["epilogue"] and not timing.timed
    if how == "heuristic choice":       # nothing to weigh the fused plan against: fuse, and keep that
        assert plan.extra.decision.path == "fused" and plan.extra.decision.fused_ms is None
    else:
        assert plan.extra.decision is None


def test_a_refused_graph_composes_without_a_decision(timing):
    eng = FakeEngine({"epilogue": cudnnconv.CuDNNError(3000, "refused"), "forward": Choice(0.1)})
    plan = _plan()
    assert _call(eng, plan) == ("composed", [])
    assert eng.ran == ["epilogue"] and plan.extra.decision is None and not timing.timed


def test_no_memory_to_time_the_kernel_keeps_the_fused_plan(timing):
    eng = FakeEngine({"epilogue": Choice(1.0), "forward": Choice(0.1)})
    plan = _plan()
    timing.kernel = MemoryError("out of memory")
    assert _call(eng, plan)[0] == "fused"
    assert eng.ran == ["epilogue", "forward", "epilogue"] and plan.extra.decision.path == "fused"
    eng.ran.clear()
    assert _call(eng, plan)[0] == "fused" and eng.ran == ["epilogue"]          # decided: not timed again


def test_a_stale_decision_is_made_again(timing):
    eng = FakeEngine({"epilogue": Choice(1.0), "forward": Choice(0.1)})
    plan = _plan()
    assert _call(eng, plan)[0] == "composed"
    state.invalidate()
    eng.answers["forward"] = Choice(2.0)             # a re-search found other plans
    eng.ran.clear()
    assert _call(eng, plan)[0] == "fused" and eng.ran == ["epilogue", "forward", "epilogue"]
    assert plan.extra.decision.path == "fused" and len(timing.timed) == 2


def test_a_plain_op_that_cannot_run_keeps_the_fused_plan(timing):
    eng = FakeEngine({"epilogue": Choice(1.0), "forward": cudnnconv.CuDNNError(3000, "no plain plan")})
    plan = _plan()
    assert _call(eng, plan)[0] == "fused"
    # fused again: a chunk the plain op ran before it failed would have overwritten the result
    assert eng.ran == ["epilogue", "forward", "epilogue"]
    assert plan.extra.decision.path == "fused" and not timing.timed


def test_kernel_ms_runs_once_untimed_then_takes_the_median(monkeypatch):
    """The kernel runs once before the timed samples (CuPy compiles it then), in place on the array
    it is given, and the time is the samples' median as the ranking takes it."""
    events = []

    def samples(issue, repeats=None, warmup=None, stream=None):
        events.append("timed")
        issue()
        return [0.3, 0.1, 0.2, 0.9]
    monkeypatch.setattr(fusion_choice.gpu_timing, "time_samples", samples)
    a = object()
    got = fusion_choice.kernel_ms(lambda arr: events.append(arr is a), a)
    assert events == [True, "timed", True]
    assert got == pytest.approx(0.25)           # the mean of the two middle samples
