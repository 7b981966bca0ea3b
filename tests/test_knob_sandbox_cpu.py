"""cudnnconv.knob_sandbox: the knob sweep's worker process, driven through its protocol by a
stand-in worker (tests/fake_knob_worker.py), with no GPU: results come back in order, a setting
that never finishes stops its worker and is skipped by the next one and by later sweeps, a worker
that dies or cannot start leaves the search to go on without it, and nothing waits past its time."""
import json
import math
import os
import sys
import time

import pytest

from cudnnconv import exhaustive_budget, knob_sandbox, params

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_knob_worker.py")


def _key(op="forward"):
    return params.ProblemKey(op, "graph", 0, 2, (8, 16, 10, 10), (16, 16, 3, 3), "NHWC", (1, 1), (1, 1), (1, 1),
                             1, False, True, None, (16, 16, 16))


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A clean worker state, fast timeouts, and a function that builds the stand-in's argv."""
    knob_sandbox.shutdown()
    monkeypatch.setattr(knob_sandbox, "HUNG", set())
    monkeypatch.setattr(knob_sandbox, "RUN_TIMEOUT_FLOOR_S", 0.5)
    monkeypatch.setattr(knob_sandbox, "START_TIMEOUT_S", 20.0)
    monkeypatch.setattr(knob_sandbox, "SLACK_S", 1.0)
    monkeypatch.setattr(knob_sandbox, "BUILD_TIMEOUT_S", 0.5)
    log = tmp_path / "requests.jsonl"

    def argv(mode, tag=None):
        return [sys.executable, FAKE, mode, str(log)] + ([tag] if tag else [])
    argv.log = log
    yield argv
    knob_sandbox.shutdown()


