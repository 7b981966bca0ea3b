"""Where cudnnconv.torch's batch-1 inference spends its time, against PyTorch's own: torchvision's
ResNet-50, fp16 channels-last, eval mode, no grad, benchmark mode on both sides.

1. How many of the 53 convolutions the typed forward takes (``cudnnconv.torch.typed``), and how many
   take the typed tensor path through ``bridge.run`` (returning True) or go past it.
2. The forward: ms back to back by CUDA events, and host ms with a synchronize after each, two rounds.
3. Host ms spent inside the 53 conv modules within one forward (forward pre-hook to forward hook,
   on both models alike), and the hooked forward's host ms.
4. Whether each conv's output (and input) strides match PyTorch's (a layout change would change the
   kernels that follow).
5. Kernel time and kernel count per forward (torch.profiler), and the largest kernels.
6. One 256->256 3x3 conv at 14x14 in a tight loop (host µs, a synchronize after each): the module,
   the functional call, the typed forward alone, ``bridge.run`` alone, the output's
   ``empty_like_layout``, and the stage traces of the typed forward and of ``bridge.run``.

Usage (GPU, PyTorch, torchvision): PYTHONPATH=pyx:. python3 tools/torch_infer_probe.py OUTDIR
"""
import copy
import json
import statistics
import sys
import time

import torch
import torchvision as tv

import cudnnconv as cc
import cudnnconv.torch as cct
from bench.host import host_samples
from bench.torch_train import _timed
from cudnnconv.torch import bridge, functional, typed

sync, med, pc = torch.cuda.synchronize, statistics.median, time.perf_counter


def typed_path_counts(ours, x):
    fast, slow = [], []
    run = bridge.run

    def counted(*a):
        r = run(*a)
        (fast if r else slow).append(a[0].name)
        return r
    bridge.run = counted
    taken = typed.taken()
    try:
        ours(x)
        sync()
    finally:
        bridge.run = run
    return len(fast), slow, typed.taken() - taken


def conv_host_in_network(m, x, n=30):
    acc, t0, hooks = [], [0.0], []
    for mod in m.modules():
        if isinstance(mod, torch.nn.Conv2d):
            hooks.append(mod.register_forward_pre_hook(lambda *a: t0.__setitem__(0, pc())))
            hooks.append(mod.register_forward_hook(lambda *a: acc.append(pc() - t0[0])))
    per = []
    for _ in range(n):
        acc.clear()
        sync()
        s = pc()
        m(x)
        e = pc()
        sync()
        per.append((sum(acc) * 1e3, (e - s) * 1e3, len(acc)))
    for h in hooks:
        h.remove()
    return med(p[0] for p in per), med(p[1] for p in per), per[0][2]


def conv_strides(m, x):
    seen, hooks = {}, []
    for name, mod in m.named_modules():
        if isinstance(mod, torch.nn.Conv2d):
            hooks.append(mod.register_forward_hook(
                lambda mod, i, o, name=name: seen.__setitem__(name, (tuple(o.stride()), tuple(i[0].stride())))))
    m(x)
    sync()
    for h in hooks:
        h.remove()
    return seen


def kernels(m, x, n=10):
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            m(x)
        sync()
    evs = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    names = {}
    for e in evs:
        names[e.name] = names.get(e.name, 0) + e.device_time
    top = sorted(((round(v / n, 1), k[:90]) for k, v in names.items()), reverse=True)[:8]
    return sum(e.device_time for e in evs) / 1e3 / n, len(evs) / n, top


def main(out_dir):
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    base = tv.models.resnet50().to("cuda", torch.float16).to(memory_format=torch.channels_last).eval()
    ours = cct.convert(copy.deepcopy(base))
    x = torch.randn(1, 3, 224, 224, device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
    res = {}
    with torch.no_grad():
        for m in (base, ours):
            for _ in range(10):
                m(x)
        sync()
        res["fast"], res["slow"], res["typed_forward_taken"] = typed_path_counts(ours, x)
        for rep in range(2):
            for k, m in (("torch", base), ("ours", ours)):
                res["%s_events_ms_%d" % (k, rep)] = med([_timed(torch, lambda: m(x), 30) for _ in range(5)])
                res["%s_host_ms_%d" % (k, rep)] = med(host_samples(lambda i: m(x), 30, sync, warmup=3)) / 1e3
        for k, m in (("torch", base), ("ours", ours)):
            res[k + "_conv_host_ms"], res[k + "_fwd_host_ms_hooked"], res[k + "_nconv"] = conv_host_in_network(m, x)
        st, so = conv_strides(base, x), conv_strides(ours, x)
        res["layout_mismatch"] = [(n, st[n], so.get(n)) for n in st if st[n] != so.get(n)]
        for k, m in (("torch", base), ("ours", ours)):
            try:
                res[k + "_kernel_ms_per_fwd"], res[k + "_kernels_per_fwd"], res[k + "_top_kernels"] = kernels(m, x)
            except Exception as e:                      # the profiler is a diagnosis, not the point
                res[k + "_profiler_error"] = repr(e)
        cin = 256
        xt = torch.randn(1, cin, 14, 14, device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
        mt = torch.nn.Conv2d(cin, cin, 3, 1, 1, bias=False).to("cuda", torch.float16).to(
            memory_format=torch.channels_last)
        mo = cct.convert(copy.deepcopy(torch.nn.Sequential(mt)))[0]
        for k, m in (("torch_module", mt), ("ours_module", mo)):
            res[k] = med(host_samples(lambda i: m(xt), 300, sync, warmup=20))
        res["ours_F"] = med(host_samples(lambda i: functional.conv2d(xt, mo.weight, None, 1, 1, 1, 1), 300, sync,
                                         warmup=20))
        res["torch_F"] = med(host_samples(lambda i: torch.nn.functional.conv2d(xt, mt.weight, None, 1, 1, 1, 1), 300,
                                          sync, warmup=20))
        r, shape = functional.rules.forward_plan(2, xt.shape, mt.weight.shape, 1, 1, 1, 1)
        fl = bridge.call_flags()
        y = bridge.empty_like_layout(shape, xt, mo.weight)
        args = ((1, 1), (1, 1), (1, 1), 1)
        res["bridge_run"] = med(host_samples(lambda i: bridge.run(bridge.CONV, (xt, mo.weight, None), y, args, fl, 0),
                                             300, sync, warmup=20))
        res["empty_like_layout"] = med(host_samples(lambda i: bridge.empty_like_layout(shape, xt, mo.weight), 300,
                                                    sync, warmup=20))
        res["typed_forward"] = med(host_samples(
            lambda i: typed.forward(2, xt, mo.weight, None, 1, 1, 1, 1, None), 300, sync, warmup=20))
        cc.trace_stages(True)
        for _ in range(50):
            bridge.run(bridge.CONV, (xt, mo.weight, None), y, args, fl, 0)
        res["stages"] = cc.stage_times()
        for _ in range(50):
            typed.forward(2, xt, mo.weight, None, 1, 1, 1, 1, None)
        res["typed_forward_stages"] = cc.stage_times()
        cc.trace_stages(False)
    print(json.dumps(res, indent=1))
    with open(out_dir + "/torch_infer_probe.json", "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
