"""Host µs per call of single ResNet-50 layers, with a synchronize after each call.

ResNet-50's conv1 (7x7 3->64, stride 2, @224) and layer3.2.conv2 (3x3 256->256 @14), batch 32, fp16
channels-last: our forward, backward-data and backward-weight with the stage trace (how many calls
ran bound, the engine and its choice), and PyTorch's F.conv2d forward, each on 2 and on 6 rotating
pointer sets (6 exceed the 4 variant packs a plan keeps).  Shows where a layer's host time goes
when bench/host.py reports it over PyTorch's.

Usage (GPU, PyTorch): PYTHONPATH=pyx python3 tools/layer_host_probe.py OUT.json
"""
import json
import statistics
import sys
import time

import cupy
import torch

import cudnnconv as cc
from cudnnconv.core.state import state

torch.backends.cudnn.benchmark = True
F = torch.nn.functional
cl = dict(device="cuda", dtype=torch.float16, memory_format=torch.channels_last)
sync = torch.cuda.synchronize
out = {}
for name, N, C, H, K, R, s, p in (("conv1", 32, 3, 224, 64, 7, 2, 3), ("layer3.2.conv2", 32, 256, 14, 256, 3, 1, 1)):
    Ho = (H + 2 * p - R) // s + 1
    for sets in (2, 6):
        xs = [torch.empty(N, C, H, H, **cl).normal_() for _ in range(sets)]
        w = torch.empty(K, C, R, R, **cl).normal_(0, .05)
        gs = [torch.empty(N, K, Ho, Ho, **cl).normal_() for _ in range(sets)]
        xc, wc, gc = [cupy.from_dlpack(t) for t in xs], cupy.from_dlpack(w), [cupy.from_dlpack(t) for t in gs]
        fns = {"fwd": lambda i: cc.conv(xc[i % sets], wc, None, s, p, benchmark=True),
               "dgrad": lambda i: cc.conv_backward_input(xc[0].shape, wc, gc[i % sets], s, p, benchmark=True),
               "wgrad": lambda i: cc.conv_backward_weight(xc[i % sets], wc.shape, gc[i % sets], s, p, benchmark=True),
               "torch_fwd": lambda i: F.conv2d(xs[i % sets], w, None, s, p)}
        for fn_name, fn in fns.items():
            with torch.no_grad():
                for i in range(10):
                    fn(i); sync()
                host, stages, bound = [], [], []
                if not fn_name.startswith("torch"):
                    cc.trace_stages(True)
                for i in range(40):
                    sync(); t0 = time.perf_counter(); r = fn(i); t1 = time.perf_counter(); sync(); del r
                    host.append((t1 - t0) * 1e6)
                    if not fn_name.startswith("torch"):
                        stages.append(dict(cc.stage_times() or {}))
                        bound.append(type(state().last) is cc.CallPlan)
                cc.trace_stages(False)
            rec = {"host_us": statistics.median(host)}
            if stages:
                keys = dict.fromkeys(k for st in stages for k in st)
                rec["stages"] = {k: round(statistics.median([st.get(k, 0) for st in stages]), 2) for k in keys}
                rec["bound"] = sum(bound)
                lc = cc.last_call()
                rec["engine"] = lc.get("engine")
                rec["choice"] = str((lc.get("choices") or [{}])[0].get("tag", (lc.get("choices") or [{}])[0]))[:120]
            out["%s %s sets=%d" % (name, fn_name, sets)] = rec
            print(name, fn_name, sets, json.dumps(rec), flush=True)
json.dump(out, open(sys.argv[1], "w"), indent=1)
