"""Fused epilogue benchmark: conv_epilogue fused, composed, and PyTorch's eager sequence.

    PYTHONPATH=pyx:. python3 bench/epilogue.py --out DIR [--batch 128] [--dtype fp16]
        [--acts silu,relu,gelu] [--all-acts-on LAYER] [--time-limit S]

For each layer and activation, forward: ``act(conv(x, w) + bias)`` (and, with ``--residual``,
``+ z``); dgrad: ``act'(pre) * dgrad(g, w)`` (``conv_backward_input_act``), in channels-last, timed
three ways in one process, kernel time by CUDA-graph replay (the median of
many replays, after warm-up), each result checked against PyTorch's first:

- ``fused``: ``conv_epilogue(..., fusion='fused')``, the graph engine's one plan; where cuDNN
  refuses the pattern the row says so, with cuDNN's status;
- ``composed``: ``conv_epilogue(..., fusion='composed')``, our convolution and one kernel;
- ``auto``: ``fusion='auto'`` (with ``benchmark=True`` its first call times the two paths above and
  keeps the faster; the row records which);
- ``torch``: PyTorch's eager sequence as its users write it, ``F.silu(F.conv2d(x, w, b))``
  (``cudnn.benchmark=True``), each step its own kernel(s);
- ``conv``: our bare convolution (``conv`` or ``conv_backward_input``, no bias, no activation), timed
  only: the floor a fused kernel cannot go under, and with ``composed`` it shows what the composed
  path's one elementwise kernel costs.

Ratios: fused / composed, fused / torch and fused / conv.  The targets (issue "Fused epilogues"): conv + bias +
SiLU fused at most 0.6x the composed path and 0.5x PyTorch's sequence.  Writes
``GPU_epilogue_DTYPE_nhwc.json`` and ``.md``.
"""
import argparse
import contextlib
import json
import logging
import math
import os
import sys
import time

from bench.spec import Layer

TARGET_VS_COMPOSED = 0.6
TARGET_VS_TORCH = 0.5
TARGET_DGRAD_VS_COMPOSED = 0.75


def layers(batch):
    """The issue's layers: ResNet-50's 3x3 and 1x1, MobileNetV2's depthwise and pointwise, and a
    ConvNeXt-style 7x7 depthwise."""
    def c(name, cin, k, hw, ks, pad=0, stride=1, groups=1):
        return Layer(batch, cin, k, (hw, hw), (ks, ks), pad, stride, 1, groups, "conv", 0, name)
    return [
        c("resnet50.layer1.0.conv2 3x3", 64, 64, 56, 3, pad=1),
        c("resnet50.layer3.1.conv2 3x3", 256, 256, 14, 3, pad=1),
        c("resnet50.layer1.0.conv3 1x1", 64, 256, 56, 1),
        c("resnet50.layer3.1.conv1 1x1", 1024, 256, 14, 1),
        c("mobilenetv2.block2.dw 3x3", 144, 144, 56, 3, pad=1, groups=144),
        c("mobilenetv2.block11.dw 3x3", 384, 384, 14, 3, pad=1, groups=384),
        c("mobilenetv2.block1.expand 1x1", 24, 144, 56, 1),
        c("mobilenetv2.block2.project 1x1", 144, 24, 56, 1),
        c("convnext.stage1.dw 7x7", 96, 96, 56, 7, pad=3, groups=96),
        c("convnext.stage3.dw 7x7", 384, 384, 14, 7, pad=3, groups=384),
    ]


def ratio(a, b):
    return None if a is None or b is None or not b else a / b


def geomean(values):
    v = [x for x in values if x is not None and x > 0]
    return math.exp(sum(math.log(x) for x in v) / len(v)) if v else None


