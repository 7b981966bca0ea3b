"""``python3 -m cudnnconv``: a short demonstration and self-check.

On a GPU it runs a few 2-D convolutions (forward, backward-input and
backward-weight; float16 channels-last and float32 NCHW), checks each result
against a float64 reference computed here by a direct loop over kernel
offsets (independent of cuDNN), and prints the median time of a few repeats
(CUDA events, after a warm-up) with the algorithm that ran
(``cudnnconv.last_call()``).  Without a GPU it says so in one line and exits
with status 0.  A result outside its tolerance makes the exit status 1.
"""
import statistics
import sys

import numpy

# Relative tolerance, max|result - reference| / max|reference|.  float32 may
# use TF32 tensor cores (allow_tf32=True is the default), so its bound is
# TF32's, not float32's.
TOLERANCE = {"float16": 2e-2, "float32": 1e-2}

# (label, dtype, layout, N, C, H, W, K, kernel, stride, padding, dilation)
CASES = [
    ("fp16 NHWC 3x3", "float16", "NHWC", 32, 64, 56, 56, 64, 3, 1, 1, 1),
    ("fp16 NHWC 3x3/s2", "float16", "NHWC", 32, 128, 28, 28, 256, 3, 2, 1, 1),
    ("fp32 NCHW 3x3", "float32", "NCHW", 16, 64, 56, 56, 64, 3, 1, 1, 1),
    ("fp32 NCHW 5x5/d2", "float32", "NCHW", 8, 32, 32, 32, 48, 5, 1, 4, 2),
]


# ---------------------------------------------------------------------------
# Reference: direct loops over kernel offsets, for any array module ``xp``
# (CuPy here; NumPy in the CPU tests that check these functions).
# ---------------------------------------------------------------------------

def _window(xp_, r, s, ho, wo, stride, dilation):
    """The input elements that kernel offset (r, s) meets, shape (N, C, Ho, Wo)."""
    return xp_[:, :, r * dilation: r * dilation + stride * (ho - 1) + 1: stride,
               s * dilation: s * dilation + stride * (wo - 1) + 1: stride]


def _out_size(size, k, stride, padding, dilation):
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def ref_forward(xp, x, w, stride, padding, dilation):
    x, w = x.astype(xp.float64), w.astype(xp.float64)
    n, _, h, wd = x.shape
    k, _, kh, kw = w.shape
    ho, wo = _out_size(h, kh, stride, padding, dilation), _out_size(wd, kw, stride, padding, dilation)
    xpad = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    y = xp.zeros((n, k, ho, wo), xp.float64)
    for r in range(kh):
        for s in range(kw):
            y += xp.einsum("nchw,kc->nkhw", _window(xpad, r, s, ho, wo, stride, dilation), w[:, :, r, s])
    return y


def ref_backward_input(xp, x_shape, w, gy, stride, padding, dilation):
    w, gy = w.astype(xp.float64), gy.astype(xp.float64)
    n, c, h, wd = x_shape
    _, _, kh, kw = w.shape
    ho, wo = gy.shape[2:]
    gpad = xp.zeros((n, c, h + 2 * padding, wd + 2 * padding), xp.float64)
    for r in range(kh):
        for s in range(kw):
            _window(gpad, r, s, ho, wo, stride, dilation)[...] += xp.einsum("nkhw,kc->nchw", gy, w[:, :, r, s])
    return gpad[:, :, padding: padding + h, padding: padding + wd]


def ref_backward_weight(xp, x, w_shape, gy, stride, padding, dilation):
    x, gy = x.astype(xp.float64), gy.astype(xp.float64)
    _, _, kh, kw = w_shape
    ho, wo = gy.shape[2:]
    xpad = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    gw = xp.zeros(w_shape, xp.float64)
    for r in range(kh):
        for s in range(kw):
            gw[:, :, r, s] = xp.einsum("nchw,nkhw->kc", _window(xpad, r, s, ho, wo, stride, dilation), gy)
    return gw


def rel_error(xp, got, ref):
    scale = float(xp.abs(ref).max()) or 1.0
    return float(xp.abs(got.astype(xp.float64) - ref).max()) / scale


# ---------------------------------------------------------------------------
# GPU part
# ---------------------------------------------------------------------------

