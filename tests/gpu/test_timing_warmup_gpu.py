"""Spin-guarded benchmark timing, the legacy engine's re-timing and errata, and the warm-up of loaded entries."""
import os
import statistics
import subprocess
import sys
import textwrap
import time

import pytest

import cudnnconv
from cudnnconv import engine_registry, gpu_timing, tuning, warmup

import reference as ref

pytestmark = pytest.mark.gpu

ENGINES = cudnnconv.build_info()["engines"]


@pytest.fixture
def clean(fresh_search):
    yield


def test_spin_kernel_loads_and_keeps_the_gpu_busy():
    import cupy
    assert gpu_timing.spin_available()
    stream = cupy.cuda.get_current_stream()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record(stream)
    assert gpu_timing.spin(stream, 1_000_000)
    end.record(stream)
    end.synchronize()
    ms = cupy.cuda.get_elapsed_time(start, end)
    assert 0.95 <= ms < 50, ms


def test_samples_hold_gpu_time_not_host_issue_time():
    """A launch that the host takes 1 ms to issue: a bare event pair times
    the host's millisecond, a spin-guarded sample only the kernel."""
    import cupy
    x = cupy.random.standard_normal(4096).astype(cupy.float32)

    def issue():
        time.sleep(0.001)
        cupy.multiply(x, 2, out=x)

    stream = cupy.cuda.get_current_stream()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    bare = []
    for _ in range(5):
        stream.synchronize()
        start.record(stream)
        issue()
        end.record(stream)
        end.synchronize()
        bare.append(cupy.cuda.get_elapsed_time(start, end))
    guarded = gpu_timing.time_samples(issue, repeats=5, warmup=1)
    assert len(guarded) == 5
    assert statistics.median(bare) >= 0.9, bare
    assert statistics.median(guarded) < 0.3, guarded


def _problem():
    import cupy
    cupy.random.seed(5)
    x = cupy.random.standard_normal((4, 16, 24, 24)).astype(cupy.float32)
    w = cupy.random.standard_normal((32, 16, 3, 3)).astype(cupy.float32)
    return x, w


@pytest.mark.skipif("legacy" not in ENGINES, reason="the legacy engine is not built")
def test_legacy_benchmark_times_find_results_again(clean):
    from cudnnconv.engines import legacy
    x, w = _problem()
    cudnnconv.benchmark_settings(repeats=3)
    y = cudnnconv.conv(x, w, padding=1, benchmark=True, engine="legacy")
    assert ref.rel_error(y, ref.conv(x, w, padding=1)) <= ref.tolerance("float32", tf32=True)
    c = cudnnconv.last_choice(x, w, padding=1, engine="legacy", benchmark=True)
    assert c.benchmarked and len(c.samples) == 3
    assert c.time_ms == pytest.approx(statistics.median(c.samples))
    # RETIME off: cudnnFind's own single samples and order, as PyTorch's Conv_v7 does.
    cudnnconv.clear_cache()
    old = legacy.RETIME
    try:
        legacy.RETIME = False
        cudnnconv.conv(x, w, padding=1, benchmark=True, engine="legacy")
        c = cudnnconv.last_choice(x, w, padding=1, engine="legacy", benchmark=True)
        assert c.benchmarked and c.samples == () and c.time_ms >= 0
    finally:
        legacy.RETIME = old


@pytest.mark.parametrize("direction", ["forward", "backward_data", "backward_filter"])
@pytest.mark.parametrize("engine", ENGINES)
def test_errata_keep_strict_float32_accurate(clean, engine, direction):
    """allow_tf32=False on the problem where Winograd (non-fused) was measured
    at TF32-like error: no candidate the search keeps is an erratum (explain
    names the erratum where cuDNN offers one), and the benchmarked result
    meets the float32 tolerance."""
    from cudnnconv import errata
    x = ref.random((16, 64, 48, 48), "float32")
    w = ref.random((64, 64, 5, 5), "float32")
    gy = ref.random(ref.conv_out_shape(x.shape, w.shape, padding=2), "float32")
    kw = dict(padding=2, engine=engine, allow_tf32=False)
    if direction == "forward":
        expect = ref.conv(x, w, padding=2)
        r = cudnnconv.explain(x, w, k=2, **kw)
        run = lambda out: cudnnconv.conv(x, w, out=out, benchmark=True, **kw)
    elif direction == "backward_data":
        expect = ref.conv_backward_input(x.shape, w, gy, padding=2)
        r = cudnnconv.explain(x.shape, w, gy, direction=direction, k=2, **kw)
        run = lambda out: cudnnconv.conv_backward_input(x.shape, w, gy, out=out, benchmark=True, **kw)
    else:
        expect = ref.conv_backward_weight(x, w.shape, gy, padding=2)
        r = cudnnconv.explain(x, w.shape, gy, direction=direction, k=2, **kw)
        run = lambda out: cudnnconv.conv_backward_weight(x, w.shape, gy, out=out, benchmark=True, **kw)
    table = errata.LEGACY_STRICT_FP32 if engine == "legacy" else errata.GRAPH_STRICT_FP32
    bad = {ident for (op, ident) in table if op == direction}
    for c in r.candidates:
        ident = getattr(c.choice, "algo" if engine == "legacy" else "engine_index", None)
        if ident in bad:
            assert c.excluded and c.reason.startswith("errata"), str(r)
    out = ref.poisoned(expect.shape, "float32")
    run(out)
    ran = cudnnconv.last_call()["choices"][0]
    assert (ran["algo"] if engine == "legacy" else ran["engine_index"]) not in bad, ran
    assert ref.rel_error(out, expect) <= ref.tolerance("float32"), ran


