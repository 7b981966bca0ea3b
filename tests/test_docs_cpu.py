"""The documentation holds together: the public functions that can raise
say what in a Raises section, and every relative link in the README, the
bench README and docs/ points at a file of the repository."""
import glob
import os
import re

import pytest

import cudnnconv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAISING = ("conv", "conv_backward_input", "conv_backward_weight", "conv_transpose", "conv_bias_add_relu", "plan",
           "flags", "save_tuning", "load_tuning", "explain", "last_choice", "benchmark_settings")


@pytest.mark.parametrize("name", RAISING)
def test_public_functions_say_what_they_raise(name):
    doc = getattr(cudnnconv, name).__doc__ or ""
    assert "\n    Raises:\n" in doc or "\nRaises:\n" in doc, name


def test_the_five_functions_name_every_error_class_they_raise():
    for name in RAISING[:5]:
        doc = getattr(cudnnconv, name).__doc__
        for cls in ("TypeError", "ValueError", "CudaUnavailableError", "EngineUnavailable", "CuDNNOutOfMemoryError",
                    "CuDNNError", "CaptureError"):
            assert cls + ":" in doc, (name, cls)


def _markdown():
    files = [os.path.join(REPO, "README.md"), os.path.join(REPO, "bench", "README.md")]
    return [f for f in files + glob.glob(os.path.join(REPO, "docs", "*.md")) if os.path.exists(f)]


def test_relative_links_resolve():
    found = _markdown()
    if not found:
        pytest.skip("no documentation beside the tests")
    bad = []
    for f in found:
        for m in re.finditer(r"\]\(([^)#\s]+)(#[^)]*)?\)", open(f, encoding="utf-8").read()):
            target = m.group(1)
            if re.match(r"[a-z]+:", target):
                continue
            if not os.path.exists(os.path.normpath(os.path.join(os.path.dirname(f), target))):
                bad.append("%s -> %s" % (os.path.relpath(f, REPO), target))
    assert not bad, bad
