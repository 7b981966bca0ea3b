"""cudnnconv.torch against PyTorch on torchvision's ResNet-50: training step, inference, a captured step.

    PYTHONPATH=pyx:. python3 bench/torch_train.py --out DIR [--batches 64,256] [--steps 20] [--time-limit S]

Three copies of one model, fp16 channels-last, torch.backends.cudnn.benchmark=True:

- torch: the model as torchvision builds it;
- ours: ``cudnnconv.torch.convert`` of a copy;
- control: a copy whose convolutions run PyTorch's own aten convolution and convolution_backward from a
  Python ``torch.autograd.Function`` (what any Python-level autograd layer costs, apart from ours).

Where cudnnconv.torch's C++ autograd node is built, the training step also runs "ours_function": the
same converted copy with its convolutions recorded by cudnnconv.torch's Python autograd.Function
instead (``functional.use_autograd_node(False)`` for that step), so the node's saving is measured
beside it.

Training step (SGD with momentum, cross-entropy on random labels): forward, backward, optimizer step,
timed back to back with CUDA events (no sync inside), the median ms per step over rounds in which the
three copies take turns.  Inference: batch 1, eval mode, no grad, the median ms per forward.  Captured
step: one training step captured with torch.cuda.graph, ours and torch's, each captured and timed on its own
(the median ms per replay), in a child process, so that a crash there is a record, not the end of the run;
with --interleaved, a second child captures both and replays them in turns, and says whether that ran,
and a third does the same with two copies of PyTorch's own network (the control).
Correctness: one fp32 training step without TF32 (batch 8, 128x128), the loss and every convolution
weight gradient of ours against PyTorch's, as relative L2 errors.

Ratios are ours / PyTorch's (below 1: faster).  Writes DIR/<gpu>_torch_train.json and .md; a failing
measurement becomes an "error" string, never a crash.
"""
import argparse
import copy
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

try:
    from bench import report
except ImportError:                                     # run as a script: python3 bench/torch_train.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench import report

SCHEMA = "cudnnconv.bench.torch_train/1"
SUMMARY_KEYS = ("train_step_ratio_b64", "train_step_ratio_b256", "control_function_ratio_b64",
                "ours_function_ratio_b64", "infer_ratio_b1", "graphed_step_ratio", "max_grad_relerr_fp32")


def ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


def summarize(result):
    """The summary fields: each batch's step ratio (ours / torch, and control / torch), inference,
    the captured step and the fp32 gradient check."""
    s = {k: None for k in SUMMARY_KEYS}
    for st in result.get("train", []):
        s["train_step_ratio_b%d" % st["batch"]] = ratio(st.get("ours_ms"), st.get("torch_ms"))
        s["control_function_ratio_b%d" % st["batch"]] = ratio(st.get("control_ms"), st.get("torch_ms"))
        s["ours_function_ratio_b%d" % st["batch"]] = ratio(st.get("ours_function_ms"), st.get("torch_ms"))
    inf = result.get("infer") or {}
    s["infer_ratio_b1"] = ratio(inf.get("ours_ms"), inf.get("torch_ms"))
    gr = result.get("graphed") or {}
    s["graphed_step_ratio"] = ratio(gr.get("ours_ms"), gr.get("torch_ms"))
    fp = result.get("fp32") or {}
    errs = [fp.get("loss_relerr")] + list((fp.get("grad_relerr") or {}).values())
    s["max_grad_relerr_fp32"] = max(errs) if errs and None not in errs else None
    return s


