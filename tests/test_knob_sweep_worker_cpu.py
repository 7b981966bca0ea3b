"""cudnnconv.knob_sweep_worker's order and protocol, driven with a stand-in problem (no GPU): what
it tries and in which order, what it tells the searching process before and after each phase of a
setting, and what it does with settings that fail, compute the wrong thing or repeat another."""
import math

import pytest

from cudnnconv import knob_space
from cudnnconv import knob_sweep_worker as worker
from cudnnconv.knob_space import KnobInfo


class Refused(Exception):
    def __init__(self, name):
        Exception.__init__(self, name)
        self.name = name


class Problem:
    """Engines 1 and 2 with one knob (type 5, values 0..3); engine 3 without knobs; engine 1's
    heuristics config is (5, 1).  A setting's time is ``times[(engine, knobs)]`` (default 1.0);
    ``wrong`` settings compute something else, ``refused`` do not finalize, ``alias`` read back
    as another tag."""

    tol = 1e-2

    def __init__(self, times=None, wrong=(), refused=(), alias=None, unsound=None):
        self.times = times or {}
        self.wrong, self.refused, self.alias, self.unsound = set(wrong), set(refused), alias or {}, unsound
        self.built, self.err = [], None

    def reference(self):
        return "eng1_k5=1", 0.5

    def tag(self, idx, knobs):
        return "eng%d" % idx + "".join("_k%d=%d" % kv for kv in knobs)

    def heuristics(self):
        return [(1, ((5, 1),))]

    def engines(self):
        return {1: [KnobInfo(5, 0, 3, 1)], 2: [KnobInfo(5, 0, 3, 1)], 3: []}

    def build(self, idx, knobs):
        self.built.append((idx, knobs))
        if (idx, knobs) in self.refused:
            raise worker.Skipped("failed", "did not finalize: CUDNN_STATUS_NOT_SUPPORTED")
        want = self.tag(idx, knobs)
        return (idx, knobs), self.alias.get(want, want), {"workspace": 0, "notes": [], "behavior": []}

    def first_run(self, c):
        if c == self.unsound:
            raise RuntimeError("an illegal memory access was encountered")
        self.err = 0.5 if c in self.wrong else 1e-3
        return self.times.get(c, 1.0)

    def check(self):
        return self.err

    def time(self, c):
        return self.times.get(c, 1.0)


def _run(problem, seconds=60.0, skip=()):
    sent = []
    worker.sweep_problem(problem, seconds, skip, sent.append)
    return sent


def _results(sent):
    return [(m["result"]["tag"], m["result"]["status"]) for m in sent if "result" in m]


def test_the_order_heuristics_then_defaults_then_one_knob_away_then_the_rest():
    # engine 2 at (5, 2) is the fastest setting; the coordinate search from engine 2's default
    # (no knobs set) reaches it, and moves no further
    p = Problem(times={(2, ()): 0.8, (2, ((5, 2),)): 0.3, (1, ((5, 1),)): 0.9})
    sent = _run(p)
    tags = [t for t, _ in _results(sent)]
    assert tags[:4] == ["eng1_k5=1", "eng1", "eng2", "eng3"]
    # coordinate search from the two fastest (eng2 at 0.8, eng1_k5=1 at 0.9): eng2's neighbours first
    assert tags[4:8] == ["eng2_k5=0", "eng2_k5=1", "eng2_k5=2", "eng2_k5=3"]
    assert tags[8:11] == ["eng1_k5=0", "eng1_k5=2", "eng1_k5=3"]
    # then nothing is left of the rest: every setting once
    assert len(tags) == len(set(tags)) == 11
    assert all(s == "timed" for _, s in _results(sent))
    assert sent[0] == {"reference": "eng1_k5=1", "ms": 0.5}


def test_each_setting_is_announced_before_each_phase():
    sent = _run(Problem(), skip=("eng1", "eng2", "eng3", "eng1_k5=0", "eng1_k5=2", "eng1_k5=3"))
    first = [m for m in sent if m.get("build") == "eng1_k5=1" or m.get("start") == "eng1_k5=1"
             or m.get("ran") == "eng1_k5=1" or ("result" in m and m["result"]["tag"] == "eng1_k5=1")]
    assert [next(iter(k for k in ("build", "start", "ran", "result") if k in m)) for m in first] == \
        ["build", "start", "ran", "result"]
    assert first[1]["tag"] == "eng1_k5=1" and first[0]["engine_index"] == 1 and first[0]["knobs"] == [[5, 1]]
    assert first[3]["result"]["ms"] == 1.0 and first[3]["result"]["knobs"] == [[5, 1]]


def test_skipped_wrong_refused_and_repeated_settings():
    p = Problem(wrong={(2, ())}, refused={(3, ())}, alias={"eng1": "eng1_k5=1"})
    sent = _run(p, skip=("eng2_k5=3",))
    res = dict(_results(sent))
    assert res["eng2"] == "wrong" and res["eng3"] == "failed" and res["eng1"] == "excluded"
    assert "eng2_k5=3" not in res
    wrong = next(m["result"] for m in sent if "result" in m and m["result"]["tag"] == "eng2")
    assert wrong["error"] == 0.5
    alias = next(m["result"] for m in sent if "result" in m and m["result"]["tag"] == "eng1")
    assert alias["detail"] == "the same config as eng1_k5=1"
    # a wrong or refused setting never gets a timing
    assert not any(m.get("ran") in ("eng3",) for m in sent)


class TwoKnobs(Problem):
    def engines(self):
        return {1: [KnobInfo(5, 0, 3, 1), KnobInfo(6, 0, 1, 1)], 2: [KnobInfo(5, 0, 3, 1)], 3: []}


