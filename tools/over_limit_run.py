"""A real run of one sample over 2**31 elements, in every direction, on the default build.

    PYTHONPATH=pyx python3 tools/over_limit_run.py OUT.json [--depth 80] [--engine graph]

The sample is the 3D volume that motivates spatial tiling: 1 x 32 channels x D x 1024 x 1024, fp16,
channels-last (D = 80: 2.68e9 elements per tensor, over cuDNN's 2**31 - 1), a 3x3x3 convolution
32 -> 32 with padding 1.  Each direction runs once into an output poisoned with NaN, and is checked:

- every output element was written (no NaN left anywhere in the output);
- crops of the output against the float64 reference of tests/gpu/reference.py, computed on the
  matching input crop with its halo (the crops straddle each tile boundary, and include both ends
  and both edges of every dim);
- the weight gradient, against a float64 reference summed over slabs of the depth dim (each slab
  with its halo rows), i.e. over the whole tensor.

Throughput: each direction is then timed (CUDA events, median of 10 after two warm-up calls) against the
same convolution on a sample just under the limit (the largest depth that is not tiled), and the
ratio of elements per second is reported (tiled / untiled; the target is >= 0.9).  Memory: about
50 GB of device memory at D = 80.
"""
import argparse
import json
import os
import sys
import time

import cupy

import cudnnconv
from cudnnconv.demo import _time_ms

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "gpu"))
import reference as ref  # noqa: E402

C, HW, K = 32, 1024, 3
PAD = 1


def volume(d, rng):
    """A (1, C, d, HW, HW) fp16 channels-last array of standard-normal values."""
    a = cupy.empty((1, d, HW, HW, C), dtype=cupy.float16)
    for i in range(d):                                   # a depth row at a time: small temporaries
        a[:, i] = rng.standard_normal((1, HW, HW, C), dtype=cupy.float32).astype(cupy.float16)
    return a.transpose(0, 4, 1, 2, 3)


def poisoned(shape):
    return ref.poisoned(shape, "float16", "channels_last")


def crop_with_halo(a, region):
    """(a's crop that output ``region`` (one (lo, hi) per spatial dim) reads, its per-dim pads)
    for a 3-wide kernel, stride 1, padding PAD."""
    index, pads = [slice(None), slice(None)], []
    for (lo, hi), n in zip(region, a.shape[2:]):
        a_lo, a_hi = lo - PAD, hi - PAD + K - 1
        index.append(slice(max(a_lo, 0), min(a_hi, n)))
        pads.append((max(0, -a_lo), max(0, a_hi - n)))
    return a[tuple(index)], pads