def _requests(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_a_sweep_returns_every_setting_in_order_and_the_fastest_that_ran_right(sandbox):
    lines = []
    progress = exhaustive_budget.Progress("forward", lines.append, every_s=0.0)
    s = knob_sandbox.sweep(_key(), 10.0, progress, argv=sandbox("ok"))
    assert s.ran and s.problems == [] and s.workers == 1 and s.reference == 0.05
    assert [r.tag for r in s.results] == ["eng1", "eng2", "eng3", "eng4", "eng5_k2=5", "eng6"]
    assert [r.status for r in s.results] == ["timed"] * 3 + ["wrong"] + ["timed"] * 2
    # the wrong one is never among the fastest, however fast it ran
    assert [r.tag for r in s.fastest(3)] == ["eng6", "eng5_k2=5", "eng3"]
    assert [r.tag for r in s.fastest(2, exclude={"eng6"})] == ["eng5_k2=5", "eng3"]
    assert s.results[4].knobs == ((2, 5),) and s.results[5].workspace == 384
    assert "wrong results" in s.results[3].reason() and "0.5" in s.results[3].reason()
    assert "not among its %d fastest" % knob_sandbox.RETIME in s.results[0].reason()
    assert progress.count == 5 and progress.best == "eng6"            # every timed setting reported
    req = _requests(sandbox.log)
    assert len(req) == 1 and req[0]["skip"] == [] and req[0]["key"]["op"] == "forward"
    assert 9.0 < req[0]["seconds"] <= 10.0          # the worker's start is not the problem's time
    # the worker stays up for the next problem
    s2 = knob_sandbox.sweep(_key("backward_data"), 10.0, argv=sandbox("ok"))
    assert s2.ran and s2.workers == 0 and len(_requests(sandbox.log)) == 2     # none started: reused


def test_a_setting_that_never_finishes_stops_its_worker_and_is_never_tried_again(sandbox):
    t0 = time.monotonic()
    s = knob_sandbox.sweep(_key(), 10.0, argv=sandbox("hang", "eng3"))
    spent = time.monotonic() - t0
    assert [(r.tag, r.status) for r in s.results] == [("eng1", "timed"), ("eng2", "timed"), ("eng3", "hung"),
                                                      ("eng4", "wrong"), ("eng5_k2=5", "timed"), ("eng6", "timed")]
    assert s.workers == 2 and s.ran and s.problems == []
    assert "did not finish within 0.5 s (its first run)" in s.results[2].reason()
    assert spent < 8.0, spent
    req = _requests(sandbox.log)
    # the fresh worker was told to skip what the first had done and the setting that hung, and
    # given the first one's times
    assert req[1]["skip"] == ["eng1", "eng2", "eng3"]
    assert req[1]["known"] == [[1, [], 0.05], [2, [], 0.04]] and req[0]["known"] == []
    assert req[1]["seconds"] < req[0]["seconds"]
    # a later sweep of the same problem skips it from the start; another problem does not
    s = knob_sandbox.sweep(_key(), 10.0, argv=sandbox("hang", "eng3"))
    assert _requests(sandbox.log)[2]["skip"] == ["eng3"] and "eng3" not in [r.tag for r in s.results]
    s = knob_sandbox.sweep(_key("backward_filter"), 1.0, argv=sandbox("hang", "eng3"))
    assert _requests(sandbox.log)[3]["skip"] == []
    assert any(r.status == "hung" for r in s.results)


def test_a_hang_is_remembered_under_the_tag_cudnn_reads_back_too(sandbox):
    # eng5 reads back as eng5_k2=5: a setting that normalises to the same config must not hang again
    knob_sandbox.sweep(_key(), 10.0, argv=sandbox("hang", "eng5"))
    text = knob_sandbox.records.canonical_json(knob_sandbox.records.key_to_json(_key()))
    assert {(text, "eng5"), (text, "eng5_k2=5")} <= knob_sandbox.HUNG
    assert {"eng5", "eng5_k2=5"} <= set(_requests(sandbox.log)[1]["skip"])


def test_a_build_that_never_finishes_is_a_hang_of_its_own(sandbox):
    s = knob_sandbox.sweep(_key(), 10.0, argv=sandbox("hang_build", "eng2"))
    assert [(r.tag, r.status) for r in s.results][:2] == [("eng1", "timed"), ("eng2", "hung")]
    assert "(its build)" in s.results[1].detail and s.workers == 2 and s.ran


def test_a_worker_that_dies_running_a_setting_is_replaced_and_the_setting_dropped(sandbox):
    s = knob_sandbox.sweep(_key(), 10.0, argv=sandbox("crash", "eng2"))
    assert [(r.tag, r.status) for r in s.results][:3] == [("eng1", "timed"), ("eng2", "crashed"), ("eng3", "timed")]
    assert s.workers == 2 and s.ran
    assert "died" in s.results[1].reason()


def test_an_error_under_a_setting_retires_the_worker_and_the_setting(sandbox):
    # a failure that may leave the worker's CUDA context unsound: the worker says why and exits; the
    # setting is dropped and a fresh worker goes on past it
    s = knob_sandbox.sweep(_key(), 10.0, argv=sandbox("error", "eng3"))
    assert [(r.tag, r.status) for r in s.results][:3] == [("eng1", "timed"), ("eng2", "timed"), ("eng3", "crashed")]
    assert s.workers == 2 and any("illegal memory access" in p for p in s.problems)
    assert [r.tag for r in s.results if r.status == "timed"] == ["eng1", "eng2", "eng5_k2=5", "eng6"]


def test_restarts_are_bounded(sandbox, monkeypatch):
    # every worker dies under the first setting it is not told to skip: MAX_RESTARTS fresh ones
    # after the first, then the sweep gives up
    monkeypatch.setattr(knob_sandbox, "MAX_RESTARTS", 2)
    s = knob_sandbox.sweep(_key(), 30.0, argv=sandbox("crashall"))
    assert s.workers == 3 and [(r.tag, r.status) for r in s.results] == [
        ("eng1", "crashed"), ("eng2", "crashed"), ("eng3", "crashed")]
    assert not s.ran


def test_no_restart_without_the_time_to_use_it(sandbox):
    s = knob_sandbox.sweep(_key(), knob_sandbox.RESTART_MIN_S - 0.5, argv=sandbox("crashall"))
    assert s.workers == 1 and [r.status for r in s.results] == ["crashed"]


def test_a_reused_worker_lost_counts_against_the_restarts(sandbox, monkeypatch):
    monkeypatch.setattr(knob_sandbox, "MAX_RESTARTS", 1)
    assert knob_sandbox.sweep(_key(), 10.0, argv=sandbox("crash_later")).ran      # its first request: served
    s = knob_sandbox.sweep(_key("backward_data"), 10.0, argv=sandbox("crashall"))
    # the kept worker died under eng1; one fresh worker (crashall) died under eng2; no more
    assert s.workers == 1 and [(r.tag, r.status) for r in s.results] == [("eng1", "crashed"), ("eng2", "crashed")]


@pytest.mark.parametrize("mode, words", [("silent", "did not start in time"), ("refuse", "cannot run here"),
                                         ("garbage", "not JSON")])
def test_a_worker_that_cannot_serve_leaves_the_search_to_go_on_without_it(sandbox, monkeypatch, mode, words):
    monkeypatch.setattr(knob_sandbox, "START_TIMEOUT_S", 1.0)
    t0 = time.monotonic()
    s = knob_sandbox.sweep(_key(), 2.0, argv=sandbox(mode))
    assert time.monotonic() - t0 < 10.0
    assert not s.ran and len(s.problems) == 1 and words in s.problems[0], s.problems
    assert s.results == []


def test_a_worker_command_that_does_not_exist_is_a_problem_not_an_exception(sandbox):
    s = knob_sandbox.sweep(_key(), 1.0, argv=["/nonexistent/python-for-the-knob-sweep"])
    assert not s.ran and "could not start" in s.problems[0]


def test_a_worker_that_could_not_start_is_not_tried_again_until_the_sweep_is_reset(sandbox):
    knob_sandbox.sweep(_key(), 1.0, argv=sandbox("refuse"))
    s = knob_sandbox.sweep(_key("backward_data"), 1.0, argv=sandbox("ok"))
    assert s.workers == 0 and not s.ran and "off in this process" in s.problems[0]
    knob_sandbox.shutdown()
    assert knob_sandbox.sweep(_key("backward_data"), 5.0, argv=sandbox("ok")).ran


def test_the_caller_s_timing_settings_go_to_the_worker(sandbox):
    knob_sandbox.sweep(_key(), 5.0, argv=sandbox("ok"), timing={"repeats": 9, "warmup": 2})
    req = _requests(sandbox.log)[0]
    assert (req["repeats"], req["warmup"]) == (9, 2)


def test_the_budget_starts_once_the_worker_is_free(sandbox):
    import threading
    # a second thread waits for the first one's sweep; its own sweep still gets its seconds
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("a", knob_sandbox.sweep(_key(), 3.0, argv=sandbox("hang", "eng6"))))
    t.start()
    time.sleep(0.3)
    out["b"] = knob_sandbox.sweep(_key("backward_data"), 5.0, argv=sandbox("ok"))
    t.join()
    reqs = [r for r in _requests(sandbox.log) if r["key"]["op"] == "backward_data"]
    assert out["b"].ran and out["a"].workers == 2 and reqs[0]["seconds"] > 4.8


