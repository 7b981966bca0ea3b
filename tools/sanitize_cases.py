"""The workload tools/sanitize.sh runs under compute-sanitizer: small calls that cover every public
function x engine x dtype x layout, with 1-3 spatial dims, groups, stride, dilation and 'same'
padding; the fused and transposed functions; out= into views; the split path (in a build with a
small CUDNNCONV_INDEX_LIMIT); CUDA-graph capture; and the plan objects.  Every result is compared
with the float64 reference (tests/gpu/reference.py) on fresh random data, into poisoned outputs.

Usage (GPU): PYTHONPATH=pyx python3 tools/sanitize_cases.py [--part I/N] [--only PREFIX] [--list] [--no-pool]
Prints one line per case ("ok", or "FAIL ..." with the relative error or the exception) and a last
line "cases N ok M failed K"; exits 1 when a case failed.  --part I/N runs every N-th case from the
I-th (1-based), so that a sanitizer's run can be chunked across calls; --only keeps the cases whose
name starts with PREFIX (e.g. "split", "fwd/graph").  --no-pool makes CuPy
allocate every array and workspace from the driver (no memory pool, whose cached blocks would hide
an out-of-bounds access or a use after free from memcheck).
"""
import argparse
import os
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "gpu"))

import cupy  # noqa: E402

import cudnnconv as cc  # noqa: E402
import reference as ref  # noqa: E402

ENGINES = cc.build_info()["engines"]
DTYPES = ("float64", "float32", "float16", "bfloat16")
LAYOUTS = ("nchw", "channels_last")
SHAPES = {   # (x, w, kwargs, backward too): 1, 2 and 3 spatial dims; stride, padding, dilation, groups
    "1d": ((2, 4, 11), (6, 2, 3), dict(stride=2, padding=1, groups=2), True),
    "2d": ((2, 4, 7, 6), (6, 4, 3, 3), dict(padding="same"), True),
    "2d_same_even": ((2, 4, 7, 6), (6, 4, 2, 4), dict(padding="same"), False),   # end padding: forward only
    "2d_dil": ((1, 4, 9, 8), (4, 1, 3, 3), dict(dilation=2, padding=2, groups=4), True),
    "3d": ((1, 2, 5, 4, 6), (4, 2, 2, 3, 3), dict(stride=(1, 2, 1), padding=1), True),
}


def _check(name, got, want, dtype, tf32=False):
    err = ref.rel_error(got, want)
    tol = ref.tolerance(dtype, tf32)
    if not err <= tol:
        raise AssertionError("%s: relative error %.3g over %.3g" % (name, err, tol))


def _cases():
    out = []
    for engine in ENGINES:
        for dtype in DTYPES:
            for layout in LAYOUTS:
                for sname, (xs, ws, kw, bwd) in SHAPES.items():     # float64 channels-last: repacked to NCHW
                    out.append(("fwd/%s/%s/%s/%s" % (engine, dtype, layout, sname),
                                lambda e=engine, d=dtype, l=layout, xs=xs, ws=ws, kw=kw: _forward(e, d, l, xs, ws, kw)))
                    if bwd:
                        out.append(("bwd/%s/%s/%s/%s" % (engine, dtype, layout, sname),
                                    lambda e=engine, d=dtype, l=layout, xs=xs, ws=ws, kw=kw: _backward(e, d, l, xs, ws,
                                                                                                      kw)))
                out.append(("transpose/%s/%s/%s" % (engine, dtype, layout),
                            lambda e=engine, d=dtype, l=layout: _transpose(e, d, l)))
                out.append(("fused/%s/%s/%s" % (engine, dtype, layout),
                            lambda e=engine, d=dtype, l=layout: _fused(e, d, l)))
        out.append(("out_view/%s" % engine, lambda e=engine: _out_view(e)))
        out.append(("capture/%s" % engine, lambda e=engine: _capture(e)))
        out.append(("plan/%s" % engine, lambda e=engine: _plan(e)))
    if cc.build_info()["CUDNNCONV_INDEX_LIMIT"] < (1 << 24):
        out.append(("split", _split))
    return out


def _tf32(dtype):
    return False if dtype == "float32" else None


def _forward(engine, dtype, layout, xs, ws, kw):
    x, w = ref.random(xs, dtype, layout), ref.random(ws, dtype, layout, scale=0.3)
    b = ref.random((ws[0],), dtype)
    want = ref.conv(x, w, b, **kw)
    got = cc.conv(x, w, b, engine=engine, allow_tf32=_tf32(dtype), **kw)
    _check("conv", got, want, dtype)
    out = ref.poisoned(want.shape, dtype, layout)
    cc.conv(x, w, b, out=out, engine=engine, allow_tf32=_tf32(dtype), **kw)
    _check("conv out=", out, want, dtype)


