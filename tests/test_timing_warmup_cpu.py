"""Benchmark settings, the spin length rule and the warm-up's scratch plan, without a GPU."""
import math
import types

import hypothesis
import hypothesis.strategies as st
import pytest

import cudnnconv
from cudnnconv import gpu_timing, options, params, ranking, warmup


@pytest.fixture
def settings():
    saved = cudnnconv.benchmark_settings()
    yield
    cudnnconv.benchmark_settings(**saved)


def test_benchmark_settings_defaults_and_round_trip(settings):
    assert cudnnconv.benchmark_settings() == {"repeats": 5, "warmup": 1, "margin": ranking.DEFAULT_MARGIN,
                                              "host_aware": True, "exhaustive": False, "exhaustive_budget_s": 5.0,
                                              "knob_sweep": True}
    got = cudnnconv.benchmark_settings(repeats=9, warmup=0, margin=0.05, host_aware=False, exhaustive=True,
                                       exhaustive_budget_s=12, knob_sweep=False)
    assert got == {"repeats": 9, "warmup": 0, "margin": 0.05, "host_aware": False, "exhaustive": True,
                   "exhaustive_budget_s": 12.0, "knob_sweep": False}
    assert (gpu_timing.REPEATS, gpu_timing.WARMUP, gpu_timing.MARGIN, gpu_timing.HOST_AWARE) == (9, 0, 0.05, False)
    assert (gpu_timing.EXHAUSTIVE, gpu_timing.EXHAUSTIVE_BUDGET_S, gpu_timing.KNOB_SWEEP) == (True, 12.0, False)
    # None leaves a setting as it is.
    assert cudnnconv.benchmark_settings(repeats=3)["warmup"] == 0


@pytest.mark.parametrize("kw", [dict(repeats=0), dict(repeats=True), dict(repeats=2.0), dict(repeats=1001),
                                dict(warmup=-1), dict(warmup=False), dict(margin=-0.1), dict(margin=1.0),
                                dict(margin=float("nan")), dict(margin="0.1"), dict(host_aware=1),
                                dict(host_aware="yes"), dict(exhaustive=1), dict(exhaustive="on"),
                                dict(exhaustive_budget_s=0), dict(exhaustive_budget_s=-1.0),
                                dict(exhaustive_budget_s=float("inf")), dict(exhaustive_budget_s=True),
                                dict(exhaustive_budget_s="5"), dict(exhaustive_budget_s=3601), dict(knob_sweep=1),
                                dict(knob_sweep="off")])
def test_benchmark_settings_refuse_bad_values_and_change_nothing(settings, kw):
    before = cudnnconv.benchmark_settings()
    with pytest.raises(ValueError):
        cudnnconv.benchmark_settings(**kw)
    assert cudnnconv.benchmark_settings() == before


def test_which_cached_choice_answers_a_call_at_each_search_level(settings):
    ns = types.SimpleNamespace
    heuristic, plain = ns(benchmarked=False, how="heuristic"), ns(benchmarked=True, how="benchmark")
    exhaustive, legacy = ns(benchmarked=True, how="exhaustive"), ns(benchmarked=True)
    answers = gpu_timing.answers
    assert all(answers(c, False) for c in (heuristic, plain, exhaustive, legacy))
    assert [answers(c, True) for c in (heuristic, plain, exhaustive, legacy)] == [False, True, True, True]
    cudnnconv.benchmark_settings(exhaustive=True)
    assert all(answers(c, False) for c in (heuristic, plain, exhaustive, legacy))
    # a plain benchmark's choice is searched again; the legacy engine's benchmark already tries everything
    assert [answers(c, True) for c in (heuristic, plain, exhaustive, legacy)] == [False, False, True, True]


def test_changing_the_search_level_makes_bound_plans_stale(settings):
    from cudnnconv.core import state
    g = state.current_generation()
    cudnnconv.benchmark_settings(exhaustive=False)           # no change: nothing goes stale
    assert state.current_generation() == g
    cudnnconv.benchmark_settings(exhaustive=True)
    assert state.current_generation() > g
    g = state.current_generation()
    cudnnconv.benchmark_settings(exhaustive_budget_s=9)      # the budget alone changes no choice
    assert state.current_generation() == g