def summarize(result):
    """Per direction and activation: geomean fused/composed and fused/torch over the layers, each
    against its target (the forward's 0.6 and 0.5, the input gradient's 0.75 against the composed
    path; None where nothing fused), and which layers cuDNN refused to fuse."""
    out = {}
    for d, act in sorted({(r.get("direction", "fwd"), r["act"]) for r in result["rows"]}):
        rows = [r for r in result["rows"] if r["act"] == act and r.get("direction", "fwd") == d]
        vc = [r["fused_vs_composed"] for r in rows]
        vt = [r["fused_vs_torch"] for r in rows]
        tc = TARGET_VS_COMPOSED if d == "fwd" else TARGET_DGRAD_VS_COMPOSED
        tt = TARGET_VS_TORCH if d == "fwd" else None
        gc, gt = geomean(vc), geomean(vt)
        out["%s %s" % (d, act)] = {
            "target_vs_composed": tc, "meets_vs_composed": None if gc is None else gc <= tc,
            "target_vs_torch": tt, "meets_vs_torch": None if gt is None or tt is None else gt <= tt,
            "layers": len(rows),
            "fused": sum(1 for r in rows if r["fused"].get("kernel_ms") is not None),
            "refused": [r["layer"] for r in rows if r["fused"].get("status") == "refused"],
            "fused_vs_composed_geomean": geomean(vc),
            "fused_vs_torch_geomean": geomean(vt),
            "fused_vs_composed_max": max([x for x in vc if x is not None], default=None),
            "fused_vs_torch_max": max([x for x in vt if x is not None], default=None),
            # fusion='auto' under benchmark: how often it kept each path, and its time against PyTorch's
            "auto_composed": sum(1 for r in rows if (r.get("auto") or {}).get("path") == "composed"),
            "auto_vs_torch_geomean": geomean([r.get("auto_vs_torch") for r in rows]),
            # the bare convolution: fused over it is what fusing costs above the convolution itself,
            # and conv over composed is the best fused/composed any fused kernel could reach
            "fused_vs_conv_geomean": geomean([r.get("fused_vs_conv") for r in rows]),
            "conv_vs_composed_geomean": geomean([ratio((r.get("conv") or {}).get("kernel_ms"),
                                                       r["composed"].get("kernel_ms")) for r in rows]),
        }
    return out


def markdown(result):
    env, cfg = result["env"], result["config"]
    lines = ["# cudnnconv fused epilogue: %s, %s channels-last, batch %d" % (env.get("gpu"), cfg["dtype"],
                                                                           cfg["batch"]), "",
             "- %s | cuDNN %s | CuPy %s | PyTorch %s | %s" % (env.get("gpu"), env.get("cudnn"), env.get("cupy"),
                                                              env.get("torch"), env.get("date")),
             "- act(conv(x, w) + bias%s); kernel time by CUDA-graph replay, ms per call (median); fused = "
             "conv_epilogue(fusion='fused'), composed = conv_epilogue(fusion='composed'), torch = "
             "F.<act>(F.conv2d(x, w, b)) with cudnn.benchmark" % (" + z" if cfg.get("residual") else ""),
             "- targets: fused/composed <= %.2f, fused/torch <= %.2f" % (TARGET_VS_COMPOSED, TARGET_VS_TORCH), "",
             "- dgrad rows: conv_backward_input_act (the input gradient times act'(pre)) against PyTorch's "
             "input gradient (aten.convolution_backward) then the activation's backward kernel; target "
             "fused/composed <= %.2f" % TARGET_DGRAD_VS_COMPOSED, "",
             "- conv = our bare convolution (no bias, no activation), timed only; auto = fusion='auto' with "
             "benchmark=True, and the path its first call kept", "",
             "| layer | dir | act | fused ms | composed ms | torch ms | conv ms | auto ms (path) | fused/composed "
             "| fused/torch | fused/conv | fused config |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]

    def ms(e):
        if e.get("status") == "refused":
            return "refused (%s)" % e.get("detail", "")
        return "-" if e.get("kernel_ms") is None else "%.4f" % e["kernel_ms"]

    def r(x):
        return "-" if x is None else "%.2f" % x
    def auto(e):
        return "-" if not e or e.get("kernel_ms") is None else "%.4f (%s)" % (e["kernel_ms"], e.get("path") or "?")
    for row in result["rows"]:
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            row["layer"], row.get("direction", "fwd"), row["act"], ms(row["fused"]), ms(row["composed"]),
            ms(row["torch"]), ms(row.get("conv") or {}), auto(row.get("auto")),
            r(row["fused_vs_composed"]), r(row["fused_vs_torch"]), r(row.get("fused_vs_conv")),
            row["fused"].get("config") or "-"))
    lines += ["", "## Summary", ""]
    for act, s in result["summary"].items():
        def verdict(meets, target):
            return "" if meets is None else " (target %.2f: %s)" % (target, "met" if meets else "missed")
        lines.append("- %s: fused on %d of %d layers%s; fused/composed geomean %s%s (max %s), fused/torch "
                     "geomean %s%s (max %s)" % (
                         act, s["fused"], s["layers"],
                         "" if not s["refused"] else " (cuDNN refused: %s)" % ", ".join(s["refused"]),
                         r(s["fused_vs_composed_geomean"]), verdict(s["meets_vs_composed"], s["target_vs_composed"]),
                         r(s["fused_vs_composed_max"]), r(s["fused_vs_torch_geomean"]),
                         verdict(s["meets_vs_torch"], s["target_vs_torch"]), r(s["fused_vs_torch_max"]))
                     + ("" if s.get("auto_vs_torch_geomean") is None else
                        "; fusion='auto' (benchmark) composed on %d, auto/torch geomean %s"
                        % (s["auto_composed"], r(s["auto_vs_torch_geomean"])))
                     + ("" if s.get("fused_vs_conv_geomean") is None else
                        "; fused/conv geomean %s, conv/composed geomean %s"
                        % (r(s["fused_vs_conv_geomean"]), r(s.get("conv_vs_composed_geomean")))))
    for m in auto_misses(result["rows"]):
        d = m["decision"] or {}
        lines.append("- fusion='auto' kept the slower path: %s %s %s, kept %s (%.4f ms), fused %.4f, composed %.4f; "
                     "it weighed %s" % (m["layer"], m["direction"], m["act"], m["kept"], m["auto_ms"], m["fused_ms"],
                                        m["composed_ms"],
                                        "fused %s, conv %s + kernel %s" % tuple(
                                            "-" if d.get(k) is None else "%.4f" % d[k]
                                            for k in ("fused_ms", "conv_ms", "kernel_ms"))
                                        if d else "no recorded decision"))
    for n in result.get("notes", []):
        lines.append("- note: " + n)
    return "\n".join(lines) + "\n"


