"""Host time per call of cudnnconv against PyTorch: a ResNet-50 training step's convolutions, and tiny shapes.

    PYTHONPATH=pyx:. python3 bench/host.py --out DIR [--batches 32,128] [--repeats 15] [--quick] [--time-limit S]

fp16, channels-last; ours with engine 'auto' and benchmark=True, PyTorch with cudnn.benchmark=True.  Both
run on torch's current stream (the legacy default stream, which is also CuPy's), so one pair of CUDA events
times either.  Every conv has two copies of its input x and output gradient g (random normal, never zeros);
calls alternate between them, so pointers change as in a network, while the weights stay.

1. Step, per batch: ResNet-50's 53 convs (torchvision's, found by forward hooks) forward, then dgrad and
   wgrad in reverse order, no sync inside.  Ours: 159 calls; PyTorch: F.conv2d on leaves that require grad,
   then one autograd.backward.  Median CUDA-event ms and host issue ms, the two sides interleaved.
2. Per call, first batch: the host clock around one call, synchronised after it, so that a full launch
   queue never blocks the host; the median over five passes over all convs.  Ours fwd vs F.conv2d on leaves that require grad; ours dgrad + wgrad vs
   PyTorch's backward of the same conv as training runs it: one autograd.backward over all 53 outputs
   (each conv's backward in C++, the graph built outside the timing), its host time shared out by each
   conv's share of it, which PyTorch's profiler measures per ConvolutionBackward0 node in separate
   passes.  Each bwd record also keeps the plain average (the backward's host time / 53) and its ratio.
   A per-conv autograd.backward call would add the autograd engine's start-up to every conv, which
   training pays once per step.
3. Tiny shapes, 8 rotating input sets: ours plain, with out=, through cudnnconv.plan (with and without
   out=), against F.conv2d under no_grad.
4. Stages: where a plain forward call's host time goes (cudnnconv.trace_stages, else the graph engine's
   own trace); "outside execute" is the call's time outside cudnnBackendExecute.

Ratios are ours / PyTorch's: below 1 we are faster.  Writes DIR/<gpu>_host.json, .md and .png (the PNG
needs matplotlib).  A failing measurement becomes an "error" string in its record, never a crash.
"""
import argparse
import contextlib
import gc
import math
import os
import statistics
import sys
import time
import types

try:
    from bench import report
except ImportError:                                  # run as a script without PYTHONPATH=.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench import report

SCHEMA = "cudnnconv-host/1"
TINY_SHAPES = ((64, 256, 14, 256, 3, 1), (1, 8, 8, 8, 3, 1), (64, 64, 56, 64, 1, 0))   # N, C, H=W, K, R=S, pad
TINY_VARIANTS = ("plain", "out", "plan", "plan_out")
# Pointer sets per call site: more than the variant packs a plan keeps (4), so that every call of ours
# builds its variant pack, as a network's fresh activation pointers make it do.
POINTER_SETS, TINY_SETS, TINY_ROUNDS, WARMUP_STEPS = 6, 8, 5, 3
PER_CALL_ROUNDS = 5       # passes over all convs for the per-call figures (measure_per_call)


# ---------------------------------------------------------------------------
# pure helpers (no GPU): the conv table, records, summary, markdown, chart
# ---------------------------------------------------------------------------

def resnet50_convs():
    """torchvision's ResNet-50 (v1.5: the stride sits in the 3x3) on 1x3x224x224: its 53 convs in the order
    forward hooks see them, as dicts of name, x (N,C,H,W), w (K,C,R,S), stride and padding.  The hooks are
    checked against it, and it stands in for them where torchvision is missing."""
    out = []

    def add(name, cin, cout, hw, k, s=1, p=0):
        out.append({"name": name, "x": (1, cin, hw, hw), "w": (cout, cin, k, k), "stride": (s, s),
                    "padding": (p, p)})
        return (hw + 2 * p - k) // s + 1

    hw = (add("conv1", 3, 64, 224, 7, 2, 3) + 2 - 3) // 2 + 1          # then max pool 3x3 s2 p1
    cin = 64
    for stage, (width, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), 1):
        for b in range(blocks):
            s, pre = (stride if b == 0 else 1), "layer%d.%d" % (stage, b)
            add(pre + ".conv1", cin, width, hw, 1)
            o = add(pre + ".conv2", width, width, hw, 3, s, 1)
            add(pre + ".conv3", width, width * 4, o, 1)
            if b == 0:                               # torchvision runs the downsample after conv3
                add(pre + ".downsample.0", cin, width * 4, hw, 1, s)
            cin, hw = width * 4, o
    return out