def _time_ms(cupy, fn, warmup=2, repeats=7):
    """Median time of ``fn()`` in ms, by CUDA events on the current stream."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)


def describe_choice(record):
    """A short name for what ran, from a ``cudnnconv.last_call()`` record:
    the engine, the algorithm (legacy) or engine config (graph), its math,
    and whether it was benchmarked or picked by heuristics."""
    if not record or not record["choices"]:
        return "-"
    c = record["choices"][0]
    name = c.get("algo_name") or c.get("tag") or str(c.get("algo", "?"))
    math = c.get("math_type") or "+".join(c.get("numerical_notes") or ()) or ""
    how = "benchmarked" if c.get("benchmarked") else "heuristic"
    chunks = len(record["choices"])
    return "%s:%s%s (%s%s)" % (c.get("engine", record.get("engine")), name, " " + math if math else "", how,
                               ", %d chunks" % chunks if chunks > 1 else "")


def _array(cupy, shape, dtype, layout, rng):
    a = cupy.asarray(rng.standard_normal(shape, dtype=numpy.float32)).astype(dtype)
    if layout == "NHWC":
        a = cupy.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return a


def run_case(cupy, cudnnconv, case, engine, rng):
    label, dtype, layout, n, c, h, wd, k, ks, stride, padding, dilation = case
    x = _array(cupy, (n, c, h, wd), dtype, layout, rng)
    w = _array(cupy, (k, c, ks, ks), dtype, layout, rng) * (1.0 / (c * ks * ks) ** 0.5)
    geo = dict(stride=stride, padding=padding, dilation=dilation, engine=engine)
    y = cudnnconv.conv(x, w, **geo)
    gy = _array(cupy, y.shape, dtype, layout, rng)
    runs = [
        ("forward", lambda: cudnnconv.conv(x, w, **geo),
         lambda: ref_forward(cupy, x, w, stride, padding, dilation)),
        ("backward_input", lambda: cudnnconv.conv_backward_input(x.shape, w, gy, **geo),
         lambda: ref_backward_input(cupy, x.shape, w, gy, stride, padding, dilation)),
        ("backward_weight", lambda: cudnnconv.conv_backward_weight(x, w.shape, gy, **geo),
         lambda: ref_backward_weight(cupy, x, w.shape, gy, stride, padding, dilation)),
    ]
    ok = True
    for direction, fn, ref in runs:
        got = fn()
        record = cudnnconv.last_call()
        err = rel_error(cupy, got, ref())
        ms = _time_ms(cupy, fn)
        passed = err <= TOLERANCE[dtype]
        ok &= passed
        print("%-18s %-16s %9.3f ms  rel.err %.1e %-4s  %s"
              % (label, direction, ms, err, "ok" if passed else "FAIL", describe_choice(record)))
    return ok


def gpu_unavailable_reason():
    """None when a CUDA device is usable from CuPy, else why not."""
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return "%s: %s" % (type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else "")
    if count < 1:
        return "CuPy sees no CUDA device"
    return None


def main(argv=None):
    import cudnnconv
    reason = gpu_unavailable_reason()
    if reason is not None:
        print("no CUDA GPU/driver available: %s (cudnnconv %s imports fine, cuDNN %d; "
              "the demo needs a GPU)" % (reason, cudnnconv.__version__, cudnnconv.version()))
        return 0
    import cupy
    dev = cupy.cuda.Device()
    name = cupy.cuda.runtime.getDeviceProperties(dev.id)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    print("cudnnconv %s, cuDNN %d, engines %s, device %d: %s"
          % (cudnnconv.__version__, cudnnconv.version(), ",".join(cudnnconv.build_info()["engines"]), dev.id, name))
    print("median of 7 runs after 2 warm-ups; error relative to a float64 reference; "
          "last column: what ran (cudnnconv.last_call())")
    rng = numpy.random.default_rng(0)
    ok = True
    for engine in cudnnconv.build_info()["engines"]:
        print("-- engine=%r" % engine)
        for case in CASES:
            ok &= run_case(cupy, cudnnconv, case, engine, rng)
    print("all results within tolerance" if ok else "SOME RESULTS OUTSIDE TOLERANCE")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
