"""The persistent tuning cache, the ranking rule and the explain() report, without a GPU.

The device environment comes from a monkeypatched
``tuning.device_environment``; choices are synthetic LegacyChoice objects put
straight into the legacy engine's cache.
"""
import importlib
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import time
import types
import warnings

import pytest

import cudnnconv
from cudnnconv import engine_registry, params, ranking, tuning
from cudnnconv.cache import AlgoCache

pytest.importorskip("cudnnconv.engines.legacy", reason="this build has no legacy engine (CUDNNCONV_LEGACY_API=0)")
from cudnnconv.engines.legacy import LegacyChoice  # noqa: E402
from conftest import isolated_tuning  # noqa: E402

explain_mod = importlib.import_module("cudnnconv.explain")

CACHE = engine_registry.legacy.CACHE
ENV = {"cudnn_version": 91900, "gpu_name": "Fake GPU 80GB", "compute_capability": [9, 0], "sm_count": 132,
       "cache_format": tuning.CACHE_FORMAT}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def key(i=0, op="forward", engine="legacy", **kw):
    base = dict(op=op, engine=engine, device=0, dtype=0, input_shape=(8, 64, 56 + i, 56),
                weight_shape=(64, 64, 3, 3), layout="NCHW", padding=(1, 1), stride=(1, 1), dilation=(1, 1),
                groups=1, deterministic=False, allow_tf32=True, workspace_limit=None, extra=())
    base.update(kw)
    return params.ProblemKey(**base)


def choice(algo=1, math_type=0, ws=1024, op="forward", det=True, bench=True, t=0.05):
    return LegacyChoice(op, algo, math_type, ws, t, det, bench)


def same_choice(a, b):
    return (type(a) is type(b) and a.op == b.op and a.algo == b.algo and a.math_type == b.math_type
            and a.workspace == b.workspace and a.deterministic == b.deterministic
            and a.benchmarked == b.benchmarked and a.time_ms == b.time_ms and a.issue_ms == b.issue_ms)


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    yield from isolated_tuning(monkeypatch, ENV)


def saved_doc(tmp_path, entries):
    """A valid file holding ``entries`` [(key, choice)], as a dict."""
    path = tmp_path / "seed.json"
    CACHE.clear()
    for k, c in entries:
        CACHE.put(k, c)
    tuning.save_tuning(path)
    CACHE.clear()
    return json.loads(path.read_text())


def write(tmp_path, doc_or_text, name="t.json"):
    path = tmp_path / name
    if isinstance(doc_or_text, (bytes, bytearray)):
        path.write_bytes(bytes(doc_or_text))
    elif isinstance(doc_or_text, str):
        path.write_text(doc_or_text)
    else:
        path.write_text(json.dumps(doc_or_text))
    return path


def load_no_warning(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return tuning.load_file(path)


# ---------------------------------------------------------------------------
# Round trip
# ---------------------------------------------------------------------------

def test_round_trip(tmp_path):
    entries = [
        (key(0), choice()),
        (key(1, op="backward_data", deterministic=True), choice(algo=1, op="backward_data", det=True)),
        (key(2, op="backward_filter", workspace_limit=4096), choice(algo=3, ws=4096, op="backward_filter")),
        (key(3, dtype=2, layout="NHWC", extra=(16, (8, 4.5), "a", None, True)), choice(algo=6, math_type=1)),
        (key(4, op="fused", dtype=0, allow_tf32=False), choice(algo=1, math_type=3, bench=False, t=-1.0, op="fused")),
        (key(5, input_shape=(2, 4, 1, 9), weight_shape=(4, 4, 1, 3), padding=(0, 2), stride=(1, 2),
             dilation=(1, 3)), choice(ws=0)),
        (key(6, input_shape=(2, 4, 5, 6, 7), weight_shape=(4, 2, 1, 2, 3), padding=(0, 1, 1), stride=(1, 1, 2),
             dilation=(1, 1, 1), groups=2), choice()),
    ]
    entries[0][1].issue_ms = 0.0081          # a host-aware search's issue time survives the file
    for k, c in entries:
        CACHE.put(k, c)
    path = tmp_path / "tune.json"
    assert cudnnconv.save_tuning(path) == len(entries)
    doc = json.loads(path.read_text())
    assert doc["format"] == "cudnnconv-tuning" and doc["version"] == tuning.FORMAT_VERSION
    assert list(doc["environments"].values()) == [ENV]
    CACHE.clear()
    assert load_no_warning(path) == len(entries)
    got = dict(CACHE.items())
    assert set(got) == {k for k, _ in entries}
    for k, c in entries:
        assert same_choice(got[k], c), (k, got[k], c)
    # exact: the loaded keys are equal and of the same types, tuples staying tuples
    for k in got:
        orig = next(e for e, _ in entries if e == k)
        for f in params.ProblemKey._fields:
            assert type(getattr(k, f)) is type(getattr(orig, f)), f
    assert CACHE.info().hits == 0 and CACHE.info().misses == 0


def test_a_legacy_record_without_an_issue_time_loads(tmp_path):
    CACHE.put(key(0), choice())
    path = tmp_path / "tune.json"
    cudnnconv.save_tuning(path)
    doc = json.loads(path.read_text())
    assert doc["entries"][0]["record"]["issue_ms"] == -1.0
    del doc["entries"][0]["record"]["issue_ms"]                 # as files written before it have it
    path.write_text(json.dumps(doc))
    CACHE.clear()
    assert load_no_warning(path) == 1
    assert CACHE.peek(key(0)).issue_ms == -1.0 and CACHE.peek(key(0)).algo == 1


def test_key_json_round_trip_is_exact():
    k = key(extra=((1, 2), (3.25, ("x", None)), False), workspace_limit=0)
    back = tuning.key_from_json(json.loads(json.dumps(tuning.key_to_json(k))))
    assert back == k and hash(back) == hash(k)
    assert isinstance(back.extra[1][1], tuple)


def test_load_does_not_replace_existing_choice_unless_override(tmp_path):
    CACHE.put(key(0), choice(algo=1))
    tuning.save_tuning(tmp_path / "a.json")
    CACHE.put(key(0), choice(algo=2))
    assert load_no_warning(tmp_path / "a.json") == 0
    assert CACHE.peek(key(0)).algo == 2
    assert tuning.load_file(tmp_path / "a.json", override=True) == 1
    assert CACHE.peek(key(0)).algo == 1


def test_missing_file_loads_nothing_quietly(tmp_path):
    assert load_no_warning(tmp_path / "absent.json") == 0


def test_save_merges_with_existing_entries(tmp_path):
    path = tmp_path / "m.json"
    CACHE.put(key(0), choice(algo=0))
    tuning.save_tuning(path)
    CACHE.clear()
    CACHE.put(key(1), choice(algo=1))
    CACHE.put(key(0), choice(algo=2))          # a newer choice for the same key replaces the old
    assert tuning.save_tuning(path) == 2
    CACHE.clear()
    tuning.load_file(path)
    assert CACHE.peek(key(0)).algo == 2 and CACHE.peek(key(1)).algo == 1


def test_none_ran_and_foreign_values_are_not_saved(tmp_path):
    from cudnnconv.search import NoneRan
    CACHE.put(key(0), NoneRan(3000, "x"))
    CACHE.put(key(1), choice())
    assert tuning.save_tuning(tmp_path / "n.json") == 1


# ---------------------------------------------------------------------------
# Version and device mismatch
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("cudnn_version", 91000), ("gpu_name", "Other GPU"), ("compute_capability", [8, 0]), ("sm_count", 114),
    ("cache_format", tuning.CACHE_FORMAT + 1)])
