"""Hostile tuning files, without a GPU: special files at the path, exact
version ints, deeply nested plan JSON, non-finite and huge numbers, and the
count load_tuning returns.

The device environment comes from a monkeypatched
``tuning.device_environment``; documents are built here from
``tuning.key_to_json`` and hand-written records.
"""
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import types
import warnings

import pytest

from cudnnconv import engine_registry, params, tuning
from cudnnconv.cache import AlgoCache

pytest.importorskip("cudnnconv.engines.legacy", reason="this build has no legacy engine (CUDNNCONV_LEGACY_API=0)")
from cudnnconv.engines.legacy import LegacyChoice  # noqa: E402
from conftest import isolated_tuning  # noqa: E402

CACHE = engine_registry.legacy.CACHE
ENV = {"cudnn_version": 91900, "gpu_name": "Fake GPU 80GB", "compute_capability": [9, 0], "sm_count": 132,
       "cache_format": tuning.CACHE_FORMAT}
EID = tuning.env_id(ENV)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTINEL = "@@number@@"


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    yield from isolated_tuning(monkeypatch, ENV)


def key(i=0, engine="legacy", **kw):
    base = dict(op="forward", engine=engine, device=0, dtype=0, input_shape=(8, 64, 56 + i, 56),
                weight_shape=(64, 64, 3, 3), layout="NCHW", padding=(1, 1), stride=(1, 1), dilation=(1, 1),
                groups=1, deterministic=False, allow_tf32=True, workspace_limit=None, extra=())
    base.update(kw)
    return params.ProblemKey(**base)


def legacy_record(**kw):
    rec = {"algo": 1, "math_type": 0, "workspace": 1024, "time_ms": 0.05, "deterministic": True,
           "benchmarked": True}
    rec.update(kw)
    return rec


def graph_record(**kw):
    rec = {"tag": "eng0", "engine_index": 0, "knobs": [], "workspace": 0, "time_ms": 0.1, "benchmarked": True}
    rec.update(kw)
    return rec


def doc_of(entries, env=ENV):
    """A tuning document holding ``entries`` [(key, record)], all of environment ``env``."""
    eid = tuning.env_id(env)
    return {"format": tuning.FORMAT, "version": tuning.FORMAT_VERSION, "environments": {eid: env},
            "entries": [{"env": eid, "engine": k.engine, "key": tuning.key_to_json(k), "record": r}
                        for k, r in entries]}


def good_and(bad_key, bad_record):
    """A document whose first entry is (bad_key, bad_record) and whose second is a good legacy entry, key(1)."""
    return doc_of([(bad_key, bad_record), (key(1), legacy_record(algo=2))])


def write_text(tmp_path, text, name="t.json"):
    path = tmp_path / name
    path.write_text(text)
    return path


def with_literal(doc, literal):
    """The document's JSON text with the string SENTINEL replaced by ``literal`` (raw JSON)."""
    text = json.dumps(doc)
    assert text.count(json.dumps(SENTINEL)) == 1
    return text.replace(json.dumps(SENTINEL), literal)


def load_no_warning(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return tuning.load_file(path, **kw)


def nested(obj, levels):
    for _ in range(levels):
        obj = [obj]
    return obj


# ---------------------------------------------------------------------------
# 1. Only regular files are opened
# ---------------------------------------------------------------------------

def _release_fifo(path):
    """Open the FIFO's write end once, so that a reader blocked in open() returns (and reads EOF)."""
    for _ in range(100):
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            return
        except OSError:
            threading.Event().wait(0.05)


def _bounded(fn, fifo, seconds=5.0):
    """Run fn() in a thread for at most ``seconds``: (finished in time, what it returned, raised, warned).

    A call still blocked on the FIFO afterwards is released, so no thread is left behind.
    """
    out = {"result": None, "error": None, "warnings": []}

    def target():
        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                out["result"] = fn()
            out["warnings"] = [str(w.message) for w in seen]
        except BaseException as e:      # reported to the test, never lost
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    finished = not t.is_alive()
    if not finished:
        _release_fifo(fifo)
        t.join(30)
    return finished, out


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.json"
    os.mkfifo(path)
    return path


def test_fifo_at_the_path_is_rejected_without_blocking(fifo):
    finished, out = _bounded(lambda: tuning.load_file(fifo), fifo)
    assert finished, "load_tuning blocked on a FIFO"
    assert out["error"] is None and out["result"] == 0
    assert any("not a regular file" in w and "FIFO" in w for w in out["warnings"]), out["warnings"]


def test_save_to_a_fifo_refuses_without_blocking_and_keeps_it(fifo):
    CACHE.put(key(0), LegacyChoice("forward", 1, 0, 0, 0.05, True, True))
    finished, out = _bounded(lambda: tuning.save_tuning(fifo), fifo)
    assert finished, "save_tuning blocked on a FIFO"
    assert isinstance(out["error"], tuning.TuningFileError) and "not a regular file" in str(out["error"])
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)            # not replaced


