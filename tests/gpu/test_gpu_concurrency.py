"""Threads on a GPU: 16 threads x 1,000 calls, mixed functions, shapes, dtypes, layouts and
engines, while other threads call ``clear_cache()``, ``save_tuning()`` and ``load_tuning()``; the
workers take their flags from ``flags()`` blocks (so one thread's flags reaching another would
change its results) and save the tuning file now and then (so that graph records, which live in
per-thread caches, go through the file too).

- Deterministic calls (deterministic=True, benchmark off: every thread's search picks the same
  deterministic choice) give results bitwise equal to the same calls made serially first.
- Benchmarked calls (searches racing each other) agree with the float64 reference within the
  dtype's tolerance.
- No deadlock: every join has a timeout.  The choice caches stay within their bounds, with no
  negative count, and the tuning file stays valid JSON that loads.
"""
import json
import random
import threading

import pytest

import cudnnconv
import reference as ref
from conftest import run_threads
from cudnnconv import engine_registry, tuning

pytestmark = [pytest.mark.gpu, pytest.mark.stress]

cupy = pytest.importorskip("cupy")

WORKERS, CALLS, JOIN_S = 16, 1000, 300
ENGINES = cudnnconv.build_info()["engines"] + ["auto"]


def _problems():
    """[(name, dtype, call(engine, **flags) -> result, float64 reference)] on fixed inputs."""
    out = []

    def add(name, dtype, call, want):
        out.append((name, dtype, call, want))

    for dtype, layout in (("float32", "nchw"), ("float16", "channels_last")):
        x, w = ref.random((2, 8, 10, 9), dtype, layout), ref.random((16, 8, 3, 3), dtype, layout, scale=0.3)
        gy = ref.random((2, 16, 10, 9), dtype, layout)
        z, b = ref.random((2, 16, 10, 9), dtype, layout), ref.random((16,), dtype)
        xt, wt = ref.random((2, 8, 5, 6), dtype, layout), ref.random((8, 4, 3, 3), dtype, layout, scale=0.3)
        x1, w1 = ref.random((2, 4, 17), dtype), ref.random((6, 2, 3), dtype, scale=0.3)
        add("conv %s %s" % (dtype, layout), dtype,
            lambda e, x=x, w=w, **f: cudnnconv.conv(x, w, padding=1, engine=e, **f), ref.conv(x, w, padding=1))
        add("dgrad %s %s" % (dtype, layout), dtype,
            lambda e, w=w, gy=gy, **f: cudnnconv.conv_backward_input((2, 8, 10, 9), w, gy, padding=1, engine=e, **f),
            ref.conv_backward_input((2, 8, 10, 9), w, gy, padding=1))
        add("wgrad %s %s" % (dtype, layout), dtype,
            lambda e, x=x, gy=gy, **f: cudnnconv.conv_backward_weight(x, (16, 8, 3, 3), gy, padding=1, engine=e,
                                                                     **f),
            ref.conv_backward_weight(x, (16, 8, 3, 3), gy, padding=1))
        add("transpose %s %s" % (dtype, layout), dtype,
            lambda e, xt=xt, wt=wt, **f: cudnnconv.conv_transpose(xt, wt, stride=2, padding=1, output_padding=1,
                                                                 engine=e, **f),
            ref.conv_transpose(xt, wt, stride=2, padding=1, output_padding=1))
        add("fused %s %s" % (dtype, layout), dtype,
            lambda e, x=x, w=w, z=z, b=b, **f: cudnnconv.conv_bias_add_relu(x, w, z, 0.5, b, padding=1, engine=e,
                                                                           **f),
            ref.conv_bias_add_relu(x, w, z, 0.5, b, padding=1))
        add("conv1d %s" % dtype, dtype,
            lambda e, x1=x1, w1=w1, **f: cudnnconv.conv(x1, w1, stride=2, groups=2, engine=e, **f),
            ref.conv(x1, w1, stride=2, groups=2))
    return out


DETERMINISTIC = dict(deterministic=True, benchmark=False, allow_tf32=False)
BENCHMARK = dict(benchmark=True, allow_tf32=False)
BENCH_SHARE, CLEAR_EVERY_S, SAVE_EVERY = 0.05, 1.0, 250


def test_sixteen_threads_match_serial_runs_under_cache_and_tuning_traffic(tmp_path):
    problems = _problems()
    cases = [(p, e) for p in range(len(problems)) for e in ENGINES]
    serial = {}
    for p, e in cases:                                # the serial runs: every case, deterministic
        with cudnnconv.flags(**DETERMINISTIC):
            y = problems[p][2](e)
        assert ref.rel_error(y, problems[p][3]) <= ref.tolerance(problems[p][1]), (problems[p][0], e)
        serial[p, e] = ref.bits(y).copy()
    cupy.cuda.runtime.deviceSynchronize()
    path, errors, done = tmp_path / "tuning.json", [], threading.Event()
    counts = []                                         # per thread: (deterministic calls, benchmarked calls)

    def worker(seed):
        rng, det, ben = random.Random(seed), 0, 0
        try:
            for i in range(CALLS):
                p, e = cases[rng.randrange(len(cases))]
                name, dtype, call, want = problems[p]
                bench = rng.random() < BENCH_SHARE
                with cudnnconv.flags(**(BENCHMARK if bench else DETERMINISTIC)):
                    y = call(e)                     # the flags come from this thread's block only
                if i % SAVE_EVERY == SAVE_EVERY - 1:
                    tuning.save_tuning(path)        # this thread's graph records too
                if bench:
                    err = ref.rel_error(y, want)
                    if not err <= ref.tolerance(dtype):
                        errors.append("thread %d call %d %s on %s (benchmark): error %.3g" % (seed, i, name, e, err))
                    ben += 1
                else:
                    if not bool((ref.bits(y) == serial[p, e]).all()):
                        errors.append("thread %d call %d %s on %s: not bitwise equal to the serial run"
                                      % (seed, i, name, e))
                    det += 1
        except Exception as ex:                         # noqa: BLE001 - every surprise is a failure
            errors.append("thread %d: %s: %s" % (seed, type(ex).__name__, ex))
        counts.append((det, ben))

    def disturber(kind):
        try:
            while not done.wait(CLEAR_EVERY_S if kind == "clear" else 0.05):
                if kind == "clear":
                    cudnnconv.clear_cache()
                elif kind == "save":
                    tuning.save_tuning(path)
                else:
                    cudnnconv.load_tuning(path)
        except Exception as ex:                         # noqa: BLE001
            errors.append("%s: %s: %s" % (kind, type(ex).__name__, ex))

    settings = cudnnconv.benchmark_settings()
    cudnnconv.benchmark_settings(repeats=1, warmup=0)  # searches racing each other, not timing
    try:
        run_threads(worker, WORKERS, disturber, ("clear", "save", "load"), done, JOIN_S)
    finally:
        cudnnconv.benchmark_settings(**settings)
    assert not errors, errors[:10]
    assert sum(d + b for d, b in counts) == WORKERS * CALLS and all(b for _, b in counts)
    for name, info in cudnnconv.cache_info().items():
        assert info.hits >= 0 and info.misses >= 0, name
    caches = list(engine_registry.graph.CACHE._all()) if engine_registry.graph is not None else []
    caches += [engine_registry.legacy.CACHE] if engine_registry.legacy is not None else []
    for c in caches:                                    # the graph engine's bound is per thread
        info = c.info()
        assert info.maxsize is None or info.size <= info.maxsize, c.name
    tuning.save_tuning(path)
    json.loads(path.read_text())                        # still a valid file
    cudnnconv.load_tuning(path)