def test_other_environment_is_skipped_with_a_debug_note(tmp_path, monkeypatch, caplog, field, value):
    CACHE.put(key(0), choice())
    tuning.save_tuning(tmp_path / "e.json")
    CACHE.clear()
    here = dict(ENV, **{field: value})
    monkeypatch.setattr(tuning, "device_environment", lambda device: dict(here))
    with caplog.at_level(logging.DEBUG, logger="cudnnconv"):
        assert load_no_warning(tmp_path / "e.json") == 0
    assert len(CACHE) == 0
    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tuning cache: skipped")]
    assert len(notes) == 1 and "\n" not in notes[0]


def test_edited_environment_block_in_the_file_is_skipped(tmp_path):
    doc = saved_doc(tmp_path, [(key(0), choice())])
    for block in doc["environments"].values():
        block["sm_count"] = 7
    assert load_no_warning(write(tmp_path, doc)) == 0
    assert len(CACHE) == 0


def test_no_device_here_skips_everything(tmp_path, monkeypatch):
    doc = saved_doc(tmp_path, [(key(0), choice())])

    def no_gpu(device):
        raise RuntimeError("no CUDA device")
    monkeypatch.setattr(tuning, "device_environment", no_gpu)
    assert load_no_warning(write(tmp_path, doc)) == 0


def test_file_with_two_environments_loads_the_matching_one_and_keeps_both(tmp_path, monkeypatch):
    path = tmp_path / "two.json"
    CACHE.put(key(0), choice(algo=0))
    tuning.save_tuning(path)
    other = dict(ENV, gpu_name="Other GPU", sm_count=108)
    monkeypatch.setattr(tuning, "device_environment", lambda device: dict(other))
    CACHE.clear()
    CACHE.put(key(1), choice(algo=2))
    assert tuning.save_tuning(path) == 2              # the first machine's entry is kept
    doc = json.loads(path.read_text())
    assert len(doc["environments"]) == 2
    CACHE.clear()
    assert load_no_warning(path) == 1
    assert list(dict(CACHE.items())) == [key(1)]


def test_entry_for_a_device_index_is_checked_against_that_device(tmp_path, monkeypatch):
    doc = saved_doc(tmp_path, [(key(0, device=1), choice())])
    monkeypatch.setattr(tuning, "device_environment",
                        lambda device: dict(ENV) if device == 0 else dict(ENV, gpu_name="Smaller GPU"))
    assert load_no_warning(write(tmp_path, doc)) == 0


# ---------------------------------------------------------------------------
# Corrupt and hostile files
# ---------------------------------------------------------------------------

def _good(tmp_path):
    return saved_doc(tmp_path, [(key(0), choice(algo=1)), (key(1), choice(algo=2))])


def _mut_entry(field_path, value):
    """Set entries[0]...field_path to value (None-valued path item deletes)."""
    def f(doc):
        obj = doc["entries"][0]
        for p in field_path[:-1]:
            obj = obj[p]
        if value is _DELETE:
            del obj[field_path[-1]]
        else:
            obj[field_path[-1]] = value
        return doc
    return f


_DELETE = object()

