"""Where a warm first call's time goes, layer by layer (a diagnostic, not a test).

    PYTHONPATH=pyx:. python3 tools/first_call_probe.py --out DIR [--batch 32] [--channels-last]

In one process, every ResNet-50 forward layer is searched once
(benchmark=True), so its plan is cached, its kernels are loaded and its
workspace is allocated: the state a warm tuning file with warm-up gives.
Then, per layer, the median synchronised wall time (and the host time up to
the call's return) of each of these, over ``--repeats`` calls:

* steady:      the same arrays again (every cache warm);
* signature:   the API's signature memo emptied before each call, so the
               call validates and plans its arguments again (a new call
               signature's first pass);
* pointers:    the input rotated over copies at other addresses, so the
               engine builds a new variant pack (new pointers);
* both:        both at once: what a warm first call pays beyond steady.

The differences to steady are the costs a first call adds.  A cProfile of
the signature pass over all layers shows which Python functions take it.
Writes ``<out>/first_call_probe.json`` and ``.md``.

With ``--fresh``, the real thing instead: a cold child writes a tuning file,
then fresh children load it with warm-up (CUDNNCONV_TUNING_WARMUP=1) and
split each layer's first call, and the median of its steady calls, into
host time (up to the call's return; of it, the output's allocation and the
engine's run) and GPU time (the call's work queued behind a spin kernel and
timed with events, so that it holds no host time).  ``--preallocate`` runs
a second such child with each output allocated before the first call.
Writes ``<out>/first_call_fresh.json`` and ``.md``.
"""
import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--engine", default="auto")
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--child", choices=("cold", "split"))
    p.add_argument("--preallocate", action="store_true")
    p.add_argument("--spin", action="store_true")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if args.fresh:
        return fresh(args)

    import cupy
    import cudnnconv
    from cudnnconv.core.state import state as thread_state

    sync = cupy.cuda.Device().synchronize
    layers = []
    for name, x, w, stride, pad in _layers(args, cupy):
        # copies at other addresses (same strides, same 256-byte alignment)
        xcopies = [x.copy(order="K") for _ in range(4)]
        layers.append((name, x, w, stride, pad, xcopies))
        cudnnconv.conv(x, w, stride=stride, padding=pad, benchmark=True, engine=args.engine)
    for name, x, w, stride, pad, xc in layers:
        for xx in [x] + xc:
            cudnnconv.conv(xx, w, stride=stride, padding=pad, benchmark=True, engine=args.engine)
    sync()

    def measure(fn, before=None):
        walls, hosts = [], []
        for _ in range(args.repeats):
            if before is not None:
                before()
            sync()
            t0 = time.perf_counter()
            fn()
            t1 = time.perf_counter()
            sync()
            t2 = time.perf_counter()
            walls.append((t2 - t0) * 1e3)
            hosts.append((t1 - t0) * 1e3)
        return statistics.median(walls), statistics.median(hosts)

    rows = []
    for name, x, w, stride, pad, xc in layers:
        rot = {"i": 0}

        def same():
            return cudnnconv.conv(x, w, stride=stride, padding=pad, benchmark=True, engine=args.engine)

        def rotated():
            rot["i"] = (rot["i"] + 1) % len(xc)
            return cudnnconv.conv(xc[rot["i"]], w, stride=stride, padding=pad, benchmark=True, engine=args.engine)

        row = {"layer": name}
        forget = thread_state().memo.clear          # this thread's memo of call plans
        for label, fn, before in (("steady", same, None), ("signature", same, forget),
                                  ("pointers", rotated, None), ("both", rotated, forget)):
            row[label], row[label + "_host"] = measure(fn, before)
        rows.append(row)

    prof = cProfile.Profile()
    for name, x, w, stride, pad, xc in layers:
        for _ in range(20):
            thread_state().memo.clear()
            prof.enable()
            cudnnconv.conv(x, w, stride=stride, padding=pad, benchmark=True, engine=args.engine)
            prof.disable()
    sync()
    s = io.StringIO()
    st = pstats.Stats(prof, stream=s)
    st.sort_stats("tottime").print_stats(45)
    st.sort_stats("cumulative").print_stats(45)

    os.makedirs(args.out, exist_ok=True)
    med = lambda k: statistics.median(r[k] for r in rows)
    lines = ["# First-call probe: batch %d%s, fp16, engine %s, %s" % (
        args.batch, " channels-last" if args.channels_last else "", args.engine,
        cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()), "",
        "| layer | steady ms | signature ms | pointers ms | both ms | steady host | signature host | "
        "pointers host | both host | both/steady |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f |" % (
            r["layer"], r["steady"], r["signature"], r["pointers"], r["both"], r["steady_host"],
            r["signature_host"], r["pointers_host"], r["both_host"], r["both"] / r["steady"]))
    lines += ["", "medians over layers: steady %.3f, signature +%.3f, pointers +%.3f, both +%.3f ms; "
              "both/steady %.2f" % (med("steady"), med("signature") - med("steady"), med("pointers") - med("steady"),
                                    med("both") - med("steady"),
                                    statistics.median(r["both"] / r["steady"] for r in rows)), "",
              "## cProfile of the signature pass (20 calls per layer)", "", "```", s.getvalue(), "```"]
    with open(os.path.join(args.out, "first_call_probe.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "first_call_probe.json"), "w") as f:
        json.dump({"config": vars(args), "rows": rows}, f, indent=1)
    print("\n".join(lines[:len(rows) + 6]))
    return 0


def _layers(args, cupy):
    from warm_cache import resnet50_layers
    dtype = cupy.float16
    for name, xs, ws, stride, pad in resnet50_layers(args.batch):
        x = cupy.random.standard_normal(xs).astype(dtype)
        w = cupy.random.standard_normal(ws).astype(dtype)
        if args.channels_last:
            x = cupy.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
            w = cupy.ascontiguousarray(w.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        yield name, x, w, stride, pad


def child(args):
    import cupy
    import cudnnconv
    from cudnnconv import engine_registry, gpu_timing, params
    sync = cupy.cuda.Device().synchronize
    t = cupy.ones((1, 1, 4, 4), cupy.float16)
    cudnnconv.conv(t, cupy.ones((1, 1, 1, 1), cupy.float16), engine=args.engine)     # context, handle, file
    sync()
    if args.child == "cold":
        for name, x, w, stride, pad in _layers(args, cupy):
            cudnnconv.conv(x, w, stride=stride, padding=pad, benchmark=True, engine=args.engine)
        sync()
        return {"done": True}
    # split: host time (with its parts) and GPU time of the first call and of steady calls
    parts = {"alloc": 0.0, "engine": 0.0}

    def timed_part(fn, label):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                parts[label] += time.perf_counter() - t0
        return wrapper

    # api allocates through the package's name, to_layout (packing) through its own module's
    params.empty_in_layout = params.layouts.empty_in_layout = timed_part(params.layouts.empty_in_layout, "alloc")
    eng = engine_registry.select(cudnnconv.options.resolve(engine=args.engine))
    eng.run = timed_part(eng.run, "engine")
    stream = cupy.cuda.get_current_stream()
    e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
    # The graph engine's stage trace (key, handle, lookup, variant pack,
    # execute) and the garbage collector's pauses, per call.
    graph = engine_registry.graph
    if graph is not None:
        graph.trace_stages(True)
    from warm_cache import _GcWatch
    gc_watch = _GcWatch()
    import gc
    gc.callbacks.append(gc_watch)

    def one(call):
        """wall (synchronised), host (to the call's return) and its parts;
        with --spin, the call is queued behind a 2 ms spin kernel and timed
        with events too, so gpu_ms holds GPU time only (wall is then not a
        call's wall time and is left out)."""
        parts["alloc"] = parts["engine"] = 0.0
        gc_watch.reset()
        sync()
        if args.spin:
            gpu_timing.spin(stream, 2_000_000)
            e0.record(stream)
        t0 = time.perf_counter()
        call()
        host = time.perf_counter() - t0
        if args.spin:
            e1.record(stream)
        sync()
        wall = time.perf_counter() - t0
        r = {"host_ms": host * 1e3, "alloc_ms": parts["alloc"] * 1e3, "engine_ms": parts["engine"] * 1e3,
             "gc_ms": gc_watch.ms, "gc_n": gc_watch.n}
        if graph is not None:
            for stage, us in graph.stage_times().items():
                r["st_" + stage + "_ms"] = us * 1e-3
        if args.spin:
            r["gpu_ms"] = cupy.cuda.get_elapsed_time(e0, e1)
        else:
            r["wall_ms"] = wall * 1e3
        return r

    rows = []
    for name, x, w, stride, pad in _layers(args, cupy):
        out = None
        if args.preallocate:
            geom, y_shape = params.conv_geometry(x.shape, w.shape, stride, pad, 1, 1)
            out = params.empty_in_layout(y_shape, x.dtype, params.CHANNELS_LAST if args.channels_last
                                         else params.NCHW)
            sync()
        call = lambda: cudnnconv.conv(x, w, stride=stride, padding=pad, benchmark=True, engine=args.engine,
                                      out=out)
        first = one(call)
        steady = [one(call) for _ in range(args.repeats)]
        row = {"layer": name, "first": first}
        row["steady"] = {k: statistics.median(s.get(k, 0.0) for s in steady) for k in first}
        rows.append(row)
    info = {k: list(v) for k, v in cudnnconv.cache_info().items()}
    return {"rows": rows, "cache_info": info}


def _spawn(args, mode, env, preallocate=False, spin=False):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    e = dict(os.environ)
    e.update(env)
    e["PYTHONPATH"] = os.pathsep.join([os.path.join(here, "pyx"), e.get("PYTHONPATH", "")])
    cmd = [sys.executable, os.path.abspath(__file__), "--out", args.out, "--child", mode, "--batch",
           str(args.batch), "--repeats", str(args.repeats), "--engine", args.engine]
    cmd += [flag for flag, on in (("--channels-last", args.channels_last), ("--preallocate", preallocate),
                                  ("--spin", spin)) if on]
    r = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=900)
    if r.returncode:
        raise RuntimeError("child %s failed:\n%s" % (mode, r.stderr[-3000:]))
    return json.loads(r.stdout.strip().splitlines()[-1])


def fresh(args):
    tmp = tempfile.mkdtemp(prefix="first_call_")
    f = os.path.join(tmp, "tuning.json")
    _spawn(args, "cold", {"CUDNNCONV_TUNING_CACHE": f})
    env = {"CUDNNCONV_TUNING_CACHE": f, "CUDNNCONV_TUNING_WARMUP": "1"}
    res = {"config": vars(args), "warm+warmup": _spawn(args, "split", env),
           "warm+warmup spin": _spawn(args, "split", env, spin=True)}
    if args.preallocate:
        res["warm+warmup+out"] = _spawn(args, "split", env, preallocate=True)
        res["warm+warmup+out spin"] = _spawn(args, "split", env, preallocate=True, spin=True)
    lines = ["# Fresh-process first calls, split: batch %d%s, fp16, engine %s" % (
        args.batch, " channels-last" if args.channels_last else "", args.engine), ""]
    for mode in ("warm+warmup", "warm+warmup spin", "warm+warmup+out", "warm+warmup+out spin"):
        if mode not in res:
            continue
        rows = res[mode]["rows"]
        keys = tuple(k for k in ("wall_ms", "host_ms", "alloc_ms", "engine_ms", "gpu_ms", "gc_ms")
                     if k in rows[0]["first"])
        # the stages in the order graph.stage_times() gives them
        keys += tuple(dict.fromkeys(k for r in rows for k in r["first"] if k.startswith("st_")))
        for r in rows:
            for part in ("first", "steady"):
                for k in keys:
                    r[part].setdefault(k, float("nan"))
        ratio_key = keys[0]
        lines += ["## " + mode, "", "cache: %s" % res[mode]["cache_info"], "",
                  "| layer | " + " | ".join("first " + k for k in keys) + " | " +
                  " | ".join("steady " + k for k in keys) + " | first/steady (%s) |" % ratio_key,
                  "|---" * (2 * len(keys) + 2) + "|"]
        for r in rows:
            lines.append("| %s | %s | %s | %.2f |" % (
                r["layer"], " | ".join("%.3f" % r["first"][k] for k in keys),
                " | ".join("%.3f" % r["steady"][k] for k in keys), r["first"][ratio_key] / r["steady"][ratio_key]))
        med = {k: (statistics.median(r["first"][k] for r in rows), statistics.median(r["steady"][k] for r in rows))
               for k in keys}
        lines += ["", "medians first/steady: " + ", ".join("%s %.3f/%.3f" % (k, a, b) for k, (a, b) in med.items())
                  + "; %s ratio median %.2f" % (ratio_key, statistics.median(
                      r["first"][ratio_key] / r["steady"][ratio_key] for r in rows)), ""]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "first_call_fresh.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "first_call_fresh.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
