"""Threads, without a GPU: 16 worker threads x 1,000 calls of the public
functions (valid and invalid, mixed functions, shapes, flags and engines,
inside and outside ``flags()`` blocks), while other threads call
``clear_cache()``, ``save_tuning()`` and ``load_tuning()`` and fill the
legacy choice cache.

What must hold: every call raises exactly what it raises alone (a valid
call ``CudaUnavailableError``, an invalid one its ``ValueError`` or
``TypeError``); a thread's flags are its own inside its blocks whatever the
others do; no deadlock (every join has a timeout); the cache's statistics
are consistent (size within its bound, hits and misses never negative); and
the tuning file stays valid JSON that loads.  (The GPU-side proof, results
equal to serial runs, needs a GPU.)
"""
import json
import random
import threading

import pytest

import cudnnconv
from cudnnconv import engine_registry, options, params, tuning
from conftest import FakeCudaArray, isolated_tuning, run_threads

pytest.importorskip("cudnnconv.engines.legacy", reason="this build has no legacy engine (CUDNNCONV_LEGACY_API=0)")
from cudnnconv.engines.legacy import LegacyChoice  # noqa: E402

pytestmark = pytest.mark.skipif(cudnnconv.cuda_available(),
                                reason="a CUDA device is usable here: a valid call would run (on fake pointers)")

WORKERS, CALLS, JOIN_S = 16, 1000, 120
ENV = {"cudnn_version": 91900, "gpu_name": "Fake GPU 80GB", "compute_capability": [9, 0], "sm_count": 132,
       "cache_format": tuning.CACHE_FORMAT}


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    yield from isolated_tuning(monkeypatch, ENV)


def _calls():
    """(function, args, kwargs, the exception it must raise): valid and invalid, every function."""
    x, w = FakeCudaArray((2, 4, 8, 8)), FakeCudaArray((6, 4, 3, 3))
    x1, w1 = FakeCudaArray((2, 4, 9)), FakeCudaArray((6, 2, 3))
    gy = FakeCudaArray((2, 6, 8, 8))
    z = FakeCudaArray((2, 6, 8, 8))
    ok = cudnnconv.CudaUnavailableError
    return [
        (cudnnconv.conv, (x, w), dict(padding=1), ok),
        (cudnnconv.conv, (x1, w1), dict(groups=2, stride=2), ok),
        (cudnnconv.conv, (x, w), dict(padding=1, engine="legacy", benchmark=True), ok),
        (cudnnconv.conv_backward_input, ((2, 4, 8, 8), w, gy), dict(padding=1), ok),
        (cudnnconv.conv_backward_weight, (x, (6, 4, 3, 3), gy), dict(padding=1, deterministic=True), ok),
        (cudnnconv.conv_transpose, (FakeCudaArray((2, 6, 8, 8)), FakeCudaArray((6, 4, 3, 3))), dict(padding=1), ok),
        (cudnnconv.conv_bias_add_relu, (x, w, z, 0.5, None), dict(padding=1), ok),
        (cudnnconv.conv, (x, FakeCudaArray((6, 3, 3, 3))), {}, ValueError),             # channels
        (cudnnconv.conv, (x, w), dict(stride=0), ValueError),
        (cudnnconv.conv, (x, w), dict(benchmark="yes"), TypeError),
        (cudnnconv.conv, (None, w), {}, TypeError),
        (cudnnconv.conv_backward_input, ((2, 4, 8, 8), w, FakeCudaArray((2, 6, 7, 7))), dict(padding=1), ValueError),
    ]


def test_sixteen_threads_of_calls_with_cache_and_tuning_traffic(tmp_path):
    calls, path = _calls(), tmp_path / "tuning.json"
    errors, done = [], threading.Event()
    cache = engine_registry.legacy.CACHE

    def worker(seed):
        rng = random.Random(seed)
        try:
            for i in range(CALLS):
                fn, args, kw, want = calls[rng.randrange(len(calls))]
                mine = options.Options(rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.5,
                                       rng.choice((None, 1 << 20)), rng.choice(("auto", "legacy", "graph")))
                with cudnnconv.flags(*mine):
                    if options.current() != mine:
                        errors.append("thread %d call %d: flags %s, set %s" % (seed, i, options.current(), mine))
                    try:
                        fn(*args, **kw)
                    except want:
                        pass
                    except cudnnconv.EngineUnavailable:
                        pass                    # engine='graph'/'legacy' where this build lacks it
                    except Exception as e:      # noqa: BLE001 - every surprise is a failure
                        errors.append("thread %d %s%r: %s: %s" % (seed, fn.__name__, kw, type(e).__name__, e))
                if options.current() != options.Options(False, False, True, None, "auto"):
                    errors.append("thread %d: flags leaked out of the block" % seed)
        except Exception as e:                  # noqa: BLE001
            errors.append("thread %d died: %r" % (seed, e))

    def disturber(kind):
        rng, n = random.Random(kind), 0
        try:
            while not done.is_set():
                n += 1
                if kind == "clear":
                    cudnnconv.clear_cache()
                elif kind == "fill":
                    k = params.ProblemKey("forward", "legacy", 0, 0, (8, 64, 56 + rng.randrange(50), 56),
                                          (64, 64, 3, 3), "NCHW", (1, 1), (1, 1), (1, 1), 1, False, True, None, ())
                    cache.put(k, LegacyChoice("forward", 1, 0, 1024, 0.05, True, True))
                    cache.get(k)
                elif kind == "save":
                    tuning.save_tuning(path)
                else:
                    cudnnconv.load_tuning(path)
        except Exception as e:                  # noqa: BLE001
            errors.append("%s died after %d rounds: %r" % (kind, n, e))

    run_threads(worker, WORKERS, disturber, ("clear", "fill", "save", "load"), done, JOIN_S)
    assert not errors, errors[:10]
    info = cache.info()
    assert 0 <= info.size <= (info.maxsize if info.maxsize is not None else info.size)
    assert info.hits >= 0 and info.misses >= 0
    tuning.save_tuning(path)
    doc = json.loads(path.read_text())                       # still a valid file
    cache.clear()
    assert cudnnconv.load_tuning(path) == len(cache) == len(doc["entries"])
