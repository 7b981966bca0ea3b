"""The persistent tuning cache, explain() and the workspace budget on a GPU."""
import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

import cudnnconv
from cudnnconv import engine_registry, tuning

pytestmark = pytest.mark.gpu

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENGINES = cudnnconv.build_info()["engines"]


def _has_codec(engine):
    return tuning.codec(engine) is not None


# Both engines persist their choices: a built engine without a codec is a failure, not a skip.
ENGINE_PARAMS = list(ENGINES)


def test_every_built_engine_has_a_codec():
    for engine in ENGINES:
        assert _has_codec(engine), engine

# A script that runs a few problems in every direction on seeded data and
# prints, as JSON: cache statistics, the choices and a digest of each result.
SCRIPT = textwrap.dedent("""
    import json, sys, hashlib
    import cupy, cudnnconv
    engine, path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "load":
        n_loaded = cudnnconv.load_tuning(path)
    else:
        n_loaded = 0
    kw = dict(benchmark=True, deterministic=True, engine=engine)
    cupy.random.seed(1)
    out, choices = [], []
    for shape, wshape, pad, stride in [((4, 16, 20, 20), (32, 16, 3, 3), 1, 1),
                                       ((2, 8, 15, 17), (8, 8, 1, 1), 0, 2),
                                       ((2, 32, 12, 12), (32, 32, 5, 5), 2, 1)]:
        x = cupy.random.standard_normal(shape).astype(cupy.float32)
        w = cupy.random.standard_normal(wshape).astype(cupy.float32)
        y = cudnnconv.conv(x, w, padding=pad, stride=stride, **kw)
        choices.append(cudnnconv.last_call()["choices"])
        gy = cupy.random.standard_normal(y.shape).astype(cupy.float32)
        gx = cudnnconv.conv_backward_input(x.shape, w, gy, padding=pad, stride=stride, **kw)
        choices.append(cudnnconv.last_call()["choices"])
        gw = cudnnconv.conv_backward_weight(x, w.shape, gy, padding=pad, stride=stride, **kw)
        choices.append(cudnnconv.last_call()["choices"])
        for a in (y, gx, gw):
            out.append(hashlib.sha256(cupy.asnumpy(a).tobytes()).hexdigest())
    cupy.cuda.Device().synchronize()
    if mode == "save":
        cudnnconv.save_tuning(path)
    info = {k: list(v) for k, v in cudnnconv.cache_info().items()}
    for cs in choices:
        for c in cs:
            c.pop("time_ms", None)
    print(json.dumps({"loaded": n_loaded, "info": info, "choices": choices, "out": out}))
""")