CHILD = textwrap.dedent("""
    import os, sys, threading, warnings
    from cudnnconv import params, tuning
    tuning.device_environment = lambda device: dict(%r)
    from cudnnconv.engines import legacy
    k = params.ProblemKey('forward', 'legacy', 0, 0, (8, 64, 56, 56), (64, 64, 3, 3), 'NCHW', (1, 1),
                          (1, 1), (1, 1), 1, False, True, None, ())
    seen = []
    def work():
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            legacy.CACHE.get(k)                   # the first lookup loads the file
            legacy.CACHE.put(k, legacy.LegacyChoice('forward', 1, 0, 512, 0.1, True, True))   # merges into it
        seen.extend(str(m.message) for m in w)
    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(5)
    print('blocked' if t.is_alive() else 'finished')
    for s in seen:
        print(s.replace(chr(10), ' '))
    sys.stdout.flush()
    os._exit(0)
""") % (ENV,)


def test_fifo_in_the_environment_variable_does_not_block(fifo):
    env = dict(os.environ, **{tuning.ENV_VAR: str(fifo)})
    env["PYTHONPATH"] = os.path.join(REPO, "pyx") + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "finished", p.stdout
    assert sum("not a regular file" in line for line in lines[1:]) == 2, p.stdout      # the load and the merge
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def _unix_socket(tmp_path):
    d = tempfile.mkdtemp(prefix="cc")           # a short path: AF_UNIX names are limited to ~100 bytes
    path = os.path.join(d, "s.json")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    return path, s


@pytest.mark.parametrize("kind", ["directory", "/dev/zero", "/dev/null", "socket"])
def test_special_files_are_rejected_like_corrupt_ones(tmp_path, kind):
    sock = None
    if kind == "directory":
        path = tmp_path
    elif kind == "socket":
        path, sock = _unix_socket(tmp_path)
    else:
        if not os.path.exists(kind):
            pytest.skip("no %s here" % kind)
        path = kind
    try:
        with pytest.warns(RuntimeWarning, match="not a regular file"):
            assert tuning.load_file(path) == 0
    finally:
        if sock is not None:
            sock.close()
            os.unlink(path)
            os.rmdir(os.path.dirname(path))
    assert len(CACHE) == 0


def test_save_to_a_socket_refuses_and_keeps_it(tmp_path):
    path, sock = _unix_socket(tmp_path)
    try:
        CACHE.put(key(0), LegacyChoice("forward", 1, 0, 0, 0.05, True, True))
        with pytest.raises(tuning.TuningFileError, match="not a regular file"):
            tuning.save_tuning(path)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        sock.close()
        os.unlink(path)
        for name in os.listdir(os.path.dirname(path)):
            os.unlink(os.path.join(os.path.dirname(path), name))
        os.rmdir(os.path.dirname(path))


def _reads_mode_000():
    """Whether this process can open a file of mode 000 (root, or CAP_DAC_OVERRIDE)."""
    fd, probe = tempfile.mkstemp()
    os.close(fd)
    os.chmod(probe, 0)
    try:
        os.close(os.open(probe, os.O_RDONLY))
        return True
    except PermissionError:
        return False
    finally:
        os.unlink(probe)