def regions(d, tiles):
    """Output crops: around each tile boundary along depth, and at both ends, each with corner and
    interior windows in height and width."""
    bounds = sorted({0, d - 2} | {b - 1 for b in tiles if 0 < b < d})
    hw = [(0, 16), (HW // 2 - 8, HW // 2 + 8), (HW - 16, HW)]
    return [((b, min(b + 2, d)), h, w) for b in bounds for h in hw for w in (hw[0], hw[2])]


def check_crops(name, out, src, w, d, tiles):
    worst = 0.0
    for reg in regions(d, tiles):
        crop, pads = crop_with_halo(src, reg)
        expect = ref.conv(crop, w, None, padding=pads)
        got = out[(slice(None), slice(None)) + tuple(slice(lo, hi) for lo, hi in reg)]
        worst = max(worst, ref.rel_error(got, expect))
    return worst


def wgrad_reference(x, gy, w_shape, slab=8):
    d = x.shape[2]
    acc = cupy.zeros(w_shape, dtype=cupy.float64)
    for j0 in range(0, d, slab):
        j1 = min(j0 + slab, d)
        lo, hi = j0 - PAD, j1 - PAD + K - 1
        xs = x[:, :, max(lo, 0):min(hi, d)]
        pads = [(max(0, -lo), max(0, hi - d)), (PAD, PAD), (PAD, PAD)]
        acc += ref.conv_backward_weight(xs, w_shape, gy[:, :, j0:j1], padding=pads)
    return acc


def timed(fn):
    """ms of one call, by CUDA events: the median of 10 after two warm-up calls (the demo's timer)."""
    return _time_ms(cupy, fn, warmup=2, repeats=10)


def tiles_of_last_call():
    return len(cudnnconv.last_call()["choices"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--depth", type=int, default=80)
    p.add_argument("--engine", default="graph")
    a = p.parse_args()
    limit = cudnnconv.build_info()["CUDNNCONV_INDEX_LIMIT"]
    d = a.depth
    under = (limit - 1) // (C * HW * HW)                 # the deepest sample that is not tiled
    res = {"shape": [1, C, d, HW, HW], "elements": C * d * HW * HW, "limit": limit, "under_depth": under,
           "engine": a.engine, "dtype": "float16", "layout": "channels_last", "kernel": [K] * 3, "padding": PAD,
           "cupy": cupy.__version__, "cudnnconv": cudnnconv.__version__,
           "device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
           "date": time.strftime("%Y-%m-%d")}
    kw = dict(padding=PAD, engine=a.engine)
    rng = cupy.random.default_rng(0)
    t0 = time.time()
    x = volume(d, rng)
    w = (rng.standard_normal((C, C, K, K, K), dtype=cupy.float32) / (C * 27) ** 0.5).astype(cupy.float16)
    w = cupy.ascontiguousarray(w.transpose(0, 2, 3, 4, 1)).transpose(0, 4, 1, 2, 3)
    # tile starts along depth, from the plan the call makes (for the crops that straddle them)
    from cudnnconv import tiled_calls
    from cudnnconv.params import Geometry
    plan = tiled_calls.plan(x.shape, w.shape, Geometry(3, (1,) * 3, (PAD,) * 3, (1,) * 3, 1, (0,) * 3), None)
    starts = sorted({t.out_lo[0] for t in plan.tiles}) if tiled_calls.is_tiled(plan) else []
    res["tile_starts_depth"] = starts

    y = cudnnconv.conv(x, w, out=poisoned((1, C, d, HW, HW)), **kw)
    res["forward"] = {"tiles": tiles_of_last_call(), "nan_left": int(cupy.isnan(y).sum()),
                      "crop_rel_error": check_crops("forward", y, x, w, d, starts)}
    print("forward", res["forward"], flush=True)
    gy = volume(d, rng)
    gx = cudnnconv.conv_backward_input(x.shape, w, gy, out=poisoned(x.shape), **kw)
    # the input gradient is the convolution of grad_output with w_adj and padding K - 1 - PAD, which is
    # PAD here (K = 3, PAD = 1), so crop_with_halo's crops serve it too
    w_adj = cupy.ascontiguousarray(w.transpose(1, 0, 2, 3, 4)[:, :, ::-1, ::-1, ::-1])
    res["backward_input"] = {"tiles": tiles_of_last_call(), "nan_left": int(cupy.isnan(gx).sum()),
                             "crop_rel_error": check_crops("backward_input", gx, gy, w_adj, d, starts)}
    print("backward_input", res["backward_input"], flush=True)
    del gx
    gw = cudnnconv.conv_backward_weight(x, w.shape, gy, out=poisoned(w.shape), **kw)
    res["backward_weight"] = {"tiles": tiles_of_last_call(), "nan_left": int(cupy.isnan(gw).sum()),
                              "rel_error": ref.rel_error(gw, wgrad_reference(x, gy, w.shape))}
    print("backward_weight", res["backward_weight"], flush=True)
    res["check_s"] = round(time.time() - t0, 1)
    res["tolerance_float16"] = ref.tolerance("float16")

    # throughput against the same convolution just under the limit
    xu, gyu = x[:, :, :under], gy[:, :, :under]
    xu, gyu = cupy.ascontiguousarray(xu.transpose(0, 2, 3, 4, 1)).transpose(0, 4, 1, 2, 3), \
        cupy.ascontiguousarray(gyu.transpose(0, 2, 3, 4, 1)).transpose(0, 4, 1, 2, 3)
    yt, gxt, gwt = poisoned(y.shape), poisoned(x.shape), poisoned(w.shape)
    yu, gxu = poisoned((1, C, under, HW, HW)), poisoned(xu.shape)
    runs = {
        "forward": (lambda: cudnnconv.conv(x, w, out=yt, **kw), lambda: cudnnconv.conv(xu, w, out=yu, **kw)),
        "backward_input": (lambda: cudnnconv.conv_backward_input(x.shape, w, gy, out=gxt, **kw),
                           lambda: cudnnconv.conv_backward_input(xu.shape, w, gyu, out=gxu, **kw)),
        "backward_weight": (lambda: cudnnconv.conv_backward_weight(x, w.shape, gy, out=gwt, **kw),
                            lambda: cudnnconv.conv_backward_weight(xu, w.shape, gyu, out=gwt, **kw)),
    }
    for name, (tiled, untiled) in runs.items():
        t_tiled = timed(tiled)
        n_tiled = tiles_of_last_call()
        t_under = timed(untiled)
        n_under = tiles_of_last_call()
        ratio = (d / t_tiled) / (under / t_under)
        res[name].update(tiled_ms=t_tiled, under_ms=t_under, under_runs=n_under, tiled_runs=n_tiled,
                         throughput_ratio=ratio)
        print(name, "tiled %.1f ms (%d runs), under the limit %.1f ms (%d runs): throughput ratio %.3f"
              % (t_tiled, n_tiled, t_under, n_under, ratio), flush=True)
    res["ok"] = all(res[k]["nan_left"] == 0 for k in runs) and \
        res["forward"]["crop_rel_error"] <= res["tolerance_float16"] and \
        res["backward_input"]["crop_rel_error"] <= res["tolerance_float16"] and \
        res["backward_weight"]["rel_error"] <= res["tolerance_float16"]
    from cudnnconv import one_sided
    trusted, refused = one_sided.verdicts()
    res["one_sided_trusted"] = sorted("%s %s %s" % (p.op, p.input_shape, p.padding) for p in trusted)
    res["one_sided_refused"] = {"%s %s %s" % (p.op, p.input_shape, p.padding): why for p, why in refused.items()}
    res["wall_s"] = round(time.time() - t0, 1)
    print(json.dumps(res, indent=1))
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