def _all_directions(x, w, engine):
    """Benchmark forward, backward data and backward filter once; return the
    gradient input and the three results' references."""
    import cupy
    kw = dict(padding=1, benchmark=True, engine=engine)
    y = cudnnconv.conv(x, w, **kw)
    gy = cupy.random.standard_normal(y.shape).astype(y.dtype)
    cudnnconv.conv_backward_input(x.shape, w, gy, **kw)
    cudnnconv.conv_backward_weight(x, w.shape, gy, **kw)
    return gy, (ref.conv(x, w, padding=1), ref.conv_backward_input(x.shape, w, gy, padding=1),
                ref.conv_backward_weight(x, w.shape, gy, padding=1))


@pytest.mark.parametrize("engine", ENGINES)
def test_load_with_warm_up_runs_each_entry_without_searching(tmp_path, clean, engine):
    x, w = _problem()
    gy, expect = _all_directions(x, w, engine)
    path = tmp_path / "t.json"
    assert cudnnconv.save_tuning(path) == 3
    cudnnconv.clear_cache()
    assert cudnnconv.load_tuning(path) == 3
    cache = engine_registry.legacy.CACHE if engine == "legacy" else engine_registry.graph.CACHE
    keys = [k for k, _ in cache.items()]
    assert len(keys) == 3
    before = cudnnconv.cache_info()[engine]
    last = cudnnconv.last_call()
    assert warmup.warm_up(keys) == {"run": 3, "skipped": 0}
    # Nothing searched, nothing counted, nothing added; last_call() untouched
    # (the warm-up goes through the public functions).
    assert cudnnconv.cache_info()[engine] == before
    assert cudnnconv.last_call() == last
    # The calls now hit, and compute right (the warm-up's scratch arrays shared nothing with them).
    kw = dict(padding=1, benchmark=True, engine=engine)
    out = ref.poisoned(expect[0].shape, "float32")
    got = [cudnnconv.conv(x, w, out=out, **kw), cudnnconv.conv_backward_input(x.shape, w, gy, **kw),
           cudnnconv.conv_backward_weight(x, w.shape, gy, **kw)]
    after = cudnnconv.cache_info()[engine]
    assert after.misses == before.misses and after.hits == before.hits + 3
    for g, e in zip(got, expect):
        assert ref.rel_error(g, e) <= ref.tolerance("float32", tf32=True)


@pytest.mark.parametrize("engine", ENGINES)
def test_warm_up_plans_the_default_call_signature(tmp_path, clean, engine):
    """After a load with warm-up, a call in the common form (int
    parameters, no out=, the default engine where that runs the key's
    engine) finds its call plan made: its first call does not plan."""
    from cudnnconv import callplan, options
    from cudnnconv.core.state import state
    x, w = _problem()
    expect = ref.conv(x, w, padding=1)
    cudnnconv.conv(x, w, padding=1, benchmark=True, engine=engine)
    path = tmp_path / "t.json"
    assert cudnnconv.save_tuning(path) == 1
    cudnnconv.clear_cache()
    state().memo.clear()
    assert cudnnconv.load_tuning(path, warmup=True) == 1
    cache = engine_registry.legacy.CACHE if engine == "legacy" else engine_registry.graph.CACHE
    (key, _), = cache.items()
    # engine='auto' runs the graph engine (nothing has fallen back: the
    # cache was cleared); a legacy key is warmed up with engine='legacy'.
    call_engine = warmup._call_engine(key)
    assert call_engine == ("legacy" if engine == "legacy" and engine_registry.AUTO is not None else "auto")
    kw = {} if call_engine == "auto" else {"engine": call_engine}
    opts = options.resolve(benchmark=True, **kw)
    sig, plan = callplan.lookup(state().memo, "conv", (x, w, None), None, (1, 1, 1, 1), opts)
    assert plan is not None and plan.fn == "conv"
    before = cudnnconv.cache_info()[engine]
    y = cudnnconv.conv(x, w, padding=1, benchmark=True, **kw)
    assert cudnnconv.last_call()["engine"] == engine
    assert cudnnconv.cache_info()[engine].hits == before.hits + 1
    assert cudnnconv.cache_info()[engine].misses == before.misses
    assert ref.rel_error(y, expect) <= ref.tolerance("float32", tf32=True)