def test_spin_length_covers_host_time_within_bounds():
    assert gpu_timing.spin_ns_for(0.0) == gpu_timing.MIN_SPIN_NS
    # 100 us of host issue time: 3x that, plus the floor.
    assert gpu_timing.spin_ns_for(100e-6) == int(3 * 100e3 + gpu_timing.MIN_SPIN_NS)
    assert gpu_timing.spin_ns_for(1.0) == gpu_timing.MAX_SPIN_NS
    assert gpu_timing.spin_ns_for(float("nan")) == gpu_timing.MAX_SPIN_NS
    assert gpu_timing.spin_ns_for(float("inf")) == gpu_timing.MAX_SPIN_NS
    for h in (1e-6, 1e-5, 3e-5, 2e-4):
        ns = gpu_timing.spin_ns_for(h)
        assert gpu_timing.MIN_SPIN_NS <= ns <= gpu_timing.MAX_SPIN_NS and ns > h * 1e9


def _key(op="forward", engine="graph", dtype=2, layout=params.CHANNELS_LAST, x=(8, 32, 14, 14),
         w=(64, 32, 3, 3), extra=None):
    geom, _ = params.conv_geometry(x, w, 1, 1, 1, 1)
    opts = options.Options(True, False, True, None, engine)
    if extra is None:
        extra = (16, 16, 16) if op != "fused" else (16, 16, 16, 16, 16, 1.0)
        extra = extra if engine == "graph" else ()
    return params.make_key(op, engine, 0, dtype, x, w, layout, geom, opts, extra)


def test_scratch_plan_sizes_offsets_and_strides():
    key = _key()
    geom, plan, nbytes = warmup.plan_scratch(key)
    roles = [p[0] for p in plan]
    assert roles == ["x", "w", "y"]
    sizes = {"x": 8 * 32 * 14 * 14 * 2, "w": 64 * 32 * 9 * 2, "y": 8 * 64 * 14 * 14 * 2}
    end = 0
    for role, shape, strides, off in plan:
        assert off % 256 == 0 and off >= end            # 256-aligned, no overlap
        assert strides == params.layout_strides(shape, params.CHANNELS_LAST)
        end = off + math.prod(shape) * 2
        assert math.prod(shape) * 2 == sizes[role]
    assert plan[2][1] == (8, 64, 14, 14)
    assert end <= nbytes < end + 256
    assert geom.padding == key.padding and geom.stride == key.stride


def test_scratch_plan_reproduces_the_keyed_alignment():
    # The graph engine keys on each pointer's alignment: the scratch pointers must have it exactly.
    _, plan, _ = warmup.plan_scratch(_key(extra=(2, 16, 4)))
    assert [off % 256 for _, _, _, off in plan] == [2, 0, 4]
    # The legacy key has no alignments: everything on 256-byte boundaries.
    _, plan, _ = warmup.plan_scratch(_key(engine="legacy", dtype=0))
    assert all(off % 256 == 0 for _, _, _, off in plan)


def test_scratch_plan_of_a_fused_key_has_z_and_bias():
    _, plan, _ = warmup.plan_scratch(_key(op="fused"))
    assert [p[0] for p in plan] == ["x", "w", "y", "z", "bias"]
    z, bias = plan[3], plan[4]
    assert z[1] == plan[2][1] and bias[1] == (1, 64, 1, 1)
    assert bias[2] == params.layout_strides((1, 64, 1, 1), params.NCHW)


def test_warm_up_skips_a_key_of_no_engine_without_touching_the_gpu():
    key = _key()._replace(engine="nope")
    assert warmup.warm_up([key]) == {"run": 0, "skipped": 1}
    assert warmup.warm_up([]) == {"run": 0, "skipped": 0}


@pytest.mark.parametrize("value,on", [("1", True), ("true", True), ("ON", True), ("yes", True),
                                      ("0", False), ("", False), ("no", False), ("2", False)])