def markdown(result):
    env, s = result["environment"], result["summary"]
    f = lambda x, fmt="%.3f": "-" if x is None else fmt % x  # noqa: E731
    out = ["# cudnnconv.torch vs PyTorch: torchvision ResNet-50", "",
           "- GPU %s | cuDNN %s | PyTorch %s | torchvision %s | CuPy %s | cudnnconv %s | %s" % (
               env.get("gpu"), env.get("cudnn"), env.get("torch"), env.get("torchvision"), env.get("cupy"),
               env.get("cudnnconv"), env.get("date")),
           "- fp16 channels-last, cudnn.benchmark=True; ratio = ours / PyTorch's (<1: faster). control = PyTorch's "
           "aten convolutions called from a Python autograd.Function; ours (Python Function) = ours recorded by "
           "cudnnconv.torch's Python autograd.Function instead of its C++ node. autograd node: %s" % (
               result.get("autograd_node"),), "", "## Summary", "", "| metric | value |",
           "|---|---:|"]
    out += ["| %s | %s |" % (k, f(s.get(k), "%.2e" if k.startswith("max_grad") else "%.3f")) for k in SUMMARY_KEYS]
    out += ["", "## Training step (ms per step, median)", "", "| batch | ours | torch | control | ours (Python "
            "Function) | ours/torch | control/torch | ours (Python Function)/torch | note |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for st in result.get("train", []):
        out.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            st["batch"], f(st.get("ours_ms")), f(st.get("torch_ms")), f(st.get("control_ms")),
            f(st.get("ours_function_ms")), f(ratio(st.get("ours_ms"), st.get("torch_ms"))),
            f(ratio(st.get("control_ms"), st.get("torch_ms"))),
            f(ratio(st.get("ours_function_ms"), st.get("torch_ms"))), st.get("error", "")))
    for name, key in (("Inference, batch 1 (ms per forward)", "infer"), ("Captured training step (ms per replay)",
                                                                          "graphed")):
        r = result.get(key) or {}
        out += ["", "## " + name, "", "ours %s, torch %s, ratio %s %s" % (
            f(r.get("ours_ms")), f(r.get("torch_ms")), f(ratio(r.get("ours_ms"), r.get("torch_ms"))),
            ("(failed at %s: %s)" % (r["stage"], r.get("error")) if r.get("stage") else r.get("error", "")))]
    out += ["", "## Two captured steps replayed in turns (--interleaved)", ""]
    for label, key in (("torch and ours", "graphed_interleaved"),
                       ("two copies of torch's (control)", "graphed_interleaved_torch_pair")):
        out.append("- %s: %s" % (label, _interleaved_outcome(result.get(key))))
    fp = result.get("fp32") or {}
    out += ["", "## fp32 step without TF32: relative errors against PyTorch", "",
            "loss %s; worst conv weight gradient %s (%s) %s" % (
                f(fp.get("loss_relerr"), "%.2e"),
                f(max((fp.get("grad_relerr") or {"-": None}).values(), key=lambda v: v or 0), "%.2e"),
                max((fp.get("grad_relerr") or {"-": 0}).items(), key=lambda kv: kv[1] or 0)[0], fp.get("error", ""))]
    notes = result.get("notes") or []
    return "\n".join(out + (["", "## Notes", ""] + ["- " + n for n in notes] if notes else [])) + "\n"


def _interleaved_outcome(rec):
    """One line for an --interleaved record: ran, not run (and why), or where it failed."""
    if not rec:
        return "not run"
    if rec.get("ok"):
        return "ran"
    if rec.get("skipped") or str(rec.get("error", "")).startswith("skipped"):
        return rec.get("skipped") or rec["error"]
    return "failed%s: %s" % (" at " + rec["stage"] if rec.get("stage") else "", rec.get("error"))


def _error(e):
    return "%s: %s" % (type(e).__name__, str(e).splitlines()[0][:300] if str(e) else "")


# ---------------------------------------------------------------------------------------------------------
# GPU side (imports torch)
# ---------------------------------------------------------------------------------------------------------

