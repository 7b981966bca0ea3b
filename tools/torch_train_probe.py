"""Where cudnnconv.torch's training path spends its host time: the whole ResNet-50 step and one
convolution's forward and backward, against PyTorch's own and the control (aten's convolutions
from a Python autograd.Function, bench/torch_train.py's ``control_model``).

1. The step (torchvision ResNet-50, fp16 channels-last, benchmark mode, batch 64): ms per step
   back to back by CUDA events, and host ms per step with a synchronize after each; whichever is
   larger bounds the step.
2. cProfile of our step: the functions by own time (``<OUT>/profile_ours.txt``).
3. One convolution's forward + backward (``torch.autograd.backward`` of its output with a given
   gradient), host µs with a synchronize after each, for each copy, on three ResNet-50 shapes; and
   the forward alone and the backward alone; on the 3x3 layer also the µs spent inside each
   Function's backward as autograd's engine calls it (ours and the control's).
4. Our backward's parts on one shape: the dense check, the two output tensors, each cudnnconv call
   through CuPy views and through the typed tensor path (``bridge.run``), and aten's backward.

Usage (GPU, PyTorch, torchvision): PYTHONPATH=pyx:. python3 tools/torch_train_probe.py OUTDIR
"""
import copy
import cProfile
import io
import json
import pstats
import statistics
import sys
import time

import torch
import torchvision as tv

import cudnnconv as cc
import cudnnconv.torch as cct
from cudnnconv.torch import bridge, functional as fn
from cudnnconv import torch_rules as rules
from bench.host import host_samples
from bench.torch_train import control_model, _step_fn, _timed

OUT = sys.argv[1]
torch.backends.cudnn.benchmark = True
sync, med = torch.cuda.synchronize, statistics.median
CL = dict(device="cuda", dtype=torch.float16)
res = {}


def host_us(call, n=200, prep=None, warm=10):
    return round(med(host_samples(call, n, sync, prep=prep, warmup=warm)), 2)


def step_figures(batch=64):
    torch.manual_seed(0)
    base = tv.models.resnet50().to("cuda", torch.float16).to(memory_format=torch.channels_last)
    models = {"torch": base, "ours": cct.convert(copy.deepcopy(base)),
              "control": control_model(torch, copy.deepcopy(base))}
    x = torch.randn(batch, 3, 224, 224, **CL).to(memory_format=torch.channels_last)
    t = torch.randint(0, 1000, (batch,), device="cuda")
    fns = {k: _step_fn(torch, m, x, t)[0] for k, m in models.items()}
    for f in fns.values():
        for _ in range(3):
            f()
    sync()
    out = {}
    for k, f in fns.items():
        ev = med([_timed(torch, f, 10) for _ in range(3)])
        host = med(host_samples(lambda i: f(), 15, sync, warmup=2)) / 1e3
        out[k] = {"events_ms": round(ev, 3), "host_ms": round(host, 3)}
    for k, m in models.items():               # host ms of each phase, with a synchronize after each
        opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
        ph = {"forward": [], "backward": [], "optimizer": []}
        for i in range(18):
            opt.zero_grad(set_to_none=True)
            sync()
            t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(m(x), t)
            sync()
            t1 = time.perf_counter()
            loss.backward()
            sync()
            t2 = time.perf_counter()
            opt.step()
            sync()
            t3 = time.perf_counter()
            if i >= 3:
                for name, a, b in (("forward", t0, t1), ("backward", t1, t2), ("optimizer", t2, t3)):
                    ph[name].append((b - a) * 1e3)
        out[k]["phases_ms"] = {name: round(med(v), 3) for name, v in ph.items()}
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(10):
        fns["ours"]()
    sync()
    prof.disable()
    s = io.StringIO()
    st = pstats.Stats(prof, stream=s)
    st.sort_stats("tottime").print_stats(45)
    st.sort_stats("cumulative").print_stats(45)
    with open(OUT + "/profile_ours.txt", "w") as f:
        f.write(s.getvalue())
    return out


SHAPES = {"3x3_256_14": (64, 256, 14, 256, 3, 1, 1), "1x1_64_256_56": (64, 64, 56, 256, 1, 1, 0),
          "conv1_7x7": (64, 3, 224, 64, 7, 2, 3)}


