"""The graph engine without a GPU: descriptor finalization through cuDNN's
own shape checks (with a stub libcuda.so.1, in a subprocess), the cache
key's alignment, the per-thread plan cache, and the engine-selection rules.

The stub defines the six driver symbols cuDNN's engine library binds at load,
each returning an error.  It is built into tmp_path and put on the
LD_LIBRARY_PATH of a child Python only: never loaded in this process.
"""
import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import cudnnconv
from conftest import build_shared_library
from cudnnconv import engine_registry, options, params
from cudnnconv.core.status import CuDNNError, CuDNNOutOfMemoryError

graph = engine_registry.graph
needs_graph = pytest.mark.skipif(graph is None, reason="this build has no graph engine")

STUB_SYMBOLS = ("cuGetErrorString", "cuModuleGetFunction", "cuModuleLoadData", "cuModuleUnload",
                "cuTensorMapEncodeIm2col", "cuTensorMapEncodeTiled")
PYX = os.path.dirname(os.path.dirname(os.path.abspath(cudnnconv.__file__)))


@pytest.fixture(scope="module")
def stub_libcuda(tmp_path_factory):
    d = tmp_path_factory.mktemp("stubcuda")
    build_shared_library(d, "libcuda.so.1", "".join("int %s(){return 999;}\n" % s for s in STUB_SYMBOLS),
                         "the stub libcuda.so.1")
    return str(d)