def _backward(engine, dtype, layout, xs, ws, kw):
    x, w = ref.random(xs, dtype, layout), ref.random(ws, dtype, layout, scale=0.3)
    gy = ref.random(ref.conv(x, w, **kw).shape, dtype, layout)
    _check("conv_backward_input", cc.conv_backward_input(xs, w, gy, engine=engine, allow_tf32=_tf32(dtype), **kw),
           ref.conv_backward_input(xs, w, gy, **kw), dtype)
    _check("conv_backward_weight", cc.conv_backward_weight(x, ws, gy, engine=engine, allow_tf32=_tf32(dtype), **kw),
           ref.conv_backward_weight(x, ws, gy, **kw), dtype)


def _transpose(engine, dtype, layout):
    x, w = ref.random((2, 4, 5, 6), dtype, layout), ref.random((4, 3, 3, 3), dtype, layout, scale=0.3)
    kw = dict(stride=2, padding=1, output_padding=1)
    _check("conv_transpose", cc.conv_transpose(x, w, engine=engine, allow_tf32=_tf32(dtype), **kw),
           ref.conv_transpose(x, w, **kw), dtype)


def _fused(engine, dtype, layout):
    x, w = ref.random((2, 8, 6, 7), dtype, layout), ref.random((8, 8, 3, 3), dtype, layout, scale=0.3)
    z, b = ref.random((2, 8, 6, 7), dtype, layout), ref.random((8,), dtype)
    _check("conv_bias_add_relu", cc.conv_bias_add_relu(x, w, z, 0.5, b, padding=1, engine=engine,
                                                       allow_tf32=_tf32(dtype)),
           ref.conv_bias_add_relu(x, w, z, 0.5, b, padding=1), dtype)


def _out_view(engine):
    x, w = ref.random((2, 4, 8, 8), "float32"), ref.random((6, 4, 3, 3), "float32", scale=0.3)
    want = ref.conv(x, w, padding=1)
    big = ref.poisoned((2, 12, 8, 8), "float32")
    view = big[:, 3:9]                         # a strided view: not the layout, computed then copied in
    cc.conv(x, w, padding=1, out=view, engine=engine, allow_tf32=False)
    _check("out= view", view, want, "float32")
    if not bool(cupy.isnan(big[:, :3]).all() and cupy.isnan(big[:, 9:]).all()):
        raise AssertionError("out= view: wrote outside the view")


def _capture(engine):
    x, w = ref.random((2, 4, 8, 8), "float16", "channels_last"), ref.random((8, 4, 3, 3), "float16",
                                                                          "channels_last", scale=0.3)
    out = ref.poisoned((2, 8, 8, 8), "float16", "channels_last")
    # Searched and cached before capture, on the default stream: the captured call, on another
    # stream, takes that stream's own workspace block during the capture.
    cc.conv(x, w, padding=1, out=out, engine=engine)
    cupy.cuda.runtime.deviceSynchronize()   # the non-blocking stream below does not wait for the null stream
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        ref.capture_then_launch(stream, lambda: cc.conv(x, w, padding=1, out=out, engine=engine), out, x,
                                "float16", "channels_last")
    _check("captured conv", out, ref.conv(x, w, padding=1), "float16")


def _plan(engine):
    x, w = ref.random((2, 4, 8, 8), "float16", "channels_last"), ref.random((8, 4, 3, 3), "float16",
                                                                          "channels_last", scale=0.3)
    p = cc.plan(cc.conv, x, w, None, 1, 1, engine=engine)
    for _ in range(3):
        x2 = ref.random(x.shape, "float16", "channels_last")
        _check("plan", p(x2, w), ref.conv(x2, w, padding=1), "float16")
    out = ref.poisoned((2, 8, 8, 8), "float16", "channels_last")
    p(x, w, out=out)
    _check("plan out=", out, ref.conv(x, w, padding=1), "float16")


def _split():
    limit = cc.build_info()["CUDNNCONV_INDEX_LIMIT"]
    n = 3
    c = max(1, limit // (n - 1) // 64) + 1          # one sample under the limit, the batch over it
    x, w = ref.random((n, c, 8, 8), "float32"), ref.random((4, c, 1, 1), "float32", scale=0.1)
    _check("split conv", cc.conv(x, w, allow_tf32=False), ref.conv(x, w), "float32")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", default="1/1")
    p.add_argument("--only", default="")
    p.add_argument("--list", action="store_true")
    p.add_argument("--no-pool", action="store_true")
    a = p.parse_args(argv)
    if a.no_pool:
        cupy.cuda.set_allocator(None)
    i, n = (int(v) for v in a.part.split("/"))
    cases = [c for c in _cases() if c[0].startswith(a.only)][i - 1::n]
    if a.list:
        print("\n".join(name for name, _ in cases))
        return 0
    failed = 0
    for name, run in cases:
        try:
            run()
            cupy.cuda.runtime.deviceSynchronize()
            print("ok   %s" % name, flush=True)
        except Exception as e:                       # noqa: BLE001 - report every case
            failed += 1
            print("FAIL %s: %s: %s" % (name, type(e).__name__, str(e).splitlines()[0] if str(e) else ""), flush=True)
            traceback.print_exc(limit=3, file=sys.stderr)
    print("cases %d ok %d failed %d" % (len(cases), len(cases) - failed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
