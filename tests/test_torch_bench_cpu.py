"""bench/torch_train.py without a GPU: it imports without torch, and its summary and markdown carry
the issue's field names with the right arithmetic."""
import json

import pytest

from bench import torch_train as tt


def _synthetic():
    return {"environment": {"gpu": "NVIDIA H200", "cudnn": "9.19.0", "torch": "2.11.0", "date": "2026-12-02"},
            "train": [{"batch": 64, "ours_ms": 110.0, "torch_ms": 100.0, "control_ms": 121.0, "ours_function_ms": 118.0},
                      {"batch": 256, "ours_ms": 404.0, "torch_ms": 400.0, "control_ms": 420.0}],
            "infer": {"ours_ms": 2.2, "torch_ms": 2.0}, "graphed": {"ours_ms": 95.0, "torch_ms": 100.0},
            "fp32": {"loss_relerr": 1e-7, "grad_relerr": {"conv1": 2e-6, "layer1.0.conv1": 5e-6}}, "notes": ["n"]}


def test_summary_fields_and_ratios():
    s = tt.summarize(_synthetic())
    assert set(tt.SUMMARY_KEYS) <= set(s)
    assert s["train_step_ratio_b64"] == pytest.approx(1.1) and s["train_step_ratio_b256"] == pytest.approx(1.01)
    assert s["control_function_ratio_b64"] == pytest.approx(1.21)
    assert s["ours_function_ratio_b64"] == pytest.approx(1.18)
    assert s["infer_ratio_b1"] == pytest.approx(1.1) and s["graphed_step_ratio"] == pytest.approx(0.95)
    assert s["max_grad_relerr_fp32"] == 5e-6


def test_missing_measurements_are_none_not_errors():
    s = tt.summarize({"train": [{"batch": 64, "error": "E"}], "infer": {"error": "E"}, "graphed": None, "fp32": None})
    assert all(s[k] is None for k in tt.SUMMARY_KEYS)


def test_markdown():
    r = _synthetic()
    r["summary"] = tt.summarize(r)
    md = tt.markdown(r)
    assert "| train_step_ratio_b64 | 1.100 |" in md and "| max_grad_relerr_fp32 | 5.00e-06 |" in md
    assert "| 64 | 110.000 | 100.000 | 121.000 | 118.000 | 1.100 | 1.210 | 1.180 |  |" in md
    assert "worst conv weight gradient 5.00e-06 (layer1.0.conv1)" in md and "- n" in md


def test_a_failed_capture_names_its_stage():
    r = _synthetic()
    r["graphed"] = {"stage": "first replay ours", "error": "AcceleratorError: illegal memory access"}
    r["summary"] = tt.summarize(r)
    assert r["summary"]["graphed_step_ratio"] is None
    assert "(failed at first replay ours: AcceleratorError: illegal memory access)" in tt.markdown(r)


def _args(tmp_path):
    a = tt.build_parser().parse_args(["--out", str(tmp_path), "--batches", "64", "--steps", "2", "--rounds", "1"])
    a.deadline = float("inf")
    return a


class _FakeChild:
    """subprocess.Popen stand-in: writes ``record`` to the --phase-out file, then "ends" with ``rc``
    after printing ``out``; ``hang`` makes the first communicate() time out."""
    made = []

    def __init__(self, cmd, record=None, rc=0, out="", hang=False, **kw):
        assert "--phase" in cmd and cmd[cmd.index("--phase") + 1] == "graphed"
        self.cmd, self.rc, self.out, self.hang, self.signals = cmd, rc, out, hang, []
        if record is not None:
            with open(cmd[cmd.index("--phase-out") + 1], "w") as f:
                json.dump(record, f)
        self.returncode = None
        _FakeChild.made.append(self)

    def communicate(self, timeout=None):
        if self.hang and not self.signals:
            raise tt.subprocess.TimeoutExpired(self.cmd, timeout)
        self.returncode = self.rc
        return self.out.encode(), None

    def send_signal(self, sig):
        self.signals.append(sig)

    def kill(self):
        self.signals.append("kill")


def _child(monkeypatch, **kw):
    monkeypatch.setattr(tt.subprocess, "Popen", lambda cmd, **k: _FakeChild(cmd, **kw))


def test_a_child_phase_that_crashes_keeps_what_it_measured_and_names_its_last_stage(monkeypatch, tmp_path):
    out = "[torch_train] stage: capture torch\n[torch_train] stage: timed replays ours\nFatal Python error: Segm\n"
    _child(monkeypatch, record={"torch_ms": 31.5, "stage": "timed replays ours"}, rc=-11, out=out)
    rec = tt.child_phase(_args(tmp_path), "graphed")
    assert rec["error"] == "the child process ended: killed by SIGSEGV"
    assert rec["torch_ms"] == 31.5 and rec["stage"] == "timed replays ours"
    assert rec["child_output_tail"][-1] == "Fatal Python error: Segm"
    r = _synthetic()
    r["graphed"] = rec
    r["summary"] = tt.summarize(r)
    assert "(failed at timed replays ours: the child process ended: killed by SIGSEGV)" in tt.markdown(r)
    assert r["summary"]["graphed_step_ratio"] is None


def test_a_child_phase_that_hangs_gets_sigabrt_then_becomes_a_record(monkeypatch, tmp_path):
    import signal
    _child(monkeypatch, rc=-6, out="[torch_train] stage: capture ours\nFatal Python error: Aborted\n", hang=True)
    rec = tt.child_phase(_args(tmp_path), "graphed")
    assert _FakeChild.made[-1].signals == [signal.SIGABRT]
    assert rec["error"] == "the child process ended: timed out after %.0f s" % tt.CHILD_TIMEOUT_S
    assert rec["stage"] == "capture ours"


def test_a_child_phase_that_succeeds_returns_its_record_unchanged(monkeypatch, tmp_path):
    _child(monkeypatch, record={"torch_ms": 30.0, "ours_ms": 29.0}, rc=0, out="[torch_train] stage: capture torch\n")
    assert tt.child_phase(_args(tmp_path), "graphed") == {"torch_ms": 30.0, "ours_ms": 29.0}


def test_a_child_phase_runs_the_script_and_returns_what_it_wrote(tmp_path):
    """A real child: where torch is missing (CI), its phase fails at the import and says so in the
    record it writes; it exits cleanly, so the error is its own, not 'the child process ended'."""
    try:
        import torch  # noqa: F401
        pytest.skip("torch is installed here: the child would run the GPU phase")
    except ImportError:
        pass
    rec = tt.child_phase(_args(tmp_path), "graphed")
    assert rec["error"].startswith("ModuleNotFoundError") and "torch" in rec["error"]


def test_the_interleaved_records_and_their_control_read_plainly():
    r = _synthetic()
    r["graphed_interleaved"] = {"stage": "interleaved replay 6 of torch", "error": "the child process ended: "
                                "killed by SIGSEGV"}
    r["graphed_interleaved_torch_pair"] = {"ok": True}
    r["summary"] = tt.summarize(r)
    md = tt.markdown(r)
    assert "- torch and ours: failed at interleaved replay 6 of torch: the child process ended: killed by SIGSEGV" in md
    assert "- two copies of torch's (control): ran" in md
    r["graphed_interleaved"] = {"skipped": "not run (without --interleaved)"}
    r["graphed_interleaved_torch_pair"] = None
    md = tt.markdown(r)
    assert "- torch and ours: not run (without --interleaved)" in md and "(control): not run" in md