def run_with_stub(stub_dir, code):
    """Run ``code`` in a child Python with the stub first on the library path;
    it prints one JSON line, which is returned."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = stub_dir + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    env["PYTHONPATH"] = PYX + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    prog = textwrap.dedent("""
        import json, sys
        from cudnnconv import params, CuDNNError
        from cudnnconv.engines import graph
        def check(op, xs, ws, ys, geom, layout, dtype, alpha=1.0, with_graph=False):
            try:
                graph.validate_problem(op, xs, ws, ys, geom, layout, dtype, alpha, with_graph)
                return ["ok"]
            except CuDNNError as e:
                return [e.name, e.message]
        out = {}
    """) + textwrap.dedent(code) + "\nprint(json.dumps(out))\n"
    r = subprocess.run([sys.executable, "-c", prog], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


# Forward problems: (id, x, w, stride, padding, dilation, groups).  1D runs
# natively as 3-D tensors; groups follow from the dims.
GRID = [
    ("1d", (2, 4, 17), (6, 4, 3), 2, 1, 1, 1),
    ("1d_g2_dil", (2, 4, 15), (4, 2, 3), 1, 2, 2, 2),
    ("2d", (2, 6, 9, 10), (8, 6, 3, 3), 1, 1, 1, 1),
    ("2d_s12_g2", (2, 6, 11, 10), (8, 3, 3, 3), (1, 2), (1, 0), (2, 1), 2),
    ("2d_depthwise", (2, 8, 11, 11), (8, 1, 3, 3), 1, 1, 1, 8),
    ("2d_1x1_s2", (3, 16, 10, 10), (8, 16, 1, 1), 2, 0, 1, 1),
    ("3d", (2, 4, 6, 7, 8), (6, 2, 3, 3, 3), 2, 1, 1, 2),
    ("3d_dil", (2, 2, 7, 7, 7), (4, 2, 2, 2, 3), 1, (0, 1, 2), 2, 1),
]


@needs_graph
def test_descriptor_grid_finalizes(stub_libcuda):
    res = run_with_stub(stub_libcuda, """
        GRID = %r
        for (name, xs, ws, s, p, d, g) in GRID:
            geom, ys = params.conv_geometry(xs, ws, s, p, d, g)
            for layout in ("NCHW", "NHWC"):
                for dtype in ("float16", "float32", "float64"):
                    for op in ("forward", "backward_data", "backward_filter"):
                        out["%%s/%%s/%%s/%%s" %% (name, layout, dtype, op)] = check(op, xs, ws, ys, geom, layout, dtype)
                out["%%s/%%s/fused" %% (name, layout)] = check("fused", xs, ws, ys, geom, layout, "float16", 0.5)
        geom, ys = params.conv_geometry((2, 8, 9, 9), (16, 8, 3, 3), 1, 1, 1, 1)
        out["graph"] = check("forward", (2, 8, 9, 9), (16, 8, 3, 3), ys, geom, "NHWC", "float16", with_graph=True)
    """ % (GRID,))
    bad = {k: v for k, v in res.items() if v != ["ok"]}
    assert not bad, bad
    assert len(res) == len(GRID) * 2 * 10 + 1


@needs_graph
def test_bad_problems_fail_with_cudnn_message(stub_libcuda):
    res = run_with_stub(stub_libcuda, """
        geom, ys = params.conv_geometry((2, 8, 9, 9), (16, 8, 3, 3), 1, 1, 1, 1)
        out["channels"] = check("forward", (2, 8, 9, 9), (16, 8, 3, 3), (2, 15, 9, 9), geom, "NCHW", "float32")
        out["spatial"] = check("forward", (2, 8, 9, 9), (16, 8, 3, 3), (2, 16, 5, 9), geom, "NHWC", "float16")
        out["dgrad_channels"] = check("backward_data", (2, 8, 9, 9), (16, 8, 3, 3), (2, 12, 9, 9), geom,
                                      "NCHW", "float32")
        out["wgrad_groups"] = check("backward_filter", (2, 8, 9, 9), (16, 3, 3, 3), (2, 16, 9, 9), geom,
                                    "NCHW", "float32")
    """)
    for k, v in res.items():
        assert v[0] == "CUDNN_STATUS_BAD_PARAM", (k, v)
    assert "yDimA[CK_DIM]" in res["channels"][1] or res["channels"][1], res


@needs_graph
def test_validate_problem_rejects_bad_arguments_without_stub():
    geom, ys = params.conv_geometry((2, 8, 9, 9), (16, 8, 3, 3), 1, 1, 1, 1)
    with pytest.raises(TypeError):
        graph.validate_problem("forward", (2, 8, 9, 9), (16, 8, 3, 3), ys, geom, "NCHW", "int32")
    with pytest.raises(ValueError):
        graph.validate_problem("forward", (2, 8, 9, 9), (16, 8, 3, 3), ys,
                               geom._replace(padding=(1, 1, 1)), "NCHW", "float32")


# ---------------------------------------------------------------------------
# The key
# ---------------------------------------------------------------------------

@needs_graph
@pytest.mark.parametrize("ptr,expect", [(0, 16), (0x7F0000000000, 16), (0x7F0000000010, 16),
                                        (0x7F0000000008, 8), (0x7F0000000004, 4), (0x7F0000000002, 2),
                                        (0x7F0000000006, 2), (0x7F0000000001, 1), (0x7F0000000200, 16)])
def test_alignment_is_min16_largest_power_of_two(ptr, expect):
    assert graph.alignment(ptr) == expect


@needs_graph
def test_key_has_op_alignment_and_fusion_params():
    geom, _ = params.conv_geometry((2, 8, 9, 9), (16, 8, 3, 3), 1, 1, 1, 1)
    opts = options.resolve()
    base = 0x7F0000000000
    k1 = graph.problem_key("forward", 0, 2, (2, 8, 9, 9), (16, 8, 3, 3), "NHWC", geom, opts,
                           (base, base + 512, base + 1024))
    assert k1.engine == "graph" and k1.op == "forward"
    assert k1.extra == (16, 16, 16)
    k2 = graph.problem_key("forward", 0, 2, (2, 8, 9, 9), (16, 8, 3, 3), "NHWC", geom, opts,
                           (base + 2, base + 512, base + 1024))
    assert k2.extra == (2, 16, 16) and k1 != k2
    # Same alignment, other addresses: the same key (pointers are not in it).
    k3 = graph.problem_key("forward", 0, 2, (2, 8, 9, 9), (16, 8, 3, 3), "NHWC", geom, opts,
                           (base + 4096, base + 32, base + 64))
    assert k3 == k1 and hash(k3) == hash(k1)
    kb = graph.problem_key("backward_data", 0, 2, (2, 8, 9, 9), (16, 8, 3, 3), "NHWC", geom, opts,
                           (base, base, base))
    assert kb != k1
    f1 = graph.problem_key("fused", 0, 2, (2, 8, 9, 9), (16, 8, 3, 3), "NHWC", geom, opts,
                           (base,) * 4 + (base + 8,), alpha=1.0)
    f2 = graph.problem_key("fused", 0, 2, (2, 8, 9, 9), (16, 8, 3, 3), "NHWC", geom, opts,
                           (base,) * 4 + (base + 8,), alpha=0.5)
    assert f1.extra == (16, 16, 16, 16, 8, 1.0) and f2.extra[-1] == 0.5 and f1 != f2
    k4 = graph.problem_key("forward", 0, 2, (2, 8, 9, 9), (16, 8, 3, 3), "NHWC", geom,
                           options.resolve(allow_tf32=False), (base, base, base))
    assert k4 != k1


@needs_graph
def test_epilogue_keys_carry_the_epilogue_and_round_trip_through_a_tuning_record():
    from cudnnconv import activations, records, tuning
    geom, _ = params.conv_geometry((2, 8, 9, 9), (16, 8, 3, 3), 1, 1, 1, 1)
    opts = options.resolve()
    base = 0x7F0000000000
    ptrs = (base, base + 512, base + 1024, base + 8)
    silu = activations.epilogue(act="swish", has_bias=True)
    k = graph.problem_key("epilogue", 0, 2, (2, 8, 9, 9), (16, 8, 3, 3), "NHWC", geom, opts, ptrs, epilogue=silu)
    assert k.extra == (16, 16, 16, 8, 0) + (1.0, 1.0, activations.NAMES.index("silu"), 0.0, 0.0, 2)
    assert graph._tensor_count(k) == 4
    # another spelling of the same epilogue: the same key; another parameter or part: another key
    same = graph.problem_key("epilogue", 0, 2, (2, 8, 9, 9), (16, 8, 3, 3), "NHWC", geom, opts, ptrs,
                             epilogue=activations.epilogue(1, 1.0, "silu", False, True))
    assert same == k and hash(same) == hash(k)
    for other in (activations.epilogue(act="silu", has_z=True), activations.epilogue(act="gelu", has_bias=True),
                  activations.epilogue(2.0, 1.0, "silu", False, True)):
        assert graph.problem_key("epilogue", 0, 2, (2, 8, 9, 9), (16, 8, 3, 3), "NHWC", geom, opts, ptrs,
                                 epilogue=other) != k
    back = tuning.key_from_json(records.key_to_json(k))
    assert back == k and activations.from_key_fields(back.extra[5:]) == silu
    d = graph.problem_key("dgrad_act", 0, 2, (2, 8, 9, 9), (16, 8, 3, 3), "NHWC", geom, opts, ptrs,
                          epilogue=activations.epilogue(act=("leaky_relu", 0.2), has_z=True))
    assert d.op == "dgrad_act" and graph._tensor_count(d) == 4 and d.extra[8] == 0.2
    assert tuning.key_from_json(records.key_to_json(d)) == d


@needs_graph
def test_note_filters():
    opts = options.resolve()
    assert graph.keep_config(("TENSOR_CORE",), 0, opts, 0)
    assert not graph.keep_config(("TENSOR_CORE",), 0, options.resolve(allow_tf32=False), 0)
    assert graph.keep_config(("TENSOR_CORE",), 2, options.resolve(allow_tf32=False), 0)   # fp16
    assert not graph.keep_config(("DOWN_CONVERT_INPUTS",), 2, opts, 0)
    assert not graph.keep_config(("NONDETERMINISTIC",), 2, options.resolve(deterministic=True), 0)
    assert graph.keep_config(("NONDETERMINISTIC",), 2, opts, 0)
    assert not graph.keep_config((), 2, options.resolve(workspace_limit=100), 101)
    assert graph.make_tag(62, ((2, 1), (3, 0))) == "eng62_k2=1_k3=0"


# ---------------------------------------------------------------------------
# The plan cache
# ---------------------------------------------------------------------------

@needs_graph
def test_plan_cache_lru_and_stats():
    c = graph.PlanCache("t", maxsize=2)
    assert c.get("a") is None
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1           # a is now most recent
    c.put("c", 3)                    # evicts b
    assert c.peek("b") is None and c.peek("a") == 1 and c.peek("c") == 3
    i = c.info()
    assert (i.size, i.maxsize, i.hits, i.misses) == (2, 2, 1, 1)
    c.set_maxsize(1)
    assert len(c) == 1 and c.peek("c") == 3
    with pytest.raises(ValueError):
        c.set_maxsize(-1)
    c.clear()
    assert c.info() == (0, 1, 0, 0)
    # fast_get only answers with a plan (never a plain value) and counts hits only.
    c.put("x", 5)
    assert c.fast_get("x", False) is None and c.info().hits == 0


@needs_graph
def test_caches_are_per_thread_and_aggregate():
    caches = graph.GraphCaches("g", maxsize=8)
    caches.put("k", 1)
    assert caches.get("k") == 1
    seen = {}

    def other():
        seen["get"] = caches.get("k")        # another thread's cache: a miss
        caches.put("k2", 2)
        seen["info"] = caches.info()

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen["get"] is None
    assert seen["info"].size == 2 and seen["info"].hits == 1 and seen["info"].misses == 1
    caches.set_maxsize(0)
    assert caches.info().size == 0
    caches.set_maxsize(4)
    caches.put("k", 1)
    caches.clear()
    assert caches.info() == (0, 4, 0, 0)
    assert graph.CACHE.name == "graph" and graph.ENGINE == "graph"
    assert "graph" in cudnnconv.cache_info()


# ---------------------------------------------------------------------------
# Engine selection
# ---------------------------------------------------------------------------

def test_build_info_lists_engines():
    engines = cudnnconv.build_info()["engines"]
    if graph is not None:
        assert "graph" in engines
    if engine_registry.legacy is not None:
        assert "legacy" in engines


def test_select_rules():
    if graph is not None and engine_registry.legacy is not None:
        assert engine_registry.select(options.resolve(engine="auto")) is engine_registry.AUTO
    if graph is not None:
        assert engine_registry.select(options.resolve(engine="graph")) is graph
    if engine_registry.legacy is not None:
        assert engine_registry.select(options.resolve(engine="legacy")) is engine_registry.legacy


class FakeEngine:
    def __init__(self, name, error=None):
        self.ENGINE = name
        self.CACHE = None
        self.error = error
        self.calls = 0

    def run(self, op, x, w, y, geom, opts, layout, device, repro=None, z=None, bias=None, alpha=1.0):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.ENGINE


class FakeArray:
    def __init__(self, shape):
        self.shape = shape
        self.dtype = "float32"


def _auto_call(auto, xs=(1, 2, 5, 5)):
    geom, ys = params.conv_geometry(xs, (2, 2, 3, 3), 1, 0, 1, 1)
    return auto.run("forward", FakeArray(xs), FakeArray((2, 2, 3, 3)), FakeArray(ys), geom,
                    options.resolve(), "NCHW", 0)


def test_auto_prefers_first_engine():
    first, second = FakeEngine("graph"), FakeEngine("legacy")
    auto = engine_registry.AutoEngine(first, second)
    assert _auto_call(auto) == "graph" and auto.ENGINE == "graph"
    assert second.calls == 0


def test_auto_falls_back_once_per_problem_on_cudnn_error():
    first, second = FakeEngine("graph", CuDNNError(3000, "no config")), FakeEngine("legacy")
    auto = engine_registry.AutoEngine(first, second)
    assert _auto_call(auto) == "legacy" and auto.ENGINE == "legacy"
    assert _auto_call(auto) == "legacy"
    assert first.calls == 1 and second.calls == 2          # the decision is remembered
    assert len(auto.fallbacks()) == 1
    first.error = None
    assert _auto_call(auto, (1, 2, 6, 6)) == "graph"        # another problem still tries graph first
    auto.clear()
    assert _auto_call(auto) == "graph"


def test_auto_does_not_fall_back_on_oom_or_other_errors():
    for err in (CuDNNOutOfMemoryError(4004, "oom"), MemoryError("pool"), ValueError("bug")):
        first, second = FakeEngine("graph", err), FakeEngine("legacy")
        auto = engine_registry.AutoEngine(first, second)
        with pytest.raises(type(err)):
            _auto_call(auto)
        assert second.calls == 0 and not auto.fallbacks()


# ---------------------------------------------------------------------------
# Exclusion reasons and the tuning-file record (host only)
# ---------------------------------------------------------------------------

@needs_graph
def test_exclude_reason_names_the_flag():
    assert graph.exclude_reason(("TENSOR_CORE",), 0, options.resolve(), 0) is None
    assert "allow_tf32" in graph.exclude_reason(("TENSOR_CORE",), 0, options.resolve(allow_tf32=False), 0)
    assert "deterministic" in graph.exclude_reason(("NONDETERMINISTIC",), 2,
                                                   options.resolve(deterministic=True), 0)
    assert "DOWN_CONVERT" in graph.exclude_reason(("DOWN_CONVERT_INPUTS",), 2, options.resolve(), 0)
    assert "workspace_limit" in graph.exclude_reason((), 2, options.resolve(workspace_limit=100), 101)
    ex = graph.ExcludedConfig("eng3_k2=1", 3, ((2, 1),), ("NONDETERMINISTIC",), ("RUNTIME_COMPILATION",), 64)
    assert not ex.deterministic and "eng3" in ex.describe()


def _record(**kw):
    rec = {"plan_json": "{}", "tag": "eng62_k2=1_k3=0", "engine_index": 62, "knobs": [[3, 0], [2, 1]],
           "workspace": 128, "numerical_notes": ["TENSOR_CORE"], "behavior_notes": [], "how": "benchmark",
           "time_ms": 0.05, "benchmarked": True}
    rec.update(kw)
    return rec


@needs_graph
def test_graph_record_checks():
    assert graph.check_record(_record()) == ((2, 1), (3, 0))
    assert graph.check_record(_record(issue_ms=0.0081)) == ((2, 1), (3, 0))       # the issue time is optional
    assert graph.check_record({"tag": "eng1", "engine_index": 1, "knobs": [], "workspace": 0}) == ()
    bad = [_record(tag="eng61_k2=1_k3=0"),            # tag disagrees with index/knobs
           _record(knobs=[[2, True]]), _record(knobs=[[2]]), _record(knobs="x"),
           _record(engine_index=-1), _record(engine_index=True), _record(workspace=1 << 41),
           _record(workspace=-1), _record(plan_json=5), _record(how="guess"), _record(time_ms=float("inf")),
           _record(issue_ms=float("nan")), _record(issue_ms=-2.0), _record(issue_ms=True), _record(issue_ms="1"),
           _record(benchmarked=1), _record(numerical_notes=[1]), _record(extra=1), "record", None]
    for r in bad:
        with pytest.raises(ValueError):
            graph.check_record(r)
    r = _record()
    del r["workspace"]
    with pytest.raises(ValueError):
        graph.check_record(r)


@needs_graph
def test_graph_record_digest_ties_plan_to_key():
    k1 = params.ProblemKey("forward", "graph", 0, 0, (2, 8, 9, 9), (16, 8, 3, 3), "NCHW", (1, 1), (1, 1), (1, 1),
                           1, False, True, None, (16, 16, 16))
    k2 = k1._replace(input_shape=(2, 8, 10, 9))
    d = graph.record_digest(k1, "{}", "eng0")
    assert d == graph.record_digest(k1, "{}", "eng0")
    assert d != graph.record_digest(k2, "{}", "eng0")
    assert d != graph.record_digest(k1, "{ }", "eng0") and d != graph.record_digest(k1, "{}", "eng1")
    # A record written for another key is refused before any cuDNN call.
    with pytest.raises(ValueError, match="digest"):
        graph.choice_from_record(_record(digest=graph.record_digest(k2, "{}", "eng62_k2=1_k3=0")), k1)
    assert graph.choice_from_record(_record(), k1._replace(engine="legacy")) is None
    assert graph.choice_to_record(object()) is None


@needs_graph
def test_graph_benchmark_reads_the_shared_settings():
    # One set of benchmark settings for both engines (cudnnconv.gpu_timing),
    # no second copy in the graph engine that could disagree with it.
    from cudnnconv import gpu_timing
    assert graph.gpu_timing is gpu_timing
    assert not any(hasattr(graph, n) for n in ("BENCH_REPS", "BENCH_WARMUP", "BENCH_MARGIN"))


@needs_graph
def test_call_key_is_the_shared_key():
    """run() builds its key with params.make_key (the one key builder) and key_extra."""
    from cudnnconv import options, params
    from cudnnconv.engines import graph
    geom, _ = params.conv_geometry((2, 8, 9, 9), (16, 4, 3, 3), (2, 1), 1, (1, 2), 2)
    for opts in (options.resolve(), options.resolve(deterministic=True, allow_tf32=False, workspace_limit=1 << 20)):
        for op, ptrs, alpha, extra in (("forward", (4096, 8192, 8200), 1.0, (16, 16, 8)),
                                       ("fused", (256, 512, 768, 1024, 1280), 0.5, (16, 16, 16, 16, 16, 0.5))):
            want = params.make_key(op, graph.ENGINE, 3, 2, (2, 8, 9, 9), (16, 4, 3, 3), "NHWC", geom, opts, extra)
            got = graph.problem_key(op, 3, 2, [2, 8, 9, 9], (16, 4, 3, 3), "NHWC", geom, opts, ptrs, alpha)
            assert got == want and hash(got) == hash(want) and type(got) is type(want)
            assert got._asdict() == want._asdict()


@needs_graph
def test_a_variant_pack_ring_reuses_kept_pointer_sets_and_destroys_replaced_packs(stub_libcuda):
    """graph_descriptors.VariantPacks (a pack finalizes without a GPU): a pointer set seen within the
    last VP_SLOTS (4) gets its pack back, an older one a new pack in the oldest slot, the ring never
    holds more than four live descriptors, and all of them go with it."""
    res = run_with_stub(stub_libcuda, """
        from cudnnconv import engine_registry
        from cudnnconv.engines import graph_descriptors as gd
        base = engine_registry.live_descriptors()["graph"]
        sets = [(4096 * k, 8192 * k, 16384 * k) for k in range(1, 8)]
        walk = sets[:3] + sets[:3] + sets[3:] + [sets[6], sets[0]]
        got, live, cost = gd._ring_walk(walk, 3, 0, 20)
        out.update(got=got, grown=live - base, cost=cost, after=engine_registry.live_descriptors()["graph"] - base)
        try:
            gd._ring_walk([], 9)
        except ValueError as e:
            out["too_many"] = str(e)
    """)
    got = res["got"]
    assert got[3:6] == got[0:3]                      # kept: the same packs
    assert len(set(got[:6])) == 3 and len(set(got[6:10])) == 4
    assert got[10] == got[9]                         # the newest set is still there
    assert got[11] not in got[6:10]                  # sets[0] was evicted: a new pack
    assert res["grown"] == 4 and res["after"] == 0
    assert res["cost"] is not None and res["cost"] > 0
    assert "at most 8 tensors" in res["too_many"]


@needs_graph
def test_engines_describe_their_knobs_and_the_sweep_settings_stay_inside_them(stub_libcuda):
    # cuDNN reads the knobs of the engines that take a graph without a GPU (the rest refuse it as made
    # for another architecture): the ranges the exhaustive search's knob sweep enumerates
    res = run_with_stub(stub_libcuda, """
        from cudnnconv import knob_space
        for op in ("forward", "backward_data", "backward_filter"):
            geom, ys = params.conv_geometry((2, 8, 9, 9), (16, 8, 3, 3), 1, 1, 1, 1)
            rows = graph.validate_problem(op, (2, 8, 9, 9), (16, 8, 3, 3), ys, geom, "NHWC", "float16",
                                          with_knobs=True)
            engines = [r for r in rows if isinstance(r, tuple)]
            out[op] = {"count": len(engines),
                       "knobs": {str(i): [list(k) for k in infos] for i, infos in engines if isinstance(infos, list)},
                       "refused": sorted({infos for i, infos in engines if not isinstance(infos, list)}),
                       "settings": {str(i): [list(map(list, s)) for s in knob_space.settings(infos)]
                                    for i, infos in engines if isinstance(infos, list)}}
    """)
    for op, r in res.items():
        assert r["count"] >= 10, (op, r["count"])
        assert [int(i) for i in r["knobs"]] == sorted(int(i) for i in r["knobs"]), op
        assert r["knobs"], (op, r["refused"])               # some engines read their knobs with no GPU
        assert set(r["refused"]) <= {"CUDNN_STATUS_NOT_SUPPORTED", "CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH"}, r
        for i, infos in r["knobs"].items():
            ranges = {t: (lo, hi, step) for t, lo, hi, step in infos}
            assert all(lo <= hi and step >= 1 for lo, hi, step in ranges.values()), (op, i, infos)
            settings = r["settings"][i]
            assert 1 <= len(settings) <= 64 and len({str(s) for s in settings}) == len(settings)
            for s in settings:
                for t, v in s:
                    lo, hi, step = ranges[t]
                    assert lo <= v <= hi and (v - lo) % step == 0, (op, i, s, infos)
    assert any(len(infos) >= 2 for infos in res["forward"]["knobs"].values()), res["forward"]["knobs"]


@needs_graph
def test_every_epilogue_graph_finalizes_with_its_nodes(stub_libcuda):
    """op 'epilogue' on the host: every activation, with and without z and the bias, alpha1 on
    its first pointwise node, its parameters on the pointwise descriptor, the operation graph
    finalized; the bias takes z's slot (uid 4) where z is not given."""
    res = run_with_stub(stub_libcuda, """
        from cudnnconv import activations as A
        SPECS = [None, "relu", ("leaky_relu", 0.2), ("elu", 0.5), "gelu", "gelu_tanh", "silu", "sigmoid", "tanh",
                 ("clamp", -1.0, 6.0)]
        for case, (xs, ws, s, p, g) in enumerate([((2, 8, 9, 9), (16, 8, 3, 3), 1, 1, 1),
                                                  ((2, 8, 9, 9), (8, 1, 3, 3), 2, 1, 8),
                                                  ((2, 4, 5, 6, 7), (6, 4, 1, 1, 1), 1, 0, 1)]):
            geom, ys = params.conv_geometry(xs, ws, s, p, 1, g)
            for spec in SPECS:
                for has_z in (False, True):
                    for has_b in (False, True):
                        for a1 in (1.0, 0.5):
                            epi = A.epilogue(a1, 2.0, spec, has_z, has_b)
                            name = "%d/%s/%d%d/%g" % (case, A.activation(spec).name, has_z, has_b, a1)
                            try:
                                out[name] = graph.validate_problem("epilogue", xs, ws, ys, geom, "NHWC", "float16",
                                                                   with_graph=True, epilogue=epi)
                            except CuDNNError as e:
                                out[name] = ["error", e.name, e.message]
    """)
    assert len(res) == 3 * 10 * 8
    bad = {k: v for k, v in res.items() if v[0] == "error" or v[-1] != "operation graph"}
    assert not bad, bad
    for name, texts in res.items():
        dims, act, parts, a1 = name.split("/")
        has_z, has_b = parts[0] == "1", parts[1] == "1"
        nodes = [t for t in texts if t.startswith("pointwise(")]
        assert texts.count("forward operation") == 1
        steps = has_z + has_b + (act != "identity")
        assert len(nodes) == max(steps + (a1 != "1" and steps == 0), 1), (name, texts)
        assert ("alpha1=0.5" in nodes[0]) == (a1 == "0.5"), (name, nodes)
        assert all("alpha1=0.5" not in n for n in nodes[1:]), (name, nodes)
        if has_z:
            assert "alpha2=2.0" in nodes[0], (name, nodes)
    t = res["0/leaky_relu/01/1"]
    assert "relu_lower_clip_slope=0.2" in t[-2] and "mode=100" in t[-2], t
    t = res["1/clamp/11/1"]
    assert "relu_lower_clip=-1.0" in t[-2] and "relu_upper_clip=6.0" in t[-2], t
    assert "elu_alpha=0.5" in res["0/elu/00/1"][-2] and "swish_beta=1.0" in res["2/silu/10/0.5"][-2]
    assert "mode=21" in res["0/identity/00/0.5"][-2]                 # IDENTITY carries alpha1 alone
    assert "mode=104" in res["2/gelu/11/1"][-2] and "mode=107" in res["0/gelu_tanh/00/1"][-2]