# Whole-file rejections: nothing at all is loaded.
WHOLE_FILE = {
    "invalid json": lambda d: "{\"format\": \"cudnnconv-tuning\", ",
    "empty": lambda d: "",
    "binary garbage": lambda d: b"\x00\xff\xfe\x89PNG\r\n\x1a\n" * 10,
    "not utf-8": lambda d: b'{"format": "\xff\xfe"}',
    "truncated": lambda d: json.dumps(d)[: len(json.dumps(d)) // 2],
    "top level list": lambda d: [d],
    "wrong format name": lambda d: dict(d, format="pytorch-cudnn"),
    "no format": lambda d: {k: v for k, v in d.items() if k != "format"},
    "future version": lambda d: dict(d, version=tuning.FORMAT_VERSION + 1),
    "version as string": lambda d: dict(d, version=str(tuning.FORMAT_VERSION)),
    "version as bool": lambda d: dict(d, version=True),
    "environments a list": lambda d: dict(d, environments=list(d["environments"].values())),
    "entries an object": lambda d: dict(d, entries={"0": d["entries"][0]}),
    "NaN constant": lambda d: json.dumps(d).replace('"time_ms": 0.05', '"time_ms": NaN'),
    "Infinity constant": lambda d: json.dumps(d).replace('"time_ms": 0.05', '"time_ms": Infinity'),
    "int with 10000 digits": lambda d: json.dumps(d).replace('"algo": 1', '"algo": ' + "9" * 10000),
    "nested 100000 deep": lambda d: "[" * 100000 + "]" * 100000,
}

# Per-entry rejections: entries[0] is bad, entries[1] is good and still loads.
BAD_ENTRY = {
    "shape with a huge int": _mut_entry(["key", "input_shape"], [8, 10 ** 40, 56, 56]),
    "shape of 2 dims": _mut_entry(["key", "input_shape"], [8, 64]),
    "shape with a string": _mut_entry(["key", "input_shape"], [8, "64", 56, 56]),
    "shape with a float": _mut_entry(["key", "input_shape"], [8, 64.0, 56, 56]),
    "negative dim": _mut_entry(["key", "input_shape"], [8, -64, 56, 56]),
    "stride 0": _mut_entry(["key", "stride"], [0, 1]),
    "padding of wrong rank": _mut_entry(["key", "padding"], [1, 1, 1]),
    "unknown op": _mut_entry(["key", "op"], "sideways"),
    "unknown layout": _mut_entry(["key", "layout"], "NWHC"),
    "unknown dtype": _mut_entry(["key", "dtype"], 77),
    "key missing a field": _mut_entry(["key", "groups"], _DELETE),
    "key with an extra field": _mut_entry(["key", "alpha"], 1.0),
    "deterministic as int": _mut_entry(["key", "deterministic"], 0),
    "device huge": _mut_entry(["key", "device"], 1 << 40),
    "extra nested too deep": _mut_entry(["key", "extra"], [[[[[[[1]]]]]]]),
    "extra with an object": _mut_entry(["key", "extra"], [{"a": 1}]),
    "workspace absurd": _mut_entry(["record", "workspace"], 1 << 62),
    "workspace negative": _mut_entry(["record", "workspace"], -1),
    "workspace a string": _mut_entry(["record", "workspace"], "1024"),
    "workspace over the key's limit": lambda d: _mut_entry(["key", "workspace_limit"], 100)(
        _mut_entry(["record", "workspace"], 101)(d)),
    "algo out of range": _mut_entry(["record", "algo"], 99),
    "algo as bool": _mut_entry(["record", "algo"], True),
    "math type out of range": _mut_entry(["record", "math_type"], 7),
    "record missing a field": _mut_entry(["record", "math_type"], _DELETE),
    "record with an extra field": _mut_entry(["record", "exec"], "rm -rf /"),
    "time infinite via huge float": _mut_entry(["record", "time_ms"], 1e308),
    "non-deterministic for a deterministic key": lambda d: _mut_entry(["key", "deterministic"], True)(
        _mut_entry(["record", "deterministic"], False)(d)),
    "tensor-op math for strict fp32": lambda d: _mut_entry(["key", "allow_tf32"], False)(
        _mut_entry(["record", "math_type"], 1)(d)),
    "unknown engine": lambda d: _mut_entry(["key", "engine"], "magic")(_mut_entry(["engine"], "magic")(d)),
    "engine differs from key": _mut_entry(["engine"], "graph"),
    "unknown environment id": _mut_entry(["env"], "nope"),
    "entry missing record": _mut_entry(["record"], _DELETE),
    "entry not an object": lambda d: dict(d, entries=["junk"] + d["entries"][1:]),
}


def _graph_entry(d, record):
    ent = json.loads(json.dumps(d["entries"][0]))
    ent["engine"] = "graph"
    ent["key"]["engine"] = "graph"
    ent["record"] = record
    d["entries"][0] = ent
    return d


BAD_ENTRY.update({
    "graph plan JSON edited to another SM count": lambda d: _graph_entry(d, {
        "tag": "eng0_k2=1", "knobs": [[2, 1]], "workspace": 0,
        "plan_json": json.dumps({"engine": {"id": 0}, "gpu_profile": {"sm_count": 7}})}),
    "graph plan JSON edited to another cuDNN": lambda d: _graph_entry(d, {
        "tag": "eng0", "workspace": 0, "plan_json": json.dumps({"cudnn_version": 1, "x": [1]})}),
    "graph plan JSON invalid": lambda d: _graph_entry(d, {"tag": "eng0", "workspace": 0, "plan_json": "{oops"}),
    "graph plan JSON not a string": lambda d: _graph_entry(d, {"tag": "eng0", "workspace": 0, "plan_json": [1]}),
    "graph workspace absurd": lambda d: _graph_entry(d, {"tag": "eng0", "workspace": 1 << 50}),
    "graph record not an object": lambda d: _graph_entry(d, "plan"),
})


@pytest.mark.parametrize("name", sorted(WHOLE_FILE))
def test_corrupt_file_is_rejected_whole(tmp_path, name):
    bad = WHOLE_FILE[name](_good(tmp_path))
    path = write(tmp_path, bad)
    with pytest.warns(RuntimeWarning, match="tuning cache"):
        assert tuning.load_file(path) == 0
    assert len(CACHE) == 0


@pytest.mark.parametrize("name", sorted(BAD_ENTRY))
def test_bad_entry_is_rejected_and_the_rest_loads(tmp_path, name):
    doc = _good(tmp_path)
    bad = BAD_ENTRY[name](doc)
    path = write(tmp_path, bad)
    with pytest.warns(RuntimeWarning, match="tuning cache"):
        n = tuning.load_file(path)
    assert n == 1
    assert dict(CACHE.items()) .keys() == {key(1)}
    assert CACHE.peek(key(1)).algo == 2


def test_bad_environment_block_rejects_its_entries(tmp_path):
    doc = _good(tmp_path)
    for block in doc["environments"].values():
        block["sm_count"] = "132"
    with pytest.warns(RuntimeWarning):
        assert tuning.load_file(write(tmp_path, doc)) == 0


def test_oversized_file_is_rejected(tmp_path, monkeypatch):
    path = write(tmp_path, _good(tmp_path))
    monkeypatch.setattr(tuning, "MAX_FILE_BYTES", os.path.getsize(path) - 1)
    with pytest.warns(RuntimeWarning, match="larger than"):
        assert tuning.load_file(path) == 0


def test_too_many_entries_are_rejected(tmp_path, monkeypatch):
    path = write(tmp_path, _good(tmp_path))
    monkeypatch.setattr(tuning, "MAX_ENTRIES", 1)
    with pytest.warns(RuntimeWarning, match="entries"):
        assert tuning.load_file(path) == 0


def test_directory_instead_of_file_warns(tmp_path):
    with pytest.warns(RuntimeWarning):
        assert tuning.load_file(tmp_path) == 0


def test_save_over_a_corrupt_file_replaces_it_with_a_warning(tmp_path):
    path = write(tmp_path, "{garbage")
    CACHE.put(key(0), choice())
    with pytest.warns(RuntimeWarning, match="replaced"):
        assert tuning.save_tuning(path) == 1
    CACHE.clear()
    assert load_no_warning(path) == 1


def test_save_leaves_no_temp_files(tmp_path):
    CACHE.put(key(0), choice())
    tuning.save_tuning(tmp_path / "x.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.json.lock"]


# ---------------------------------------------------------------------------
# Graph engine codecs (looked up in the graph module)
# ---------------------------------------------------------------------------

class FakeGraphChoice:
    def __init__(self, tag, ws, plan):
        self.tag, self.workspace, self.plan = tag, ws, plan
        self.benchmarked = True


def test_graph_entries_use_the_graph_modules_codec(tmp_path, monkeypatch):
    fake = types.SimpleNamespace(
        CACHE=AlgoCache("graph"), ENGINE="graph",
        choice_to_record=lambda c: {"tag": c.tag, "knobs": [[1, 2]], "workspace": c.workspace,
                                    "plan_json": c.plan},
        choice_from_record=lambda r, k: FakeGraphChoice(r["tag"], r["workspace"], r["plan_json"]))
    monkeypatch.setattr(engine_registry, "graph", fake)
    gk = key(0, engine="graph", extra=(16, 16, 16))
    plan = json.dumps({"sm_count": ENV["sm_count"], "graph": [1, 2]})
    fake.CACHE.put(gk, FakeGraphChoice("eng1_k3=2", 4096, plan))
    CACHE.put(key(1), choice())
    assert tuning.save_tuning(tmp_path / "g.json") == 2
    fake.CACHE.clear()
    CACHE.clear()
    assert load_no_warning(tmp_path / "g.json") == 2
    got = fake.CACHE.peek(gk)
    assert (got.tag, got.workspace, got.plan) == ("eng1_k3=2", 4096, plan)


def test_graph_entries_without_codec_are_skipped_and_kept(tmp_path, monkeypatch):
    fake = types.SimpleNamespace(CACHE=AlgoCache("graph"), ENGINE="graph",
                                 choice_to_record=lambda c: {"tag": c.tag, "workspace": c.workspace},
                                 choice_from_record=lambda r: FakeGraphChoice(r["tag"], r["workspace"], None))
    monkeypatch.setattr(engine_registry, "graph", fake)
    gk = key(0, engine="graph")
    fake.CACHE.put(gk, FakeGraphChoice("eng0", 0, None))
    path = tmp_path / "g.json"
    tuning.save_tuning(path)
    monkeypatch.setattr(engine_registry, "graph", types.SimpleNamespace(CACHE=AlgoCache("graph")))   # no codec
    CACHE.put(key(1), choice())
    assert tuning.save_tuning(path) == 2          # the graph entry stays in the file
    CACHE.clear()
    assert load_no_warning(path) == 1             # only the legacy one loads here


def test_graph_codec_failure_is_a_miss(tmp_path, monkeypatch):
    def boom(record, key):
        raise RuntimeError("SUBLIBRARY_VERSION_MISMATCH")
    fake = types.SimpleNamespace(CACHE=AlgoCache("graph"), choice_to_record=lambda c, k: {"tag": "x"},
                                 choice_from_record=boom)
    monkeypatch.setattr(engine_registry, "graph", fake)
    fake.CACHE.put(key(0, engine="graph"), object())
    tuning.save_tuning(tmp_path / "g.json")
    fake.CACHE.clear()
    assert load_no_warning(tmp_path / "g.json") == 0
    assert len(fake.CACHE) == 0


# ---------------------------------------------------------------------------
# Cache observers and CUDNNCONV_TUNING_CACHE
# ---------------------------------------------------------------------------

def test_stored_record_and_record_choice_for_per_thread_caches(tmp_path, monkeypatch):
    # The graph engine's caches have no observer lists: autosave leaves them
    # alone, and the engine uses stored_record()/record_choice() instead.
    fake = types.SimpleNamespace(
        CACHE=types.SimpleNamespace(name="graph", peek=lambda k: None, put=lambda k, v: None, items=lambda: []),
        choice_to_record=lambda c, k: {"tag": c.tag, "workspace": c.workspace, "knobs": [[0, 1]]},
        choice_from_record=lambda r, k: FakeGraphChoice(r["tag"], r["workspace"], None))
    monkeypatch.setattr(engine_registry, "graph", fake)
    path = tmp_path / "auto.json"
    auto = tuning.enable_autosave(path)
    assert auto.caches == [CACHE]
    gk = key(0, engine="graph")
    tuning.record_choice(gk, FakeGraphChoice("eng5", 64, None))
    CACHE.put(key(1), choice())
    doc = json.loads(path.read_text())
    assert sorted(e["engine"] for e in doc["entries"]) == ["graph", "legacy"]
    tuning.enable_autosave(None)
    tuning._store.clear()
    CACHE.clear()
    auto = tuning.enable_autosave(path)
    rec = tuning.stored_record(gk)            # the first use loads the file
    assert auto.loaded and rec == {"tag": "eng5", "workspace": 64, "knobs": [[0, 1]]}
    assert tuning.stored_record(key(7)) is None
    assert CACHE.peek(key(1)) is not None


def test_cache_observers():
    c = AlgoCache("t")
    seen = []
    c.on_put.append(lambda cache, k, v: seen.append((k, v)))
    c.on_put.append(lambda cache, k, v: 1 / 0)          # a failing observer breaks nothing
    c.on_miss.append(lambda cache, k: cache.put(k, "filled") if k == "fill" else None)
    c.put("a", 1)
    assert c.get("fill") == "filled" and c.get("nope") is None
    assert c.info().hits == 1 and c.info().misses == 1
    assert ("a", 1) in seen and ("fill", "filled") in seen


def test_cache_without_observers_counts_as_before():
    c = AlgoCache("t")
    assert c.get("x") is None
    c.put("x", 1)
    assert c.get("x") == 1 and c.peek("y") is None
    assert c.info() == (1, 4096, 1, 1)


FAKE_ENV_SNIPPET = """
import json, sys
from cudnnconv import tuning
tuning.device_environment = lambda device: dict(%r)
""" % (ENV,)


def _python(code, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    env["PYTHONPATH"] = os.path.join(REPO, "pyx") + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_env_var_loads_at_first_use_and_adds_as_found(tmp_path):
    path = tmp_path / "auto.json"
    writer = FAKE_ENV_SNIPPET + textwrap.dedent("""
        import cudnnconv
        from cudnnconv import params
        from cudnnconv.engines import legacy
        k = params.ProblemKey('forward', 'legacy', 0, 0, (8, 64, 56, 56), (64, 64, 3, 3), 'NCHW', (1, 1),
                              (1, 1), (1, 1), 1, False, True, None, ())
        assert legacy.CACHE.get(k) is None           # first use: loads the (absent) file, then a miss
        legacy.CACHE.put(k, legacy.LegacyChoice('forward', 1, 0, 512, 0.1, True, True))
        print('ok')
    """)
    p = _python(writer, {tuning.ENV_VAR: str(path)})
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert len(json.loads(path.read_text())["entries"]) == 1
    reader = FAKE_ENV_SNIPPET + textwrap.dedent("""
        import cudnnconv
        from cudnnconv import params
        from cudnnconv.engines import legacy
        k = params.ProblemKey('forward', 'legacy', 0, 0, (8, 64, 56, 56), (64, 64, 3, 3), 'NCHW', (1, 1),
                              (1, 1), (1, 1), 1, False, True, None, ())
        c = legacy.CACHE.get(k)
        assert c is not None and c.algo == 1 and c.workspace == 512, c
        print(legacy.CACHE.info().hits, legacy.CACHE.info().misses)
    """)
    p = _python(reader, {tuning.ENV_VAR: str(path)})
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert out.split() == ["1", "0"]


WRITER = FAKE_ENV_SNIPPET + textwrap.dedent("""
    import os, time
    from cudnnconv import params
    from cudnnconv.engines import legacy
    rank, n, path, go = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    tuning.enable_autosave(path)
    while not os.path.exists(go):
        time.sleep(0.001)
    for i in range(n):
        k = params.ProblemKey('forward', 'legacy', 0, 0, (8, 3, 10 + i, 10 + rank), (4, 3, 3, 3), 'NCHW',
                              (0, 0), (1, 1), (1, 1), 1, False, True, None, ())
        legacy.CACHE.put(k, legacy.LegacyChoice('forward', rank, 0, i, 0.1, True, True))
    tuning.save_tuning(path)
    print('done')
""")


def test_two_processes_writing_at_once_lose_no_entries(tmp_path):
    path = tmp_path / "shared.json"
    go = tmp_path / "go"
    n = 60
    procs = []
    for rank in range(2):
        env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "pyx") + os.pathsep + os.environ.get("PYTHONPATH", ""))
        procs.append(subprocess.Popen([sys.executable, "-c", WRITER, str(rank), str(n), str(path), str(go)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    time.sleep(0.5)
    go.write_text("go")
    # Readers never see a half-written file.
    reads = 0
    deadline = time.time() + 120
    while any(p.poll() is None for p in procs) and time.time() < deadline:
        if path.exists():
            doc = json.loads(path.read_text())
            assert doc["format"] == "cudnnconv-tuning"
            reads += 1
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    doc = json.loads(path.read_text())
    assert len(doc["entries"]) == 2 * n
    seen = {(e["record"]["algo"], e["record"]["workspace"]) for e in doc["entries"]}
    assert seen == {(r, i) for r in range(2) for i in range(n)}
    assert load_no_warning(path) == 2 * n
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# ---------------------------------------------------------------------------
# Ranking
# ---------------------------------------------------------------------------

def test_median_and_spread():
    assert ranking.median_and_spread([3.0, 1.0, 2.0]) == (2.0, 2.0)
    assert ranking.median_and_spread([4, 1, 2, 3]) == (2.5, 3.0)
    assert ranking.median_and_spread([5.0]) == (5.0, 0.0)
    m, s = ranking.median_and_spread([])
    assert m != m and s != s
    assert ranking.median_and_spread([float("nan"), 2.0, float("inf"), -1.0, 4.0]) == (3.0, 2.0)


def test_rank_by_median_not_by_a_lucky_sample():
    a = ("A", [1.0, 5.0, 5.0, 5.0, 5.0], 0)           # one lucky fast sample
    b = ("B", [2.0, 2.0, 2.1, 2.0, 9.0], 0)           # one slow outlier
    assert ranking.choose([a, b]) is b


def test_near_tie_goes_to_the_smaller_workspace():
    fast_big = ("A", [1.00], 1 << 20)
    close_small = ("B", [1.02], 0)
    assert ranking.choose([fast_big, close_small]) is close_small
    assert ranking.choose([fast_big, close_small], margin=0.01) is fast_big
    assert ranking.choose([fast_big, ("C", [1.05], 0)]) is fast_big          # outside 3%


def test_exact_tie_goes_to_the_fixed_order():
    c = [(7, [1.0], 0), (2, [1.01], 0), ("eng3", [1.0], 0), (5, [1.0], 0)]
    assert ranking.choose(c)[0] == 2
    assert [x[0] for x in ranking.rank(c)] == [2, 5, 7, "eng3"]


def test_rank_is_independent_of_input_order():
    import itertools
    c = [("a", [1.0, 1.1, 0.9], 10), ("b", [1.01], 0), ("c", [2.0], 0), ("d", [], 0), ("e", [1.5], 5)]
    want = [x[0] for x in ranking.rank(c)]
    for perm in itertools.permutations(c):
        assert [x[0] for x in ranking.rank(list(perm))] == want
    assert want[-1] == "d"                      # untimed last


def test_rank_accepts_objects_and_checks_margin():
    C = types.SimpleNamespace
    x, y = C(tag=1, samples=[1.0], workspace=0), C(tag=0, samples=[3.0], workspace=0)
    assert ranking.rank([y, x]) == [x, y]
    with pytest.raises(ValueError):
        ranking.rank([x], margin=-0.1)
    assert ranking.choose([]) is None


def test_cost_is_the_slower_of_gpu_time_and_issue_time():
    C = types.SimpleNamespace
    # GPU-fastest, but dear to issue: 12 us of host time behind a 5 us kernel.
    dear = C(tag="eng47", samples=[0.005], workspace=0, issue_ms=0.012)
    cheap = C(tag="eng71", samples=[0.009], workspace=0, issue_ms=0.008)
    assert ranking.cost_ms(dear) == 0.012 and ranking.cost_ms(cheap) == 0.009
    assert ranking.rank([dear, cheap]) == [cheap, dear]
    # Not measured (None, NaN, negative, not a number): the GPU time alone.
    for v in (None, float("nan"), -1.0, "x"):
        dear.issue_ms = v
        assert ranking.cost_ms(dear) == 0.005
        assert ranking.choose([dear, cheap]) is dear
    # An issue time never rescues a candidate without a usable sample.
    untimed = C(tag="eng1", samples=[], workspace=0, issue_ms=0.001)
    assert math.isnan(ranking.cost_ms(untimed))
    assert ranking.rank([untimed, cheap]) == [cheap, untimed]
    # Tuples carry no issue time.
    assert ranking.cost_ms(("a", [0.004, 0.006], 0)) == 0.005


# ---------------------------------------------------------------------------
# The explain() report, from a synthetic candidate list
# ---------------------------------------------------------------------------

def _report():
    Candidate = explain_mod.Candidate
    rows = [
        Candidate(1, "IMPLICIT_PRECOMP_GEMM(1)", 1, [0.50, 0.52, 0.51], 1024, True),
        Candidate(6, "WINOGRAD(6)", 1, [0.40, 0.41, 0.45], 1 << 20, True, notes="tensor cores"),
        Candidate(7, "WINOGRAD_NONFUSED(7)", 1, [0.405, 0.40, 0.41], 4096, False),
        Candidate(4, "FFT(4)", 1, [], 1 << 30, True, excluded=True, reason="workspace 1073741824 > workspace_limit 1000000"),
        Candidate(2, "GEMM(2)", 3, [], 0, True, excluded=True, reason="failed to run: CUDNN_STATUS_NOT_SUPPORTED"),
    ]
    memory = {"used_before": 1 << 20, "total_before": 2 << 20, "used_after": 1 << 20, "total_after": 3 << 20,
              "used_peak": 5 << 20}
    return explain_mod.Report("cudnnconv.explain: forward, engine legacy", rows, 0, memory, cached="X")


def test_report_renders_a_table():
    r = _report()
    text = str(r)
    lines = text.splitlines()
    assert lines[0].startswith("cudnnconv.explain")
    for name in ("IMPLICIT_PRECOMP_GEMM(1)", "WINOGRAD(6)", "FFT(4)", "GEMM(2)"):
        assert name in text
    assert "excluded: workspace 1073741824 > workspace_limit 1000000" in text
    assert "failed to run" in text and "(tensor cores)" in text
    assert "0.5100" in text and "1.0 MiB" in text and "1.0 GiB" in text
    assert any(l.startswith("* ") and "IMPLICIT_PRECOMP_GEMM(1)" in l for l in lines)
    assert "peak 5.0 MiB" in text
    header = lines[1]
    assert "median ms" in header and "workspace" in header and "spread ms" in header and "issue ms" in header


def test_report_chosen_robust_and_dicts():
    r = _report()
    assert r.chosen.name == "IMPLICIT_PRECOMP_GEMM(1)"
    # WINOGRAD(6) and WINOGRAD_NONFUSED(7) tie within 3%: the smaller workspace wins
    assert r.robust_choice.name == "WINOGRAD_NONFUSED(7)"
    d = r.to_dicts()
    assert len(d) == 5 and d[0]["chosen"] and not d[1]["chosen"]
    assert d[3]["excluded"] and d[3]["median_ms"] is None
    assert d[0]["median_ms"] == pytest.approx(0.51) and d[0]["spread_ms"] == pytest.approx(0.02)
    assert set(d[0]) >= {"tag", "name", "math_type", "median_ms", "spread_ms", "issue_ms", "workspace",
                         "deterministic", "notes", "excluded", "reason", "chosen"}
    json.dumps(d)
    assert r.peak_search_bytes == 4 << 20
    assert "Report" in repr(r)


def test_report_robust_choice_weighs_issue_time():
    Candidate = explain_mod.Candidate
    fast = Candidate("eng62", "eng62", None, [0.006, 0.006, 0.007], 0, True)
    cheap = Candidate("eng71", "eng71", None, [0.009, 0.009, 0.009], 0, True)
    fast.issue_ms, cheap.issue_ms = 0.0161, 0.0085
    r = explain_mod.Report("t", [fast, cheap], 0)
    assert r.robust_choice is cheap
    text = str(r)
    assert "0.0161" in text and "0.0085" in text
    assert r.to_dicts()[0]["issue_ms"] == 0.0161
    # Without issue times the GPU time decides.
    fast2 = Candidate("eng62", "eng62", None, [0.006, 0.006, 0.007], 0, True)
    cheap2 = Candidate("eng71", "eng71", None, [0.009, 0.009, 0.009], 0, True)
    r2 = explain_mod.Report("t", [fast2, cheap2], 0)
    assert r2.robust_choice is fast2
    assert r2.to_dicts()[0]["issue_ms"] is None


def test_empty_report_renders():
    r = explain_mod.Report("nothing", [])
    assert r.chosen is None and "none ran" in str(r)


def test_public_names():
    for n in ("save_tuning", "load_tuning", "explain", "last_choice"):
        assert callable(getattr(cudnnconv, n)) and n in cudnnconv.__all__


def test_explain_checks_direction_before_any_gpu_work(fake_cuda_array):
    with pytest.raises(ValueError, match="direction"):
        cudnnconv.explain(fake_cuda_array((1, 3, 8, 8)), fake_cuda_array((4, 3, 3, 3)), direction="sideways")
    with pytest.raises(ValueError, match="direction"):
        cudnnconv.last_choice(fake_cuda_array((1, 3, 8, 8)), fake_cuda_array((4, 3, 3, 3)), direction="up")


# ---------------------------------------------------------------------------
# explain()'s search logic, with a fake direction (no GPU: timing is faked)
# ---------------------------------------------------------------------------

class FakeDirection:
    op = "forward"

    def __init__(self, fail=()):
        self.fail = set(fail)
        self.ran = []

    def candidates(self, args, opts, excluded=None):
        if excluded is not None:
            excluded.append((choice(algo=4, ws=1 << 30), "workspace 1073741824 > workspace_limit 100"))
        return [choice(algo=a, ws=0) for a in (6, 1, 0)]

    def execute(self, args, c, ws_ptr):
        if c.algo in self.fail:
            from cudnnconv.core.status import CuDNNError
            raise CuDNNError(3000, "refused")
        self.ran.append(c.algo)

    def context(self, args, c):
        return "fake"


@pytest.fixture
def fake_timing(monkeypatch):
    times = {6: [0.30, 0.31, 0.29], 1: [0.20, 0.21, 0.22], 0: [0.5, 0.5, 0.5]}

    def fake_time(direction, args, c, k, warmup):
        direction.execute(args, c, 0)
        return times[c.algo][:k]
    monkeypatch.setattr(explain_mod, "_time", fake_time)
    monkeypatch.setattr(explain_mod, "_pool_sample", lambda: (100, 200))


def test_explainer_reports_every_candidate_and_leaves_the_cache_alone(fake_timing):
    from cudnnconv.options import Options
    d = FakeDirection(fail={6})
    cache = AlgoCache("t")
    ex = explain_mod._Explainer(3, 1, False, 0.03)
    opts = Options(True, False, True, 100, "legacy")
    got = ex(d, None, cache, key(0), opts)
    r = ex.report
    assert got.algo == 1 and r.chosen.tag == 1                  # the first in the engine's order that runs
    assert r.robust_choice.tag == 1
    rows = {c.tag: c for c in r.candidates}
    assert rows[6].excluded and "failed to run" in rows[6].reason
    assert rows[4].excluded and "workspace_limit" in rows[4].reason
    assert rows[0].median_ms == 0.5 and not rows[0].excluded
    assert len(cache) == 0 and cache.info().hits == 0 and cache.info().misses == 0
    assert r.memory["used_before"] == 100 and r.peak_search_bytes == 0
    assert "IMPLICIT_PRECOMP_GEMM(1)" in str(r)


def test_explainer_update_cache_puts_the_choice(fake_timing):
    from cudnnconv.options import Options
    cache = AlgoCache("t")
    ex = explain_mod._Explainer(3, 1, True, 0.03)
    got = ex(FakeDirection(), None, cache, key(0), Options(True, False, True, None, "legacy"))
    assert cache.peek(key(0)) is got and got.algo == 6


def test_explainer_reports_issue_times_where_runs_are_short(monkeypatch):
    from cudnnconv import gpu_timing
    from cudnnconv.options import Options
    times = {6: [0.004] * 3, 1: [0.006] * 3, 0: [0.05] * 3}
    issue = {6: 0.012, 1: 0.007, 0: 0.001}
    measured = []

    def fake_time(direction, args, c, k, warmup):
        direction.execute(args, c, 0)
        return times[c.algo][:k]

    def fake_issue(fn, stream):
        fn()                                   # runs the row's choice through the direction
        measured.append(d.ran[-1])
        return issue[d.ran[-1]]
    monkeypatch.setattr(explain_mod, "_time", fake_time)
    monkeypatch.setattr(explain_mod, "_pool_sample", lambda: (100, 200))
    monkeypatch.setattr(gpu_timing, "issue_ms", fake_issue)
    monkeypatch.setattr(gpu_timing, "HOST_AWARE", True)
    monkeypatch.setattr(cudnnconv.workspace, "allocate", lambda n: None)
    monkeypatch.setattr(cudnnconv.workspace, "pointer", lambda m: 0)
    d = FakeDirection()
    ex = explain_mod._Explainer(3, 1, False, 0.03)
    got = ex(d, None, AlgoCache("t"), key(0), Options(True, False, True, None, "legacy"))
    r = ex.report
    rows = {c.tag: c for c in r.candidates}
    assert got.algo == 6 and r.chosen.tag == 6        # the engine's order decides what the library runs
    assert measured == [6, 1]                         # algo 0 (50 us on the GPU) cannot cost less: not measured
    assert rows[6].issue_ms == 0.012 and rows[1].issue_ms == 0.007 and rows[0].issue_ms is None
    assert r.robust_choice.tag == 1                   # 7 us beats max(4, 12) us
    assert "0.0120" in str(r)


def test_explainer_raises_clearly_when_nothing_runs(fake_timing):
    from cudnnconv.options import Options
    ex = explain_mod._Explainer(3, 1, False, 0.03)
    with pytest.raises(cudnnconv.CuDNNError, match="no candidate could run"):
        ex(FakeDirection(fail={0, 1, 6}), None, AlgoCache("t"), key(0), Options(True, False, True, None, "legacy"))
    assert ex.report is not None and all(c.excluded for c in ex.report.candidates)


def test_peek_does_not_count_and_ignores_the_default_only_mode():
    from cudnnconv.options import Options
    cache = AlgoCache("t")
    cache.put(key(0), choice())
    p = explain_mod._Peek()
    assert p(None, None, cache, key(0), Options(True, False, True, None, "legacy")) is cache.peek(key(0))
    with pytest.raises(explain_mod._Stop):
        p(None, None, cache, key(0), Options(False, True, True, None, "legacy"))
    assert p.choices[1] is None
    assert cache.info().hits == 0 and cache.info().misses == 0


def test_intercept_sends_other_threads_to_the_real_search(monkeypatch):
    from cudnnconv import search
    real = []
    monkeypatch.setattr(search, "_search", lambda *a: real.append(a) or "real")
    original = search.try_all
    handled = []
    with explain_mod._Intercept(lambda *a: handled.append(a) or "explained"):
        assert explain_mod.active()
        assert search.try_all is original            # nothing is patched: the hook is per thread
        assert search.try_all(1, 2, 3, 4, 5) == "explained"
        import threading
        out = []
        t = threading.Thread(target=lambda: out.append(search.try_all(1, 2, 3, 4, 5)))
        t.start()
        t.join(timeout=30)
        assert out == ["real"]
    assert not explain_mod.active()
    assert search.try_all(1, 2, 3, 4, 5) == "real"
    assert handled == [(1, 2, 3, 4, 5)] and real == [(1, 2, 3, 4, 5)] * 2


# ---------------------------------------------------------------------------
# Graph entries of another environment, and forgetting loaded records
# ---------------------------------------------------------------------------

def _graph_doc(tmp_path, plan):
    doc = _good(tmp_path)
    return _graph_entry(doc, {"tag": "eng0", "engine_index": 0, "knobs": [], "workspace": 0,
                              "plan_json": json.dumps(plan)})


def test_graph_entry_of_another_environment_is_skipped_quietly_whatever_its_plan_says(tmp_path):
    # A real file from another machine: environment block and plan JSON agree with each other, not with us.
    doc = _graph_doc(tmp_path, {"multiProcessorCount": 114, "cudnnVersion": 91000})
    other = dict(ENV, sm_count=114, cudnn_version=91000)
    doc["environments"] = {"other": other, **doc["environments"]}
    doc["entries"][0]["env"] = "other"
    path = write(tmp_path, doc)
    assert load_no_warning(path) == 1                  # the two legacy entries' other one loads
    assert tuning.stored_record(tuning.key_from_json(doc["entries"][0]["key"])) is None


def test_graph_plan_contradicting_this_environment_is_rejected_with_a_warning(tmp_path):
    doc = _graph_doc(tmp_path, {"multiProcessorCount": 114})
    with pytest.warns(RuntimeWarning, match="multiProcessorCount"):
        tuning.load_file(write(tmp_path, doc))
    assert tuning.stored_record(tuning.key_from_json(doc["entries"][0]["key"])) is None


def test_graph_plan_matching_this_environment_is_stored(tmp_path):
    doc = _graph_doc(tmp_path, {"multiProcessorCount": ENV["sm_count"], "cudnnVersion": ENV["cudnn_version"]})
    tuning.load_file(write(tmp_path, doc))
    k = tuning.key_from_json(doc["entries"][0]["key"])
    assert tuning.stored_record(k)["tag"] == "eng0"
    tuning.forget_records("legacy")
    assert tuning.stored_record(k) is not None
    tuning.forget_records("graph")
    assert tuning.stored_record(k) is None


def test_a_later_load_replaces_a_stored_record(tmp_path):
    doc = _graph_doc(tmp_path, {"a": 1})
    tuning.load_file(write(tmp_path, doc, "a.json"))
    doc["entries"][0]["record"]["workspace"] = 64
    tuning.load_file(write(tmp_path, doc, "b.json"))
    assert tuning.stored_record(tuning.key_from_json(doc["entries"][0]["key"]))["workspace"] == 64
