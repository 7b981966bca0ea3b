"""Two-GPU correctness run (issue 7): one script, one device call on a machine
with two GPUs, e.g.  ``bash -c 'python3 setup.py build_ext --inplace -j 32 &&
PYTHONPATH=pyx python3 tools/two_gpu_check.py --out $OUT'``.

It checks, on devices 0 and 1:
  1. every public function, with every engine in the build, against a float64
     reference (tests/gpu/reference.py) on fresh random data, the result on
     the input's device;
  2. two threads, one bound to each GPU, 500 calls each over mixed shapes at
     the same time, equal to serial runs; the cache holds one entry per
     (device, key);
  3. inputs on different devices raise ValueError (never a crash, never a copy);
  4. two processes, one per GPU, sharing one tuning-cache file lose no entries.
NVLink multicast stays off: the variables below are set before anything
CUDA-related is imported, and nothing here uses multicast.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading

for _k, _v in (("NCCL_NVLS_ENABLE", "0"), ("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1"), ("NVSHMEM_DISABLE_NVLS", "1")):
    os.environ[_k] = _v

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "gpu"))

import cupy  # noqa: E402
import numpy  # noqa: E402

import cudnnconv  # noqa: E402
import reference  # noqa: E402

SHAPES = [((4, 8, 16, 16), (16, 8, 3, 3), 1, 1), ((2, 16, 9, 9), (16, 4, 3, 3), 2, 4),
          ((2, 8, 32), (8, 8, 5), 1, 2), ((1, 4, 6, 6, 6), (8, 4, 3, 3, 3), 1, 1)]


def rel(a, b):
    a, b = cupy.asarray(a, dtype=cupy.float64), cupy.asarray(b, dtype=cupy.float64)
    return float(cupy.linalg.norm((a - b).ravel()) / max(float(cupy.linalg.norm(b.ravel())), 1e-30))


def check_functions(dev, engine, results):
    with cupy.cuda.Device(dev):
        rng = cupy.random.default_rng(1234 + dev)
        for xs, ws, stride, pad in SHAPES:
            groups = xs[1] // ws[1]
            x = rng.standard_normal(xs, dtype=cupy.float64).astype(cupy.float32)
            w = rng.standard_normal(ws, dtype=cupy.float64).astype(cupy.float32)
            kw = dict(stride=stride, padding=pad, groups=groups, allow_tf32=False, engine=engine)
            y = cudnnconv.conv(x, w, **kw)
            ok = y.device.id == dev and rel(y, reference.conv(x, w, None, stride, pad, 1, groups)) < 1e-5
            g = rng.standard_normal(y.shape, dtype=cupy.float64).astype(cupy.float32)
            gx = cudnnconv.conv_backward_input(x.shape, w, g, **kw)
            ok &= gx.device.id == dev and rel(gx, reference.conv_backward_input(x.shape, w, g, stride, pad, 1,
                                                                                 groups)) < 1e-5
            gw = cudnnconv.conv_backward_weight(x, w.shape, g, **kw)
            ok &= gw.device.id == dev and rel(gw, reference.conv_backward_weight(x, w.shape, g, stride, pad, 1,
                                                                                  groups)) < 1e-4
            # conv_transpose: weight (C_in, C_out/groups, *k); here C_in = K of the forward weight.
            wt = rng.standard_normal((ws[0], ws[1]) + ws[2:], dtype=cupy.float64).astype(cupy.float32)
            yt = cudnnconv.conv_transpose(g, wt, stride=stride, padding=pad, groups=groups, allow_tf32=False,
                                          engine=engine)
            ok &= yt.device.id == dev and rel(yt, reference.conv_transpose(g, wt, None, stride, pad, 0, groups,
                                                                           1)) < 1e-5
            z = rng.standard_normal(y.shape, dtype=cupy.float64).astype(cupy.float32)
            b = rng.standard_normal((ws[0],), dtype=cupy.float64).astype(cupy.float32)
            yf = cudnnconv.conv_bias_add_relu(x, w, z, 0.5, b, **kw)
            ok &= yf.device.id == dev and rel(yf, reference.conv_bias_add_relu(x, w, z, 0.5, b, stride, pad, 1,
                                                                               groups)) < 1e-5
            results.append(("functions", dev, engine, xs, bool(ok)))


def thread_worker(dev, engine, n, out):
    with cupy.cuda.Device(dev):
        rng = cupy.random.default_rng(99)
        arrays = []
        for xs, ws, stride, pad in SHAPES:
            arrays.append((rng.standard_normal(xs, dtype=cupy.float64).astype(cupy.float32),
                           rng.standard_normal(ws, dtype=cupy.float64).astype(cupy.float32), stride, pad))
        res = []
        for i in range(n):
            x, w, stride, pad = arrays[i % len(arrays)]
            y = cudnnconv.conv(x, w, stride=stride, padding=pad, groups=x.shape[1] // w.shape[1],
                               allow_tf32=False, deterministic=True, engine=engine)
            res.append(cupy.asnumpy(y) if i < len(arrays) else float(y.sum()))
        cupy.cuda.Device(dev).synchronize()
        out[dev] = res
        if engine == "graph":        # this thread's own plan cache (freed when the thread ends)
            from cudnnconv import engine_registry
            out[("keys", dev)] = [k for k, _ in engine_registry.graph.CACHE.local().items()]


def _cache_keys(engine):
    """The keys of each of the engine's caches (the graph engine keeps one per thread)."""
    from cudnnconv import engine_registry
    mod = engine_registry.legacy if engine == "legacy" else engine_registry.graph
    caches = mod.CACHE._all() if engine == "graph" else [mod.CACHE]
    return [[k for k, _ in c.items()] for c in caches]