@pytest.mark.parametrize("engine", ENGINES)
def test_warm_up_never_searches_for_an_uncached_key(clean, engine):
    x, w = _problem()
    cudnnconv.conv(x, w, padding=1, benchmark=True, engine=engine)
    cache = engine_registry.legacy.CACHE if engine == "legacy" else engine_registry.graph.CACHE
    (key, _), = cache.items()
    other = key._replace(input_shape=(key.input_shape[0] + 1,) + key.input_shape[1:])
    before = cudnnconv.cache_info()[engine]
    assert warmup.warm_up([other, key]) == {"run": 1, "skipped": 1}
    assert cudnnconv.cache_info()[engine] == before


@pytest.mark.parametrize("engine", ENGINES)
def test_env_var_warm_up_in_a_fresh_process(tmp_path, engine):
    """CUDNNCONV_TUNING_CACHE with CUDNNCONV_TUNING_WARMUP=1: the second
    process warms the loaded entry up at first use, then hits it."""
    path = tmp_path / "auto.json"
    code = textwrap.dedent("""
        import logging, sys
        import cupy, cudnnconv
        logging.basicConfig(stream=sys.stderr, level=logging.DEBUG)
        logging.getLogger("cudnnconv").setLevel(logging.DEBUG)
        cupy.random.seed(2)
        x = cupy.random.standard_normal((2, 8, 16, 16)).astype(cupy.float32)
        w = cupy.random.standard_normal((8, 8, 3, 3)).astype(cupy.float32)
        cudnnconv.conv(x, w, padding=1, benchmark=True, engine=%r)
        print(cudnnconv.cache_info()[%r].hits, cudnnconv.cache_info()[%r].misses)
    """ % (engine, engine, engine))
    env = dict(os.environ, **{tuning.ENV_VAR: str(path), warmup.ENV_VAR: "1"})
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["0", "1"]
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == ["1", "0"]
    assert "warm-up: ran 1 loaded entries, skipped 0" in second.stderr, second.stderr[-3000:]


def _fp16_nhwc(shape, seed):
    import cupy
    rs = cupy.random.RandomState(seed)
    return rs.standard_normal((shape[0], *shape[2:], shape[1])).astype(cupy.float16).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("engine", ENGINES)
def test_host_aware_search_measures_issue_times_of_short_runs(clean, engine):
    """A tiny problem (kernels of a few us): the search measures the issue time of its choice, the
    choice is the cheapest by max(GPU, issue) of the rows explain() measures alike, and the result is
    right.  With host_aware off, no issue time is taken and the GPU time alone ranks."""
    x, w = _fp16_nhwc((1, 8, 8, 8), 1), _fp16_nhwc((8, 8, 3, 3), 2)
    y = cudnnconv.conv(x, w, padding=1, benchmark=True, engine=engine)
    assert ref.rel_error(y, ref.conv(x, w, padding=1)) <= ref.tolerance("float16")
    c = cudnnconv.last_choice(x, w, padding=1, engine=engine, benchmark=True)
    assert c.benchmarked and c.time_ms < gpu_timing.HOST_AWARE_BELOW_MS
    # cuDNN's execute costs the host microseconds; the call's overhead is added on top.
    assert gpu_timing.CALL_OVERHEAD_US * 1e-3 < c.issue_ms < 1.0, c.issue_ms
    assert c.as_dict()["issue_ms"] == c.issue_ms
    r = cudnnconv.explain(x, w, padding=1, engine=engine)
    measured = [row for row in r.candidates if row.issue_ms is not None]
    assert measured and all(row.issue_ms > 0 for row in measured)
    assert "issue ms" in str(r)
    cudnnconv.clear_cache()
    cudnnconv.benchmark_settings(host_aware=False)
    cudnnconv.conv(x, w, padding=1, benchmark=True, engine=engine)
    c = cudnnconv.last_choice(x, w, padding=1, engine=engine, benchmark=True)
    assert c.benchmarked and c.issue_ms == -1.0


@pytest.mark.skipif("graph" not in ENGINES, reason="the graph engine is not built")
def test_host_aware_search_leaves_gpu_bound_problems_alone(clean):
    """A problem whose fastest kernel outlasts any issue time: no issue time is measured."""
    x, w = _fp16_nhwc((64, 256, 56, 56), 3), _fp16_nhwc((256, 256, 3, 3), 4)
    cudnnconv.benchmark_settings(repeats=3)
    y = cudnnconv.conv(x, w, padding=1, benchmark=True, engine="graph")
    c = cudnnconv.last_choice(x, w, padding=1, engine="graph", benchmark=True)
    assert c.time_ms >= gpu_timing.HOST_AWARE_BELOW_MS and c.issue_ms == -1.0
    # Spot-check the result on one output pixel's channels (the full float64 reference is large).
    import cupy
    import numpy
    xs, ws = cupy.asnumpy(x[:1, :, :3, :3]).astype(numpy.float64), cupy.asnumpy(w).astype(numpy.float64)
    want = numpy.einsum("ncij,kcij->k", xs[:, :, :3, :3], ws)      # output pixel (1, 1) of sample 0
    got = cupy.asnumpy(y[0, :, 1, 1]).astype(numpy.float64)
    assert numpy.abs(got - want).max() <= 2e-2 * numpy.abs(want).max()
