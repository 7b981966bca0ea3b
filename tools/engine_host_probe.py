"""Host µs of a plan call per cuDNN engine config, against F.conv2d, on small fp16 channels-last problems.

cuDNN's execute does not cost the host the same for every engine config of one problem: on an H200
(cuDNN 9.19) it ranged from 4.5 to 16.6 µs for the same convolution.  This probe shows it.  For each
problem it benchmarks as a call does, then forces each of the fastest configs in turn (the graph
engine's ranking is wrapped so that the forced tag comes first), makes a plan object and measures:

- ``plan_us``: host µs of the plan call with a synchronize after each call, 8 rotating input sets,
  median of 3 rounds of 100;
- the stage trace's medians of 150 traced calls (``execute``, ``variant_pack``, ``total``, ``host``);
- ``gpu_ms``: the benchmark's GPU time of the config.

and F.conv2d's host µs in the same process.  The default choice (by GPU time) is run first.

With ``--rules`` it compares instead the host-aware ranking (``cudnnconv.gpu_timing.rank_host_aware``)
with ranking by GPU time alone, in one process: host µs of a plan call made under each rule, side by
side with F.conv2d, in interleaved rounds.  Both plans live at once: the GPU-time-only one is made with
a workspace limit of 2**40 bytes, which changes no candidate but keys a separate cache entry, so
neither search replaces the other's choice.  Per rule: the config chosen, its GPU time and (host-aware)
issue time, the plan call's host µs and the median execute stage of its stage trace.

Usage (GPU, PyTorch): PYTHONPATH=pyx:. python3 tools/engine_host_probe.py [--rules] OUT.json
"""
import json
import statistics
import sys

import cupy
import torch

import cudnnconv as cc
from bench.host import host_samples, stage_api, stage_samples
from cudnnconv import ranking

torch.backends.cudnn.benchmark = True
F = torch.nn.functional
sync = torch.cuda.synchronize
med = statistics.median
S = 8
SHAPES = ((64, 256, 14, 256, 3, 1), (1, 8, 8, 8, 3, 1), (64, 64, 56, 64, 1, 0), (32, 64, 56, 64, 3, 1),
          (32, 512, 7, 512, 3, 1))
CONFIGS = 14            # the fastest configs forced per problem
RULE_ROUNDS = 5
RULE_SHAPES = ((64, 256, 14, 256, 3, 1), (1, 8, 8, 8, 3, 1), (64, 64, 56, 64, 1, 0), (32, 512, 7, 512, 3, 1),
               (32, 64, 56, 64, 3, 1), (1, 64, 56, 64, 3, 1), (8, 256, 14, 256, 3, 1), (1, 512, 7, 512, 3, 1))


def _header():
    return {"gpu": torch.cuda.get_device_name(), "cudnn": torch.backends.cudnn.version(),
            "torch": torch.__version__, "cupy": cupy.__version__, "shapes": {}}


def _problem(N, C, H, K, R):
    """Its name, S input sets and a weight as torch tensors, and the same as CuPy arrays."""
    cl = dict(device="cuda", dtype=torch.float16, memory_format=torch.channels_last)
    xs = [torch.empty(N, C, H, H, **cl).normal_() for _ in range(S)]
    wt = torch.empty(K, C, R, R, **cl).normal_()
    return "N=%d C=%d H=%d K=%d %dx%d" % (N, C, H, K, R, R), xs, wt, [cupy.from_dlpack(x) for x in xs], \
        cupy.from_dlpack(wt)