def test_the_coordinate_search_moves_to_a_neighbour_timed_before():
    # the first start (eng1_k5=1) moves to eng1_k5=1_k6=1 and leaves eng1_k5=2 (0.15) behind. The
    # second start (eng1's default) finds eng1_k5=2 among its neighbours, already timed and faster:
    # it must move there and search on from it (eng1_k5=2_k6=0 is one knob away from it, not from
    # the default) before the rest of the engines' settings
    times = {(1, ((5, 1),)): 0.2, (1, ()): 0.5, (2, ()): 2.0, (3, ()): 2.0,
             (1, ((5, 2),)): 0.15, (1, ((5, 1), (6, 1))): 0.1}
    tags = [t for t, _ in _results(_run(TwoKnobs(times=times)))]
    assert tags.index("eng1_k5=2_k6=0") < tags.index("eng2_k5=0"), tags
    assert len(tags) == len(set(tags))


def test_out_of_time_stops_before_the_next_setting():
    t = [0.0]

    def clock():
        t[0] += 1.0
        return t[0]
    sent = []
    # the deadline is read at 1.0 (+3.5); settings start at 2.0, 3.0 and 4.0; the fourth, at 5.0, does not
    worker.sweep_problem(Problem(), 3.5, (), sent.append, clock)
    assert [tag for tag, _ in _results(sent)] == ["eng1_k5=1", "eng1", "eng2"]
    assert "build" not in sent[-1]


def test_a_failure_that_may_leave_the_context_unsound_propagates():
    with pytest.raises(RuntimeError):
        _run(Problem(unsound=(2, ())))


def test_serve_tells_why_and_raises_on_an_unsound_failure(monkeypatch):
    import json
    from cudnnconv import gpu_timing, params, records
    saved = gpu_timing.benchmark_settings()
    key = params.ProblemKey("forward", "graph", 0, 2, (8, 16, 10, 10), (16, 16, 3, 3), "NHWC", (1, 1), (1, 1),
                            (1, 1), 1, False, True, None, (16, 16, 16))
    line = json.dumps({"key": records.key_to_json(key), "seconds": 10, "skip": [], "repeats": 7, "warmup": 0})
    sent = []
    try:
        gen = worker.serve([line], lambda k: Problem(unsound=(2, ())), sent.append)
        with pytest.raises(RuntimeError):
            next(gen)
        assert "illegal memory access" in sent[-1]["error"]
        assert (gpu_timing.REPEATS, gpu_timing.WARMUP) == (7, 0)
        sent.clear()
        assert list(worker.serve([line], lambda k: Problem(), sent.append)) == [None]
        assert sum("result" in m for m in sent) == 11 and not any("error" in m for m in sent)
    finally:
        gpu_timing.benchmark_settings(**saved)


def test_which_failures_leave_the_process_sound():
    assert worker.benign(MemoryError())
    assert worker.benign(Refused("CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH"))
    assert worker.benign(Refused("CUDNN_STATUS_BAD_PARAM_NULL_POINTER"))
    assert not worker.benign(Refused("CUDNN_STATUS_EXECUTION_FAILED"))
    assert not worker.benign(Refused("CUDNN_STATUS_INTERNAL_ERROR"))
    assert not worker.benign(RuntimeError("cudaErrorIllegalAddress"))


def test_every_engine_setting_is_reachable_when_time_allows():
    p = Problem()
    tags = {t for t, _ in _results(_run(p))}
    want = {p.tag(i, s) for i, infos in p.engines().items() for s in knob_space.settings(infos)}
    assert want <= tags and not math.isnan(len(tags))


def test_times_a_lost_worker_took_seed_the_next_one():
    # the first worker timed eng2 at 0.1 before it was lost: the fresh one skips it, yet searches
    # around it first, as the fastest so far
    sent = []
    worker.sweep_problem(Problem(), 60.0, ("eng2",), sent.append, known=[[2, [], 0.1]])
    tags = [t for t, _ in _results(sent)]
    assert "eng2" not in tags
    assert tags[3:7] == ["eng2_k5=0", "eng2_k5=1", "eng2_k5=2", "eng2_k5=3"], tags


def test_serve_counts_a_request_s_seconds_from_its_arrival_and_survives_a_benign_failure():
    import json
    from cudnnconv import gpu_timing, params, records
    saved = gpu_timing.benchmark_settings()
    key = params.ProblemKey("forward", "graph", 0, 2, (8, 16, 10, 10), (16, 16, 3, 3), "NHWC", (1, 1), (1, 1),
                            (1, 1), 1, False, True, None, (16, 16, 16))
    line = json.dumps({"key": records.key_to_json(key), "seconds": 6.5, "skip": []})
    t = [0.0]

    def clock():                         # every reading is a second later
        t[0] += 1.0
        return t[0]

    def slow_setup(k):
        t[0] += 2.0                      # the problem's setup: 2 s of the request's 6.5
        return Problem()

    def no_memory(k):
        raise MemoryError("out of memory allocating the problem's arrays")
    makers = iter([slow_setup, no_memory])
    sent = []
    try:
        assert list(worker.serve([line, line], lambda k: next(makers)(k), sent.append, clock)) == [None, None]
    finally:
        gpu_timing.benchmark_settings(**saved)
    # arrival at 1, setup to 3, 3.5 s left at 4: the deadline is 5 + 3.5, and settings start at 6,
    # 7 and 8 (with the setup not counted, three more would)
    assert [tag for tag, _ in _results(sent)] == ["eng1_k5=1", "eng1", "eng2"]
    # a failure that leaves the process sound is told, and the next request is served
    assert "out of memory" in sent[-1]["error"]
