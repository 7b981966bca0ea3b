"""pytest plugin: keep one of N interleaved shares of the collected tests.

    CUDNNCONV_TEST_SHARD=K/N python3 -m pytest -p pytest_shard ...     (tools/ on PYTHONPATH)

Test i of the collection (in pytest's order) runs in share i % N, so every share holds some of
every module and the N shares together hold each test exactly once. `tools/gpu_suite.sh` sets it
from SHARD=K/N, for a device call that cannot hold the whole suite: `tests/gpu` alone takes about
nine minutes on an H200, and a call is at most ten.  The tests left out are reported as deselected.
"""
import os

import pytest

ENV = "CUDNNCONV_TEST_SHARD"


def parse(text):
    """'K/N' -> (K, N), with 0 <= K < N; a pytest.UsageError names the value otherwise."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise pytest.UsageError("%s=%r: expected K/N, two integers such as 0/2" % (ENV, text)) from None
    if n < 1 or not 0 <= k < n:
        raise pytest.UsageError("%s=%r: needs N >= 1 and 0 <= K < N" % (ENV, text))
    return k, n


def pytest_configure(config):
    text = os.environ.get(ENV, "")
    config._cudnnconv_shard = parse(text) if text else None     # a bad value stops pytest here


def pytest_collection_modifyitems(config, items):
    if config._cudnnconv_shard is None:
        return
    k, n = config._cudnnconv_shard
    drop = [item for i, item in enumerate(items) if i % n != k]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for i, item in enumerate(items) if i % n == k]