def control_model(torch, model):
    """``model`` with its Conv2d modules running aten's convolution through a Python autograd.Function."""
    aten_conv, aten_bwd = torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default

    class AtenConv(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, stride, padding, dilation, groups):
            ctx.save_for_backward(x, w)
            ctx.args = (stride, padding, dilation, groups)
            return aten_conv(x, w, None, stride, padding, dilation, False, [0, 0], groups)

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            stride, padding, dilation, groups = ctx.args
            gx, gw, _ = aten_bwd(g, x, w, None, stride, padding, dilation, False, [0, 0], groups,
                                 [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False])
            return gx, gw, None, None, None, None

    class ControlConv2d(torch.nn.Conv2d):
        def _conv_forward(self, x, w, b):
            y = AtenConv.apply(x, w, list(self.stride), list(self.padding), list(self.dilation), self.groups)
            return y if b is None else y + b.view(1, -1, 1, 1)

    for m in model.modules():
        if type(m) is torch.nn.Conv2d and m.padding_mode == "zeros":
            m.__class__ = ControlConv2d
    return model


def _models(torch, tv, cct, dtype, fmt):
    torch.manual_seed(0)
    base = tv.models.resnet50().to("cuda", dtype).to(memory_format=fmt)
    return {"torch": base, "ours": cct.convert(copy.deepcopy(base)), "control": control_model(torch, copy.deepcopy(base))}


