"""The persistent tuning cache, explain() and the workspace budget on a GPU."""
import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

import cudnnconv
from cudnnconv import _engines, tuning

pytestmark = pytest.mark.gpu

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENGINES = cudnnconv.build_info()["engines"]


def _has_codec(engine):
    return tuning.codec(engine) is not None


def _engine_param(engine):
    if engine == "graph" and not _has_codec("graph"):
        return pytest.param(engine, marks=pytest.mark.skip(
            reason="the graph engine has no choice_to_record/choice_from_record yet"))
    return engine


ENGINE_PARAMS = [_engine_param(e) for e in ENGINES]

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
    cache = (_engines.legacy if engine == "legacy" else _engines.graph).CACHE
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


def test_env_var_autosave_and_warm_start(tmp_path):
    path = tmp_path / "auto.json"
    code = textwrap.dedent("""
        import cupy, cudnnconv
        x = cupy.ones((2, 8, 16, 16), cupy.float32); w = cupy.ones((8, 8, 3, 3), cupy.float32)
        cudnnconv.conv(x, w, padding=1, benchmark=True, engine='legacy')
        print(cudnnconv.cache_info()['legacy'].hits, cudnnconv.cache_info()['legacy'].misses)
    """)
    env = dict(os.environ, **{tuning.ENV_VAR: str(path)})
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["0", "1"]
    assert len(json.loads(path.read_text())["entries"]) >= 1
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == ["1", "0"]
