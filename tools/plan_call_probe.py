"""Where a plan object's call spends its host time on the tiny shapes (fp16 channels-last), against
F.conv2d, in one process.

For each shape: host µs per call (perf_counter around the call, a synchronize after it, median over
4 rounds of 100 in which every variant takes its turn) of the plan on 8 rotating input sets, with
and without ``out=``, the same on one fixed input set (its variant pack reused), the plain call,
F.conv2d on rotating and fixed inputs, an empty lambda (the harness itself), and cupy.empty and
torch.empty of the output; then the stage trace's medians for the plan and plain calls (with
the host µs of each traced call), CuPy's alloc/free and torch.empty in tight loops, and cuDNN's own
cost of a new variant pack.  bench/host.py reports the plan's ratios; this probe says where its
floor is: execute + a new variant pack + the output's allocation.

Usage (GPU, PyTorch): PYTHONPATH=pyx:. python3 tools/plan_call_probe.py OUT.json
"""
import json
import statistics
import sys
import time

import cupy
import torch

import cudnnconv as cc
from bench.host import host_samples, stage_api, stage_samples
from cudnnconv.core import arrays
torch.backends.cudnn.benchmark = True
F = torch.nn.functional
sync = torch.cuda.synchronize
med = statistics.median
S = 8
OUT = sys.argv[1] if len(sys.argv) > 1 else "plan_call_probe.json"


def host(call, n=400, warm=20):
    return host_samples(call, n, sync, warmup=warm)


def stages(call, n=300):
    """Medians of the stage trace of n calls, each with its host µs ("host")."""
    got = stage_samples(call, n, sync, stage_api(cc))
    keys = got[0].keys() if got else []
    return {k: round(med([g.get(k, 0.0) for g in got]), 3) for k in keys}


def loop(f, n=20000):
    r = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        r.append((time.perf_counter() - t0) / n * 1e6)
    return round(med(r), 3)


res = {"torch": torch.__version__, "cupy": cupy.__version__, "gpu": torch.cuda.get_device_name(), "shapes": {}}
cl = dict(device="cuda", dtype=torch.float16, memory_format=torch.channels_last)
for (N, C, H, K, R, pad) in ((64, 256, 14, 256, 3, 1), (1, 8, 8, 8, 3, 1), (64, 64, 56, 64, 1, 0), (32, 64, 56, 64, 3, 1)):
    name = "N=%d C=%d H=%d K=%d %dx%d" % (N, C, H, K, R, R)
    xs, wt = [torch.empty(N, C, H, H, **cl).normal_() for _ in range(S)], torch.empty(K, C, R, R, **cl).normal_()
    xc, wc, ho = [cupy.from_dlpack(x) for x in xs], cupy.from_dlpack(wt), H + 2 * pad - R + 1
    outs = [cupy.empty((N, ho, ho, K), cupy.float16).transpose(0, 3, 1, 2) for _ in range(S)]
    p = cc.plan(cc.conv, xc[0], wc, None, 1, pad, benchmark=True)
    p(xc[1], wc)
    p(xc[1], wc, out=outs[0])
    fns = {"plan": lambda i: p(xc[i % S], wc), "plan_out": lambda i: p(xc[i % S], wc, out=outs[i % S]),
           "plan_fixed": lambda i: p(xc[0], wc), "plan_out_fixed": lambda i: p(xc[0], wc, out=outs[0]),
           "plain": lambda i: cc.conv(xc[i % S], wc, None, 1, pad, benchmark=True),
           "torch": lambda i: F.conv2d(xs[i % S], wt, None, 1, pad),
           "torch_fixed": lambda i: F.conv2d(xs[0], wt, None, 1, pad), "null": lambda i: None,
           "cupy_empty": lambda i: cupy.empty((N, ho, ho, K), cupy.float16),
           "torch_empty": lambda i: torch.empty((N, K, ho, ho), **cl)}
    r = {k: [] for k in fns}
    with torch.no_grad():
        for _ in range(4):
            for k, f in fns.items():
                r[k] += host(f, 100)
        rec = {k: round(med(v), 2) for k, v in r.items()}
        rec["ratio_plan"] = round(rec["plan"] / rec["torch"], 3)
        rec["ratio_plan_out"] = round(rec["plan_out"] / rec["torch"], 3)
        for k in ("plan", "plan_out", "plan_fixed", "plan_out_fixed", "plain", "plan"):
            rec["stages_" + k + ("2" if "stages_" + k in rec else "")] = stages(fns[k])
    y = p(xc[0], wc)
    nb = y.nbytes
    rec["loop_alloc_free_us"] = loop(lambda: cupy.cuda.alloc(nb))
    rec["loop_new_like_us"] = loop(lambda: arrays._new_like(y))
    rec["loop_torch_empty_us"] = loop(lambda: torch.empty((N, K, ho, ho), **cl))
    rec["loop_plan_call_noop_us"] = loop(lambda: p.accepts(xc[0], wc))
    rec["choice"] = str(p.choice)
    gc = p.executor.choice
    if hasattr(gc, "variant_pack_cost_us"):
        rec["variant_pack_build_us"] = round(gc.variant_pack_cost_us(5000), 3)
    res["shapes"][name] = rec
    print(name, json.dumps(rec), flush=True)
json.dump(res, open(OUT, "w"), indent=1)
