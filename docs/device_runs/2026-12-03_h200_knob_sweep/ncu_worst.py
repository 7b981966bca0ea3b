"""The five ResNet-50 layer-directions (b128, fp16 channels-last) furthest from their roofline:
one call of ours (graph engine, benchmark search) and one of PyTorch's (cudnn.benchmark), each
inside cudaProfilerStart/Stop so that ncu (--profile-from-start off) sees just those kernels."""
import sys, json
import cupy, numpy, torch
import cudnnconv
torch.backends.cudnn.benchmark = True
LAYERS = [  # (name, direction, N, C, H, K, R, pad, stride)
    ("conv1", "dgrad", 128, 3, 224, 64, 7, 3, 2),
    ("conv1", "wgrad", 128, 3, 224, 64, 7, 3, 2),
    ("conv1", "fwd", 128, 3, 224, 64, 7, 3, 2),
    ("layer3.0.downsample", "dgrad", 128, 512, 28, 1024, 1, 0, 2),
    ("layer2.0.conv2", "dgrad", 128, 128, 56, 128, 3, 1, 2),
]
which = sys.argv[1] if len(sys.argv) > 1 else "all"
rng = cupy.random.RandomState(0)
def cl(shape):   # channels-last fp16 CuPy array of logical (N, C, H, W)
    n, c, h, w = shape
    return rng.standard_normal((n, h, w, c)).astype(numpy.float16).transpose(0, 3, 1, 2)
out = []
for name, d, N, C, H, K, R, pad, st in LAYERS:
    Ho = (H + 2 * pad - R) // st + 1
    x, w, gy = cl((N, C, H, H)), cl((K, C, R, R)), cl((N, K, Ho, Ho))
    kw = dict(padding=pad, stride=st, benchmark=True, engine="graph")
    if d == "fwd":
        ours = lambda: cudnnconv.conv(x, w, **kw)
    elif d == "dgrad":
        ours = lambda: cudnnconv.conv_backward_input(x.shape, w, gy, **kw)
    else:
        ours = lambda: cudnnconv.conv_backward_weight(x, w.shape, gy, **kw)
    tx, tw, tg = (torch.as_tensor(a, device="cuda") for a in (x, w, gy))
    bias = [0]
    if d == "fwd":
        theirs = lambda: torch.nn.functional.conv2d(tx, tw, None, st, pad)
    else:
        mask = [d == "dgrad", d == "wgrad", False]
        theirs = lambda: torch.ops.aten.convolution_backward(tg, tx, tw, [0], [st, st], [pad, pad], [1, 1],
                                                             False, [0, 0], 1, mask)
    for _ in range(3):
        ours(); theirs()
    torch.cuda.synchronize()
    info = cudnnconv.last_call()
    for side, fn in (("ours", ours), ("torch", theirs)):
        if which in ("all", side):
            cupy.cuda.runtime.deviceSynchronize()
            cupy.cuda.runtime.profilerStart()
            fn()
            cupy.cuda.runtime.deviceSynchronize()
            cupy.cuda.runtime.profilerStop()
            print("PROFILED", name, d, side, flush=True)
    ours()
    c = cudnnconv.last_call()["choices"][0]
    out.append({"layer": name, "direction": d, "tag": c["tag"], "time_ms": c["time_ms"]})
    print("CHOICE", name, d, c["tag"], c["time_ms"], flush=True)
print(json.dumps(out))