class _DecisionLog(logging.Handler):
    """Collects fusion='auto''s decisions (the times it weighed) from the 'cudnnconv' logger."""

    def __init__(self, into):
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record):
        if "fusion='auto' decided" in str(record.msg) and record.args and hasattr(record.args[-1], "as_dict"):
            self.into.append(record.args[-1].as_dict())


@contextlib.contextmanager
def _decisions(into):
    """While inside, every fusion='auto' decision's dict is appended to ``into`` (the logger at
    DEBUG level only for the call it wraps, which is not a timed one)."""
    logger = logging.getLogger("cudnnconv")
    handler, level, propagate = _DecisionLog(into), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False            # the search's debug lines stay out of any root handler
    try:
        yield into
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def auto_misses(rows, slack=1.1):
    """The rows where fusion='auto' took more than ``slack`` times the faster of the fused and the
    composed path, with the times its decision weighed."""
    out = []
    for r in rows:
        f, c, a = ((r.get(p) or {}).get("kernel_ms") for p in ("fused", "composed", "auto"))
        if a is None or f is None or c is None or not a > slack * min(f, c):
            continue
        out.append({"layer": r["layer"], "direction": r.get("direction", "fwd"), "act": r["act"],
                    "fused_ms": f, "composed_ms": c, "auto_ms": a, "kept": r["auto"].get("path"),
                    "decision": r["auto"].get("decision")})
    return out


def _measure(backend, calls, budget_s):
    try:
        m = backend.measure(calls, repeat=50, budget_s=budget_s)
        return {"status": "ok", "kernel_ms": m["kernel_ms"], "eager_ms": m["eager_ms"]}
    except Exception as e:                    # noqa: BLE001 - a row reports, the run goes on
        return {"status": "error", "kernel_ms": None, "detail": "%s: %s" % (type(e).__name__, str(e)[:160])}