@pytest.mark.skipif(_reads_mode_000(), reason="this process reads files of mode 000 (root), "
                                              "so there is no permission error to provoke")
def test_unreadable_file_warns_and_loads_nothing(tmp_path):
    path = write_text(tmp_path, json.dumps(doc_of([(key(0), legacy_record())])))
    os.chmod(path, 0)
    try:
        with pytest.warns(RuntimeWarning, match="could not be read"):
            assert tuning.load_file(path) == 0
    finally:
        os.chmod(path, 0o600)


def test_permission_denied_at_open_warns_and_loads_nothing(tmp_path, monkeypatch):
    # The same path as a mode-000 file, provoked for root as well: os.open refuses.
    path = write_text(tmp_path, json.dumps(doc_of([(key(0), legacy_record())])))
    real_open = os.open

    def refuse(p, *a, **kw):
        if os.fspath(p) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(p, *a, **kw)
    monkeypatch.setattr(tuning.os, "open", refuse)
    with pytest.warns(RuntimeWarning, match="could not be read"):
        assert tuning.load_file(path) == 0
    assert len(CACHE) == 0


# ---------------------------------------------------------------------------
# 2. The format version is an exact int
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("literal", ["1.0", "1e0", "1.000", "true", "\"1\"", "[1]"])
def test_version_must_be_the_exact_int(tmp_path, literal):
    doc = doc_of([(key(0), legacy_record())])
    doc["version"] = SENTINEL
    path = write_text(tmp_path, with_literal(doc, literal))
    with pytest.warns(RuntimeWarning, match="format version"):
        assert tuning.load_file(path) == 0
    assert len(CACHE) == 0


def test_version_1_still_loads(tmp_path):
    doc = doc_of([(key(0), legacy_record())])
    doc["version"] = SENTINEL
    assert load_no_warning(write_text(tmp_path, with_literal(doc, "1"))) == 1


# ---------------------------------------------------------------------------
# 3. Plan JSON nested deeper than 64 levels
# ---------------------------------------------------------------------------

def _graph_plan_doc(plan_text):
    return good_and(key(0, engine="graph"), graph_record(plan_json=plan_text))


def _load_graph_plan(tmp_path, plan_text):
    doc = _graph_plan_doc(plan_text)
    path = write_text(tmp_path, json.dumps(doc))
    with pytest.warns(RuntimeWarning, match="tuning cache") as seen:
        n = tuning.load_file(path)
    return n, " ".join(str(w.message) for w in seen)


def test_sm_count_hidden_below_64_levels_is_rejected_not_skipped(tmp_path):
    n, text = _load_graph_plan(tmp_path, json.dumps(nested({"multiProcessorCount": 7}, 70)))
    assert "deeper than 64" in text
    assert tuning.stored_record(key(0, engine="graph")) is None
    assert n == 1 and CACHE.peek(key(1)).algo == 2           # the good entry still loads


def test_plan_of_65_levels_is_rejected_and_64_accepted(tmp_path):
    at_limit = json.dumps(nested({"multiProcessorCount": ENV["sm_count"]}, 63))       # 64 levels
    assert load_no_warning(write_text(tmp_path, json.dumps(_graph_plan_doc(at_limit)), "a.json")) == 1
    assert tuning.stored_record(key(0, engine="graph")) is not None
    tuning._store.clear()
    CACHE.clear()
    over = json.dumps(nested({"multiProcessorCount": ENV["sm_count"]}, 64))           # 65 levels
    n, text = _load_graph_plan(tmp_path, over)
    assert "deeper than 64" in text and tuning.stored_record(key(0, engine="graph")) is None


def test_deep_plan_is_rejected_for_any_environment(tmp_path):
    # Depth is structure (like invalid JSON): checked before the environment is.
    other = dict(ENV, sm_count=114)
    doc = doc_of([(key(0, engine="graph"), graph_record(plan_json=json.dumps(nested(1, 100))))], env=other)
    with pytest.warns(RuntimeWarning, match="deeper than 64"):
        assert tuning.load_file(write_text(tmp_path, json.dumps(doc))) == 0