@needs_graph
def test_every_dgrad_act_graph_finalizes(stub_libcuda):
    """op 'dgrad_act' on the host: the input gradient, then each activation's backward mode with the
    activation's input; an identity, a bias or a scale is refused before cuDNN sees it."""
    res = run_with_stub(stub_libcuda, """
        from cudnnconv import activations as A
        SPECS = ["relu", ("leaky_relu", 0.2), ("elu", 0.5), "gelu", "gelu_tanh", "silu", "sigmoid", "tanh",
                 ("clamp", -1.0, 6.0)]
        for case, (xs, ws, s, p, g) in enumerate([((2, 8, 9, 9), (16, 8, 3, 3), 2, 1, 1),
                                                  ((2, 8, 9, 9), (8, 1, 3, 3), 1, 1, 8),
                                                  ((2, 4, 5, 6, 7), (6, 4, 1, 1, 1), 1, 0, 1)]):
            geom, ys = params.conv_geometry(xs, ws, s, p, 1, g)
            for spec in SPECS:
                name = "%d/%s" % (case, A.activation(spec).name)
                try:
                    out[name] = graph.validate_problem("dgrad_act", xs, ws, ys, geom, "NHWC", "bfloat16",
                                                       with_graph=True, epilogue=A.epilogue(act=spec, has_z=True))
                except CuDNNError as e:
                    out[name] = ["error", e.name, e.message]
        geom, ys = params.conv_geometry((2, 8, 9, 9), (16, 8, 3, 3), 1, 1, 1, 1)
        for bad, epi in (("identity", A.epilogue(has_z=True)),
                         ("bias", A.epilogue(act="relu", has_z=True, has_bias=True)),
                         ("scale", A.epilogue(2.0, 1.0, "relu", True)), ("no input", A.epilogue(act="relu"))):
            try:
                graph.validate_problem("dgrad_act", (2, 8, 9, 9), (16, 8, 3, 3), ys, geom, "NHWC", "float16",
                                       epilogue=epi)
                out["bad/" + bad] = "accepted"
            except ValueError as e:
                out["bad/" + bad] = str(e)
    """)
    bad = {k: v for k, v in res.items() if not k.startswith("bad/") and (v[0] == "error" or v[-1] != "operation graph")}
    assert not bad, bad
    assert len([k for k in res if not k.startswith("bad/")]) == 27
    for k, v in res.items():
        if k.startswith("bad/"):
            assert v == "op 'dgrad_act' takes an activation and its input, and no bias or scale", (k, v)
            continue
        assert v[0] == "backward_data operation" and v[1].startswith("pointwise backward(mode=2"), (k, v)
    assert "relu_lower_clip_slope=0.2" in res["0/leaky_relu"][1] and "mode=206" in res["1/silu"][1]
