"""Warm tuning-cache benchmark: what the persistent cache saves on the first call.

    python3 bench/warm_cache.py --out bench/results/warm_cache [--batch 32] [--dtype float16]
                                [--engine auto] [--processes 5] [--layers N]

Per distinct ResNet-50 (v1.5, 224x224) forward conv layer, each in a FRESH
process (so nothing is cached in memory):

* cold: an empty CUDNNCONV_TUNING_CACHE file; the first call with
  benchmark=True searches (and its result is added to the file);
* warm: the file the cold run wrote; the first call should find its choice
  (the cache statistics must show hits and no misses);
* warm+warmup: the same file with CUDNNCONV_TUNING_WARMUP=1: at first use
  the file is loaded and each loaded entry runs once on scratch arrays
  (cudnnconv.warmup), so CUDA's lazy kernel loading and the workspace
  allocation happen then, not at the layer's first call;
* (--diagnose) warm+eager: the warm file with CUDA_MODULE_LOADING=EAGER, to
  show how much of the warm first call is CUDA's lazy kernel loading; and
  warm+warmup+out: warm+warmup with each output allocated before the first
  call and passed as out=, to show what the output's allocation costs;
* warm/net and warm+warmup/net: the same two, in a network's order: every
  layer's arrays are made first, then one pass calls each layer once (its
  first call), then ``--repeats`` passes call them again in the same order
  (its steady calls, median).  That is a forward pass's first iteration
  against its later ones.  In the modes above, each layer's first call
  comes right after its arrays are generated (CuPy's random and cast
  kernels, many Python calls), so the host runs our code with caches the
  generation has evicted; its steady calls run back to back.  We report
  both orders;
* torch: PyTorch's first call with torch.backends.cudnn.benchmark=True
  (skipped, with a note, where torch is missing);
* stability: ``--processes`` fresh processes with no file each choose per
  layer with benchmark=True; the layers whose choice differs are listed
  with their times.

Each timed call also records the garbage collector's pauses inside it
(gc.callbacks) and whether it grew CuPy's memory pool (a cudaMalloc).  In
Python 3.12 a collection runs when allocations outnumber deallocations by
700, so it lands on the same call in every process: a median over processes
does not remove it, and it hits first calls (which keep new objects)
rather than steady ones (which free what they make).  ``--gc-off`` turns the
collector off in the children, as timeit does while it times; both are
reported.

"first" is the wall time of the layer's first call (synchronised); "steady"
the median of ``--repeats`` later calls timed the same way.  A first call
happens once per process, so the warm modes run ``--first-runs`` fresh
processes each and report, per layer, the median over them (a single
process's first call is one sample: an interrupt or a garbage collection
in it moves one layer by 0.1-0.3 ms).  Each process
first runs one tiny unrelated convolution so that CUDA context, cuDNN handle
and library load are not charged to the first layer; its time ("load ms")
is reported, since in the warm modes it also loads the file (and warms it
up).  Results:
``<out>/warm_cache.json`` and ``<out>/warm_cache.md``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def resnet50_layers(batch):
    """[(name, x_shape, w_shape, stride, padding)] for each distinct forward conv of ResNet-50."""
    seen, out = set(), []

    def add(name, cin, cout, hw, k, stride=1, pad=0):
        x, w = (batch, cin, hw, hw), (cout, cin, k, k)
        sig = (x, w, stride, pad)
        if sig not in seen:
            seen.add(sig)
            out.append((name, x, w, stride, pad))
        return (hw + 2 * pad - k) // stride + 1

    hw = add("conv1", 3, 64, 224, 7, 2, 3)
    hw = (hw + 2 - 3) // 2 + 1
    cin = 64
    for stage, (width, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), 1):
        for b in range(blocks):
            s = stride if b == 0 else 1
            pre = "layer%d.%d" % (stage, b)
            add(pre + ".conv1", cin, width, hw, 1)
            o = add(pre + ".conv2", width, width, hw, 3, s, 1)
            add(pre + ".conv3", width, width * 4, o, 1)
            if b == 0:
                add(pre + ".downsample", cin, width * 4, hw, 1, s)
            cin, hw = width * 4, o
    return out


# ---------------------------------------------------------------------------
# Children (one fresh process each)
# ---------------------------------------------------------------------------

class _GcWatch:
    """The garbage collector's pauses inside a timed call (gc.callbacks)."""

    def __init__(self):
        self.ms = 0.0
        self.n = 0
        self._t0 = 0.0

    def reset(self):
        self.ms, self.n = 0.0, 0

    def __call__(self, phase, info):
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.ms += (time.perf_counter() - self._t0) * 1e3
            self.n += 1


