"""Where cudnnconv.torch's forward call spends its host time, piece by piece, on one ResNet-50 shape
(N=64, 256->256, 3x3, 14x14, fp16 channels-last), under no_grad.

Host µs per call (perf_counter around the call, a synchronize after it, median of 300) with the
stage trace of the inner cudnnconv call: cct.conv2d and the Conv2d module against torch's; the
inner call on fixed CuPy views, on 8 rotating outputs, and on fresh views of a fresh output each
call; the same inside the bridge's stream check, inside CuPy's device context alone, and after
torch's stream getter; the autograd.Function's apply; F.conv2d and torch.empty; then the stream
check, the output's allocation and its alternatives in tight loops.

Usage (GPU, PyTorch): PYTHONPATH=pyx:. python3 tools/torch_call_probe.py OUTDIR
"""
import json
import statistics
import sys
import time

import cupy
import torch

import cudnnconv as cc
import cudnnconv.torch as cct
from cudnnconv.torch import bridge, functional as fn
from cudnnconv import torch_rules as rules
from bench.host import host_samples
OUT = sys.argv[1]
torch.backends.cudnn.benchmark = True
F, sync, med = torch.nn.functional, torch.cuda.synchronize, statistics.median
cl = dict(device="cuda", dtype=torch.float16, memory_format=torch.channels_last)
res = {}


def host(call, n=300, warm=20, stages=False):
    """Median host µs of n calls (bench.host's harness); with ``stages``, also how many ran on the
    typed path and the medians of their stage trace."""
    st = []
    keep = (lambda i: st.append(dict(cc.stage_times() or {})) if i >= 0 else None) if stages else None
    cc.trace_stages(stages)
    try:
        out = host_samples(lambda i: call(), n, sync, after=keep, warmup=warm)
    finally:
        cc.trace_stages(False)
    rec = {"host": round(med(out), 2)}
    if stages:
        st = [s for s in st if s]
        rec["typed"] = len(st)
        for k in (st[0] if st else {}):
            rec[k] = round(med([s[k] for s in st]), 2)
    return rec


x = torch.empty(64, 256, 14, 14, **cl).normal_()
w = torch.empty(256, 256, 3, 3, **cl).normal_()
shape = (64, 256, 14, 14)
xa, wa = bridge.as_array(x), bridge.as_array(w)
ya = bridge.as_array(torch.empty(shape, **cl))
fl = bridge.flag_kwargs(bridge.call_flags())
r, _ = rules.forward_plan(2, x.shape, w.shape, 1, 1, 1, 1)
dev = x.device

def e2():
    y = torch.empty(shape, **cl)
    cc.conv(bridge.as_array(x), bridge.as_array(w), None, 1, 1, 1, 1, out=bridge.as_array(y), **fl)
    return y

def e3():
    y = torch.empty(shape, **cl)
    with bridge.on_torch_stream(x):
        cc.conv(bridge.as_array(x), bridge.as_array(w), None, 1, 1, 1, 1, out=bridge.as_array(y), **fl)
    return y

def e4():
    y = torch.empty(shape, **cl)
    with cupy.cuda.Device(0):
        cc.conv(bridge.as_array(x), bridge.as_array(w), None, 1, 1, 1, 1, out=bridge.as_array(y), **fl)
    return y

def e4b():
    y = torch.empty(shape, **cl)
    torch.cuda.current_stream(0).cuda_stream
    cc.conv(bridge.as_array(x), bridge.as_array(w), None, 1, 1, 1, 1, out=bridge.as_array(y), **fl)
    return y
ys = [torch.empty(shape, **cl) for _ in range(8)]
yas = [bridge.as_array(y) for y in ys]
k = [0]

def e5b():
    k[0] += 1
    return cc.conv(xa, wa, None, 1, 1, 1, 1, out=yas[k[0] % 8], **fl)
with torch.no_grad():
    res["e1_cct_conv2d"] = host(lambda: cct.conv2d(x, w, None, 1, 1), stages=True)
    m = cct.Conv2d(256, 256, 3, 1, 1, bias=False).to("cuda", torch.float16).to(memory_format=torch.channels_last)
    res["e1m_module"] = host(lambda: m(x))
    m2 = torch.nn.Conv2d(256, 256, 3, 1, 1, bias=False).to("cuda", torch.float16).to(memory_format=torch.channels_last)
    res["e1m_torch_module"] = host(lambda: m2(x))
    res["e5_fixed_arrays"] = host(lambda: cc.conv(xa, wa, None, 1, 1, 1, 1, out=ya, **fl), stages=True)
    res["e5b_rot8_out"] = host(e5b, stages=True)
    res["e2_fresh_views_fresh_y"] = host(e2, stages=True)
    res["e3_e2_in_stream_ctx"] = host(e3, stages=True)
    res["e4_e2_in_device_ctx"] = host(e4, stages=True)
    res["e4b_e2_with_current_stream"] = host(e4b, stages=True)
    res["e6_apply"] = host(lambda: fn._Conv.apply(x, w, None, r, shape), stages=True)
    res["torch"] = host(lambda: F.conv2d(x, w, None, 1, 1))
    res["torch_empty"] = host(lambda: torch.empty(shape, **cl))
    def ctx():
        with bridge.on_torch_stream(x):
            pass
    t0 = time.perf_counter()
    for _ in range(5000):
        ctx()
    res["loop_on_torch_stream"] = (time.perf_counter() - t0) / 5000 * 1e6
    t0 = time.perf_counter()
    for _ in range(5000):
        bridge.empty_like_layout(shape, x, w)
    res["loop_empty_like_layout"] = (time.perf_counter() - t0) / 5000 * 1e6
    t0 = time.perf_counter()
    for _ in range(5000):
        x.new_empty((64, 14, 14, 256)).permute(0, 3, 1, 2)
    res["loop_new_empty_permute"] = (time.perf_counter() - t0) / 5000 * 1e6
    t0 = time.perf_counter()
    for _ in range(5000):
        torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    res["loop_torch_empty_kw"] = (time.perf_counter() - t0) / 5000 * 1e6
    res["e1_again"] = host(lambda: cct.conv2d(x, w, None, 1, 1), stages=True)
for kk, v in res.items():
    print(kk, v, flush=True)
json.dump(res, open(OUT + "/torch_call_probe.json", "w"), indent=1)
