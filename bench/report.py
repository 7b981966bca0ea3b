"""Results: the JSON document, its summary, the terminal and markdown tables,
the PNG chart, and the comparison of two saved runs.

Everything here is pure Python on the result dict (no GPU), so the CPU tests
build results from synthetic numbers and check all of it.

Conventions:
* **ratio** = our time / PyTorch's time for the same layer and direction
  (kernel time from graph replay unless said otherwise): below 1 we are
  faster; the target is <= 1.05.
* **speed-up** (the chart) = PyTorch's time / ours: above 1 we are faster.
* TFLOP/s counts 2 x multiply-adds of the convolution, the same for every
  direction; % peak is against the fp16 matmul measured at the start.
* roofline (bench/roofline.py): a layer's bound is max(flops / the matmul
  peak of its math, bytes of its three tensors / copy bandwidth), both peaks
  measured in the same run (``result["peaks"]``); the fraction a time
  reaches is bound / time.
"""
import datetime
import json
import math
import os
import platform

from bench import roofline

SCHEMA = "cudnnconv-bench/1"
TARGET_RATIO = 1.05
_STATUSES = ("ok", "unchecked", "FAIL", "error", "n/a", "skipped")


# ---------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------

def _dist_version(name):
    try:
        from importlib import metadata
        return metadata.version(name)
    except Exception:                              # noqa: BLE001
        return None