def _run(engine, path, mode):
    env = dict(os.environ)
    env.pop(tuning.ENV_VAR, None)
    res = subprocess.run([sys.executable, "-c", SCRIPT, engine, str(path), mode], capture_output=True, text=True,
                         timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_save_in_one_process_load_in_a_fresh_one(tmp_path, engine):
    path = tmp_path / "tune.json"
    first = _run(engine, path, "save")
    second = _run(engine, path, "load")
    assert second["loaded"] >= 9
    size, maxsize, hits, misses = second["info"][engine]
    # Every call found its choice in the cache: no search ran.
    assert misses == 0, second["info"]
    assert hits == 9
    assert second["choices"] == first["choices"]
    assert second["out"] == first["out"]


@pytest.fixture
def clean():
    cudnnconv.clear_cache()
    yield
    cudnnconv.clear_cache()


def _problem():
    import cupy
    cupy.random.seed(3)
    x = cupy.random.standard_normal((4, 16, 24, 24)).astype(cupy.float32)
    w = cupy.random.standard_normal((32, 16, 3, 3)).astype(cupy.float32)
    return x, w


@pytest.mark.parametrize("field", ["cudnn_version", "sm_count", "gpu_name", "compute_capability"])
@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_file_from_another_environment_is_ignored(tmp_path, clean, engine, field):
    x, w = _problem()
    cudnnconv.conv(x, w, padding=1, benchmark=True, engine=engine)
    path = tmp_path / "t.json"
    assert cudnnconv.save_tuning(path) >= 1
    doc = json.loads(path.read_text())
    for block in doc["environments"].values():
        if field == "gpu_name":
            block[field] += " (other)"
        elif field == "compute_capability":
            block[field] = [block[field][0] + 1, 0]
        else:
            block[field] += 1
    path.write_text(json.dumps(doc))
    cudnnconv.clear_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cudnnconv.load_tuning(path) == 0
    before = cudnnconv.cache_info()[engine]
    cudnnconv.conv(x, w, padding=1, benchmark=True, engine=engine)
    after = cudnnconv.cache_info()[engine]
    assert after.misses == before.misses + 1          # it searched


@pytest.mark.parametrize("engine", ENGINES)
def test_explain_names_the_choice_the_library_caches(clean, engine):
    x, w = _problem()
    cache = (engine_registry.legacy if engine == "legacy" else engine_registry.graph).CACHE
    r = cudnnconv.explain(x, w, padding=1, engine=engine, k=3)
    assert len(cache) == 0 and cache.info().hits == 0 and cache.info().misses == 0   # undisturbed
    assert cudnnconv.last_choice(x, w, padding=1, engine=engine, benchmark=True) is None
    assert r.chosen is not None and not r.chosen.excluded
    assert all(len(c.samples) == 3 for c in r.candidates if not c.excluded)
    str(r)
    r.to_dicts()
    assert r.memory["used_peak"] >= r.memory["used_before"]

    r = cudnnconv.explain(x, w, padding=1, engine=engine, k=3, update_cache=True)
    cached = cudnnconv.last_choice(x, w, padding=1, engine=engine, benchmark=True)
    assert cached is r.chosen.choice
    hits = cache.info().hits
    cudnnconv.conv(x, w, padding=1, benchmark=True, engine=engine)
    assert cache.info().hits == hits + 1
    ran = cudnnconv.last_call()["choices"][0]
    assert ran == r.chosen.choice.as_dict()


@pytest.mark.parametrize("direction", ["backward_data", "backward_filter"])
def test_explain_backward_directions(clean, direction):
    x, w = _problem()
    r = cudnnconv.explain(x, w, direction=direction, padding=1, engine="legacy", k=2)
    assert r.chosen is not None
    assert direction in r.title


def _workspace_of(choice_dict):
    return int(choice_dict["workspace"])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("limit", [0, 1 << 16, 1 << 20])
def test_workspace_limit_is_honoured(clean, engine, limit):
    import cupy
    x, w = _problem()
    gy = cupy.random.standard_normal((4, 32, 24, 24)).astype(cupy.float32)
    calls = [
        lambda kw: cudnnconv.conv(x, w, padding=1, **kw),
        lambda kw: cudnnconv.conv_backward_input(x.shape, w, gy, padding=1, **kw),
        lambda kw: cudnnconv.conv_backward_weight(x, w.shape, gy, padding=1, **kw),
    ]
    for call in calls:
        for bench in (False, True):
            try:
                call(dict(benchmark=bench, engine=engine, workspace_limit=limit))
            except cudnnconv.CuDNNError as e:
                # A too-tight limit may leave nothing that runs: then it must say so clearly.
                assert limit == 0 and "workspace" in str(e).lower(), str(e)
                continue
            for c in cudnnconv.last_call()["choices"]:
                assert _workspace_of(c) <= limit, c


def test_explain_reports_the_budget_exclusions(clean):
    x, w = _problem()
    r = cudnnconv.explain(x, w, padding=1, engine="legacy", workspace_limit=0, k=2)
    assert r.chosen.workspace == 0
    for c in r.candidates:
        if not c.excluded:
            assert c.workspace == 0
    assert any("workspace_limit" in c.reason for c in r.candidates if c.excluded) or \
        all(c.workspace == 0 for c in r.candidates)


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_env_var_autosave_and_warm_start(tmp_path, engine):
    path = tmp_path / "auto.json"
    code = textwrap.dedent("""
        import cupy, cudnnconv
        x = cupy.ones((2, 8, 16, 16), cupy.float32); w = cupy.ones((8, 8, 3, 3), cupy.float32)
        cudnnconv.conv(x, w, padding=1, benchmark=True, engine=%r)
        print(cudnnconv.cache_info()[%r].hits, cudnnconv.cache_info()[%r].misses)
    """ % (engine, engine, engine))
    env = dict(os.environ, **{tuning.ENV_VAR: str(path)})
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["0", "1"]
    entries = json.loads(path.read_text())["entries"]
    assert len(entries) >= 1 and all(e["engine"] == engine for e in entries)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == ["1", "0"]


# ---------------------------------------------------------------------------
# The graph engine's records: plan JSON, and the config rebuilt from its tag
# ---------------------------------------------------------------------------

graph_only = pytest.mark.skipif("graph" not in ENGINES, reason="the graph engine is not built")


def _graph_saved(tmp_path):
    """Run the problem on the graph engine with benchmark, save: (x, w, y, path, doc, choice dict)."""
    x, w = _problem()
    y = cudnnconv.conv(x, w, padding=1, benchmark=True, engine="graph")
    ran = cudnnconv.last_call()["choices"][0]
    path = tmp_path / "g.json"
    assert cudnnconv.save_tuning(path) >= 1
    doc = json.loads(path.read_text())
    assert [e["engine"] for e in doc["entries"]] == ["graph"]
    return x, w, y, path, doc, ran


def _rewrite(path, doc):
    path.write_text(json.dumps(doc))


@graph_only
def test_graph_record_holds_plan_json_tag_knobs_workspace(tmp_path, clean):
    from cudnnconv.engines import graph
    x, w, y, path, doc, ran = _graph_saved(tmp_path)
    rec = doc["entries"][0]["record"]
    assert isinstance(rec["plan_json"], str) and json.loads(rec["plan_json"])
    assert rec["tag"] == ran["tag"] and rec["workspace"] == ran["workspace"]
    assert graph.make_tag(rec["engine_index"], [tuple(k) for k in rec["knobs"]]) == rec["tag"]
    assert rec["benchmarked"] is True and rec["how"] == "benchmark"
    # Loaded in this process: a hit, the same plan, identical output.
    cudnnconv.clear_cache()
    assert cudnnconv.load_tuning(path) == 1
    before = cudnnconv.cache_info()["graph"]
    y2 = cudnnconv.conv(x, w, padding=1, benchmark=True, engine="graph")
    after = cudnnconv.cache_info()["graph"]
    assert after.hits == before.hits + 1 and after.misses == before.misses
    assert cudnnconv.last_call()["choices"][0]["tag"] == ran["tag"]
    assert bool((y2 == y).all())


@graph_only
def test_graph_record_without_plan_json_rebuilds_the_config(tmp_path, clean):
    from cudnnconv.engines import graph
    x, w, y, path, doc, ran = _graph_saved(tmp_path)
    ent = doc["entries"][0]
    key = tuning.key_from_json(ent["key"])
    ent["record"]["plan_json"] = None                 # as for a plan that does not serialise
    ent["record"]["digest"] = graph.record_digest(key, None, ent["record"]["tag"])
    _rewrite(path, doc)
    cudnnconv.clear_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cudnnconv.load_tuning(path) == 1
    before = cudnnconv.cache_info()["graph"]
    y2 = cudnnconv.conv(x, w, padding=1, benchmark=True, engine="graph")
    after = cudnnconv.cache_info()["graph"]
    assert after.misses == before.misses, "the rebuilt config should answer without a search"
    assert cudnnconv.last_call()["choices"][0]["tag"] == ran["tag"]
    assert bool((y2 == y).all())


def _walk(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield path + (k,), k, v
            yield from _walk(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, path + (i,))


def _set(obj, path, value):
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


@graph_only
@pytest.mark.parametrize("fix_digest", [False, True])
def test_graph_plan_json_edited_to_another_sm_count_is_a_miss(tmp_path, clean, fix_digest):
    from cudnnconv.engines import graph
    x, w, y, path, doc, ran = _graph_saved(tmp_path)
    ent = doc["entries"][0]
    sm = doc["environments"][ent["env"]]["sm_count"]
    plan = json.loads(ent["record"]["plan_json"])
    named = [p for p, k, v in _walk(plan) if isinstance(v, int) and not isinstance(v, bool) and v == sm
             and any(s in str(k).lower() for s in ("sm", "multiprocessor"))]
    if not named:
        named = [p for p, k, v in _walk(plan) if isinstance(v, int) and not isinstance(v, bool) and v == sm]
    assert named, "no field of the plan JSON holds the SM count %d; top-level keys: %s" % (
        sm, sorted(plan) if isinstance(plan, dict) else type(plan))
    for p in named:
        _set(plan, p, sm + 2)
    ent["record"]["plan_json"] = json.dumps(plan)
    if fix_digest:      # a consistent record: only the SM count is wrong (cuDNN's ARCH_MISMATCH, or tuning's check)
        ent["record"]["digest"] = graph.record_digest(tuning.key_from_json(ent["key"]), ent["record"]["plan_json"],
                                                      ent["record"]["tag"])
    _rewrite(path, doc)
    cudnnconv.clear_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # tuning may reject it with a warning; it must not raise
        assert cudnnconv.load_tuning(path) == 0
    before = cudnnconv.cache_info()["graph"]
    y2 = cudnnconv.conv(x, w, padding=1, benchmark=True, engine="graph")
    after = cudnnconv.cache_info()["graph"]
    assert after.misses == before.misses + 1          # it searched
    assert bool((abs(y2 - y) <= 1e-3 * (1 + abs(y))).all())
    # The codec itself, bypassing tuning's checks: a miss (None) or a ValueError, never a crash.
    key = tuning.key_from_json(ent["key"])
    try:
        got = graph.choice_from_record(ent["record"], key)
    except ValueError:
        got = None
    assert got is None


@graph_only
def test_graph_benchmark_uses_median_of_k_and_ranking(clean, monkeypatch):
    from cudnnconv import gpu_timing
    monkeypatch.setattr(gpu_timing, "REPEATS", 3)
    x, w = _problem()
    r = cudnnconv.explain(x, w, padding=1, engine="graph", k=3)
    assert r.chosen is not None
    assert any(c.notes for c in r.candidates)           # the engines' notes are shown
    # The library's own benchmark: median of k (gpu_timing.REPEATS) runs, chosen through ranking.
    cudnnconv.conv(x, w, padding=1, benchmark=True, engine="graph")
    c = cudnnconv.last_choice(x, w, padding=1, engine="graph", benchmark=True)
    assert c.benchmarked and len(c.samples) == 3 and c.time_ms > 0


@graph_only
def test_graph_explain_reports_excluded_configs(clean):
    x, w = _problem()
    r = cudnnconv.explain(x, w, padding=1, engine="graph", k=2, allow_tf32=False)
    excl = [c for c in r.candidates if c.excluded]
    assert excl, str(r)
    assert all(c.reason for c in excl)
    assert any("TENSOR_CORE" in c.reason or "workspace" in c.reason or "finalize" in c.reason for c in excl), str(r)
    for c in r.candidates:
        if not c.excluded:
            assert "TENSOR_CORE" not in c.notes
    r = cudnnconv.explain(x, w, padding=1, engine="graph", k=2, workspace_limit=0)
    assert r.chosen.workspace == 0
    assert all(c.workspace == 0 for c in r.candidates if not c.excluded)
