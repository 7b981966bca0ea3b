"""python -m bench: time cudnnconv's engines against PyTorch (and JAX) on
built-in suites or your own layers.  ``python -m bench --help`` for options;
bench/README.md for what is measured and how."""
import argparse
import os
import sys
import time


def _csv(text):
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser():
    from bench import suites
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark cudnnconv against PyTorch (and JAX) per conv layer: kernel time by CUDA-graph "
                    "replay, eager and host time per call, result checked against PyTorch.")
    p.add_argument("--suite", type=_csv, default=[],
                   help="comma-separated suites: %s" % ", ".join(suites.SUITES))
    p.add_argument("--layer", action="append", default=[], metavar="SPEC",
                   help="a layer, e.g. N=32,C=64,H=56,W=56,K=64,R=3,S=3,pad=1,stride=1,groups=1 (1D: L= and S=; "
                        "3D: D=,H=,W= and T=,R=,S=; dilation=, op=transpose|fused); repeatable")
    p.add_argument("--layers-file", metavar="JSON", help="a JSON list of layer specs")
    p.add_argument("--dtype", default="fp16", help="fp16, bf16, fp32 or fp64 (default fp16)")
    p.add_argument("--layout", default="nhwc", choices=("nchw", "nhwc"), help="memory layout (default nhwc)")
    p.add_argument("--direction", type=_csv, default=["fwd", "dgrad", "wgrad"], help="fwd,dgrad,wgrad")
    p.add_argument("--batch", type=int, help="N for every layer (the tiny suite keeps N=1)")
    p.add_argument("--engine", type=_csv, default=None,
                   help="cudnnconv engines side by side: graph,legacy,auto (default: every built engine)")
    p.add_argument("--compare", type=_csv, default=["torch"], help="peers: torch,jax (default torch)")
    p.add_argument("--repeat", type=int, default=50, help="most timed repeats per measurement (default 50)")
    p.add_argument("--budget", type=float, default=0.6,
                   help="seconds of timing per measurement at most, split between eager and graph (default 0.6)")
    p.add_argument("--tf32", choices=("on", "off"), default="on",
                   help="TF32 for fp32 convolutions, on both sides alike (default on, as PyTorch)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="stop starting new layers after this many seconds (the outputs are still written)")
    p.add_argument("--out", metavar="DIR", help="write NAME.json, NAME.md and NAME.png here")
    p.add_argument("--name", help="base name of the output files (default GPU_SUITE_DTYPE_LAYOUT)")
    p.add_argument("--exhaustive", type=float, default=None, metavar="SECONDS",
                   help="search every engine and knob setting besides the heuristics' configs, SECONDS per problem "
                        "(cudnnconv.benchmark_settings(exhaustive=True)); the run's wall time says what the "
                        "searches cost")
    p.add_argument("--no-knob-sweep", action="store_true",
                   help="with --exhaustive: no knob sweep in a worker process, every engine with cuDNN's default "
                        "knobs only (benchmark_settings(knob_sweep=False))")
    p.add_argument("--tuning-file", metavar="PATH",
                   help="load the algorithm choices in PATH before the run (where it exists) and save every "
                        "choice into it after: a second run with the same file and settings searches nothing, "
                        "as its summary's first-call line shows")
    p.add_argument("--profile-host", type=int, default=0, metavar="CALLS",
                   help="after the run, profile CALLS eager calls of the first layer on the first engine with "
                        "cProfile and print where the host time goes")
    p.add_argument("--list", action="store_true", help="print the layers and exit (no GPU needed)")
    p.add_argument("--compare-results", nargs=2, metavar=("A.json", "B.json"),
                   help="print per-layer time ratios B/A of two saved runs and exit")
    return p


def collect_layers(args):
    from bench import spec, suites
    layers = []
    for s in args.suite:
        layers += suites.get(s, args.batch)
    for text in args.layer:
        layer = spec.parse_spec(text)
        layers.append(layer.with_batch(args.batch) if args.batch else layer)
    if args.layers_file:
        for layer in spec.load_layers_file(args.layers_file):
            layers.append(layer.with_batch(args.batch) if args.batch else layer)
    return layers


def _progress(items):
    try:
        from tqdm import tqdm
        return tqdm(items, file=sys.stderr, dynamic_ncols=True, mininterval=2.0)
    except ImportError:
        return None


def main(argv=None):
    args = build_parser().parse_args(argv)
    from bench import report
    if args.compare_results:
        a, b = (report.load(p) for p in args.compare_results)
        print(report.compare_text(a, b, *args.compare_results))
        return 0
    from bench import runner, spec
    try:
        layers = collect_layers(args)
    except (spec.SpecError, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    if not layers:
        print("error: no layers: give --suite, --layer or --layers-file", file=sys.stderr)
        return 2
    bad = [d for d in args.direction if d not in runner.DIRECTIONS]
    if bad:
        print("error: unknown direction(s) %s; use fwd,dgrad,wgrad" % ",".join(bad), file=sys.stderr)
        return 2
    dtype = runner.DTYPES.get(args.dtype.lower())
    if dtype is None:
        print("error: unknown dtype %r" % args.dtype, file=sys.stderr)
        return 2
    if args.list:
        for layer in layers:
            print("%-24s %-28s x%-3d %s" % (layer.name, layer.shape_text(), layer.count, layer.spec()))
        return 0

    t_start = time.time()
    import cudnnconv
    from cudnnconv import params
    if args.exhaustive is not None:
        try:
            cudnnconv.benchmark_settings(exhaustive=True, exhaustive_budget_s=args.exhaustive,
                                         knob_sweep=not args.no_knob_sweep)
            # each search's progress line (candidates timed, the best) and any setting that hung, on stderr
            import logging
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            logging.getLogger("cudnnconv").addHandler(handler)
            logging.getLogger("cudnnconv").setLevel(logging.INFO)
        except ValueError as e:
            print("error: --exhaustive: %s" % e, file=sys.stderr)
            return 2
    from bench import timing
    notes = []
    loaded = None
    if args.tuning_file and os.path.exists(args.tuning_file):
        loaded = cudnnconv.load_tuning(args.tuning_file)     # a bad file: a warning, nothing loaded
        notes.append("tuning file %s: %d choices loaded before the run" % (os.path.basename(args.tuning_file),
                                                                          loaded))
    built = cudnnconv.build_info()["engines"]
    wanted = args.engine or list(built)
    engines = []
    for e in wanted:
        if e not in ("graph", "legacy", "auto"):
            print("error: unknown engine %r (graph, legacy, auto)" % e, file=sys.stderr)
            return 2
        if e == "auto" or e in built:
            engines.append(e)
        else:
            notes.append("engine %r is not in this build (built: %s): skipped" % (e, ", ".join(built)))
    if "auto" in engines:
        notes.append("engine 'auto' resolves to %r in this build" % ("graph" if "graph" in built else "legacy"))
    layout = params.CHANNELS_LAST if args.layout == "nhwc" else params.NCHW
    allow_tf32 = args.tf32 == "on"
    env = report.environment()
    peak, peak_sustained = timing.measure_peak_fp16()
    env["peak_sustained_tflops"] = peak_sustained
    peaks = timing.measure_peaks(peak, notes)
    run = runner.Runner(dtype, layout, engines, args.compare, repeat=args.repeat, budget_s=args.budget,
                        allow_tf32=allow_tf32)
    notes += run.notes
    if "torch" in run.peers:
        tp = run.peers["torch"]
        env["cudnn_torch"] = "%d.%d.%d" % (tp.cudnn_version // 10000, (tp.cudnn_version % 10000) // 100,
                                           tp.cudnn_version % 100) if tp.cudnn_version >= 10000 else tp.cudnn_version
        env["torch"] = tp.version
    config = {"suites": args.suite, "dtype": dtype, "layout": layout, "directions": args.direction,
              "engines": engines, "compare": list(run.peers), "batch": args.batch, "repeat": args.repeat,
              "budget_s": args.budget, "allow_tf32": allow_tf32, "tolerance": run.tol,
              "exhaustive_budget_s": args.exhaustive,
              "knob_sweep": args.exhaustive is not None and not args.no_knob_sweep,
              "tuning_file_loaded": loaded,
              "argv": sys.argv[1:] if argv is None else list(argv)}
    work = [(layer, d) for layer in layers for d in runner.directions_for(layer, args.direction)]
    print("\n".join(report.header_lines({"env": env, "config": config, "peak_tflops": peak, "peaks": peaks,
                                          "notes": notes})),
          flush=True)
    print("%d layers x directions = %d measurements" % (len(layers), len(work)), flush=True)
    records = []
    bar = _progress(work)
    for layer, d in (bar if bar is not None else work):
        if args.time_limit and time.time() - t_start > args.time_limit:
            notes.append("time limit of %.0f s reached: %s %s and later not run" % (args.time_limit, layer.name, d))
            break
        if bar is not None:
            bar.set_description("%s %s" % (layer.name, d))
        t0 = time.time()
        rec = run.run(layer, d)
        rec["wall_s"] = time.time() - t0
        records.append(rec)
        if bar is None:
            print("  %-28s %-5s %5.1fs" % (layer.shape_text(), d, rec["wall_s"]), flush=True)
    if bar is not None:
        bar.close()
    if args.tuning_file:
        try:
            notes.append("tuning file %s: %d choices saved after the run" % (
                os.path.basename(args.tuning_file), cudnnconv.save_tuning(args.tuning_file)))
        except (OSError, ValueError) as e:
            notes.append("tuning file %s not saved: %s" % (args.tuning_file, e))
    result = report.make_result(config, env, peak, records, notes, wall_s=time.time() - t_start, peaks=peaks)
    report.validate(result)
    print()
    print(report.table_text(result), flush=True)
    if args.profile_host and records:
        print()
        print(profile_host(run, layers[0], runner.directions_for(layers[0], args.direction)[0], engines[0],
                           args.profile_host), flush=True)
    if args.out:
        paths = report.write_all(result, args.out, result_name(args, env.get("gpu"), dtype))
        print("wrote " + ", ".join(paths.values()))
    return 0


def result_name(args, gpu, dtype):
    """The results' file name without extension: ``--name``, else GPU_SUITE_DTYPE_LAYOUT, with
    ``_exhaustive`` after it for an exhaustive search, whose run keeps its own file beside the
    benchmark-mode run of the same suite."""
    from bench import report
    if args.name:
        return args.name
    short = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "float64": "fp64"}[dtype]
    base = "%s_%s_%s_%s" % (report.gpu_slug(gpu), "_".join(args.suite) or "custom", short, args.layout)
    return base + ("_exhaustive" if args.exhaustive is not None else "")


def profile_host(run, layer, direction, engine, calls):
    """cProfile of ``calls`` eager calls (one input set): where the host
    time of one call goes, top functions by own time and by cumulative time."""
    import cProfile
    import io
    import pstats
    from bench import runner
    from cudnnconv import params
    sets, _, out_shape = runner.make_sets(layer, direction, run.dtype, run.layout, 0, most=1)
    out = params.empty_in_layout(out_shape, run.dtype, run.layout if len(out_shape) >= 3 else params.NCHW)
    call = runner.our_call(layer, direction, sets[0], out, engine, run.allow_tf32)
    for _ in range(20):
        call()
    import cupy
    cupy.cuda.Device().synchronize()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for _ in range(calls):
        call()
    prof.disable()
    dt = time.perf_counter() - t0
    cupy.cuda.Device().synchronize()
    buf = io.StringIO()
    buf.write("host profile: %s %s engine=%s, %d calls, %.1f us/call under cProfile\n"
              % (layer.shape_text(), direction, engine, calls, dt * 1e6 / calls))
    st = pstats.Stats(prof, stream=buf)
    st.sort_stats("tottime").print_stats(18)
    st.sort_stats("cumulative").print_stats(25)
    return buf.getvalue()


if __name__ == "__main__":
    sys.exit(main())