def test_a_worker_s_start_is_not_the_problem_s_time(sandbox):
    s = knob_sandbox.sweep(_key(), 5.0, argv=sandbox("slow_ok"))
    assert s.ran and _requests(sandbox.log)[0]["seconds"] > 4.8 and s.seconds > 1.5


def test_the_worker_runs_with_this_package_first_and_no_tuning_file(monkeypatch):
    monkeypatch.setenv("CUDNNCONV_TUNING_CACHE", "/tmp/t.json")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = knob_sandbox.worker_env()
    assert "CUDNNCONV_TUNING_CACHE" not in env
    root = os.path.dirname(os.path.dirname(os.path.abspath(knob_sandbox.__file__)))
    assert env["PYTHONPATH"].split(os.pathsep) == [root, "/elsewhere"]


def test_the_run_timeout_grows_with_the_kernel_and_the_runs_of_a_timing():
    assert knob_sandbox.run_timeout_s(None) == knob_sandbox.RUN_TIMEOUT_FLOOR_S
    assert knob_sandbox.run_timeout_s(math.nan) == knob_sandbox.RUN_TIMEOUT_FLOOR_S
    assert knob_sandbox.run_timeout_s(0.01) == knob_sandbox.RUN_TIMEOUT_FLOOR_S
    assert knob_sandbox.run_timeout_s(100.0) == knob_sandbox.RUN_TIMEOUT_FACTOR * 0.1
    # a timing of 1000 repeats of a 20 ms kernel takes 20 s: its wait covers it three times over
    runs = knob_sandbox.timing_runs({"repeats": 1000, "warmup": 100})
    assert runs == 1101 and knob_sandbox.run_timeout_s(20.0, runs) >= 3 * runs * 0.020
    assert knob_sandbox.timing_runs({}) == 7