def test_warm_up_environment_switch(monkeypatch, value, on):
    monkeypatch.setenv(warmup.ENV_VAR, value)
    assert warmup.env_enabled() is on


def test_warm_up_environment_switch_absent(monkeypatch):
    monkeypatch.delenv(warmup.ENV_VAR, raising=False)
    assert warmup.env_enabled() is False


def test_runs_per_sample_rule():
    assert gpu_timing.runs_per_sample(1.0) == 1
    assert gpu_timing.runs_per_sample(gpu_timing.MIN_SAMPLE_MS) == 1
    assert gpu_timing.runs_per_sample(0.05) == math.ceil(gpu_timing.MIN_SAMPLE_MS / 0.05)
    assert gpu_timing.runs_per_sample(1e-6) == gpu_timing.MAX_RUNS_PER_SAMPLE
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        assert gpu_timing.runs_per_sample(bad) == 1


def test_runs_per_sample_stay_within_what_the_spin_covers():
    # 1 ms of host time per run: the longest spin covers one run only.
    assert gpu_timing.runs_per_sample(0.005, host_s=1e-3) == 1
    # 30 us per run: as many as 3x their issue time fits in the longest spin.
    r = gpu_timing.runs_per_sample(0.005, host_s=30e-6)
    assert 1 < r <= gpu_timing.MAX_RUNS_PER_SAMPLE
    # ... and the spin still lasts 3x the issue time of the r runs.
    assert gpu_timing.spin_ns_for(30e-6 * r) >= gpu_timing.SPIN_FACTOR * 30e-6 * r * 1e9


# ---------------------------------------------------------------------------
# errata: algorithms that break allow_tf32=False
# ---------------------------------------------------------------------------

def test_errata_exclude_winograd_nonfused_for_strict_float32_only():
    from cudnnconv import errata
    why = errata.legacy_reason("forward", 7, 0, False)
    assert why.startswith("errata: ") and "WINOGRAD_NONFUSED" in why
    assert errata.legacy_reason("fused", 7, 0, False) is not None
    assert errata.legacy_reason("forward", 7, 0, True) is None          # TF32 allowed: it meets TF32's tolerance
    assert errata.legacy_reason("forward", 7, 2, False) is None         # float16: not a float32 promise
    assert errata.legacy_reason("forward", 1, 0, False) is None


def test_tuning_record_naming_an_erratum_is_rejected():
    from cudnnconv.engines import legacy_record
    key = _key(engine="legacy", dtype=0, layout=params.NCHW)
    rec = {"algo": 7, "math_type": 3, "workspace": 0, "time_ms": 0.1, "deterministic": True, "benchmarked": True}
    strict = key._replace(allow_tf32=False)
    with pytest.raises(ValueError, match="errata"):
        legacy_record.check_record(rec, strict)
    legacy_record.check_record(rec, key)                                # allow_tf32=True: valid
    legacy_record.check_record(dict(rec, algo=1), strict)


def test_errata_cover_every_direction_of_the_measured_algorithms():
    from cudnnconv import errata
    for op, algo in (("backward_data", 5), ("backward_filter", 5)):
        assert errata.legacy_reason(op, algo, 0, False) is not None
    assert errata.legacy_reason("backward_data", 4, 0, False) is None     # WINOGRAD (fused): not measured bad
    assert errata.graph_reason("backward_filter", 17, 0, False).startswith("errata: ")
    assert errata.graph_reason("backward_filter", 17, 0, True) is None
    assert errata.graph_reason("forward", 17, 0, False) is None           # engine ids are per operation


def test_graph_record_naming_an_erratum_is_rejected():
    from cudnnconv.engines import graph_record
    key = _key(op="backward_filter", dtype=0, layout=params.NCHW)._replace(allow_tf32=False)
    rec = {"tag": "eng17", "engine_index": 17, "knobs": [], "workspace": 0, "plan_json": None}
    with pytest.raises(ValueError, match="errata"):
        graph_record.check_record(rec, key, None)
    graph_record.check_record(rec, key._replace(allow_tf32=True), None)
    graph_record.check_record(dict(rec, tag="eng0", engine_index=0), key, None)


