"""The bias gradient's reduction on channels-last and NCHW, against torch's sum, fp16."""
import json, sys, statistics
import cupy, torch
from cudnnconv import epilogue_composed, params

def timeit(f, reps=30):
    for _ in range(3):
        f()
    s = cupy.cuda.get_current_stream()
    ts = []
    for _ in range(reps):
        a, b = cupy.cuda.Event(), cupy.cuda.Event()
        a.record(s); f(); b.record(s); b.synchronize()
        ts.append(cupy.cuda.get_elapsed_time(a, b))
    return statistics.median(ts)

rows = []
for shape in [(128, 256, 56, 56), (128, 64, 112, 112), (128, 2048, 7, 7), (128, 512, 28, 28), (128, 96, 56, 56)]:
    for layout in (params.CHANNELS_LAST, params.NCHW):
        g = params.empty_in_layout(shape, "float16", layout)
        g[...] = cupy.random.uniform(-1, 1, shape, dtype="float32").astype("float16")
        out = cupy.empty((shape[1],), "float16")
        tg = torch.from_dlpack(g)
        torch.cuda.synchronize()
        ref = g.astype("float64").sum(axis=(0, 2, 3))
        epilogue_composed.bias_gradient(g, out)
        err = float(abs(out.astype("float64") - ref).max() / abs(ref).max())
        ours = timeit(lambda: epilogue_composed.bias_gradient(g, out))
        # torch on the same stream: cupy's current (null) stream is torch's default stream
        theirs = timeit(lambda: tg.sum(dim=(0, 2, 3)))
        gb = g.nbytes / 1e9
        r = {"shape": shape, "layout": "nhwc" if layout == params.CHANNELS_LAST else "nchw", "ours_ms": ours,
             "torch_ms": theirs, "ratio": ours / theirs, "ours_GBps": gb / ours * 1e3, "rel_err": err}
        rows.append(r)
        print(json.dumps(r), flush=True)
json.dump(rows, open(sys.argv[1], "w"), indent=1)
