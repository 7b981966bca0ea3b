"""tools/pytest_shard.py: the shares tools/gpu_suite.sh runs (SHARD=K/N) hold every test exactly once."""
import os
import re
import subprocess
import sys

import pytest

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")

SAMPLE = '''
import pytest

@pytest.mark.parametrize("i", range(7))
def test_a(i):
    pass

def test_b():
    pass

class TestC:
    @pytest.mark.parametrize("j", range(3))
    def test_c(self, j):
        pass
'''


def _collect(tmp_path, shard=None, files=("test_one.py", "test_two.py")):
    for name in files:
        (tmp_path / name).write_text(SAMPLE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = TOOLS + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("CUDNNCONV_TEST_SHARD", None)
    args = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
            "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), str(tmp_path)]
    if shard is not None:
        env["CUDNNCONV_TEST_SHARD"] = shard
        args[4:4] = ["-p", "pytest_shard"]
    r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    ids = [line for line in r.stdout.splitlines() if "::" in line]
    return r, ids


def _plugin():
    sys.path.insert(0, TOOLS)
    try:
        import pytest_shard
    finally:
        sys.path.remove(TOOLS)
    return pytest_shard


class _Config:
    def __init__(self, plugin, text):
        self.deselected = []
        self.hook = self
        os.environ[plugin.ENV] = text
        try:
            plugin.pytest_configure(self)
        finally:
            del os.environ[plugin.ENV]

    def pytest_deselected(self, items):
        self.deselected.extend(items)


@pytest.mark.parametrize("total", [0, 1, 7, 22])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_shares_partition_the_collection_in_order(n, total):
    plugin = _plugin()
    whole = ["t%d" % i for i in range(total)]
    shares = []
    for k in range(n):
        config = _Config(plugin, "%d/%d" % (k, n))
        items = list(whole)
        plugin.pytest_collection_modifyitems(config, items)
        assert items == whole[k::n]
        assert sorted(config.deselected + items) == sorted(whole)
        shares.append(items)
    assert sorted(sum(shares, [])) == sorted(whole)
    assert all(len(s) in (total // n, total // n + 1) for s in shares)


@pytest.mark.parametrize("bad", ["2/2", "-1/2", "0/0", "1", "a/b", "1/2/3", "1/-2"])
def test_a_bad_share_is_a_usage_error_naming_it(bad):
    with pytest.raises(pytest.UsageError, match="CUDNNCONV_TEST_SHARD=%s" % re.escape(repr(bad))):
        _Config(_plugin(), bad)


def test_through_pytest_the_two_shares_hold_every_test_once(tmp_path):
    r, whole = _collect(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(whole) == 2 * 11
    r0, first = _collect(tmp_path, "0/2")
    r1, second = _collect(tmp_path, "1/2")
    assert r0.returncode == 0 and r1.returncode == 0, r0.stdout + r1.stdout
    assert first == whole[0::2] and second == whole[1::2]
    assert "11 deselected" in r0.stdout and "11 deselected" in r1.stdout
    r, ids = _collect(tmp_path, "")
    assert r.returncode == 0 and ids == whole and "deselected" not in r.stdout


def test_through_pytest_a_bad_share_stops_it_before_any_test(tmp_path):
    r, ids = _collect(tmp_path, "3/2")
    assert r.returncode == 4, r.stdout + r.stderr      # pytest's usage error
    assert "CUDNNCONV_TEST_SHARD='3/2'" in r.stdout + r.stderr
    assert ids == []