def main(out_path):
    original = ranking.rank
    state = {"force": None, "seen": None}

    def rank(timed, margin):
        r = original(timed, margin)
        state["seen"] = [(c.tag, c.time_ms, list(c.behavior)) for c in r]
        if state["force"]:
            r = sorted(r, key=lambda c: c.tag != state["force"])
        return r

    ranking.rank = rank
    api = stage_api(cc)
    res = _header()
    try:
        for (N, C, H, K, R, pad) in SHAPES:
            name, xs, wt, xc, wc = _problem(N, C, H, K, R)
            state["force"] = None
            cc.clear_cache()
            p0 = cc.plan(cc.conv, xc[0], wc, None, 1, pad, benchmark=True)
            rec = {"default": p0.executor.choice.tag, "candidates": state["seen"], "configs": {}}
            with torch.no_grad():
                t, d = [], []
                for _ in range(4):
                    t += host_samples(lambda i: F.conv2d(xs[i % S], wt, None, 1, pad), 100, sync, warmup=5)
                    d += host_samples(lambda i: p0(xc[i % S], wc), 100, sync, warmup=5)
                rec["torch_us"], rec["default_plan_us"] = med(t), med(d)
                for tag, ms, behavior in state["seen"][:CONFIGS]:
                    state["force"] = tag
                    cc.clear_cache()
                    try:
                        p = cc.plan(cc.conv, xc[0], wc, None, 1, pad, benchmark=True)
                    except Exception as e:          # a config that cannot run here: say so, go on
                        rec["configs"][tag] = {"error": "%s: %s" % (type(e).__name__, e)}
                        continue
                    hs = []
                    for _ in range(3):
                        hs += host_samples(lambda i: p(xc[i % S], wc), 100, sync, warmup=5)
                    st = stage_samples(lambda i: p(xc[i % S], wc), 150, sync, api)
                    tr = {k: round(med([s.get(k, 0.0) for s in st]), 3)
                          for k in ("execute", "variant_pack", "total", "host")} if st else {}
                    rec["configs"][tag] = dict(ran=p.executor.choice.tag if p.executor is not None else None,
                                               gpu_ms=ms, behavior=behavior, plan_us=round(med(hs), 2), **tr)
                rec["torch_us_after"] = med(host_samples(lambda i: F.conv2d(xs[i % S], wt, None, 1, pad), 200,
                                                         sync, warmup=5))
            res["shapes"][name] = rec
            print("%s: torch %.1f / %.1f us, default %s plan %.1f us" % (
                name, rec["torch_us"], rec["torch_us_after"], rec["default"], rec["default_plan_us"]), flush=True)
            for tag, c in rec["configs"].items():
                if "error" in c:
                    print("    %-8s %s" % (tag, c["error"]))
                else:
                    print("    %-8s gpu %8.2f us  execute %6.2f us  plan call %6.2f us" % (
                        tag, c["gpu_ms"] * 1e3, c.get("execute", float("nan")), c["plan_us"]), flush=True)
    finally:
        ranking.rank = original
    with open(out_path, "w") as f:
        json.dump(res, f, indent=1)



RULES = (("host_aware", True, None), ("gpu_only", False, 1 << 40))


def compare_rules(out_path):
    """--rules: the host-aware ranking against GPU time alone (see the module doc)."""
    api = stage_api(cc)
    saved = cc.benchmark_settings()
    res = _header()
    cc.clear_cache()
    try:
        for (N, C, H, K, R, pad) in RULE_SHAPES:
            name, xs, wt, xc, wc = _problem(N, C, H, K, R)
            plans, rec = {}, {}
            for rule, on, limit in RULES:
                cc.benchmark_settings(host_aware=on)
                p = plans[rule] = cc.plan(cc.conv, xc[0], wc, None, 1, pad, benchmark=True, workspace_limit=limit)
                ch = p.executor.choice
                rec[rule] = {"choice": ch.tag, "gpu_us": round(ch.time_ms * 1e3, 2),
                             "issue_us": round(ch.issue_ms * 1e3, 2) if ch.issue_ms >= 0 else None}
            cc.benchmark_settings(**saved)
            fns = {"torch": lambda i: F.conv2d(xs[i % S], wt, None, 1, pad)}
            fns.update({rule: (lambda i, p=p: p(xc[i % S], wc)) for rule, p in plans.items()})
            t = {k: [] for k in fns}
            with torch.no_grad():
                for _ in range(RULE_ROUNDS):
                    for k, fn in fns.items():
                        t[k] += host_samples(fn, 100, sync, warmup=5)
            for rule, p in plans.items():
                st = stage_samples(fns[rule], 150, sync, api)
                rec[rule]["execute_us"] = round(med([s.get("execute", 0.0) for s in st]), 2) if st else None
                rec[rule]["plan_us"] = round(med(t[rule]), 2)
            rec["torch_us"] = round(med(t["torch"]), 2)
            for rule, _, _ in RULES:
                rec[rule]["ratio"] = round(rec[rule]["plan_us"] / rec["torch_us"], 3)
            res["shapes"][name] = rec
            print("%-26s torch %5.1f us | host-aware %-6s gpu %5.1f issue %5s plan %5.1f (%.3f) | gpu-only %-6s "
                  "gpu %5.1f plan %5.1f (%.3f)" % (
                      name, rec["torch_us"], rec["host_aware"]["choice"], rec["host_aware"]["gpu_us"],
                      rec["host_aware"]["issue_us"], rec["host_aware"]["plan_us"], rec["host_aware"]["ratio"],
                      rec["gpu_only"]["choice"], rec["gpu_only"]["gpu_us"], rec["gpu_only"]["plan_us"],
                      rec["gpu_only"]["ratio"]), flush=True)
    finally:
        cc.benchmark_settings(**saved)
    with open(out_path, "w") as f:
        json.dump(res, f, indent=1)



if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--rules"]
    (compare_rules if "--rules" in sys.argv[1:] else main)(args[0] if args else "engine_host_probe.json")