def _step_fn(torch, model, x, t, clear=True):
    """(step, optimizer): one SGD-with-momentum training step of ``model`` on (x, t), which sets the
    gradients to None first where ``clear`` (a captured step leaves that to its caller)."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = torch.nn.functional.cross_entropy

    def step():
        if clear:
            opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), t)
        loss.backward()
        opt.step()
        return loss
    return step, opt


def _timed(torch, fn, n):
    """ms per call of fn over n back-to-back calls, by CUDA events."""
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(n):
        fn()
    b.record()
    b.synchronize()
    return a.elapsed_time(b) / n


def _without_node(functional, step):
    """``step`` with cudnnconv.torch's forward convolutions recorded by its Python autograd.Function
    instead of its C++ node (what the node saves is measured beside it)."""
    def fn():
        functional.use_autograd_node(False)
        try:
            return step()
        finally:
            functional.use_autograd_node(True)
    return fn


def measure_train(torch, tv, cct, batch, steps, rounds, deadline):
    from cudnnconv.torch import functional
    fmt, dtype = torch.channels_last, torch.float16
    models = _models(torch, tv, cct, dtype, fmt)
    x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=dtype).to(memory_format=fmt)
    t = torch.randint(0, 1000, (batch,), device="cuda")
    fns = {k: _step_fn(torch, m, x, t)[0] for k, m in models.items()}
    if functional.autograd_node():             # ours again, recorded by the Python autograd.Function
        fns["ours_function"] = _without_node(functional, _step_fn(torch, models["ours"], x, t)[0])
    for fn in fns.values():                    # warm-up: cuDNN's and our benchmark searches run here
        for _ in range(3):
            fn()
    torch.cuda.synchronize()
    got = {k: [] for k in fns}
    for r in range(rounds):
        if r and time.perf_counter() > deadline:
            break
        for k, fn in fns.items():
            got[k].append(_timed(torch, fn, steps))
    rec = {"batch": batch, "rounds": len(got["torch"]), "steps": steps}
    rec.update({k + "_ms": statistics.median(v) for k, v in got.items()})
    return rec


def measure_infer(torch, tv, cct, n, rounds):
    fmt, dtype = torch.channels_last, torch.float16
    models = {k: m.eval() for k, m in _models(torch, tv, cct, dtype, fmt).items() if k != "control"}
    x = torch.randn(1, 3, 224, 224, device="cuda", dtype=dtype).to(memory_format=fmt)
    got = {k: [] for k in models}
    with torch.no_grad():
        for m in models.values():
            for _ in range(5):
                m(x)
        torch.cuda.synchronize()
        for _ in range(rounds):
            for k, m in models.items():
                got[k].append(_timed(torch, lambda m=m: m(x), n))
    return {k + "_ms": statistics.median(v) for k, v in got.items()}


def _capture(torch, m, x, t, rec, k):
    """One training step of ``m`` captured with torch.cuda.graph, replayed once: (graph, optimizer).
    It is warmed up on a side stream and captured on that stream (torch.cuda.graph(stream=...)), with
    its gradients set to None before the capture, as PyTorch's whole-network capture example does.

    The caller keeps the optimizer as long as the graph: its momentum buffers were made in the
    warm-up, outside the graph's private pool, and the graph reads and writes them.  Dropped, they go
    back to the caching allocator while the graph still points at them, and the next allocation
    (another capture's warm-up) takes that memory: the cause of the crash once seen when two captured
    steps were replayed in turns (an illegal address, or a segfault, in PyTorch's copy as often as in
    ours, and in a pair of PyTorch's own)."""
    rec["stage"] = "capture " + k
    step, opt = _step_fn(torch, m, x, t, clear=False)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(g, stream=s):     # the warm-up stream: the kept workspace blocks are there
        step()
    torch.cuda.synchronize()
    rec["stage"] = "first replay " + k
    g.replay()
    torch.cuda.synchronize()
    return g, opt


def _graphed_inputs(torch, tv, cct, batch):
    fmt, dtype = torch.channels_last, torch.float16
    models = {k: m for k, m in _models(torch, tv, cct, dtype, fmt).items() if k != "control"}
    x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=dtype).to(memory_format=fmt)
    t = torch.randint(0, 1000, (batch,), device="cuda")
    return models, x, t


def measure_graphed(torch, tv, cct, batch, n, rounds, rec):
    """ms per replay of one captured training step, ours and torch's: each copy captured, timed over
    ``rounds`` runs of n replays, and released before the next is captured."""
    models, x, t = _graphed_inputs(torch, tv, cct, batch)
    for k, m in models.items():
        g, opt = _capture(torch, m, x, t, rec, k)
        rec["stage"] = "timed replays " + k
        rec[k + "_ms"] = statistics.median([_timed(torch, g.replay, n) for _ in range(rounds)])
        del g, opt
        torch.cuda.synchronize()
    rec.pop("stage")
    return rec


def _interleaved(torch, models, x, t, n, rounds, rec):
    """Both ``models`` captured, then replayed in turns, ``rounds`` x n times each, synchronised after
    each replay so that an error is that replay's: whether that runs."""
    graphs = {k: _capture(torch, m, x, t, rec, k) for k, m in models.items()}   # each with its optimizer
    for i in range(rounds * n):
        for k, (g, _) in graphs.items():
            rec["stage"] = "interleaved replay %d of %s" % (i, k)
            g.replay()
            torch.cuda.synchronize()
    rec.pop("stage")
    rec["ok"] = True
    return rec


def measure_graphed_interleaved(torch, tv, cct, batch, n, rounds, rec):
    """PyTorch's captured step and ours, replayed in turns."""
    models, x, t = _graphed_inputs(torch, tv, cct, batch)
    return _interleaved(torch, models, x, t, n, rounds, rec)


def measure_graphed_interleaved_torch_pair(torch, tv, cct, batch, n, rounds, rec):
    """The control: two copies of PyTorch's own network, captured and replayed in turns (nothing of
    cudnnconv's runs), to tell a crash of ours from one of the pattern itself."""
    models, x, t = _graphed_inputs(torch, tv, cct, batch)
    return _interleaved(torch, {"torch": models["torch"], "torch_copy": copy.deepcopy(models["torch"])}, x, t, n,
                        rounds, rec)


PHASES = {"graphed": measure_graphed, "graphed_interleaved": measure_graphed_interleaved,
          "graphed_interleaved_torch_pair": measure_graphed_interleaved_torch_pair}


CHILD_TIMEOUT_S = 1200.0         # a child phase's limit without --time-limit


def child_phase(args, name):
    """Run phase ``name`` in a child process (this script with --phase): a crash there (a segfault,
    a sticky CUDA error, a hang) becomes its record's error, with the stage it reached and the
    child's last output lines, and the run goes on.  The child writes its record after every
    measurement, so what it measured before a crash is kept.  A child past its time gets SIGABRT
    first, so that faulthandler prints where it hung, then SIGKILL."""
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    cmd = [sys.executable, "-X", "faulthandler", os.path.abspath(__file__), "--out", args.out, "--batches",
           ",".join(map(str, args.batches)), "--steps", str(args.steps), "--rounds", str(args.rounds),
           "--phase", name, "--phase-out", path]
    left = args.deadline - time.perf_counter()
    limit = CHILD_TIMEOUT_S if left == float("inf") else max(240.0, left + 60.0)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    why = None
    try:
        out, _ = p.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        why = "timed out after %.0f s" % limit
        p.send_signal(signal.SIGABRT)
        try:
            out, _ = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
    out = (out or b"").decode("utf-8", "replace")
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        rec = {}
    finally:
        os.unlink(path)
    rc = p.returncode
    if why is None and rc != 0:
        why = ("killed by %s" % signal.Signals(-rc).name) if rc < 0 else "rc %d" % rc
    if why is not None and "error" not in rec:
        stages = [ln.split("stage: ", 1)[1] for ln in out.splitlines() if ln.startswith("[torch_train] stage: ")]
        rec.update(error="the child process ended: %s" % why, stage=stages[-1] if stages else rec.get("stage"))
        rec["child_output_tail"] = [ln for ln in out.splitlines() if ln.strip()][-12:]
    return rec


class _StageLog(dict):
    """A phase record that prints each stage it enters (the parent reads the last one after a crash)
    and writes itself to ``path`` after every change."""
    def __init__(self, path):
        super().__init__()
        self.path = path

    def _save(self):
        with open(self.path, "w") as f:
            json.dump(dict(self), f)

    def __setitem__(self, key, value):
        if key == "stage":
            print("[torch_train] stage: %s" % value, flush=True)
        super().__setitem__(key, value)
        self._save()

    def pop(self, key, *default):
        v = super().pop(key, *default)
        self._save()
        return v


def run_phase(args):
    """The child side of child_phase: run one phase, its record kept in --phase-out as it goes."""
    rec = _StageLog(args.phase_out)
    try:
        import torch
        import torchvision as tv
        import cudnnconv.torch as cct
        torch.backends.cudnn.benchmark = True
        PHASES[args.phase](torch, tv, cct, args.batches[0], args.steps, args.rounds, rec)
    except Exception as e:                             # noqa: BLE001
        rec["error"] = _error(e)
    rec._save()


def measure_fp32(torch, tv, cct):
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        torch.manual_seed(1)
        theirs = tv.models.resnet50(num_classes=10).cuda()
        ours = cct.convert(copy.deepcopy(theirs))
        x = torch.randn(8, 3, 128, 128, device="cuda")
        t = torch.randint(0, 10, (8,), device="cuda")
        out = {}
        for k, m in (("ours", ours), ("torch", theirs)):
            loss = torch.nn.functional.cross_entropy(m(x), t)
            loss.backward()
            out[k] = (loss.detach().double(), {n: mod.weight.grad.double() for n, mod in m.named_modules()
                                                if isinstance(mod, torch.nn.Conv2d)})
        rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
        return {"loss_relerr": rel(out["ours"][0], out["torch"][0]),
                "grad_relerr": {n: rel(g, out["torch"][1][n]) for n, g in out["ours"][1].items()}}
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _progress(msg):
    print("[torch_train] %s" % msg, file=sys.stderr, flush=True)


def run(args, result):
    import torch
    import torchvision as tv
    import cudnnconv.torch as cct
    from cudnnconv.torch import functional
    torch.backends.cudnn.benchmark = True
    result["environment"]["torchvision"] = tv.__version__
    result["autograd_node"] = "C++ node" if functional.autograd_node() else functional.NODE_UNAVAILABLE
    deadline = args.deadline
    _progress("fp32 gradient check")
    try:
        result["fp32"] = measure_fp32(torch, tv, cct)
    except Exception as e:                             # noqa: BLE001
        result["fp32"] = {"error": _error(e)}
        result["notes"].append("fp32 check: " + traceback.format_exc().splitlines()[-1])
    for batch in args.batches:
        if time.perf_counter() > deadline:
            result["train"].append({"batch": batch, "error": "skipped: time limit"})
            continue
        _progress("training step, batch %d" % batch)
        try:
            result["train"].append(measure_train(torch, tv, cct, batch, args.steps, args.rounds, deadline))
        except Exception as e:                         # noqa: BLE001
            result["train"].append({"batch": batch, "error": _error(e)})
        torch.cuda.empty_cache()
    for key, fn in (("infer", lambda rec: measure_infer(torch, tv, cct, 50, args.rounds)),
                    ("graphed", lambda rec: child_phase(args, "graphed")),
                    ("graphed_interleaved", lambda rec: child_phase(args, "graphed_interleaved")
                     if args.interleaved else {"skipped": "not run (without --interleaved)"}),
                    ("graphed_interleaved_torch_pair", lambda rec: child_phase(args, "graphed_interleaved_torch_pair")
                     if args.interleaved else {"skipped": "not run (without --interleaved)"})):
        if time.perf_counter() > deadline:
            result[key] = {"error": "skipped: time limit"}
            continue
        _progress(key)
        partial = {}
        try:
            result[key] = fn(partial)
        except Exception as e:                         # noqa: BLE001
            result[key] = dict(partial, error=_error(e))
        torch.cuda.empty_cache()


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, metavar="DIR", help="write <gpu>_torch_train.json and .md here")
    p.add_argument("--batches", default=[64, 256], type=lambda s: [int(v) for v in s.split(",") if v.strip()],
                   help="training batch sizes (default 64,256); the first is also the captured step's")
    p.add_argument("--steps", type=int, default=20, help="steps per timed run (default 20)")
    p.add_argument("--rounds", type=int, default=5, help="timed runs per copy, taking turns (default 5)")
    p.add_argument("--time-limit", type=float, default=None, metavar="S",
                   help="start nothing new after S seconds; the outputs are still written")
    p.add_argument("--interleaved", action="store_true",
                   help="also capture ours and PyTorch's copy in one process and replay them in turns, and "
                        "two copies of PyTorch's as the control: whether that runs")
    p.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)     # child_phase's child
    p.add_argument("--phase-out", help=argparse.SUPPRESS)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.phase:
        return run_phase(args)
    t0 = time.perf_counter()
    args.deadline = t0 + (args.time_limit or float("inf"))
    result = {"schema": SCHEMA, "environment": report.environment(), "config": vars(args).copy(), "summary": {},
              "train": [], "infer": None, "graphed": None, "graphed_interleaved": None,
              "graphed_interleaved_torch_pair": None, "fp32": None, "notes": []}
    result["config"].pop("deadline", None)
    try:
        run(args, result)
    except Exception as e:                             # noqa: BLE001
        result["error"] = _error(e)
        result["notes"].append("run stopped: " + result["error"])
    result["wall_s"] = time.perf_counter() - t0
    result["summary"] = summarize(result)
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, report.gpu_slug(result["environment"].get("gpu")) + "_torch_train")
    report.write_json(result, base + ".json")
    with open(base + ".md", "w") as f:
        f.write(markdown(result))
    print(json.dumps(result["summary"], indent=1))
    print("wrote %s.json, %s.md" % (base, base))
    return result


if __name__ == "__main__":
    main()