def environment():
    """GPU, driver, CUDA, cuDNN, CuPy, PyTorch, JAX versions and the date;
    None for what this machine cannot tell."""
    env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "host": platform.node(), "python": platform.python_version(), "gpu": None, "gpu_memory_gib": None,
           "sm": None, "driver": None, "cuda_runtime": None, "cudnn": None, "cudnn_torch": None,
           "cupy": _dist_version("cupy-cuda13x") or _dist_version("cupy-cuda12x") or _dist_version("cupy"),
           "torch": _dist_version("torch"), "jax": _dist_version("jax"), "cudnnconv": None, "engines": None}
    try:
        import cudnnconv
        info = cudnnconv.build_info()
        env["cudnnconv"] = info.get("cudnnconv_version")
        env["engines"] = info.get("engines")
        v = cudnnconv.version()
        env["cudnn"] = "%d.%d.%d" % (v // 10000, (v % 10000) // 100, v % 100)
    except Exception:                              # noqa: BLE001
        pass
    try:
        import cupy
        env["cupy"] = cupy.__version__
        rt = cupy.cuda.runtime
        props = rt.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"]
        env["gpu"] = name.decode() if isinstance(name, bytes) else name
        env["gpu_memory_gib"] = round(props["totalGlobalMem"] / 2 ** 30, 1)
        env["sm"] = "%d.%d" % (props["major"], props["minor"])
        env["driver"] = _cuda_version_text(rt.driverGetVersion())
        env["cuda_runtime"] = _cuda_version_text(rt.runtimeGetVersion())
    except Exception:                              # noqa: BLE001
        pass
    try:
        import subprocess
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            env["driver"] = "%s (CUDA %s)" % (out.stdout.strip().splitlines()[0], env["driver"])
    except Exception:                              # noqa: BLE001
        pass
    return env


def _cuda_version_text(v):
    return "%d.%d" % (v // 1000, (v % 1000) // 10)


def gpu_slug(gpu_name):
    """'NVIDIA H100 80GB HBM3' -> 'h100'; 'gpu' when unknown."""
    import re
    m = re.search(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b", gpu_name or "")
    return m.group(1).lower() if m else "gpu"


# ---------------------------------------------------------------------------
# the result document
# ---------------------------------------------------------------------------

def make_result(config, env, peak_tflops, records, notes=(), wall_s=None, peaks=None):
    result = {"schema": SCHEMA, "env": env, "config": config, "peak_tflops": peak_tflops,
              "peaks": peaks, "notes": list(notes), "wall_s": wall_s, "records": records}
    result["summary"] = summarize(result)
    return result


def engines_of(result):
    seen = []
    for r in result["records"]:
        for e in r["ours"]:
            if e not in seen:
                seen.append(e)
    return seen


def peers_of(result):
    seen = []
    for r in result["records"]:
        for p in r["peers"]:
            if p not in seen:
                seen.append(p)
    return seen


def directions_of(result):
    order = ("fwd", "dgrad", "wgrad")
    have = {r["direction"] for r in result["records"]}
    return [d for d in order if d in have]


def _time(e, kind="kernel"):
    if not e or e.get("status") not in ("ok", "unchecked"):
        return None
    return e.get("kernel_ms") if kind == "kernel" else e.get("eager_ms")


def ratio(rec, engine, kind="kernel", peer="torch"):
    """Our time / the peer's, or None where either is missing."""
    a = _time(rec["ours"].get(engine), kind)
    b = _time(rec["peers"].get(peer), kind)
    if a is None or b is None or b <= 0:
        return None
    return a / b


def geomean(values):
    v = [x for x in values if x is not None and x > 0]
    return math.exp(sum(math.log(x) for x in v) / len(v)) if v else None


def bound_ms(result, rec):
    """The roofline bound (ms) of a record of ``result``, or None (bench/roofline.py)."""
    cfg = result["config"]
    return roofline.record_bound_ms(rec, result.get("peaks"), cfg.get("dtype"), cfg.get("allow_tf32", True))


def roof_fraction(result, rec, who, side="ours"):
    """The share of its roofline that ``who``'s kernel time reaches on ``rec``, or None."""
    return roofline.fraction(bound_ms(result, rec), _time(rec[side].get(who)))


def summarize(result):
    """Per engine and direction: geomean ratios (kernel, eager), worst layer,
    failures, target misses, network time; the largest layer's peak
    fraction; host time per call of the tiny layers."""
    peak = result.get("peak_tflops")
    out = {}
    for eng in engines_of(result):
        per = {}
        for d in directions_of(result):
            recs = [r for r in result["records"] if r["direction"] == d]
            kr = [(r, ratio(r, eng)) for r in recs]
            kr_ok = [(r, x) for r, x in kr if x is not None]
            worst = max(kr_ok, key=lambda t: t[1]) if kr_ok else None
            largest = max(recs, key=lambda r: r["flops"]) if recs else None
            le = largest["ours"].get(eng) if largest else None
            lt = _time(le)
            ours_net = [r["count"] * _time(r["ours"].get(eng)) for r in recs
                        if _time(r["ours"].get(eng)) is not None and _time(r["peers"].get("torch")) is not None]
            torch_net = [r["count"] * _time(r["peers"].get("torch")) for r in recs
                         if _time(r["ours"].get(eng)) is not None and _time(r["peers"].get("torch")) is not None]
            per[d] = {
                "layers": len(recs),
                "compared": len(kr_ok),
                "geomean_ratio_kernel": geomean([x for _, x in kr_ok]),
                "geomean_ratio_eager": geomean([ratio(r, eng, "eager") for r in recs]),
                "worst": None if worst is None else {"layer": worst[0]["layer"], "shape": worst[0]["shape"],
                                                     "ratio": worst[1]},
                "over_target": [r["layer"] for r, x in kr_ok if x > TARGET_RATIO],
                "failures": [r["layer"] for r in recs
                             if (r["ours"].get(eng) or {}).get("status") in ("FAIL", "error")],
                "largest": None if largest is None else {
                    "layer": largest["layer"], "shape": largest["shape"],
                    "tflops": None if lt is None else largest["flops"] / (lt * 1e-3) / 1e12,
                    "peak_fraction": None if (lt is None or not peak) else
                    largest["flops"] / (lt * 1e-3) / 1e12 / peak},
                "network_ms": {"ours": sum(ours_net), "torch": sum(torch_net),
                               "ratio": (sum(ours_net) / sum(torch_net)) if torch_net and sum(torch_net) else None},
                "roofline_fraction_geomean": geomean([roof_fraction(result, r, eng) for r in recs]),
                "roofline_fraction_geomean_torch": geomean([roof_fraction(result, r, "torch", "peers")
                                                            for r in recs]),
            }
        tiny = [r for r in result["records"] if r["flops"] < 1e8]
        host = []
        for r in tiny:
            o, t = r["ours"].get(eng) or {}, r["peers"].get("torch") or {}
            if o.get("host_us") is not None:
                host.append({"layer": r["layer"], "direction": r["direction"], "ours_us": o["host_us"],
                             "torch_us": t.get("host_us")})
        firsts = [e for e in (r["ours"].get(eng) for r in result["records"]) if e and e.get("first_call_ms") is not None]
        per["first_calls"] = {"problems": len(firsts), "seconds": sum(e["first_call_ms"] for e in firsts) / 1e3,
                              "searches": sum(e.get("searches") or 0 for e in firsts)}
        per["host"] = {"layers": host,
                       "geomean_ratio": geomean([h["ours_us"] / h["torch_us"] for h in host if h["torch_us"]])}
        out[eng] = per
    return out


def validate(result):
    """Raise ValueError where ``result`` does not follow the schema."""
    def need(cond, what):
        if not cond:
            raise ValueError("result schema: " + what)
    need(isinstance(result, dict), "top level must be an object")
    need(result.get("schema") == SCHEMA, "schema must be %r" % SCHEMA)
    for key, typ in (("env", dict), ("config", dict), ("records", list), ("summary", dict), ("notes", list)):
        need(isinstance(result.get(key), typ), "%s must be a %s" % (key, typ.__name__))
    for key in ("date", "gpu", "driver", "cuda_runtime", "cudnn", "cupy", "torch", "jax"):
        need(key in result["env"], "env lacks %r" % key)
    need(result.get("peak_tflops") is None or isinstance(result["peak_tflops"], (int, float)),
         "peak_tflops must be a number or null")
    pk = result.get("peaks")
    need(pk is None or (isinstance(pk, dict) and all(v is None or isinstance(v, (int, float)) for v in pk.values())),
         "peaks must be null or an object of numbers or nulls")
    for key in ("dtype", "layout", "directions", "engines", "compare"):
        need(key in result["config"], "config lacks %r" % key)
    for i, r in enumerate(result["records"]):
        for key, typ in (("layer", str), ("spec", str), ("shape", str), ("op", str), ("direction", str),
                         ("flops", (int, float)), ("count", int), ("ours", dict), ("peers", dict)):
            need(isinstance(r.get(key), typ), "records[%d].%s must be %s" % (i, key, typ))
        need(r["direction"] in ("fwd", "dgrad", "wgrad"), "records[%d].direction %r" % (i, r["direction"]))
        for side in ("ours", "peers"):
            for name, e in r[side].items():
                where = "records[%d].%s.%s" % (i, side, name)
                need(isinstance(e, dict), where + " must be an object")
                need(e.get("status") in _STATUSES, where + ".status must be one of %s" % (_STATUSES,))
                for key in ("kernel_ms", "eager_ms", "host_us", "rel_err"):
                    need(key in e and (e[key] is None or isinstance(e[key], (int, float))),
                         where + ".%s must be a number or null" % key)
                if e["status"] == "FAIL":
                    need(e["kernel_ms"] is None and e["eager_ms"] is None, where + ": a FAIL carries no time")
    return True


def write_json(result, path):
    with open(path, "w") as f:
        json.dump(result, f, indent=1, default=_json_default, allow_nan=True)
        f.write("\n")


def _json_default(o):
    try:
        return float(o)
    except Exception:                              # noqa: BLE001
        return str(o)


def load(path):
    with open(path) as f:
        result = json.load(f)
    validate(result)
    return result


# ---------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------

def _cell_time(e, kind="kernel"):
    if e is None:
        return "-"
    st = e.get("status")
    if st == "FAIL":
        err = e.get("rel_err")
        return "FAIL" if err is None else "FAIL(%.1e)" % err
    if st == "error":
        return "ERR"
    if st in ("n/a", "skipped"):
        return "-"
    t = e.get("kernel_ms") if kind == "kernel" else e.get("eager_ms")
    if t is None:
        return "-"
    return "%.3f" % t if t < 10 else "%.2f" % t


def _fmt_ratio(x):
    if x is None:
        return "-"
    return "%.2f%s" % (x, "!" if x > TARGET_RATIO else "")


def _rows(result):
    engines = engines_of(result)
    peers = peers_of(result)
    peak = result.get("peak_tflops")
    header = ["layer", "dir", "n"]
    header += ["%s ms" % e for e in engines] + ["%s ms" % p for p in peers]
    header += ["%s/torch" % e for e in engines] if "torch" in peers else []
    header += ["eager %s/torch" % engines[0]] if engines and "torch" in peers else []
    if engines and "torch" in peers:
        header += ["host us %s/torch" % engines[0]]
    header += ["TFLOP/s", "%peak", "roof ms", "%roof"] + (["torch %roof"] if "torch" in peers else [])
    header += ["algo (%s)" % engines[0] if engines else "algo", "ws MiB"]
    rows = []
    for r in result["records"]:
        row = [r["shape"] if r["layer"] == r["spec"] else "%s %s" % (r["layer"], r["shape"]), r["direction"],
               str(r["count"])]
        row += [_cell_time(r["ours"].get(e)) for e in engines]
        row += [_cell_time(r["peers"].get(p)) if p != "jax" else _cell_time(r["peers"].get(p), "eager")
                for p in peers]
        if "torch" in peers:
            row += [_fmt_ratio(ratio(r, e)) for e in engines]
            if engines:
                x = ratio(r, engines[0], "eager")
                row.append("-" if x is None else "%.2f" % x)
                o = (r["ours"].get(engines[0]) or {}).get("host_us")
                t = (r["peers"].get("torch") or {}).get("host_us")
                row.append("-" if (o is None or t is None or _time(r["ours"].get(engines[0]), "eager") is None)
                           else "%.0f/%.0f" % (o, t))
        e0 = r["ours"].get(engines[0]) if engines else None
        t = _time(e0) or _time(e0, "eager")
        tf = r["flops"] / (t * 1e-3) / 1e12 if t else None
        row.append("-" if tf is None else "%.1f" % tf)
        row.append("-" if (tf is None or not peak) else "%.0f%%" % (100 * tf / peak))
        b = bound_ms(result, r)
        row.append("-" if b is None else "%.4f" % b)
        fr = [roof_fraction(result, r, engines[0])] if engines else [None]
        if "torch" in peers:
            fr.append(roof_fraction(result, r, "torch", "peers"))
        row += ["-" if f is None else "%.0f%%" % (100 * f) for f in fr]
        row.append(str((e0 or {}).get("algo") or "-") + ("" if (e0 or {}).get("path") in (None, "direct")
                                                         else " [%s]" % e0["path"]))
        ws = (e0 or {}).get("workspace")
        row.append("-" if ws is None else "%.1f" % (ws / 2 ** 20))
        rows.append(row)
    return header, rows


def header_lines(result):
    env, cfg = result["env"], result["config"]
    peak = result.get("peak_tflops")
    lines = [
        "cudnnconv bench: %s | %s %s | engines %s | vs %s" % (
            ", ".join(cfg.get("suites") or ["custom"]), cfg["dtype"], cfg["layout"], ",".join(cfg["engines"]),
            ",".join(cfg["compare"]) or "nothing"),
        "GPU %s (sm %s, %s GiB) | driver %s | CUDA %s | cuDNN %s (torch's %s) | CuPy %s | PyTorch %s | JAX %s | %s"
        % (env.get("gpu"), env.get("sm"), env.get("gpu_memory_gib"), env.get("driver"), env.get("cuda_runtime"),
           env.get("cudnn"), env.get("cudnn_torch"), env.get("cupy"), env.get("torch"), env.get("jax"),
           env.get("date")),
        "measured peak: %s TFLOP/s (fp16 8192^3 matmul through CuPy, in short bursts; %s sustained); times in ms per call, kernel time by CUDA-graph "
        "replay; ratio = ours/torch (<1 faster, ! over %.2f); host us = host time per call (ours/torch); a conv "
        "kernel can beat the matmul peak by a few %%" % ("%.0f" % peak if peak else "n/a",
                                                 "%.0f" % env["peak_sustained_tflops"]
                                                 if env.get("peak_sustained_tflops") else "n/a", TARGET_RATIO),
    ]
    if cfg.get("exhaustive_budget_s") is not None:
        lines.append("search: exhaustive (cudnnconv.benchmark_settings(exhaustive=True)), budget %g s per problem, "
                     "%s; PyTorch with cudnn.benchmark" % (
                         cfg["exhaustive_budget_s"],
                         "knob settings swept in a worker process" if cfg.get("knob_sweep")
                         else "every engine with its default knobs (no knob sweep)"))
    pk = result.get("peaks")
    if pk:
        lines.append("roofline peaks, measured in this run: matmul fp16 %s, bf16 %s, TF32 %s, fp32 %s TFLOP/s; "
                     "device copy %s TB/s (read + written); bound = max(flops / peak, bytes of x, w and y / "
                     "bandwidth); %%roof = bound / kernel time" % tuple(
                         "-" if pk.get(k) is None else ("%.2f" if k == "copy_tb_s" else "%.0f") % pk[k]
                         for k in ("fp16", "bf16", "tf32", "fp32", "copy_tb_s")))
    for n in result.get("notes", []):
        lines.append("note: " + n)
    return lines


def summary_lines(result):
    lines = []
    for eng, per in result["summary"].items():
        for d in directions_of(result):
            s = per[d]
            g, ge = s["geomean_ratio_kernel"], s["geomean_ratio_eager"]
            w, lg, net = s["worst"], s["largest"], s["network_ms"]
            lines.append(
                "%s %-5s geomean ratio %s (eager %s) over %d layers; worst %s; largest %s at %s of peak; "
                "network %s; FAIL/ERR %d; over %.2f: %d" % (
                    eng, d, _f(g), _f(ge), s["compared"],
                    "-" if not w else "%s (%s) %.2f" % (w["layer"], w["shape"], w["ratio"]),
                    "-" if not lg else lg["layer"],
                    "-" if not lg or lg["peak_fraction"] is None else "%.0f%% (%.0f TFLOP/s)"
                    % (100 * lg["peak_fraction"], lg["tflops"]),
                    "-" if net["ratio"] is None else "%.2f ms vs %.2f ms (%.2f)" % (net["ours"], net["torch"],
                                                                                    net["ratio"]),
                    len(s["failures"]), TARGET_RATIO, len(s["over_target"])))
            if s.get("roofline_fraction_geomean") is not None:
                lines.append("%s %-5s roofline fraction geomean %s (torch %s)" % (
                    eng, d, _f(s["roofline_fraction_geomean"]), _f(s.get("roofline_fraction_geomean_torch"))))
        fc = per.get("first_calls")
        if fc and fc["problems"]:
            lines.append("%s first calls (searches included): %.1f s over %d problems, %d searched" % (
                eng, fc["seconds"], fc["problems"], fc["searches"]))
        h = per["host"]
        if h["layers"]:
            lines.append("%s host us/call (tiny layers): %s; geomean ours/torch %s" % (
                eng, ", ".join("%s %s %.1f vs %s" % (x["layer"], x["direction"], x["ours_us"],
                                                     "-" if x["torch_us"] is None else "%.1f" % x["torch_us"])
                               for x in h["layers"]), _f(h["geomean_ratio"])))
    if result.get("wall_s") is not None:
        lines.append("wall time %.0f s" % result["wall_s"])
    return lines


def _f(x):
    return "-" if x is None else "%.3f" % x


def table_text(result):
    header, rows = _rows(result)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    lines = header_lines(result) + ["", fmt(header), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    lines += [""] + summary_lines(result)
    return "\n".join(lines)


def markdown(result):
    header, rows = _rows(result)
    out = ["# " + header_lines(result)[0], ""]
    out += ["- " + l for l in header_lines(result)[1:]]
    out += ["", "| " + " | ".join(header) + " |", "|" + "|".join("---" if i < 2 else "---:"
                                                                for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    out += ["", "## Summary", ""] + ["- " + l for l in summary_lines(result)]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# chart
# ---------------------------------------------------------------------------

def chart(result, path):
    """A PNG of per-layer speed-up against PyTorch (torch time / ours, kernel
    time), one panel per direction, one bar per engine.  Returns the path,
    or None without matplotlib or without any PyTorch times."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    dirs = directions_of(result)
    engines = engines_of(result)
    if not dirs or not engines or "torch" not in peers_of(result):
        return None
    per_dir = {d: [r for r in result["records"] if r["direction"] == d] for d in dirs}
    nmax = max(len(v) for v in per_dir.values())
    fig, axes = plt.subplots(1, len(dirs), figsize=(5.2 * len(dirs) + 2.2, 0.34 * nmax * max(1, len(engines))
                                                    ** 0.5 + 2.2), squeeze=False)
    colors = ["#2b7bba", "#e08214", "#5aae61", "#9970ab"]
    h = 0.8 / len(engines)
    labelled = set()
    for ax, d in zip(axes[0], dirs):
        recs = per_dir[d]
        labels = [r["shape"] for r in recs]
        xmax = 1.2
        for j, eng in enumerate(engines):
            for i, r in enumerate(recs):
                x = ratio(r, eng)
                y = i + (j - (len(engines) - 1) / 2) * h
                st = (r["ours"].get(eng) or {}).get("status")
                if st in ("FAIL", "error"):
                    ax.text(0.02, y, st, color="red", va="center", fontsize=8, fontweight="bold",
                            transform=ax.get_yaxis_transform())
                    continue
                if x is None:
                    continue
                sp = 1.0 / x
                xmax = max(xmax, sp)
                ax.barh(y, sp, height=h * 0.9, color=colors[j % len(colors)],
                        edgecolor="black" if sp < 1 / TARGET_RATIO else "none", linewidth=0.8,
                        label=None if eng in labelled else eng)
                labelled.add(eng)
                ax.text(sp, y, " %.2f" % sp, va="center", fontsize=7)
        ax.axvline(1.0, color="black", linewidth=1)
        ax.axvline(1 / TARGET_RATIO, color="gray", linestyle=":", linewidth=1)
        ax.set_yticks(range(len(recs)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, xmax * 1.15)
        s = result["summary"][engines[0]][d]
        roof = s.get("roofline_fraction_geomean")
        ax.set_title("%s: geomean speed-up %s%s" % (
            d, "-" if not s["geomean_ratio_kernel"] else "%.2fx" % (1 / s["geomean_ratio_kernel"]),
            "" if roof is None else "\nroofline fraction %.2f (torch %s)" % (
                roof, _f(s.get("roofline_fraction_geomean_torch")))), fontsize=11)
        ax.set_xlabel("speed-up vs PyTorch (torch time / ours; >1 = cudnnconv faster)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        hh, ll = ax.get_legend_handles_labels()
        handles, labels = handles + hh, labels + ll
    if handles:
        fig.legend(handles, labels, loc="upper right", fontsize=9, title="engine")
    env, cfg = result["env"], result["config"]
    fig.suptitle("cudnnconv vs PyTorch (cudnn.benchmark=True), kernel time by CUDA-graph replay\n%s, %s %s, "
                 "cuDNN %s, PyTorch %s, %s" % (env.get("gpu"), cfg["dtype"], cfg["layout"], env.get("cudnn"),
                                               env.get("torch"), (env.get("date") or "")[:10]), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------

def write_all(result, out_dir, base):
    """JSON, markdown and PNG under out_dir; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, base + ".json"), "md": os.path.join(out_dir, base + ".md")}
    write_json(result, paths["json"])
    with open(paths["md"], "w") as f:
        f.write(markdown(result))
    png = chart(result, os.path.join(out_dir, base + ".png"))
    if png:
        paths["png"] = png
    return paths


# ---------------------------------------------------------------------------
# --compare-results
# ---------------------------------------------------------------------------

def compare(a, b):
    """Rows (layer, direction, who, a_ms, b_ms, b/a) for every layer,
    direction and engine or peer that both runs timed, matched by spec; the
    kernel time where both have it, else the eager time."""
    index = {(r["spec"], r["op"], r["direction"]): r for r in a["records"]}
    rows = []
    for rb in b["records"]:
        ra = index.get((rb["spec"], rb["op"], rb["direction"]))
        if ra is None:
            continue
        for side in ("ours", "peers"):
            for who in rb[side]:
                if who not in ra[side]:
                    continue
                ea, eb = ra[side][who], rb[side][who]
                ta, tb = _time(ea), _time(eb)
                if ta is None or tb is None:
                    ta, tb = _time(ea, "eager"), _time(eb, "eager")
                if ta is None or tb is None:
                    continue
                rows.append({"layer": rb["layer"], "shape": rb["shape"], "direction": rb["direction"],
                             "who": who, "a_ms": ta, "b_ms": tb, "ratio": tb / ta})
    return rows


def compare_text(a, b, name_a="A", name_b="B"):
    rows = compare(a, b)
    lines = ["A = %s (%s, %s)" % (name_a, a["env"].get("gpu"), a["env"].get("date")),
             "B = %s (%s, %s)" % (name_b, b["env"].get("gpu"), b["env"].get("date")),
             "ratio = B time / A time (<1: B faster)", ""]
    if not rows:
        return "\n".join(lines + ["no layer in common"])
    w = max(len(r["shape"]) for r in rows)
    lines.append("%s  %-5s  %-12s  %10s  %10s  %7s" % ("layer".ljust(w), "dir", "who", "A ms", "B ms", "B/A"))
    for r in rows:
        lines.append("%s  %-5s  %-12s  %10.4f  %10.4f  %7.3f" % (r["shape"].ljust(w), r["direction"], r["who"],
                                                                 r["a_ms"], r["b_ms"], r["ratio"]))
    lines.append("")
    for who in sorted({r["who"] for r in rows}):
        for d in ("fwd", "dgrad", "wgrad"):
            v = [r["ratio"] for r in rows if r["who"] == who and r["direction"] == d]
            if v:
                lines.append("geomean B/A %-12s %-5s %.3f over %d layers" % (who, d, geomean(v), len(v)))
    return "\n".join(lines)