def check_threads(engine, results):
    cudnnconv.clear_cache()
    serial = {}
    for dev in (0, 1):
        thread_worker(dev, engine, len(SHAPES), serial)
    par = {}
    ts = [threading.Thread(target=thread_worker, args=(dev, engine, 500, par)) for dev in (0, 1)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ok = all(numpy.array_equal(a, b) for dev in (0, 1) for a, b in zip(serial[dev], par[dev][:len(SHAPES)]))
    # One entry per (device, key): in every cache, each device has either none or one per shape, and
    # together the caches hold exactly len(SHAPES) problems on each of the two devices.
    per_cache = _cache_keys(engine) + [par[("keys", dev)] for dev in (0, 1) if ("keys", dev) in par]
    every = set()
    for keys in per_cache:
        assert len(keys) == len(set(keys))
        for dev in (0, 1):
            n = sum(1 for k in keys if k.device == dev)
            ok &= n in (0, len(SHAPES))
        every.update(keys)
    ok &= len(every) == 2 * len(SHAPES) and {k.device for k in every} == {0, 1}
    results.append(("threads", engine, bool(ok), "caches %s, distinct (device, key) %d; %r"
                    % ([len(k) for k in per_cache], len(every), cudnnconv.cache_info())))


def check_cross_device(results):
    with cupy.cuda.Device(0):
        x = cupy.ones((1, 2, 5, 5), cupy.float32)
    with cupy.cuda.Device(1):
        w = cupy.ones((2, 2, 3, 3), cupy.float32)
    try:
        cudnnconv.conv(x, w)
        results.append(("cross_device", False, "no error"))
    except ValueError as e:
        results.append(("cross_device", "device" in str(e), str(e)))


def check_shared_tuning_file(results):
    path = os.path.join(tempfile.mkdtemp(), "tuning.json")
    code = ("import cupy, cudnnconv; cupy.cuda.Device(%d).use(); "
            "[cudnnconv.conv(cupy.ones((1, c, 8, 8), cupy.float32), cupy.ones((4, c, 3, 3), cupy.float32), "
            "benchmark=True) for c in range(1, 9)]")
    env = dict(os.environ, CUDNNCONV_TUNING_CACHE=path)
    procs = [subprocess.Popen([sys.executable, "-c", code % dev], env=env) for dev in (0, 1)]
    rcs = [p.wait() for p in procs]
    n = len(json.load(open(path)).get("entries", [])) if os.path.exists(path) else 0
    results.append(("shared_tuning_file", rcs == [0, 0] and n >= 16, "entries=%d rcs=%s" % (n, rcs)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    if cupy.cuda.runtime.getDeviceCount() < 2:
        print("two_gpu_check: needs 2 GPUs, found %d" % cupy.cuda.runtime.getDeviceCount())
        return 2
    results = []
    for engine in cudnnconv.build_info()["engines"]:
        for dev in (0, 1):
            check_functions(dev, engine, results)
        check_threads(engine, results)
    check_cross_device(results)
    check_shared_tuning_file(results)
    passed = sum(1 for r in results if (r[-1] if isinstance(r[-1], bool) else r[-2]) is True)
    failed = len(results) - passed
    with open(os.path.join(args.out, "two_gpu_check.json"), "w") as f:
        json.dump([list(map(str, r)) for r in results], f, indent=1)
    for r in results:
        print(r)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