def test_time_samples_bookkeeping_without_a_gpu(monkeypatch):
    """time_samples' counting without a GPU: CuPy's events stand in as host clocks, the spin kernel
    as a recorder, and the issue takes 1 ms of host time."""
    import sys
    import time
    import types

    class Event:
        def record(self, stream=None):
            self.t = time.perf_counter()

        def synchronize(self):
            pass

    cuda = types.SimpleNamespace(Event=Event, get_current_stream=lambda: None,
                                 get_elapsed_time=lambda a, b: (b.t - a.t) * 1e3)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=cuda))
    spins = []
    monkeypatch.setattr(gpu_timing, "spin", lambda stream, ns: spins.append(ns) or True)
    calls = []

    def issue():
        calls.append(1)
        time.sleep(0.001)

    out = gpu_timing.time_samples(issue, repeats=4, warmup=2)
    assert len(out) == 4 and all(0.9 <= g < 100 for g in out), out          # ms per run
    # a 1 ms run needs no averaging: 2 warm-up runs, then 4 samples of one run (the probe is the first)
    assert gpu_timing.runs_per_sample(out[0], 0.001) == 1 and len(calls) == 6
    # each sample waits behind a spin that covers the host's issue time it measured (3x, plus the floor)
    assert len(spins) == 4 and min(spins) >= gpu_timing.spin_ns_for(0.0009)


# ---------------------------------------------------------------------------
# The host-aware ranking (gpu_timing.rank_host_aware), with stand-in measurements
# ---------------------------------------------------------------------------

class _Cand:
    def __init__(self, tag, gpu_ms, workspace=0):
        self.tag, self.workspace = tag, workspace
        self.samples = () if gpu_ms is None else (gpu_ms,)


def _measure(issue):
    """A stand-in measure that reads the issue time from the issue callable and logs the calls."""
    seen = []

    def measure(fn, stream):
        seen.append((fn.tag, stream))
        if issue[fn.tag] is None:
            raise cudnnconv.CuDNNError(3000, "refused")
        return issue[fn.tag]
    return measure, seen


def _issuer(c):
    return types.SimpleNamespace(tag=c.tag)


def test_host_aware_prefers_the_cheaper_issue_where_the_kernel_is_short(settings):
    c = [_Cand("eng47", 0.0054), _Cand("eng28", 0.0076), _Cand("eng71", 0.0089), _Cand("eng0", 0.040)]
    measure, seen = _measure({"eng47": 0.0117, "eng28": 0.0102, "eng71": 0.0084, "eng0": 0.006})
    out = gpu_timing.rank_host_aware(c, _issuer, "S", measure=measure)
    assert [x.tag for x in out][:3] == ["eng71", "eng28", "eng47"]
    # The GPU-fastest is measured first; eng0 (40 us on the GPU) cannot beat a 10.2 us cost: not measured.
    assert [t for t, _ in seen] == ["eng47", "eng28", "eng71"] and {s for _, s in seen} == {"S"}
    assert c[0].issue_ms == 0.0117 and not hasattr(c[3], "issue_ms")


def test_host_aware_leaves_gpu_bound_problems_alone(settings):
    c = [_Cand("a", 0.25), _Cand("b", 0.11)]
    measure, seen = _measure({"a": 0.001, "b": 0.5})
    assert [x.tag for x in gpu_timing.rank_host_aware(c, _issuer, "S", measure=measure)] == ["b", "a"]
    assert seen == []
    cudnnconv.benchmark_settings(host_aware=False)
    c = [_Cand("a", 0.005), _Cand("b", 0.009)]
    measure, seen = _measure({"a": 0.02, "b": 0.001})
    assert [x.tag for x in gpu_timing.rank_host_aware(c, _issuer, "S", measure=measure)] == ["a", "b"]
    assert seen == []


