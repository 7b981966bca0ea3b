"""The graph engine on the GPU: against the float64 reference and the legacy
engine, its flags (deterministic, TF32), its plan cache (variant-pack reuse,
CUDA-graph capture), the OOM fallback, and threads."""
import concurrent.futures

import numpy
import pytest

import cudnnconv
import reference as ref

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")

from cudnnconv import engine_registry  # noqa: E402

graph = engine_registry.graph
if graph is None:  # pragma: no cover
    pytest.skip("this build has no graph engine", allow_module_level=True)
HAVE_LEGACY = engine_registry.legacy is not None

# (id, x shape, w shape, kwargs)
CASES = [
    ("1d", (2, 6, 19), (8, 6, 3), dict(stride=2, padding=1)),
    ("2d", (2, 8, 12, 11), (16, 8, 3, 3), dict(padding=1)),
    ("2d_dil_g2", (2, 8, 13, 12), (12, 4, 3, 3), dict(padding=2, dilation=2, groups=2)),
    ("2d_depthwise", (2, 16, 10, 10), (16, 1, 3, 3), dict(padding=1, groups=16)),
    ("3d", (2, 4, 6, 7, 8), (8, 4, 3, 3, 3), dict(stride=2, padding=1)),
]
DTYPE_LAYOUT = [("float16", "channels_last", True), ("float32", "nchw", False), ("float32", "nchw", True),
                ("bfloat16", "channels_last", True), ("float64", "nchw", False)]


def _tol(dtype, tf32):
    return ref.tolerance(dtype, tf32)


def _check(out, expect, dtype, tf32=False):
    err = ref.rel_error(out, expect)
    assert err < _tol(dtype, tf32), err


def _graph_ran(fn):
    rec = cudnnconv.last_call()
    assert rec["engine"] == "graph", rec
    return rec


@pytest.mark.parametrize("dtype,layout,tf32", DTYPE_LAYOUT, ids=lambda v: str(v))
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_directions_match_reference_and_legacy(case, dtype, layout, tf32):
    _, xs, wsh, kw = case
    x = ref.random(xs, dtype, layout)
    w = ref.random(wsh, dtype, layout)
    flags = dict(allow_tf32=tf32, engine="graph")
    y = cudnnconv.conv(x, w, **kw, **flags)
    rec = _graph_ran("conv")
    assert rec["choices"][0]["tag"].startswith("eng")
    ey = ref.conv(x, w, **kw)
    _check(y, ey, dtype, tf32)
    gy = ref.random(ey.shape, dtype, layout)
    gx = cudnnconv.conv_backward_input(xs, w, gy, **kw, **flags)
    _graph_ran("bi")
    _check(gx, ref.conv_backward_input(xs, w, gy, **kw), dtype, tf32)
    gw = cudnnconv.conv_backward_weight(x, wsh, gy, **kw, **flags)
    _graph_ran("bw")
    _check(gw, ref.conv_backward_weight(x, wsh, gy, **kw), dtype, tf32)
    if HAVE_LEGACY:
        y2 = cudnnconv.conv(x, w, **kw, allow_tf32=tf32, engine="legacy")
        assert ref.rel_error(y2, y.astype(numpy.float64)) < 2 * _tol(dtype, tf32)


@pytest.mark.parametrize("dtype,layout", [("float16", "channels_last"), ("float32", "nchw"),
                                          ("bfloat16", "channels_last")])