def run_layer(layer, act, dtype, residual, budget_s, torch, tb, cb, direction="fwd"):
    """One row: ``direction`` 'fwd' (conv_epilogue against F.<act>(F.conv2d)) or 'dgrad'
    (conv_backward_input_act against ATen's input gradient then the activation's backward)."""
    import cupy
    import cudnnconv
    from cudnnconv import activations, params
    from cudnnconv.torch.functional import torch_activation, torch_activation_grad
    spec = activations.activation(act)
    rs = cupy.random.RandomState(0)
    layout = params.CHANNELS_LAST

    def rand(shape):
        a = params.empty_in_layout(shape, dtype, layout if len(shape) >= 3 else params.NCHW)
        a[...] = rs.uniform(-1.0, 1.0, shape, dtype="float32").astype(dtype)
        return a
    x, w, b = rand(layer.input_shape()), rand(layer.weight_shape()), rand((layer.k,))
    geom = layer.geometry()[0]
    kw = dict(stride=geom.stride, padding=geom.padding, dilation=geom.dilation, groups=layer.groups)
    st, pad, dil = list(geom.stride), list(geom.padding), list(geom.dilation)
    tx, tw, tb_ = (torch.from_dlpack(a) for a in (x, w, b))
    if direction == "fwd":
        z = rand(layer.output_shape()) if residual else None
        tz = None if z is None else torch.from_dlpack(z)
        f = torch_activation(spec)

        def torch_call():
            y = torch.nn.functional.conv2d(tx, tw, tb_, st, pad, dil, layer.groups)
            if tz is not None:
                y = y + tz
            return f(y)
        out = params.empty_in_layout(layer.output_shape(), dtype, layout)

        def ours(path):
            return lambda: cudnnconv.conv_epilogue(x, w, b, **kw, z=z, act=spec, out=out, fusion=path,
                                                   benchmark=True)

        def bare():
            return cudnnconv.conv(x, w, **kw, out=out, benchmark=True)
    else:
        gy = rand(layer.output_shape())
        tgy = torch.from_dlpack(gy)
        # what PyTorch's autograd would have saved: the output where the derivative follows from it,
        # computed once, outside the timed call; else the pre-activation
        saved = torch_activation(spec)(tx) if activations.needs(spec) == "output" else tx

        def torch_call():
            dx = torch.ops.aten.convolution_backward(tgy, tx, tw, None, st, pad, dil, False, [0] * len(pad),
                                                     layer.groups, [True, False, False])[0]
            return torch_activation_grad(spec, dx, saved)
        out = params.empty_in_layout(layer.input_shape(), dtype, layout)

        def ours(path):
            return lambda: cudnnconv.conv_backward_input_act(layer.input_shape(), w, gy, x, **kw, act=spec, out=out,
                                                             fusion=path, benchmark=True)

        def bare():
            return cudnnconv.conv_backward_input(layer.input_shape(), w, gy, **kw, out=out, benchmark=True)
    reference = cupy.from_dlpack(torch_call()).astype("float64")
    row = {"layer": layer.name, "act": spec.name, "direction": direction, "shape": layer.shape_text()}
    row["torch"] = _measure(tb, [torch_call], budget_s)
    # 'auto' (benchmark=True): its first call, the checked one, times both paths and keeps the faster;
    # its row says which ("path") and what the call then takes
    for path in ("fused", "composed", "auto"):
        call = ours(path)
        decisions = []
        try:
            out.fill(float("nan"))
            with _decisions(decisions) if path == "auto" else contextlib.nullcontext():
                call()
            cupy.cuda.Device().synchronize()
        except cudnnconv.CuDNNError as e:
            row[path] = {"status": "refused" if path == "fused" else "error", "kernel_ms": None, "detail": e.name}
            continue
        got = out.astype("float64")
        err = float(cupy.linalg.norm((got - reference).ravel()) / cupy.linalg.norm(reference.ravel()))
        tol = {"float16": 1e-2, "bfloat16": 5e-2}.get(dtype, 1e-3)
        if not err <= tol:
            row[path] = {"status": "FAIL", "kernel_ms": None, "rel_err": err}
            continue
        row[path] = _measure(cb, [call], budget_s)
        row[path]["rel_err"] = err
        last = cudnnconv.last_call() or {}
        ch = (last.get("choices") or [{}])[0]
        row[path]["config"] = ch.get("tag") or ch.get("algo_name")
        row[path]["path"] = last.get("path")
        if path == "auto":
            row[path]["decision"] = decisions[-1] if decisions else None
    # the bare convolution last, so that its writes into out cannot hide an unwritten element above
    row["conv"] = _measure(cb, [bare], budget_s)
    k = {p: row[p].get("kernel_ms") for p in ("fused", "composed", "torch", "conv")}
    row["fused_vs_composed"] = ratio(k["fused"], k["composed"])
    row["fused_vs_torch"] = ratio(k["fused"], k["torch"])
    row["fused_vs_conv"] = ratio(k["fused"], k["conv"])
    row["auto_vs_torch"] = ratio(row["auto"].get("kernel_ms"), k["torch"])
    return row


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench/epilogue.py", description=__doc__.split("\n")[0])
    p.add_argument("--out", metavar="DIR")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dtype", default="fp16", choices=("fp16", "bf16", "fp32"))
    p.add_argument("--acts", default="silu,relu,gelu", help="comma-separated activations (default silu,relu,gelu)")
    p.add_argument("--all-acts-on", metavar="N", type=int, default=0,
                   help="also every activation on the first N layers")
    p.add_argument("--residual", action="store_true", help="add z (act(conv + z + bias))")
    p.add_argument("--direction", default="fwd,dgrad", help="fwd, dgrad or both (default fwd,dgrad)")
    p.add_argument("--budget", type=float, default=0.4, help="seconds of timing per measurement")
    p.add_argument("--time-limit", type=float, default=None)
    p.add_argument("--list", action="store_true", help="print the layers and exit (no GPU needed)")
    args = p.parse_args(argv)
    from cudnnconv import activations
    acts = []
    for a in args.acts.split(","):
        try:
            name = activations.activation(a.strip()).name if a.strip() else None
        except (TypeError, ValueError) as e:
            print("error: --acts: %s" % e, file=sys.stderr)
            return 2
        if name is not None and name not in acts:          # 'silu,swish' is one activation
            acts.append(name)
    dirs = [d.strip() for d in args.direction.split(",") if d.strip()]
    if not dirs or any(d not in ("fwd", "dgrad") for d in dirs):
        print("error: --direction takes fwd, dgrad or both, got %r" % args.direction, file=sys.stderr)
        return 2
    # activation first, then direction, then layer: a run cut short by --time-limit has the first
    # activation (silu, the targets') on every layer in both directions
    todo = [(layer, a, d) for a in acts for d in dirs for layer in layers(args.batch)
            if not (d == "dgrad" and a == "identity")]
    extra = [n for n in activations.NAMES if n not in acts and n != "clamp"] + [("clamp", -1.0, 1.0)]
    for d in dirs:
        for layer in layers(args.batch)[:args.all_acts_on]:
            todo += [(layer, a, d) for a in extra if not (d == "dgrad" and a == "identity")]
    if args.list:
        for layer, a, d in todo:
            print("%-34s %-28s %-5s %s" % (layer.name, layer.shape_text(), d, a if isinstance(a, str) else a[0]))
        return 0
    import cupy
    import torch
    from bench import report
    from bench.timing import CupyBackend, TorchBackend
    torch.backends.cudnn.benchmark = True
    dtype = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}[args.dtype]
    env = report.environment()
    env["torch"] = torch.__version__
    t0 = time.time()
    rows, notes = [], []
    tb, cb = TorchBackend(), CupyBackend()
    for layer, a, d in todo:
        if args.time_limit and time.time() - t0 > args.time_limit:
            notes.append("time limit of %.0f s reached: %s %s %s and later not run" % (args.time_limit, layer.name,
                                                                                     d, a))
            break
        rows.append(run_layer(layer, a, dtype, args.residual, args.budget, torch, tb, cb, d))
        print("%-34s %-5s %-10s fused %s composed %s torch %s" % (
            layer.name, d, rows[-1]["act"], *("%.4f" % rows[-1][k]["kernel_ms"] if rows[-1][k].get("kernel_ms")
                                           else rows[-1][k].get("status") for k in ("fused", "composed", "torch"))),
            flush=True)
        cupy.get_default_memory_pool().free_all_blocks()
    result = {"schema": "cudnnconv-epilogue-bench/1", "env": env,
              "config": {"batch": args.batch, "dtype": dtype, "acts": sorted({r["act"] for r in rows}, key=str),
                         "directions": dirs, "residual": args.residual, "budget_s": args.budget, "argv": sys.argv[1:]},
              "rows": rows, "notes": notes, "wall_s": time.time() - t0}
    result["summary"] = summarize(result)
    text = markdown(result)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        base = os.path.join(args.out, "%s_epilogue_%s_nhwc" % (report.gpu_slug(env.get("gpu")), args.dtype))
        with open(base + ".json", "w") as f:
            json.dump(result, f, indent=1, default=float)
        with open(base + ".md", "w") as f:
            f.write(text)
        print("wrote %s.json, %s.md" % (base, base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
