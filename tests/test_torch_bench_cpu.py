"""bench/torch_train.py without a GPU: it imports without torch, and its summary and markdown carry
the issue's field names with the right arithmetic."""
import pytest

from bench import torch_train as tt


def _synthetic():
    return {"environment": {"gpu": "NVIDIA H200", "cudnn": "9.19.0", "torch": "2.11.0", "date": "2026-12-02"},
            "train": [{"batch": 64, "ours_ms": 110.0, "torch_ms": 100.0, "control_ms": 121.0},
                      {"batch": 256, "ours_ms": 404.0, "torch_ms": 400.0, "control_ms": 420.0}],
            "infer": {"ours_ms": 2.2, "torch_ms": 2.0}, "graphed": {"ours_ms": 95.0, "torch_ms": 100.0},
            "fp32": {"loss_relerr": 1e-7, "grad_relerr": {"conv1": 2e-6, "layer1.0.conv1": 5e-6}}, "notes": ["n"]}


def test_summary_fields_and_ratios():
    s = tt.summarize(_synthetic())
    assert set(tt.SUMMARY_KEYS) <= set(s)
    assert s["train_step_ratio_b64"] == pytest.approx(1.1) and s["train_step_ratio_b256"] == pytest.approx(1.01)
    assert s["control_function_ratio_b64"] == pytest.approx(1.21)
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
    assert "| 64 | 110.000 | 100.000 | 121.000 | 1.100 | 1.210 |  |" in md
    assert "worst conv weight gradient 5.00e-06 (layer1.0.conv1)" in md and "- n" in md


def test_a_failed_capture_names_its_stage():
    r = _synthetic()
    r["graphed"] = {"stage": "first replay ours", "error": "AcceleratorError: illegal memory access"}
    r["summary"] = tt.summarize(r)
    assert r["summary"]["graphed_step_ratio"] is None
    assert "(failed at first replay ours: AcceleratorError: illegal memory access)" in tt.markdown(r)