_GC = _GcWatch()


def _timed(fn, sync):
    """Synchronised wall ms of one call; the GC pause inside it is left in
    ``_GC.ms``."""
    sync()
    _GC.reset()
    t0 = time.perf_counter()
    fn()
    sync()
    return (time.perf_counter() - t0) * 1e3


def _watch_gc(args):
    """Watch the collector's pauses; with --gc-off, turn it off for the
    whole child, as timeit does while it times."""
    import gc
    gc.callbacks.append(_GC)
    if args.gc_off:
        gc.disable()


def _row(name, xs, ws, first, steady, choice, after_gen=None, first_gc=0.0, pool_grew=0):
    row = {"layer": name, "x": xs, "w": ws, "first_ms": first, "steady_ms": statistics.median(steady),
           "first_gc_ms": first_gc, "first_pool_grew_bytes": pool_grew,
           "choice": {k: choice.get(k) for k in ("engine", "algo", "algo_name", "tag", "math_type",
                                                "workspace", "time_ms")}}
    if after_gen is not None:
        row["after_gen_ms"] = after_gen
    return row


def child_cudnnconv(args):
    import cupy
    import cudnnconv
    _watch_gc(args)
    dtype = getattr(cupy, args.dtype)
    sync = cupy.cuda.Device().synchronize
    pool = cupy.get_default_memory_pool()   # a first call that grows it paid a cudaMalloc
    # Context, handle, library load: not charged to the first layer.
    t = cupy.ones((1, 1, 4, 4), dtype)
    sync()
    t0 = time.perf_counter()
    cudnnconv.conv(t, cupy.ones((1, 1, 1, 1), dtype), engine=args.engine)
    sync()
    load_ms = (time.perf_counter() - t0) * 1e3
    base = {k: list(v) for k, v in cudnnconv.cache_info().items()}
    rows = []
    prepared = []
    def make(xs, ws):
        x = cupy.random.standard_normal(xs).astype(dtype)
        w = cupy.random.standard_normal(ws).astype(dtype)
        if args.channels_last:
            x = cupy.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
            w = cupy.ascontiguousarray(w.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        return x, w

    for name, xs, ws, stride, pad in resnet50_layers(args.batch)[: args.layers or None]:
        x, w = make(xs, ws)
        out = None
        if args.preallocate:
            # The output made before the first call: its allocation is not charged to it.
            n, k = xs[0], ws[0]
            ho = (xs[2] + 2 * pad - ws[2]) // stride + 1
            wo = (xs[3] + 2 * pad - ws[3]) // stride + 1
            out = cupy.empty((n, k, ho, wo), dtype)
            if args.channels_last:
                out = cupy.empty((n, ho, wo, k), dtype).transpose(0, 3, 1, 2)
            sync()
        call = (lambda x=x, w=w, stride=stride, pad=pad, out=out:
                cudnnconv.conv(x, w, stride=stride, padding=pad, benchmark=True, engine=args.engine, out=out))
        if args.network_order:
            prepared.append((name, xs, ws, call))
            continue
        grew0 = pool.total_bytes()
        first = _timed(call, sync)
        first_gc = _GC.ms
        grew = pool.total_bytes() - grew0
        choice = cudnnconv.last_call()["choices"][0]
        steady = [_timed(call, sync) for _ in range(args.repeats)]
        # The control: the same generation work that came before the first
        # call, then a call with every cache of ours warm (signature memo,
        # plan, variant pack): what any call costs in this position.
        make(xs, ws)
        after_gen = _timed(call, sync)
        rows.append(_row(name, xs, ws, first, steady, choice, after_gen, first_gc, grew))
    if args.network_order:
        # A network's first iteration, then its later ones: every array made
        # first; pass 0 makes each layer's first call, in the network's
        # order; passes 1..repeats time its steady calls, in the same order.
        sync()
        firsts, choices, gcs, grows = [], [], [], []
        for name, xs, ws, call in prepared:
            grew0 = pool.total_bytes()
            firsts.append(_timed(call, sync))
            gcs.append(_GC.ms)
            grows.append(pool.total_bytes() - grew0)
            choices.append(cudnnconv.last_call()["choices"][0])
        steadies = [[] for _ in prepared]
        for _ in range(args.repeats):
            for i, (name, xs, ws, call) in enumerate(prepared):
                steadies[i].append(_timed(call, sync))
        for (name, xs, ws, call), first, steady, choice, gcm, grew in zip(prepared, firsts, steadies, choices,
                                                                           gcs, grows):
            rows.append(_row(name, xs, ws, first, steady, choice, first_gc=gcm, pool_grew=grew))
    info = {k: list(v) for k, v in cudnnconv.cache_info().items()}
    return {"rows": rows, "cache_info_before": base, "cache_info": info, "load_ms": load_ms}


def child_torch(args):
    try:
        import torch
    except ImportError as e:
        return {"skipped": "torch is not installed (%s)" % e}
    if not torch.cuda.is_available():
        return {"skipped": "torch sees no CUDA device"}
    torch.backends.cudnn.benchmark = True
    _watch_gc(args)
    dtype = getattr(torch, args.dtype)
    sync = torch.cuda.synchronize
    F = torch.nn.functional
    F.conv2d(torch.ones(1, 1, 4, 4, device="cuda", dtype=dtype), torch.ones(1, 1, 1, 1, device="cuda", dtype=dtype))
    sync()
    rows = []
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    for name, xs, ws, stride, pad in resnet50_layers(args.batch)[: args.layers or None]:
        x = torch.randn(xs, device="cuda", dtype=dtype).to(memory_format=fmt)
        w = torch.randn(ws, device="cuda", dtype=dtype).to(memory_format=fmt)
        call = lambda: F.conv2d(x, w, stride=stride, padding=pad)
        with torch.no_grad():
            first = _timed(call, sync)
            steady = [_timed(call, sync) for _ in range(args.repeats)]
            torch.randn(xs, device="cuda", dtype=dtype).to(memory_format=fmt)      # the control (see above)
            torch.randn(ws, device="cuda", dtype=dtype).to(memory_format=fmt)
            after_gen = _timed(call, sync)
        rows.append({"layer": name, "first_ms": first, "steady_ms": statistics.median(steady),
                     "after_gen_ms": after_gen})
    return {"rows": rows, "torch": torch.__version__, "cudnn": torch.backends.cudnn.version()}


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

def _spawn(args, mode, env_extra=None, drop_env=True, preallocate=False, network_order=False):
    env = dict(os.environ)
    if drop_env:
        for name in ("CUDNNCONV_TUNING_CACHE", "CUDNNCONV_TUNING_WARMUP", "CUDA_MODULE_LOADING"):
            env.pop(name, None)
    env.update(env_extra or {})
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([repo, os.path.join(repo, "pyx"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--batch", str(args.batch), "--dtype",
           args.dtype, "--engine", args.engine, "--repeats", str(args.repeats), "--layers", str(args.layers)]
    if args.channels_last:
        cmd.append("--channels-last")
    if preallocate:
        cmd.append("--preallocate")
    if network_order:
        cmd.append("--network-order")
    if args.gc_off:
        cmd.append("--gc-off")
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        return {"error": res.stderr[-3000:], "wall_s": wall}
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    return out


def _merge_runs(runs):
    """One result from several fresh processes of one mode: per layer, the
    median first, steady and after-generation times over the processes (a
    first call happens once per process, so its repeats are processes); the
    per-process first times are kept.  Cache counts are summed.  A failed
    process makes the whole mode an error (nothing is dropped quietly)."""
    bad = [r for r in runs if "rows" not in r]
    if bad:
        return bad[0]
    if len(runs) == 1:
        return runs[0]
    out = dict(runs[0])
    out["processes"] = len(runs)
    out["load_ms"] = statistics.median(r["load_ms"] for r in runs)
    out["cache_info"] = {k: [v[0], v[1]] + [sum(r["cache_info"][k][i] for r in runs) for i in (2, 3)]
                         for k, v in runs[0]["cache_info"].items()}
    out["cache_info_before"] = {k: [v[0], v[1]] + [sum(r["cache_info_before"][k][i] for r in runs) for i in (2, 3)]
                                for k, v in runs[0]["cache_info_before"].items()}
    rows = []
    for i, row in enumerate(runs[0]["rows"]):
        each = [r["rows"][i] for r in runs]
        assert all(e["layer"] == row["layer"] for e in each)
        merged = dict(row)
        merged["first_ms"] = statistics.median(e["first_ms"] for e in each)
        merged["steady_ms"] = statistics.median(e["steady_ms"] for e in each)
        merged["first_runs_ms"] = [e["first_ms"] for e in each]
        merged["first_gc_ms"] = statistics.median(e.get("first_gc_ms", 0.0) for e in each)
        merged["first_gc_runs_ms"] = [e.get("first_gc_ms", 0.0) for e in each]
        merged["first_pool_grew_runs"] = [e.get("first_pool_grew_bytes", 0) for e in each]
        if all("after_gen_ms" in e for e in each):
            merged["after_gen_ms"] = statistics.median(e["after_gen_ms"] for e in each)
        rows.append(merged)
    out["rows"] = rows
    return out


def _ratios(rows):
    r = [row["first_ms"] / row["steady_ms"] for row in rows if row["steady_ms"] > 0]
    if not r:
        return {}
    g = [row["after_gen_ms"] / row["steady_ms"] for row in rows if row.get("after_gen_ms") and row["steady_ms"] > 0]
    return {"median": statistics.median(r), "max": max(r), "min": min(r), "n": len(r),
            "after_gen_median": statistics.median(g) if g else None,
            "layers_over_2x": sum(1 for v in r if v > 2.0),
            "first_total_ms": sum(row["first_ms"] for row in rows),
            "first_gc_total_ms": sum(row.get("first_gc_ms", 0.0) for row in rows),
            "layers_with_gc": (sum(1 for row in rows if row["first_gc_ms"] > 0)
                               if all("first_gc_ms" in row for row in rows) else None),
            "layers_pool_grew": sum(1 for row in rows if any(
                row.get("first_pool_grew_runs", [row.get("first_pool_grew_bytes", 0)]))),
            "steady_total_ms": sum(row["steady_ms"] for row in rows)}


MODES = ("cold", "warm", "warm+warmup", "warm+eager", "warm+warmup+out", "warm/net", "warm+warmup/net", "torch")


def _choice_id(c):
    return json.dumps({k: c.get(k) for k in ("engine", "algo", "tag", "math_type")}, sort_keys=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="bench/results/warm_cache")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    p.add_argument("--engine", default="auto", choices=("auto", "graph", "legacy"))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--layers", type=int, default=0, help="only the first N layers (0: all)")
    p.add_argument("--processes", type=int, default=5, help="fresh processes for the stability check")
    p.add_argument("--first-runs", type=int, default=5,
                   help="fresh processes per warm mode: a first call happens once per process, so each layer's "
                        "first (and steady) time is the median over this many processes")
    p.add_argument("--timeout", type=int, default=900)
    p.add_argument("--diagnose", action="store_true",
                   help="also a warm run with CUDA_MODULE_LOADING=EAGER, and a warm+warmup run with the outputs "
                        "allocated before the first call (out=)")
    p.add_argument("--gc-off", action="store_true",
                   help="turn Python's garbage collector off in the children, as timeit does while it times "
                        "(by default it runs, and its pauses inside first calls are reported)")
    p.add_argument("--preallocate", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--network-order", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child", choices=("cudnnconv", "torch"))
    args = p.parse_args(argv)
    if args.child:
        out = child_cudnnconv(args) if args.child == "cudnnconv" else child_torch(args)
        print(json.dumps(out))
        return 0

    os.makedirs(args.out, exist_ok=True)
    tmpdir = tempfile.mkdtemp(prefix="warm_cache_")
    cache_file = os.path.join(tmpdir, "tuning.json")
    result = {"config": {k: v for k, v in vars(args).items() if k != "child"}}
    result["cold"] = _spawn(args, "cudnnconv", {"CUDNNCONV_TUNING_CACHE": cache_file})
    try:
        with open(cache_file) as f:
            result["cache_file_entries"] = len(json.load(f)["entries"])
        result["cache_file_bytes"] = os.path.getsize(cache_file)
    except (OSError, ValueError, KeyError) as e:
        result["cache_file_error"] = str(e)
    runs = max(1, args.first_runs)
    result["warm"] = _merge_runs([_spawn(args, "cudnnconv", {"CUDNNCONV_TUNING_CACHE": cache_file})
                                  for _ in range(runs)])
    result["warm+warmup"] = _merge_runs([_spawn(args, "cudnnconv", {"CUDNNCONV_TUNING_CACHE": cache_file,
                                                                    "CUDNNCONV_TUNING_WARMUP": "1"})
                                         for _ in range(runs)])
    if args.diagnose:
        result["warm+eager"] = _spawn(args, "cudnnconv", {"CUDNNCONV_TUNING_CACHE": cache_file,
                                                          "CUDA_MODULE_LOADING": "EAGER"})
        result["warm+warmup+out"] = _spawn(args, "cudnnconv", {"CUDNNCONV_TUNING_CACHE": cache_file,
                                                               "CUDNNCONV_TUNING_WARMUP": "1"}, preallocate=True)
    for mode, extra in (("warm/net", {}), ("warm+warmup/net", {"CUDNNCONV_TUNING_WARMUP": "1"})):
        result[mode] = _merge_runs([_spawn(args, "cudnnconv", dict(extra, CUDNNCONV_TUNING_CACHE=cache_file),
                                           network_order=True) for _ in range(runs)])
    result["torch"] = _spawn(args, "torch")
    stable = [_spawn(args, "cudnnconv") for _ in range(args.processes)]
    result["stability_runs"] = [{"error": s["error"]} if "error" in s else
                                {"choices": [r["choice"] for r in s["rows"]]} for s in stable]

    for mode in MODES:
        if mode in result and "rows" in result[mode]:
            result[mode]["ratios"] = _ratios(result[mode]["rows"])
    ok = [s for s in stable if "rows" in s]
    changed = []
    if ok:
        for i, row in enumerate(ok[0]["rows"]):
            picks = [s["rows"][i]["choice"] for s in ok]
            ids = {_choice_id(c) for c in picks}
            if len(ids) > 1:
                times = [s["rows"][i]["steady_ms"] for s in ok]
                # How far apart the picks are, by the benchmark's own medians:
                # per process, the pick's time; per distinct pick, its best time.
                bench = [c.get("time_ms") for c in picks]
                by_pick = {}
                for c in picks:
                    t = c.get("time_ms")
                    if isinstance(t, (int, float)) and t > 0:
                        by_pick[_choice_id(c)] = min(t, by_pick.get(_choice_id(c), t))
                gap = (100.0 * (max(by_pick.values()) - min(by_pick.values())) / min(by_pick.values())
                       if len(by_pick) > 1 else None)
                changed.append({"layer": row["layer"], "choices": picks, "steady_ms": times,
                                "steady_spread_pct": 100.0 * (max(times) - min(times)) / min(times),
                                "bench_ms": bench, "pick_gap_pct": gap})
    result["stability"] = {"processes": len(ok), "layers": len(ok[0]["rows"]) if ok else 0,
                           "layers_changed": len(changed), "changed": changed}
    with open(os.path.join(args.out, "warm_cache.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.out, "warm_cache.md"), "w") as f:
        f.write(render_markdown(result))
    print(render_markdown(result))
    return 0


def render_markdown(res):
    cfg = res["config"]
    lines = ["# Warm tuning cache: first call vs steady state", "",
             "ResNet-50 forward convs, batch %d, %s, engine=%s%s, benchmark=True; each mode in fresh processes "
             "(warm modes: per layer the median over %d processes)."
             % (cfg["batch"], cfg["dtype"], cfg["engine"], ", channels-last" if cfg["channels_last"] else "",
                cfg.get("first_runs", 1)),
             "Python's garbage collector was %s in the children%s." % (
                 ("off", " (as timeit turns it off while it times)") if cfg.get("gc_off") else
                 ("on", "; 'GC in first calls' is the collector's pauses inside the timed first calls "
                  "(layers with one, and their ms in all, per-layer medians over the processes)")), ""]
    lines.append("| mode | first/steady median | max | layers > 2x | sum first ms | sum steady ms | load ms "
                 "| cache hits/misses | control: after-generation/steady median | GC in first calls; calls that grew CuPy's pool |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for mode in MODES:
        if mode not in res:
            continue
        r = res[mode]
        if "error" in r or "skipped" in r:
            why = r.get("skipped") or "error: " + ((r.get("error") or "").strip().splitlines() or ["?"])[-1]
            lines.append("| %s | %s | | | | | | | | |" % (mode, why))
            continue
        q = r.get("ratios", {})
        hm = ""
        if "cache_info" in r:
            hm = ", ".join("%s %d/%d" % (k, v[2] - r["cache_info_before"].get(k, [0, 0, 0, 0])[2],
                                         v[3] - r["cache_info_before"].get(k, [0, 0, 0, 0])[3])
                           for k, v in r["cache_info"].items())
        ag = q.get("after_gen_median")
        lines.append("| %s | %.2f | %.2f | %d | %.1f | %.1f | %s | %s | %s | %s |" % (
            mode, q.get("median", float("nan")), q.get("max", float("nan")), q.get("layers_over_2x", -1),
            q.get("first_total_ms", float("nan")), q.get("steady_total_ms", float("nan")),
            "%.1f" % r["load_ms"] if "load_ms" in r else "-", hm, "%.2f" % ag if ag is not None else "-",
            "-" if q.get("layers_with_gc") is None else
            "%d, %.2f ms; pool grew: %d" % (q["layers_with_gc"], q.get("first_gc_total_ms", 0.0),
                                            q.get("layers_pool_grew", 0))))
    lines += ["", "Tuning file: %s entries, %s bytes." % (res.get("cache_file_entries"), res.get("cache_file_bytes")), ""]
    cold, warm, torch = res.get("cold", {}), res.get("warm", {}), res.get("torch", {})
    ww = res.get("warm+warmup", {})
    wn = res.get("warm+warmup/net", {})
    if "rows" in cold and "rows" in warm:
        lines.append("| layer | cold first ms | warm first ms | warm+warmup first ms | steady ms (warm+warmup) "
                     "| warm first/steady | warm+warmup first/steady | warm+warmup/net first/steady "
                     "| torch first ms | GC ms in first call: warm+warmup, /net |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        trows = {r["layer"]: r for r in torch.get("rows", [])}
        wwrows = {r["layer"]: r for r in ww.get("rows", [])}
        wnrows = {r["layer"]: r for r in wn.get("rows", [])}
        for c, w in zip(cold["rows"], warm["rows"]):
            t = trows.get(c["layer"], {})
            u = wwrows.get(c["layer"])
            v = wnrows.get(c["layer"])
            lines.append("| %s | %.2f | %.2f | %s | %s | %.2f | %s | %s | %s | %s, %s |" % (
                c["layer"], c["first_ms"], w["first_ms"], "%.2f" % u["first_ms"] if u else "-",
                "%.3f" % u["steady_ms"] if u else "-", w["first_ms"] / w["steady_ms"],
                "%.2f" % (u["first_ms"] / u["steady_ms"]) if u else "-",
                "%.2f" % (v["first_ms"] / v["steady_ms"]) if v else "-", "%.2f" % t["first_ms"] if t else "-",
                "%.3f" % u.get("first_gc_ms", 0.0) if u else "-", "%.3f" % v.get("first_gc_ms", 0.0) if v else "-"))
    st = res.get("stability", {})
    lines += ["", "## Choice stability", "",
              "%d fresh processes, %d layers: %d layer(s) chose differently." % (
                  st.get("processes", 0), st.get("layers", 0), st.get("layers_changed", 0))]
    for ch in st.get("changed", []):
        gap = ch.get("pick_gap_pct")
        lines.append("- %s: %s; benchmark ms of each process's pick %s (the picks' best times differ by %s); "
                     "steady ms %s (spread %.1f%%)" % (
                         ch["layer"], sorted({c.get("tag") or c.get("algo_name") or "?" for c in ch["choices"]}),
                         ", ".join("%.4f" % t if isinstance(t, (int, float)) else "?" for t in ch.get("bench_ms", [])),
                         "%.1f%%" % gap if gap is not None else "?",
                         ", ".join("%.3f" % t for t in ch["steady_ms"]), ch["steady_spread_pct"]))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