def test_transposed_and_fused(dtype, layout):
    x = ref.random((2, 8, 9, 9), dtype, layout)
    w = ref.random((8, 4, 3, 3), dtype, layout)
    y = cudnnconv.conv_transpose(x, w, stride=2, padding=1, output_padding=1, engine="graph", allow_tf32=False)
    _graph_ran("t")
    _check(y, ref.conv_transpose(x, w, stride=2, padding=1, output_padding=1), dtype)
    # output_padding beyond the padding: the post-padding the graph needs is negative
    y = cudnnconv.conv_transpose(x, w, stride=2, padding=0, output_padding=1, engine="graph", allow_tf32=False)
    _graph_ran("t")
    _check(y, ref.conv_transpose(x, w, stride=2, padding=0, output_padding=1), dtype)
    x = ref.random((2, 16, 10, 10), dtype, layout)
    w = ref.random((16, 16, 3, 3), dtype, layout)
    z = ref.random((2, 16, 10, 10), dtype, layout)
    b = ref.random((16,), dtype)
    for alpha in (1.0, 0.5):
        out = cudnnconv.conv_bias_add_relu(x, w, z, alpha, b, padding=1, engine="graph", allow_tf32=False)
        rec = cudnnconv.last_call()
        assert rec["engine"] == "graph"
        _check(out, ref.conv_bias_add_relu(x, w, z, alpha, b, padding=1), dtype)
    if dtype == "float16":
        assert rec["path"] == "fused", rec


def test_deterministic_gives_bitwise_repeats():
    x = ref.random((4, 16, 14, 14), "float16", "channels_last")
    gy = ref.random((4, 16, 14, 14), "float16", "channels_last")
    w = ref.random((16, 4, 3, 3), "float16", "channels_last")
    outs = []
    for _ in range(3):
        gx = cudnnconv.conv_backward_input(x.shape, w, gy, padding=1, groups=4, deterministic=True, engine="graph")
        cupy.cuda.get_current_stream().synchronize()
        gw = cudnnconv.conv_backward_weight(x, w.shape, gy, padding=1, groups=4, deterministic=True,
                                            engine="graph")
        assert all(c["deterministic"] for c in cudnnconv.last_call()["choices"])
        outs.append((ref.bits(gx), ref.bits(gw), cudnnconv.last_call()["choices"]))
    for a in outs[1:]:
        assert bool((a[0] == outs[0][0]).all()), ("dgrad", outs[0][2], a[2])
        assert bool((a[1] == outs[0][1]).all()), ("wgrad", outs[0][2], a[2])


def test_tf32_filter_keeps_fp32_accuracy():
    x = ref.random((4, 32, 16, 16), "float32")
    w = ref.random((32, 32, 3, 3), "float32")
    expect = ref.conv(x, w, padding=1)
    y = cudnnconv.conv(x, w, padding=1, allow_tf32=False, engine="graph")
    notes = cudnnconv.last_call()["choices"][0]["numerical_notes"]
    assert "TENSOR_CORE" not in notes
    assert ref.rel_error(y, expect) < 1e-5
    y = cudnnconv.conv(x, w, padding=1, allow_tf32=False, benchmark=True, engine="graph")
    assert ref.rel_error(y, expect) < 1e-5
    y = cudnnconv.conv(x, w, padding=1, allow_tf32=True, engine="graph")
    assert ref.rel_error(y, expect) < ref.TF32_TOLERANCE


def test_benchmark_times_plans_and_caches_them():
    x = ref.random((8, 32, 16, 16), "float16", "channels_last")
    w = ref.random((32, 32, 3, 3), "float16", "channels_last")
    cudnnconv.clear_cache()
    cudnnconv.conv(x, w, padding=1, benchmark=True, engine="graph")
    c = cudnnconv.last_call()["choices"][0]
    assert c["benchmarked"] and c["how"] == "benchmark" and c["time_ms"] > 0
    before = cudnnconv.cache_info()["graph"]
    y = cudnnconv.conv(x, w, padding=1, benchmark=True, engine="graph")
    after = cudnnconv.cache_info()["graph"]
    assert after.hits == before.hits + 1 and after.size == before.size
    _check(y, ref.conv(x, w, padding=1), "float16")


def test_cached_hit_reuses_variant_pack():
    x = ref.random((2, 8, 10, 10), "float32")
    w = ref.random((8, 8, 3, 3), "float32")
    y1 = cudnnconv.conv(x, w, padding=1, engine="graph")
    y2 = cudnnconv.conv(x, w, padding=1, engine="graph", out=y1)   # same pointers: the pack is reused
    _check(y2, ref.conv(x, w, padding=1), "float32", True)