@pytest.mark.parametrize("plan_text", ["[" * 100000 + "]" * 100000,
                                       '{"a":' * 100000 + "1" + "}" * 100000,
                                       json.dumps(nested({"sm_count": 7}, 900))],
                         ids=["list 100000 deep", "object 100000 deep", "sm_count 901 deep"])
def test_very_deep_plan_is_rejected_cleanly(tmp_path, plan_text):
    n, text = _load_graph_plan(tmp_path, plan_text)
    assert n == 1 and tuning.stored_record(key(0, engine="graph")) is None


def test_float_sm_count_in_the_plan_is_checked_too(tmp_path):
    n, text = _load_graph_plan(tmp_path, json.dumps({"engine": {"multiProcessorCount": 7.0}}))
    assert "multiProcessorCount" in text and tuning.stored_record(key(0, engine="graph")) is None


# ---------------------------------------------------------------------------
# 4. load_tuning returns what it kept
# ---------------------------------------------------------------------------

def test_load_returns_the_entries_the_bounded_cache_kept(tmp_path):
    maxsize = CACHE.info().maxsize
    assert maxsize == 4096
    n = maxsize + 904
    doc = doc_of([(key(i), legacy_record()) for i in range(n)])
    assert load_no_warning(write_text(tmp_path, json.dumps(doc))) == maxsize == len(CACHE)


def test_load_counts_a_key_given_twice_once(tmp_path):
    doc = doc_of([(key(0), legacy_record(algo=1)), (key(0), legacy_record(algo=2))])
    assert load_no_warning(write_text(tmp_path, json.dumps(doc)), override=True) == 1
    assert CACHE.peek(key(0)).algo == 2


class _OneSlotCache:
    """A per-thread-style cache (no observer lists) that holds one entry."""

    def __init__(self):
        self.data = {}

    def peek(self, k):
        return self.data.get(k)

    def put(self, k, v):
        self.data = {k: v}

    def items(self):
        return list(self.data.items())


def test_load_counts_records_kept_in_the_store_for_per_thread_caches(tmp_path, monkeypatch):
    # The graph engine decodes a stored record on a miss, so an entry its cache
    # no longer holds is still kept; an AlgoCache engine's evicted entry is not.
    decode = lambda r, k: types.SimpleNamespace(tag=r["tag"])          # noqa: E731
    fake = types.SimpleNamespace(CACHE=_OneSlotCache(), choice_to_record=lambda c, k: None,
                                 choice_from_record=decode)
    monkeypatch.setattr(engine_registry, "graph", fake)
    doc = doc_of([(key(i, engine="graph"), graph_record()) for i in range(3)])
    path = write_text(tmp_path, json.dumps(doc))
    assert load_no_warning(path) == 3
    tuning._store.clear()
    fake.CACHE = AlgoCache("graph", maxsize=1)
    assert load_no_warning(path) == 1


# ---------------------------------------------------------------------------
# 5. NaN, infinities, huge numbers; deep nesting at the top level
# ---------------------------------------------------------------------------

CONSTANTS = ["NaN", "Infinity", "-Infinity"]
HUGE = ["1e400", "-1e400", str(10 ** 400), str(-10 ** 400)]
HUGE_IDS = ["1e400", "-1e400", "10**400", "-10**400"]


def _legacy_with(field):
    return good_and(key(0), legacy_record(**{field: SENTINEL}))


def _graph_with(**fields):
    return good_and(key(0, engine="graph"), graph_record(**fields))


NUMERIC_FIELDS = {
    "legacy time_ms": lambda: _legacy_with("time_ms"),
    "legacy issue_ms": lambda: _legacy_with("issue_ms"),
    "legacy workspace": lambda: _legacy_with("workspace"),
    "legacy algo": lambda: _legacy_with("algo"),
    "graph time_ms": lambda: _graph_with(time_ms=SENTINEL),
    "graph issue_ms": lambda: _graph_with(issue_ms=SENTINEL),
    "graph workspace": lambda: _graph_with(workspace=SENTINEL),
    "graph knob value": lambda: _graph_with(knobs=[[2, SENTINEL]]),
    "graph knob type": lambda: _graph_with(knobs=[[SENTINEL, 1]]),
    "graph engine_index": lambda: _graph_with(engine_index=SENTINEL),
    "key extra": lambda: good_and(key(0, extra=(SENTINEL,)), legacy_record()),
    "key workspace_limit": lambda: good_and(key(0, workspace_limit=SENTINEL), legacy_record()),
}