def conv_pair(name, n, cin, hw, cout, k, s, p):
    x = torch.randn(n, cin, hw, hw, **CL).to(memory_format=torch.channels_last).requires_grad_(name != "conv1_7x7")
    mods = {"torch": torch.nn.Conv2d(cin, cout, k, s, p, bias=False)}
    mods["ours"] = cct.convert(copy.deepcopy(torch.nn.Sequential(mods["torch"])))[0]
    mods["control"] = control_model(torch, copy.deepcopy(torch.nn.Sequential(mods["torch"])))[0]
    for m in mods.values():
        m.to("cuda", torch.float16).to(memory_format=torch.channels_last)
    y0 = mods["torch"](x)
    gy = torch.randn_like(y0)
    out = {}
    for key, m in mods.items():
        for _ in range(3):
            torch.autograd.backward(m(x), gy)
        ys = []
        out[key + "_fwd_bwd"] = host_us(lambda i: torch.autograd.backward(m(x), gy))
        out[key + "_fwd"] = host_us(lambda i: m(x))

        def prep(i):
            ys.append(m(x))
            return ys.pop()
        out[key + "_bwd"] = host_us(lambda y: torch.autograd.backward(y, gy), prep=prep)
        if name == "3x3_256_14" and hasattr(type(m(x).grad_fn), "_forward_cls"):    # a Python Function's
            inside = []                     # µs inside the Function's backward, as the engine calls it
            fwd_cls = type(m(x).grad_fn)._forward_cls
            body = fwd_cls.backward

            def timed(ctx, g, _body=body):
                t0 = time.perf_counter()
                r = _body(ctx, g)
                inside.append((time.perf_counter() - t0) * 1e6)
                return r
            fwd_cls.backward = staticmethod(timed)
            try:
                host_us(lambda y: torch.autograd.backward(y, gy), prep=prep)
            finally:
                fwd_cls.backward = staticmethod(body)
            out[key + "_bwd_inside_function"] = round(med(inside[10:]), 2)
        m.weight.grad = None
        if x.grad is not None:
            x.grad = None
    return out


def backward_parts():
    n, cin, hw, cout, k, s, p = SHAPES["3x3_256_14"]
    x = torch.randn(n, cin, hw, hw, **CL).to(memory_format=torch.channels_last)
    w = torch.randn(cout, cin, k, k, **CL).to(memory_format=torch.channels_last)
    r, shape = rules.forward_plan(2, x.shape, w.shape, s, p, 1, 1)
    gy = torch.randn(shape, **CL).to(memory_format=torch.channels_last)
    flags = bridge.call_flags()
    fl = bridge.flag_kwargs(flags)
    out = {"dense": host_us(lambda i: bridge.dense(gy, x)),
           "empty_like_x": host_us(lambda i: torch.empty_like(x)),
           "call_flags": host_us(lambda i: bridge.call_flags()),
           "forward_plan": host_us(lambda i: rules.forward_plan(2, x.shape, w.shape, s, p, 1, 1)),
           "as_array": host_us(lambda i: bridge.as_array(x)),
           "conv_grads_both": host_us(lambda i: fn._conv_grads(x, w, gy, r, flags, (True, True, False))),
           "conv_grads_input": host_us(lambda i: fn._conv_grads(x, w, gy, r, flags, (True, False, False))),
           "conv_grads_weight": host_us(lambda i: fn._conv_grads(x, w, gy, r, flags, (False, True, False)))}
    gx, gw = torch.empty_like(x), torch.empty_like(w)
    gx2 = torch.empty(shape, **CL).to(memory_format=torch.channels_last)
    fn._conv_out(x, w, None, r, shape, flags)
    xa, wa, ga, gxa, gwa = (bridge.as_array(t) for t in (x, w, gy, gx, gw))
    out["bwd_input_arrays"] = host_us(lambda i: cc.conv_backward_input(x.shape, wa, ga, s, p, 1, 1, out=gxa, **fl))
    out["bwd_weight_arrays"] = host_us(lambda i: cc.conv_backward_weight(xa, w.shape, ga, s, p, 1, 1, out=gwa, **fl))
    out["bwd_input_arrays_noflags"] = host_us(lambda i: cc.conv_backward_input(x.shape, wa, ga, s, p, 1, 1, out=gxa))
    out["fwd_arrays"] = host_us(lambda i: cc.conv(xa, wa, None, s, p, 1, 1, out=bridge.as_array(gx2), **fl))
    out["bridge_run_bwd_input"] = host_us(lambda i: bridge.run(bridge.BACKWARD_INPUT, (w, gy), gx,
                                                            (tuple(x.shape), (s, s), (p, p), (1, 1), 1), flags, 0))
    out["bridge_run_fwd"] = host_us(lambda i: bridge.run(bridge.CONV, (x, w, None), gx2, ((s, s), (p, p), (1, 1), 1),
                                                         flags, 0))
    out["torch_conv_backward"] = host_us(lambda i: torch.ops.aten.convolution_backward(
        gy, x, w, None, [s, s], [p, p], [1, 1], False, [0, 0], 1, [True, True, False]))
    return out


def main():
    t0 = time.perf_counter()
    res["step_b64"] = step_figures()
    print("step", res["step_b64"], flush=True)
    for name, shp in SHAPES.items():
        res["conv_" + name] = conv_pair(name, *shp)
        print(name, res["conv_" + name], flush=True)
    res["backward_parts"] = backward_parts()
    print("parts", res["backward_parts"], flush=True)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    with open(OUT + "/torch_train_probe.json", "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