def test_the_worker_compares_results_by_relative_l2_and_counts_nan_as_wrong():
    import numpy
    from cudnnconv import knob_sweep_worker as w
    ref = numpy.array([3.0, 4.0])
    assert w.rel_error(ref.copy(), ref) == 0.0
    assert abs(w.rel_error(numpy.array([3.0, 4.5]), ref) - 0.1) < 1e-12
    assert w.rel_error(numpy.array([3.0, numpy.nan]), ref) == math.inf
    assert w.rel_error(numpy.zeros(2), numpy.zeros(2)) == 0.0
    key = _key()
    assert w.tolerance(key) == w.TOLERANCE[2]
    assert w.tolerance(key._replace(dtype=0)) == w.TF32_TOLERANCE
    assert w.tolerance(key._replace(dtype=0, allow_tf32=False)) == w.TOLERANCE[0]


def test_turning_the_sweep_or_the_exhaustive_search_off_stops_the_worker(sandbox):
    import cudnnconv
    saved = cudnnconv.benchmark_settings()
    try:
        for off in (dict(knob_sweep=False), dict(exhaustive=False)):
            cudnnconv.benchmark_settings(exhaustive=True, knob_sweep=True)
            assert knob_sandbox.sweep(_key(), 5.0, argv=sandbox("ok")).ran
            proc = knob_sandbox._worker.proc
            cudnnconv.benchmark_settings(**off)
            assert knob_sandbox._worker is None
            assert proc.wait(timeout=10) is not None
    finally:
        cudnnconv.benchmark_settings(**saved)


def test_a_worker_inherited_through_fork_is_neither_used_nor_stopped(sandbox, monkeypatch):
    assert knob_sandbox.sweep(_key(), 5.0, argv=sandbox("ok")).ran
    inherited = knob_sandbox._worker
    monkeypatch.setattr(inherited, "owner", inherited.owner + 1)     # as a forked child sees it
    knob_sandbox.shutdown()
    assert knob_sandbox._worker is None and inherited.alive()
    knob_sandbox._worker = inherited
    s = knob_sandbox.sweep(_key("backward_data"), 5.0, argv=sandbox("ok"))
    assert s.workers == 1 and knob_sandbox._worker is not inherited and inherited.alive()
    inherited.owner -= 1
    inherited.stop()


def test_an_interrupted_sweep_stops_its_worker_so_the_next_problem_gets_its_own_answers(sandbox):
    class Interrupt:
        def add(self, tag, ms):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        knob_sandbox.sweep(_key(), 5.0, Interrupt(), argv=sandbox("ok"))
    assert knob_sandbox._worker is None
    s = knob_sandbox.sweep(_key("backward_data"), 5.0, argv=sandbox("ok"))
    assert s.ran and s.workers == 1 and [r.tag for r in s.results] == ["eng1", "eng2", "eng3", "eng4", "eng5_k2=5", "eng6"]
