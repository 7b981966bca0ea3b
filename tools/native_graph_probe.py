"""Which engine configs could run through cuDNN's native CUDA-graph API?

cuDNN can put a plan's kernels into a CUDA graph of the caller's
(cudnnBackendPopulateCudaGraph) and later point that graph at new tensors
(cudnnBackendUpdateCudaGraph), but only for engines that carry the
SUPPORTS_CUDA_GRAPH_NATIVE_API behavior note.  This probe asks, for the tiny
host-overhead shapes and ResNet-50's distinct layers (fp16 channels-last,
every direction), how many of the configs explain() times carry the note,
whether the chosen one does, and how fast the fastest config with the note
is against the chosen one.  Prints one line per problem and a summary, and
writes JSON with --out.

    PYTHONPATH=pyx python3 tools/native_graph_probe.py --batch 32 --out DIR
"""
import argparse
import json
import os
import sys

NOTE = "SUPPORTS_CUDA_GRAPH_NATIVE_API"
TINY = [(64, 256, 14, 256, 3), (1, 8, 8, 8, 3), (64, 64, 56, 64, 1)]


def resnet50_layers(batch):
    """(name, x_shape, w_shape, stride, padding) of ResNet-50's distinct convs."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from bench import suites
    return [(layer.name, layer.input_shape(), layer.weight_shape(), layer.stride, layer.pad)
            for layer in suites.get("resnet50", batch)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out")
    ap.add_argument("--time-limit", type=float, default=0, help="start no new problem after S seconds")
    args = ap.parse_args()
    import time
    deadline = time.perf_counter() + args.time_limit if args.time_limit else float("inf")
    import cupy
    import cudnnconv

    def cl(shape):
        nd = len(shape)
        a = cupy.random.standard_normal((shape[0],) + tuple(shape[2:]) + (shape[1],)).astype(cupy.float16)
        return a.transpose((0, nd - 1) + tuple(range(1, nd - 1)))

    problems = [("tiny N=%d C=%d H=%d K=%d R=%d" % t, (t[0], t[1], t[2], t[2]), (t[3], t[1], t[4], t[4]), 1,
                 t[4] // 2) for t in TINY]
    try:
        problems += resnet50_layers(args.batch)
    except Exception as e:          # the layer table is optional
        print("resnet50 layers unavailable: %s" % e)
    rows = []
    for name, xs, ws, stride, pad in problems:
        if time.perf_counter() > deadline:
            print("time limit: %d of %d problems" % (len({r["problem"] for r in rows}), len(problems)))
            break
        x, w = cl(xs), cl(ws)
        for direction in ("forward", "backward_data", "backward_filter"):
            kw = dict(direction=direction, stride=stride, padding=pad, engine="graph")
            try:
                rep = cudnnconv.explain(x, w, **kw)
            except Exception as e:
                rows.append({"problem": name, "direction": direction, "error": "%s: %s" % (type(e).__name__, e)})
                continue
            timed = [c for c in rep.candidates if not c.excluded and c.samples]
            native = [c for c in timed if NOTE in (c.notes or "")]
            chosen = rep.chosen
            best_native = min(native, key=lambda c: c.median_ms) if native else None
            row = {"problem": name, "direction": direction, "timed": len(timed), "with_note": len(native),
                   "chosen": chosen.tag if chosen else None,
                   "chosen_has_note": bool(chosen and NOTE in (chosen.notes or "")),
                   "chosen_ms": chosen.median_ms if chosen else None,
                   "best_native": best_native.tag if best_native else None,
                   "best_native_ms": best_native.median_ms if best_native else None}
            rows.append(row)
            print("%-40s %-15s timed %2d, with the note %2d, chosen %s%s, fastest with the note %s" % (
                name, direction, row["timed"], row["with_note"], row["chosen"],
                " (has it)" if row["chosen_has_note"] else "",
                "%s %.4f ms vs %.4f ms" % (row["best_native"], row["best_native_ms"], row["chosen_ms"])
                if best_native and chosen else "-"), flush=True)
    ok = [r for r in rows if "error" not in r]
    summary = {"problems": len(ok), "chosen_with_note": sum(r["chosen_has_note"] for r in ok),
               "with_any_note": sum(r["with_note"] > 0 for r in ok),
               "candidates": sum(r["timed"] for r in ok), "candidates_with_note": sum(r["with_note"] for r in ok)}
    print("summary:", json.dumps(summary))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "native_graph_probe.json"), "w") as f:
            json.dump({"summary": summary, "rows": rows, "gpu": cupy.cuda.runtime.getDeviceProperties(0)["name"]
                       .decode(), "cudnn": cudnnconv.version()}, f, indent=1)


if __name__ == "__main__":
    main()