def test_host_aware_never_runs_a_candidate_without_a_gpu_time(settings):
    """A candidate the benchmark could not time (its workspace did not fit, or it failed) is not
    run for an issue time, whatever its place, and still ranks last."""
    c = [_Cand("untimed", None), _Cand("a", 0.005), _Cand("nan", float("nan")), _Cand("b", 0.006),
         _Cand("neg", -1.0)]
    measure, seen = _measure({"a": 0.012, "b": 0.007, "untimed": 0.001, "nan": 0.001, "neg": 0.001})
    out = gpu_timing.rank_host_aware(c, _issuer, "S", measure=measure)
    assert [t for t, _ in seen] == ["a", "b"]
    assert [x.tag for x in out][:2] == ["b", "a"] and {x.tag for x in out[2:]} == {"untimed", "nan", "neg"}
    # The 0.1 ms rule looks at the fastest usable GPU time, not at what ranks first.
    c = [_Cand("big_ws", 0.0995, 1 << 30), _Cand("small_ws", 0.1, 0)]
    measure, seen = _measure({"big_ws": 0.001, "small_ws": 0.001})
    gpu_timing.rank_host_aware(c, _issuer, "S", measure=measure)
    assert [t for t, _ in seen] == ["big_ws", "small_ws"]


def test_host_aware_keeps_the_gpu_time_of_a_run_that_cannot_be_measured(settings):
    c = [_Cand("a", 0.005), _Cand("b", 0.006)]
    measure, seen = _measure({"a": None, "b": 0.009})
    out = gpu_timing.rank_host_aware(c, _issuer, "S", measure=measure)
    assert [x.tag for x in out] == ["a", "b"] and len(seen) == 2 and not hasattr(c[0], "issue_ms")


@hypothesis.settings(max_examples=400, deadline=None)
@hypothesis.given(st.lists(st.tuples(st.one_of(st.none(), st.integers(1, 120)), st.integers(1, 40),
                                     st.integers(0, 3)), min_size=1, max_size=8),
                  st.sampled_from([0.0, 0.03, 0.1]))
def test_host_aware_skips_only_what_cannot_win(cands, margin):
    """Measuring only the candidates that could cost less gives the winner that measuring every timed
    one gives; an untimed candidate (None) is never measured."""
    def make():
        return [_Cand("e%d" % i, None if g is None else g * 1e-3, ws << 20) for i, (g, _, ws) in enumerate(cands)]
    issue = {"e%d" % i: h * 1e-3 for i, (_, h, _) in enumerate(cands)}
    measure, seen = _measure(issue)
    got = gpu_timing.rank_host_aware(make(), _issuer, "S", margin=margin, measure=measure)
    every = make()
    for x in every:
        if x.samples:
            x.issue_ms = issue[x.tag]
    want = ranking.rank(every, margin)
    timed = [g for g, _, _ in cands if g is not None]
    assert all(cands[int(t[1:])][0] is not None for t, _ in seen)
    if timed and min(timed) * 1e-3 < gpu_timing.HOST_AWARE_BELOW_MS:
        assert got[0].tag == want[0].tag
        assert ranking.cost_ms(got[0]) == ranking.cost_ms(want[0]) or not got[0].samples
    else:
        assert seen == [] and [x.tag for x in got] == [x.tag for x in ranking.rank(make(), margin)]


def test_issue_time_is_the_median_of_runs_on_an_idle_gpu(monkeypatch):
    events = []

    class Stream:
        def synchronize(self):
            events.append("sync")

    ticks = iter([0.0, 10e-6, 1.0, 1.0 + 30e-6, 2.0, 2.0 + 12e-6])
    monkeypatch.setattr(gpu_timing.time, "perf_counter", lambda: next(ticks))
    got = gpu_timing.issue_ms(lambda: events.append("run"), Stream(), samples=3)
    assert got == pytest.approx(12e-3 + gpu_timing.CALL_OVERHEAD_US * 1e-3)
    w = gpu_timing.ISSUE_WARMUP
    assert events == ["run"] * w + ["sync", "run"] * 3 + ["sync"]