def out_shape(x, w, stride, padding):
    """(N, K, Ho, Wo) of a 2D conv without dilation."""
    return (x[0], w[0]) + tuple((x[2 + i] + 2 * padding[i] - w[2 + i]) // stride[i] + 1 for i in range(2))


def tiny_label(shape):
    n, c, h, k, r, pad = shape
    return "N=%d C=%d H=%d K=%d %dx%d pad%d" % (n, c, h, k, r, r, pad)


def median(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def ratio(ours, theirs):
    """ours / theirs, or None where either is missing or theirs is not positive."""
    return None if ours is None or theirs is None or theirs <= 0 else ours / theirs


def call_record(index, name, batch, direction, ours_us, torch_us, parts=None, error=""):
    """One layer-direction: host µs per call, ours and PyTorch's (bwd: ours is dgrad + wgrad)."""
    rec = {"index": index, "layer": name, "batch": batch, "direction": direction, "ours_us": ours_us,
           "torch_us": torch_us, "ratio": ratio(ours_us, torch_us)}
    if parts:
        rec["ours_parts_us"] = parts
    if error:
        rec["error"] = error
    return rec


def step_record(batch, calls, ours_ms, torch_ms, ours_host_ms, torch_host_ms):
    """Medians of a step's samples (device ms by CUDA events, host issue ms) and ours/torch."""
    rec = {"batch": batch, "calls": calls, "steps": len(ours_ms), "ours_ms": median(ours_ms),
           "torch_ms": median(torch_ms), "ours_host_ms": median(ours_host_ms), "torch_host_ms": median(torch_host_ms)}
    rec.update(ratio=ratio(rec["ours_ms"], rec["torch_ms"]), host_ratio=ratio(rec["ours_host_ms"],
                                                                               rec["torch_host_ms"]))
    return rec


def tiny_record(shape, us, errors=None):
    """A tiny shape: host µs per call of each variant and of PyTorch, and each variant / PyTorch."""
    rec = {"shape": tiny_label(shape), "dims": list(shape), "torch_us": us.get("torch")}
    for v in TINY_VARIANTS:
        rec.update({v + "_us": us.get(v), v + "_ratio": ratio(us.get(v), us.get("torch"))})
    if errors:
        rec["error"] = "; ".join("%s: %s" % kv for kv in sorted(errors.items()))
    return rec


def plan_floor(samples, torch_us):
    """A plan call's stage medians (µs) and its floor: execute + the new variant pack + the output's
    allocation, the parts that cuDNN and CuPy's allocator own, over PyTorch's whole call.  A plan call
    can come no closer to PyTorch than that, whatever it does above them."""
    st = {k: median([s.get(k) for s in samples]) for k in ("signature", "output", "handle", "variant_pack",
                                                           "execute", "return", "total")}
    parts = [st[k] for k in ("execute", "variant_pack", "output")]
    floor = None if None in parts else sum(parts)
    return {"plan_stages_us": st, "plan_floor_us": floor, "plan_floor_ratio": ratio(floor, torch_us)}


def outside_execute(sample):
    """µs of a traced call outside cudnnBackendExecute: total - execute where the trace has a total,
    else the host clock around the call ("host") - execute."""
    total = sample.get("total", sample.get("host"))
    return None if total is None or sample.get("execute") is None else total - sample["execute"]


def stage_summary(method, groups):
    """Median µs per stage key (in the trace's order) per group of traced calls and over all calls, and
    the median over all calls of their time outside execute.  ``groups``: {label: [a stage dict per call]}."""
    def medians(samples):
        m = {k: median([s.get(k) for s in samples]) for k in dict.fromkeys(k for s in samples for k in s)}
        m["outside_execute"] = median([outside_execute(s) for s in samples])
        return m

    every = [s for samples in groups.values() for s in samples]
    return {"method": method, "samples": len(every), "groups": {g: medians(s) for g, s in groups.items() if s},
            "medians_us": medians(every) if every else {},
            "outside_execute_us_median": median([outside_execute(s) for s in every])}


def summarize(result):
    """Per-call ratios (geomean, max, worst), tiny-shape ratios, each batch's step ratio, time outside
    execute.  The first seven keys are the headline; step_ratio_b32/b128 are None where not measured."""
    calls, tiny = result.get("per_call", []), result.get("tiny", [])
    recs = [r for r in calls if r.get("ratio") is not None]
    rs = [r["ratio"] for r in recs]
    worst = max(recs, key=lambda r: r["ratio"]) if recs else None
    both = [r for r in recs if r["ours_us"] is not None and r["torch_us"] is not None]
    tg = lambda key: report.geomean([t.get(key) for t in tiny])  # noqa: E731
    s = {"per_call_ratio_geomean": report.geomean(rs), "per_call_ratio_max": max(rs) if rs else None,
         "out_ratio_geomean": tg("out_ratio"), "plan_ratio_geomean": tg("plan_ratio"),
         "step_ratio_b32": None, "step_ratio_b128": None,
         "outside_execute_us_median": (result.get("stages") or {}).get("outside_execute_us_median"),
         "per_call_ratio_geomean_fwd": report.geomean([r["ratio"] for r in recs if r["direction"] == "fwd"]),
         "per_call_ratio_geomean_bwd": report.geomean([r["ratio"] for r in recs if r["direction"] == "bwd"]),
         "per_call_worst": None if worst is None else {k: worst[k] for k in ("layer", "direction", "ratio")},
         "per_call_sum_us": {"ours": sum(r["ours_us"] for r in both), "torch": sum(r["torch_us"] for r in both)},
         "plain_ratio_geomean_tiny": tg("plain_ratio"), "plan_out_ratio_geomean": tg("plan_out_ratio"),
         "step_ms": {}}
    # The same figures with every bwd record against PyTorch's backward averaged over all convs (where the
    # bwd ratios above use each conv's profiled share of it).
    vs_avg = [r.get("ratio_vs_avg", r["ratio"]) for r in recs if r.get("ratio_vs_avg", r["ratio"]) is not None]
    s["per_call_ratio_geomean_vs_avg"] = report.geomean(vs_avg)
    s["per_call_ratio_max_vs_avg"] = max(vs_avg) if vs_avg else None
    # cuDNN's own per-call floor on the tiny shapes: cudnnBackendExecute plus a new variant pack (the
    # stage trace's medians), as a fraction of PyTorch's whole call.  No caller of cuDNN can go below it.
    groups = (result.get("stages") or {}).get("groups") or {}
    floors = []
    for t in tiny:
        g = groups.get(t.get("shape")) or {}
        if g.get("execute") is not None and g.get("variant_pack") is not None and t.get("torch_us"):
            floors.append((g["execute"] + g["variant_pack"]) / t["torch_us"])
    s["cudnn_floor_ratio_geomean_tiny"] = report.geomean(floors) if floors else None
    # ... and with the output's allocation, from the plan call's own trace (plan_floor).
    s["plan_floor_ratio_geomean_tiny"] = tg("plan_floor_ratio")
    for st in result.get("step", []):
        s["step_ratio_b%d" % st["batch"]] = st.get("ratio")
        s["step_ms"]["b%d" % st["batch"]] = {k: st.get(k) for k in ("ours_ms", "torch_ms", "ours_host_ms",
                                                                     "torch_host_ms")}
    return s


def _f(x, fmt="%.2f"):
    return "-" if x is None else fmt % x


def summary_rows(result):
    """(name, text) per summary figure, for the markdown and the terminal."""
    s = result["summary"]
    rows = [(k, _f(v, "%.1f" if k.startswith("outside") else "%.3f")) for k, v in s.items()
            if isinstance(v, (int, float)) or (v is None and k != "per_call_worst")]
    w = s.get("per_call_worst")
    return rows + [("per_call_worst", "-" if not w else "%s %s %.2f" % (w["layer"], w["direction"], w["ratio"]))]


def _table(header, rows, align):
    """A markdown table; ``align`` has an 'l' or 'r' per column."""
    return (["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
            + ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows])


def render_markdown(result):
    """The report: header, summary, steps, per layer-direction, tiny shapes, stages, notes."""
    env, cfg, st = result.get("environment", {}), result.get("config", {}), result.get("stages") or {}
    out = ["# cudnnconv host time per call vs PyTorch", "",
           "- GPU %s | cuDNN %s (torch's %s) | CuPy %s | PyTorch %s | cudnnconv %s | Python %s | %s" % tuple(
               env.get(k) for k in ("gpu", "cudnn", "cudnn_torch", "cupy", "torch", "cudnnconv", "python", "date")),
           "- fp16 channels-last, engine 'auto', benchmark=True on both sides. Per-call times: host µs with a "
           "sync after each call, median of %s. Ratio = ours / torch (<1: cudnnconv faster)." % cfg.get("repeats"),
           "", "## Summary", ""] + _table(("metric", "value"), summary_rows(result), "lr")
    out += ["", "## Training step (53 convs: fwd, then dgrad + wgrad in reverse order; no sync inside)", ""]
    out += _table(("batch", "ours ms", "torch ms", "ratio", "ours host issue ms", "torch host issue ms", "note"),
                  [(s["batch"], *[_f(s.get(k), "%.3f") for k in ("ours_ms", "torch_ms", "ratio", "ours_host_ms",
                                                                  "torch_host_ms")], s.get("error", ""))
                   for s in result.get("step", [])], "rrrrrrl")
    out += ["", "## Per call, batch %s (bwd: ours dgrad + wgrad; torch: its backward over all convs, shared "
            "out by each conv's profiled share of it, and that backward / 53)" % cfg.get("per_call_batch"), ""]
    out += _table(("#", "layer", "dir", "ours µs", "torch µs", "ratio", "torch µs (avg)", "ratio (avg)", "note"),
                  [(r["index"], r["layer"], r["direction"], _f(r.get("ours_us"), "%.1f"),
                    _f(r.get("torch_us"), "%.1f"), _f(r.get("ratio")), _f(r.get("torch_avg_us"), "%.1f"),
                    _f(r.get("ratio_vs_avg")), r.get("error", "")) for r in result.get("per_call", [])],
                  "rllrrrrrl")
    out += ["", "## Tiny shapes (host µs per call, 8 rotating input sets)", ""]
    out += _table(("shape", "plain", "out=", "plan", "plan out=", "torch", "plain/torch", "out/torch", "plan/torch",
                   "note"),
                  [(t["shape"], *[_f(t.get(v + "_us"), "%.1f") for v in TINY_VARIANTS], _f(t.get("torch_us"), "%.1f"),
                    *[_f(t.get(v + "_ratio")) for v in ("plain", "out", "plan")], t.get("error", ""))
                   for t in result.get("tiny", [])], "lrrrrrrrrl")
    planned = [t for t in result.get("tiny", []) if t.get("plan_stages_us")]
    if planned:
        out += ["", "## Where a plan call's time goes (tiny shapes, median µs of its stage trace; pack build: "
                "cuDNN's create + set + finalize + destroy of a variant pack, in a tight loop)", ""]
        cols = ("signature", "output", "handle", "variant_pack", "execute", "return", "total")
        out += _table(("shape",) + cols + ("pack build", "floor", "torch", "floor/torch"),
                      [(t["shape"], *[_f(t["plan_stages_us"].get(k)) for k in cols],
                        _f(t.get("variant_pack_build_us")), _f(t.get("plan_floor_us")), _f(t.get("torch_us")),
                        _f(t.get("plan_floor_ratio"))) for t in planned], "l" + "r" * (len(cols) + 4))
    out += ["", "## Stages of a plain forward call (median µs; trace: %s)" % st.get("method"), ""]
    groups = st.get("groups") or {}
    if groups:
        cols = list(groups.values()) + [st["medians_us"]]
        out += _table(["stage"] + list(groups) + ["all"],
                      [[k] + [_f(g.get(k), "%.1f") for g in cols] for k in st["medians_us"]], "l" + "r" * len(cols))
    else:
        out.append("no stage trace" + (": %s" % st["error"] if st.get("error") else ""))
    notes = result.get("notes", [])
    return "\n".join(out + (["", "## Notes", ""] + ["- " + n for n in notes] if notes else [])) + "\n"


def text_table(result):
    """A short table for the terminal: the summary, the steps and the tiny shapes."""
    lines = ["%-28s %s" % r for r in summary_rows(result)]
    lines += ["step b%-4s ours %s ms, torch %s ms (host issue %s / %s ms) %s" % (
        s["batch"], *[_f(s.get(k), "%.3f") for k in ("ours_ms", "torch_ms", "ours_host_ms", "torch_host_ms")],
        s.get("error", "")) for s in result.get("step", [])]
    return "\n".join(lines + ["%-30s plain %s, out %s, plan %s, torch %s µs" % (
        t["shape"], *[_f(t.get(k + "_us"), "%.1f") for k in ("plain", "out", "plan", "torch")])
        for t in result.get("tiny", [])])


def chart(result, path):
    """A PNG of host µs per call, ours and PyTorch's, per conv (fwd and bwd panels, log scale).  Returns
    the path, or None without matplotlib or without per-call times."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    recs = result.get("per_call", [])
    if not any(r.get("ours_us") for r in recs):
        return None
    fig, axes = plt.subplots(2, 1, figsize=(14, 8.5), sharex=True)
    for ax, d, names in zip(axes, ("fwd", "bwd"), (("cudnnconv.conv", "F.conv2d"),
                                                   ("cudnnconv dgrad + wgrad", "torch autograd.backward"))):
        rs = [r for r in recs if r["direction"] == d]
        for key, style, color, label in zip(("ours_us", "torch_us"), ("o-", "s--"), ("#2b7bba", "#e08214"), names):
            ax.plot([r["index"] for r in rs], [r.get(key) or math.nan for r in rs], style, color=color, label=label)
        ax.set(yscale="log", ylabel="host µs per call",
               title="%s: geomean ours/torch %s" % (d, _f(report.geomean([r.get("ratio") for r in rs]))))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=9)
    fwd = [r for r in recs if r["direction"] == "fwd"]
    axes[-1].set_xticks([r["index"] for r in fwd], [r["layer"] for r in fwd], rotation=90, fontsize=6)
    env = result.get("environment", {})
    fig.suptitle("ResNet-50 convs, batch %s, fp16 channels-last, sync after each call | %s, cuDNN %s, PyTorch %s"
                 % (result.get("config", {}).get("per_call_batch"), env.get("gpu"), env.get("cudnn"),
                    env.get("torch")), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------
# measurement (GPU)
# ---------------------------------------------------------------------------

def _error(e):
    return "%s: %s" % (type(e).__name__, (str(e).splitlines() or [""])[0][:200])


def _attempt(fn, errors, name):
    """fn(), or None with the error kept as errors[name]."""
    try:
        return fn()
    except Exception as e:                           # noqa: BLE001 - report, do not die
        errors[name] = _error(e)
        return None


def host_samples(call, n, sync, prep=None, after=None, warmup=2):
    """Host µs of ``call(prep(i))`` for i < n (after ``warmup`` untimed ones), synchronised after each
    call and timed before that sync.  The result is dropped after the clock stops, on both sides alike."""
    out = []
    for i in range(-warmup, n):
        a = prep(i) if prep else i
        sync()
        t0 = time.perf_counter()
        r = call(a)
        t1 = time.perf_counter()
        sync()
        del r
        if after:
            after(i)
        if i >= 0:
            out.append((t1 - t0) * 1e6)
    return out


def conv_table():
    """(convs, source, note): what forward hooks on nn.Conv2d see in torchvision's resnet50() on a
    1x3x224x224 input; the built-in table where that fails.  The note says where the two differ."""
    table = resnet50_convs()
    try:
        import torch
        import torchvision
        seen, model = [], torchvision.models.resnet50()
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Conv2d):
                mod.register_forward_hook(lambda m, i, o, name=name: seen.append({
                    "name": name, "x": tuple(i[0].shape), "w": tuple(m.weight.shape), "stride": tuple(m.stride),
                    "padding": tuple(m.padding)}))
        with torch.no_grad():
            model(torch.zeros(1, 3, 224, 224))
    except Exception as e:                           # noqa: BLE001
        return table, "table", "torchvision hooks failed (%s); the built-in table is used" % _error(e)
    return seen, "torchvision hooks", None if seen == table else "the hooks' convs differ from the built-in table"


def make_layers(torch, cupy, convs, batch, sets):
    """Per conv: ``sets`` independent x and g, one w (random normal, std 1 and 0.05), channels-last;
    leaves that require grad for PyTorch, and CuPy views of the same memory (DLPack) for ours."""
    def new(shape, std=1.0):
        return torch.empty(shape, device="cuda", dtype=torch.float16,
                           memory_format=torch.channels_last).normal_(0, std)
    layers = []
    for c in convs:
        xs = (batch,) + tuple(c["x"][1:])
        x, w = [new(xs) for _ in range(sets)], new(c["w"], 0.05)
        g = [new(out_shape(xs, c["w"], c["stride"], c["padding"])) for _ in range(sets)]
        layers.append(types.SimpleNamespace(
            name=c["name"], s=c["stride"], p=c["padding"], xshape=xs, wshape=tuple(c["w"]), g=g,
            xr=[t.detach().requires_grad_() for t in x], wr=w.detach().requires_grad_(),
            xc=[cupy.from_dlpack(t) for t in x], gc=[cupy.from_dlpack(t) for t in g], wc=cupy.from_dlpack(w)))
    return layers


def _ours(cc, L, direction, sets):
    """Our call of ``direction`` on layer L, as a function of the call's number (pointer set i % sets)."""
    if direction == "fwd":
        return lambda i: cc.conv(L.xc[i % sets], L.wc, None, L.s, L.p, benchmark=True)
    if direction == "dgrad":
        return lambda i: cc.conv_backward_input(L.xshape, L.wc, L.gc[i % sets], L.s, L.p, benchmark=True)
    return lambda i: cc.conv_backward_weight(L.xc[i % sets], L.wshape, L.gc[i % sets], L.s, L.p, benchmark=True)


def measure_step(torch, cc, layers, batch, steps, sets):
    """Both sides' whole step with no sync inside: CUDA-event ms and host issue ms, the sides interleaved
    step by step after WARMUP_STEPS untimed steps (which hold both sides' benchmark searches)."""
    F = torch.nn.functional

    def ours(k):
        keep = [cc.conv(L.xc[k], L.wc, None, L.s, L.p, benchmark=True) for L in layers]
        for L in reversed(layers):
            keep.append(cc.conv_backward_input(L.xshape, L.wc, L.gc[k], L.s, L.p, benchmark=True))
            keep.append(cc.conv_backward_weight(L.xc[k], L.wshape, L.gc[k], L.s, L.p, benchmark=True))
        return keep

    def theirs(k):
        ys = [F.conv2d(L.xr[k], L.wr, None, L.s, L.p) for L in layers]
        torch.autograd.backward(ys, [L.g[k] for L in layers])
        return ys

    t = {"ours": ([], []), "torch": ([], [])}
    for i in range(-WARMUP_STEPS, steps):
        for name, step in (("ours", ours), ("torch", theirs)):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            e0.record()
            t0 = time.perf_counter()
            r = step(i % sets)
            t1 = time.perf_counter()
            e1.record()
            torch.cuda.synchronize()
            del r
            for L in layers:
                L.xr[i % sets].grad = L.wr.grad = None
            if i >= 0:
                t[name][0].append(e0.elapsed_time(e1))
                t[name][1].append((t1 - t0) * 1e3)
    return step_record(batch, 3 * len(layers), t["ours"][0], t["torch"][0], t["ours"][1], t["torch"][1])


def torch_backward_samples(torch, layers, n, sets):
    """PyTorch's backward, host µs of ``n`` calls: one autograd.backward over every conv's output (as a
    training step runs it: each conv's backward in C++), synchronised after; the graph is built before
    the clock starts."""
    F = torch.nn.functional

    def prep(i):
        k = i % sets
        return [F.conv2d(L.xr[k], L.wr, None, L.s, L.p) for L in layers], [L.g[k] for L in layers]

    def clear(i):
        for L in layers:
            L.xr[i % sets].grad = L.wr.grad = None
    return host_samples(lambda a: torch.autograd.backward(a[0], a[1]), n, torch.cuda.synchronize, prep=prep,
                        after=clear)


def node_shares(durations):
    """Each conv's share of PyTorch's backward: its median profiled node µs over the sum of the medians.
    ``durations``: per conv, the node µs of each profiled backward.  None where a conv has no sample."""
    med = [median(d) for d in durations]
    if not med or any(m is None or m <= 0 for m in med):
        return None
    total = sum(med)
    return [m / total for m in med]


def share_out(average_us, shares, n):
    """Per conv, PyTorch's backward µs: the whole backward (``average_us`` * n convs) times each conv's
    share; every conv gets the average where there are no shares."""
    if average_us is None:
        return [None] * n
    return [average_us] * n if shares is None else [average_us * n * sh for sh in shares]


def torch_backward_shares(torch, layers, passes, sets):
    """Each conv's share of one autograd.backward over all convs, from PyTorch's profiler (CPU only): the
    host µs of each ConvolutionBackward0 node, matched to its conv by the autograd sequence number of the
    forward's grad_fn, median over ``passes`` profiled backwards.  The profiler adds about the same cost
    to every node, which pulls the shares towards equal ones: a costly conv's share comes out low, never
    high.  Raises where a node cannot be matched."""
    from torch.profiler import ProfilerActivity, profile
    F, sync = torch.nn.functional, torch.cuda.synchronize
    seqs = []                                        # per pass: {sequence number: conv}
    # One profiler session for every pass: the first op a session records pays its start-up (over a
    # millisecond), so the first pass, which takes it, is dropped.
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(passes + 1):
            k = i % sets
            ys = [F.conv2d(L.xr[k], L.wr, None, L.s, L.p) for L in layers]
            seqs.append({y.grad_fn._sequence_nr(): j for j, y in enumerate(ys)})
            sync()
            torch.autograd.backward(ys, [L.g[k] for L in layers])
            sync()
            del ys
            for L in layers:
                L.xr[k].grad = L.wr.grad = None
    nodes = {e.sequence_nr: e.cpu_time_total for e in prof.events()
             if e.name == "ConvolutionBackward0" and getattr(e, "sequence_nr", -1) >= 0}
    durations = [[] for _ in layers]
    for seq in seqs[1:]:
        got = {j: nodes[n] for n, j in seq.items() if n in nodes}
        if len(got) != len(layers):
            raise RuntimeError("profiled %d of %d ConvolutionBackward0 nodes" % (len(got), len(layers)))
        for j, us in got.items():
            durations[j].append(us)
    shares = node_shares(durations)
    if shares is None:
        raise RuntimeError("a conv's profiled backward node took no time")
    return shares


def measure_per_call(torch, cc, layers, batch, n, sets, deadline, notes, rounds=PER_CALL_ROUNDS):
    """Per conv, host µs per call: ours fwd vs F.conv2d; ours dgrad + wgrad vs PyTorch's backward of that
    conv: PyTorch's backward over all convs (one autograd.backward, ``torch_backward_samples``) shared
    out by each conv's share of it (``torch_backward_shares``).  Where the shares cannot be had, every
    conv gets the average, and a note says so.  Each bwd record keeps the average too.

    Every figure is the median of ``rounds`` x ``n`` samples, taken in ``rounds`` passes over all convs
    (PyTorch's backward once per pass): a slow spell of the machine lands in one pass, on both sides
    alike, instead of on one conv's figures, which one pass over the convs would leave it on."""
    F, sync = torch.nn.functional, torch.cuda.synchronize
    fns = [{"fwd": _ours(cc, L, "fwd", sets), "dgrad": _ours(cc, L, "dgrad", sets),
            "wgrad": _ours(cc, L, "wgrad", sets),
            "torch fwd": lambda i, L=L: F.conv2d(L.xr[i % sets], L.wr, None, L.s, L.p)} for L in layers]
    samples = [{d: [] for d in f} for f in fns]
    errs = [{} for _ in layers]
    tb_samples, tb_err, done = [], {}, 0
    for rnd in range(rounds):
        if rnd and time.perf_counter() > deadline:
            notes.append("time limit: per-call times from %d of %d passes" % (rnd, rounds))
            break
        tb_samples += _attempt(lambda: torch_backward_samples(torch, layers, n, sets), tb_err, "torch bwd") or []
        for idx in range(len(layers)):
            if time.perf_counter() > deadline and not rnd:
                notes.append("time limit: per-call times for %d of %d convs" % (idx, len(layers)))
                break
            for d, fn in fns[idx].items():
                if d not in errs[idx]:
                    samples[idx][d] += _attempt(lambda: host_samples(fn, n, sync), errs[idx], d) or []
            done = max(done, idx + 1)
    tb = median(tb_samples) / len(layers) if tb_samples else None
    shares = _attempt(lambda: torch_backward_shares(torch, layers, max(3, n // 3), sets), {}, "shares") \
        if tb is not None else None
    if tb is not None and shares is None:
        notes.append("PyTorch's per-conv backward shares could not be profiled: bwd ratios use its average")
    per_conv = share_out(tb, shares, len(layers))
    recs = []
    for idx, L in enumerate(layers[:done]):
        us = {d: median(v) if v else None for d, v in samples[idx].items()}
        err = dict(errs[idx], **tb_err)
        bwd = None if us["dgrad"] is None or us["wgrad"] is None else us["dgrad"] + us["wgrad"]
        msg = lambda fwd: "; ".join("%s: %s" % kv for kv in err.items() if ("fwd" in kv[0]) == fwd)  # noqa: E731
        recs.append(call_record(idx, L.name, batch, "fwd", us["fwd"], us["torch fwd"], error=msg(True)))
        rec = call_record(idx, L.name, batch, "bwd", bwd, per_conv[idx], error=msg(False),
                          parts={"dgrad": us["dgrad"], "wgrad": us["wgrad"]})
        rec.update(torch_basis="profiled share" if shares is not None else "average", torch_avg_us=tb,
                   ratio_vs_avg=ratio(bwd, tb))
        recs.append(rec)
    return recs


def stage_api(cc):
    """(method, trace_stages, stage_times): cudnnconv's own stage trace, else the graph engine's."""
    if hasattr(cc, "trace_stages") and hasattr(cc, "stage_times"):
        return "cudnnconv.trace_stages", cc.trace_stages, cc.stage_times
    from cudnnconv.engines import graph
    return "graph.trace_stages", graph.trace_stages, graph.stage_times


def stage_samples(call, n, sync, api):
    """The stage trace of n calls, each with the host µs around the call added as "host"."""
    got = []
    api[1](True)
    try:
        host = host_samples(call, n, sync, after=lambda i: got.append(dict(api[2]() or {})), warmup=0)
    finally:
        api[1](False)
    return [dict(s, host=h) for s, h in zip(got, host) if s]


def measure_tiny(torch, cupy, cc, shape, n, sync):
    """One tiny shape, host µs per call: ours plain, out=, plan, plan with out=, and F.conv2d.  Returns
    the record and the plain call (for the stage trace)."""
    N, C, H, K, R, pad = shape
    F, err, S = torch.nn.functional, {}, TINY_SETS
    cl = dict(device="cuda", dtype=torch.float16, memory_format=torch.channels_last)
    xs, wt = [torch.empty(N, C, H, H, **cl).normal_() for _ in range(S)], torch.empty(K, C, R, R, **cl).normal_()
    xc, wc, ho = [cupy.from_dlpack(x) for x in xs], cupy.from_dlpack(wt), H + 2 * pad - R + 1
    outs = [cupy.empty((N, ho, ho, K), cupy.float16).transpose(0, 3, 1, 2) for _ in range(S)]
    fns = {"plain": lambda i: cc.conv(xc[i % S], wc, None, 1, pad, benchmark=True),
           "out": lambda i: cc.conv(xc[i % S], wc, None, 1, pad, benchmark=True, out=outs[i % S])}
    plan = None
    if hasattr(cc, "plan"):                          # made with the function call's own arguments
        plan = _attempt(lambda: cc.plan(cc.conv, xc[0], wc, None, 1, pad, benchmark=True), err, "plan")
    if plan is not None and _attempt(lambda: plan(xc[1], wc), err, "p(x, w)") is None:
        err["p(x, w)"] += " (timed as p(x, w, None))"            # the documented form failed: time the other
        fns.update(plan=lambda i: plan(xc[i % S], wc, None),
                   plan_out=lambda i: plan(xc[i % S], wc, None, out=outs[i % S]))
    elif plan is not None:
        fns.update(plan=lambda i: plan(xc[i % S], wc), plan_out=lambda i: plan(xc[i % S], wc, out=outs[i % S]))
    fns["torch"] = lambda i: F.conv2d(xs[i % S], wt, None, 1, pad)
    samples = {k: [] for k in fns}
    with torch.no_grad():
        for _ in range(TINY_ROUNDS):                 # in rounds, so that slow drift hits every variant alike
            for name, fn in fns.items():
                if name not in err:
                    samples[name] += _attempt(lambda: host_samples(fn, max(1, n // TINY_ROUNDS), sync, warmup=5),
                                              err, name) or []
    rec = tiny_record(shape, {k: median(v) for k, v in samples.items()}, err)
    if plan is not None:
        rec.update(plan_workspace=getattr(plan, "workspace", None), plan_choice=str(getattr(plan, "choice", "")))
        choice = getattr(getattr(plan, "executor", None), "choice", None)
        if getattr(choice, "issue_ms", -1.0) >= 0:       # the search's host issue time of it (host-aware ranking)
            rec["plan_issue_us"] = round(choice.issue_ms * 1e3, 2)
            rec["plan_gpu_us"] = round(choice.time_ms * 1e3, 2)
        if hasattr(choice, "variant_pack_cost_us"):      # cuDNN's own cost of a new pack, in a tight loop
            rec["variant_pack_build_us"] = _attempt(lambda: choice.variant_pack_cost_us(2000), err, "pack cost")
    return rec, fns["plain"], (fns.get("plan") if "plan" not in err else None)


def settings(args):
    """Repeats and call counts of the run; --quick makes a smoke run."""
    if args.quick:
        return {"repeats": min(args.repeats, 5), "steps": 3, "tiny_calls": 40, "stage_calls": 5}
    r = max(args.repeats, 1)
    return {"repeats": r, "steps": max(10, r), "tiny_calls": max(300, 20 * r), "stage_calls": max(15, r)}


def run(args, result):
    """Every measurement, into ``result``."""
    import cupy
    import torch
    import cudnnconv as cc
    torch.backends.cudnn.benchmark = True
    cfg, notes, stages, sync = result["config"], result["notes"], result["stages"], torch.cuda.synchronize
    deadline = args.deadline
    env = result["environment"]
    env.update(cudnn_torch=torch.backends.cudnn.version(), torchvision=report._dist_version("torchvision"))
    ptr = torch.cuda.current_stream().cuda_stream
    same = cupy.cuda.get_current_stream().ptr == ptr
    cfg["stream"] = {"torch": ptr, "cupy_was_same": same}
    convs, cfg["conv_source"], note = conv_table()
    notes += [note] if note else []
    notes += [] if hasattr(cc, "plan") else ["cudnnconv.plan is missing: no plan rows"]
    api, groups = _attempt(lambda: stage_api(cc), stages, "error"), {}
    with contextlib.nullcontext() if same else cupy.cuda.ExternalStream(ptr):
        for bi, batch in enumerate(args.batches):
            if time.perf_counter() > deadline:
                result["step"].append({"batch": batch, "error": "skipped: time limit"})
                continue
            gc.collect()
            err = {}
            layers = _attempt(lambda: make_layers(torch, cupy, convs, batch, POINTER_SETS), err, "error")
            step = layers and _attempt(lambda: measure_step(torch, cc, layers, batch, cfg["steps"], POINTER_SETS),
                                       err, "error")
            result["step"].append(step or {"batch": batch, "error": err.get("error")})
            if bi == 0 and layers:
                result["per_call"] = measure_per_call(torch, cc, layers, batch, cfg["repeats"], POINTER_SETS,
                                                      deadline, notes)
                # the stage trace in passes over all convs too, so that a slow spell lands in one pass
                fwd = groups.setdefault("resnet50 b%d fwd" % batch, [])
                per_pass = max(1, cfg["stage_calls"] // PER_CALL_ROUNDS)
                for L in [L for _ in range(PER_CALL_ROUNDS) for L in layers] if api else []:
                    if time.perf_counter() > deadline:
                        break
                    fwd += _attempt(lambda: stage_samples(_ours(cc, L, "fwd", POINTER_SETS), per_pass, sync, api),
                                    stages, "error") or []
            layers = None
            gc.collect()
            torch.cuda.empty_cache()
            cupy.get_default_memory_pool().free_all_blocks()
        for shape in TINY_SHAPES:
            if time.perf_counter() > deadline:
                notes.append("time limit: tiny shape %s skipped" % tiny_label(shape))
                continue
            err = {}
            got = _attempt(lambda: measure_tiny(torch, cupy, cc, shape, cfg["tiny_calls"], sync), err, "setup")
            result["tiny"].append(got[0] if got else tiny_record(shape, {}, err))
            if got and api:
                groups[tiny_label(shape)] = _attempt(lambda: stage_samples(got[1], cfg["stage_calls"], sync, api),
                                                     stages, "error") or []
            if got and api and got[2] is not None:
                traced = _attempt(lambda: stage_samples(got[2], cfg["stage_calls"], sync, api), stages, "error")
                if traced:
                    got[0].update(plan_floor(traced, got[0].get("torch_us")))
    if api:
        stages.update(stage_summary(api[0], groups))


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", metavar="DIR", required=True, help="write <gpu>_host.json, .md and .png here")
    p.add_argument("--batches", default=[32, 128], type=lambda t: [int(x) for x in t.split(",") if x.strip()],
                   help="ResNet-50 batch sizes of the step replay; the first also gets per-call times "
                        "(default 32,128)")
    p.add_argument("--repeats", type=int, default=15, help="timed repeats per call (default 15)")
    p.add_argument("--quick", action="store_true", help="a smoke run: few repeats")
    p.add_argument("--time-limit", type=float, default=None, metavar="S",
                   help="start nothing new after S seconds; the outputs are still written")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    args.deadline = t0 + (args.time_limit or float("inf"))        # from the start: imports and setup count
    cfg = dict(settings(args), batches=args.batches, per_call_batch=(args.batches or [None])[0], quick=args.quick,
               time_limit=args.time_limit, dtype="fp16", layout="channels_last", engine="auto", benchmark=True,
               torch_cudnn_benchmark=True, pointer_sets=POINTER_SETS, tiny_sets=TINY_SETS, tiny_rounds=TINY_ROUNDS,
               warmup_steps=WARMUP_STEPS)
    result = {"schema": SCHEMA, "environment": report.environment(), "config": cfg, "summary": {}, "step": [],
              "per_call": [], "tiny": [], "stages": {}, "notes": []}
    try:
        run(args, result)
    except Exception as e:                           # noqa: BLE001 - the outputs are still written
        result["error"] = _error(e)
        result["notes"].append("run stopped: " + result["error"])
    result["wall_s"] = time.perf_counter() - t0
    result["summary"] = summarize(result)
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, report.gpu_slug(result["environment"].get("gpu")) + "_host")
    png = _attempt(lambda: chart(result, base + ".png"), result, "chart_error")
    if png is None:
        result["notes"].append("no PNG: %s" % result.get("chart_error", "matplotlib missing or no per-call times"))
    report.write_json(result, base + ".json")
    with open(base + ".md", "w") as f:
        f.write(render_markdown(result))
    print(text_table(result))
    print("wrote %s.json, %s.md%s" % (base, base, ", " + png if png else " (no PNG)"))
    return result


if __name__ == "__main__":
    main()