def test_cuda_graph_capture_and_replay():
    x = ref.random((4, 16, 12, 12), "float16", "channels_last")
    w = ref.random((16, 16, 3, 3), "float16", "channels_last")
    out = ref.poisoned((4, 16, 12, 12), "float16", "channels_last")
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        cudnnconv.conv(x, w, padding=1, out=out, engine="graph")      # warm-up: search and cache
        stream.synchronize()
        ref.capture_then_launch(stream, lambda: cudnnconv.conv(x, w, padding=1, out=out, engine="graph"), out, x,
                                "float16", "channels_last")
    _check(out, ref.conv(x, w, padding=1), "float16")


def test_uncached_call_during_capture_raises_capture_error():
    x = ref.random((3, 5, 7, 7), "float32")
    w = ref.random((6, 5, 3, 3), "float32")
    cudnnconv.conv(x[:1], w, engine="graph")                            # warm up other state
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        try:
            with pytest.raises(cudnnconv.CaptureError, match="[Ww]arm up"):
                cudnnconv.conv(x, w, padding=2, dilation=2, engine="graph")
        finally:
            stream.end_capture()


def test_oom_fallback_under_pool_limit():
    x = ref.random((8, 64, 32, 32), "float32")
    w = ref.random((64, 64, 5, 5), "float32")
    expect = ref.conv(x, w, padding=2)
    y = cupy.empty(expect.shape, dtype=numpy.float32)
    cupy.cuda.get_current_stream().synchronize()
    cudnnconv.clear_cache()
    # A fresh pool with a 4 KiB limit serves the workspace: every config that
    # needs more runs out of memory and the search moves on.
    pool = cupy.cuda.MemoryPool()
    pool.set_limit(size=4096)
    cupy.cuda.set_allocator(pool.malloc)
    try:
        cudnnconv.conv(x, w, padding=2, out=y, benchmark=False, allow_tf32=False, engine="graph")
        c = cudnnconv.last_call()["choices"][0]
    finally:
        cupy.cuda.set_allocator(cupy.get_default_memory_pool().malloc)
    assert c["workspace"] <= 4096, c
    _check(y, expect, "float32")
    y.fill(float("nan"))
    cudnnconv.conv(x, w, padding=2, out=y, allow_tf32=False, engine="graph")      # the cached plan, default pool
    _check(y, expect, "float32")
    cudnnconv.clear_cache()


def test_threads_match_serial():
    shapes = [((2, 8, 9, 9), (8, 8, 3, 3)), ((1, 4, 12, 10), (6, 4, 1, 1)), ((3, 6, 8, 8), (6, 3, 3, 3)),
              ((2, 4, 17), (4, 4, 5))]
    data = []
    for i, (xs, wsh) in enumerate(shapes):
        g = 2 if wsh[1] * 2 == xs[1] else 1
        x = ref.random(xs, "float32")
        w = ref.random(wsh, "float32")
        y = cudnnconv.conv(x, w, padding=1, groups=g, deterministic=True, allow_tf32=False, engine="graph")
        cupy.cuda.get_current_stream().synchronize()
        data.append((x, w, g, ref.bits(y).copy()))

    def work(t):
        bad = 0
        for i in range(200):
            x, w, g, want = data[(i + t) % len(data)]
            y = cudnnconv.conv(x, w, padding=1, groups=g, deterministic=True, allow_tf32=False, engine="graph")
            cupy.cuda.get_current_stream().synchronize()
            bad += int(not bool((ref.bits(y) == want).all()))
        return bad

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        assert sum(ex.map(work, range(8))) == 0


def test_auto_engine_uses_graph():
    x = ref.random((2, 8, 10, 10), "float16", "channels_last")
    w = ref.random((8, 8, 3, 3), "float16", "channels_last")
    cudnnconv.conv(x, w, padding=1, engine="auto")
    assert cudnnconv.last_call()["engine"] == "graph"