@pytest.mark.parametrize("literal", CONSTANTS + HUGE, ids=CONSTANTS + HUGE_IDS)
@pytest.mark.parametrize("field", sorted(NUMERIC_FIELDS))
def test_non_finite_and_huge_numbers_are_rejected_with_a_warning(tmp_path, field, literal):
    path = write_text(tmp_path, with_literal(NUMERIC_FIELDS[field](), literal))
    with pytest.warns(RuntimeWarning, match="tuning cache") as seen:
        n = tuning.load_file(path)
    text = " ".join(str(w.message) for w in seen)
    if literal in CONSTANTS:
        assert n == 0 and "not valid JSON" in text             # the whole file, as for any corrupt file
    else:
        assert n == 1 and "rejected" in text                   # that entry; the good one loads
        assert CACHE.peek(key(1)).algo == 2
    assert CACHE.peek(key(0)) is None
    assert tuning.stored_record(key(0, engine="graph")) is None


@pytest.mark.parametrize("literal", HUGE, ids=HUGE_IDS)
def test_huge_number_in_the_environment_block_rejects_its_entries(tmp_path, literal):
    doc = doc_of([(key(0), legacy_record())], env=dict(ENV, sm_count=SENTINEL))
    with pytest.warns(RuntimeWarning, match="sm_count"):
        assert tuning.load_file(write_text(tmp_path, with_literal(doc, literal))) == 0


@pytest.mark.parametrize("literal", ["1e400", str(10 ** 400)], ids=["1e400", "10**400"])
def test_a_huge_graph_time_does_not_poison_the_file_on_save(tmp_path, literal):
    path = write_text(tmp_path, with_literal(_graph_with(time_ms=SENTINEL), literal))
    CACHE.put(key(2), LegacyChoice("forward", 1, 0, 0, 0.05, True, True))
    assert tuning.save_tuning(path) == 2                       # the bad graph entry is dropped
    CACHE.clear()
    assert load_no_warning(path) == 2                          # and the file stays valid JSON


def test_a_choice_with_a_non_finite_number_is_not_written(tmp_path, monkeypatch):
    fake = types.SimpleNamespace(CACHE=AlgoCache("graph"),
                                 choice_to_record=lambda c, k: graph_record(time_ms=float("nan")),
                                 choice_from_record=lambda r, k: None)
    monkeypatch.setattr(engine_registry, "graph", fake)
    fake.CACHE.put(key(0, engine="graph"), object())
    CACHE.put(key(1), LegacyChoice("forward", 1, 0, 0, 0.05, True, True))
    path = tmp_path / "nan.json"
    assert tuning.save_tuning(path) == 1                       # the legacy entry only
    CACHE.clear()
    assert load_no_warning(path) == 1                          # the file is strict JSON


DEEP_FILES = {
    "list 100000 deep": lambda: "[" * 100000 + "]" * 100000,
    "object 100000 deep": lambda: '{"a":' * 100000 + "1" + "}" * 100000,
    "deep inside a valid entry": lambda: with_literal(good_and(key(0, extra=(SENTINEL,)), legacy_record()),
                                                      "[" * 100000 + "]" * 100000),
}


@pytest.mark.parametrize("name", sorted(DEEP_FILES))
def test_deeply_nested_file_is_rejected_as_corrupt(tmp_path, name):
    path = write_text(tmp_path, DEEP_FILES[name]())
    with pytest.warns(RuntimeWarning, match="not valid JSON"):
        assert tuning.load_file(path) == 0
    CACHE.put(key(0), LegacyChoice("forward", 1, 0, 0, 0.05, True, True))
    with pytest.warns(RuntimeWarning, match="replaced"):
        assert tuning.save_tuning(path) == 1
