"""What cuDNN's fused *_BWD modes do at the kinks: fused vs composed at exact 0 and at the clamp bounds."""
import numpy, cupy, cudnnconv, json, sys
from cudnnconv import activations
rs = numpy.random.default_rng(1)
res = {}
x_shape = (8, 32, 16, 16)
w = cupy.asarray(rs.uniform(-1, 1, (32, 32, 3, 3)).astype("float16"))
gy = cupy.asarray(rs.uniform(-1, 1, (8, 32, 16, 16)).astype("float16"))
def cl(a):
    return cupy.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
w, gy = cl(w), cl(gy)
for act, kind, specials in [("relu", "pre", [0.0]), ("relu", "output", [0.0]),
                            (("clamp", -0.5, 0.75), "output", [-0.5, 0.75]), (("clamp", -0.5, 0.75), "pre", [-0.5, 0.75]),
                            (("leaky_relu", 0.2), "output", [0.0]), (("leaky_relu", 0.2), "pre", [0.0]),
                            ("tanh", "pre", []), ("sigmoid", "pre", []), ("tanh", "output", []), ("sigmoid", "output", []),
                            (("elu", 0.7), "pre", []), (("elu", 0.7), "output", []), ("gelu", "pre", []), ("silu", "pre", [])]:
    a = rs.uniform(-1.5, 1.5, x_shape)
    if kind == "output":
        a = activations.reference_forward(act, a)
    mask = rs.random(x_shape) < 0.3
    for i, s in enumerate(specials):
        a = numpy.where(mask & (rs.random(x_shape) < 1.0 / (len(specials) - i)), s, a) if specials else a
    a16 = cl(cupy.asarray(a.astype("float16")))
    name = "%s/%s" % (activations.activation(act).name, kind)
    try:
        yc = cudnnconv.conv_backward_input_act(x_shape, w, gy, a16, padding=1, act=act, act_input_is=kind, fusion="composed")
        yf = cudnnconv.conv_backward_input_act(x_shape, w, gy, a16, padding=1, act=act, act_input_is=kind, fusion="fused")
    except Exception as e:
        res[name] = "error %s: %s" % (type(e).__name__, str(e)[:200]); print(name, res[name]); continue
    d = cupy.asnumpy(cupy.abs(yf.astype("float64") - yc.astype("float64")))
    scale = float(cupy.abs(yc.astype("float64")).max())
    an = cupy.asnumpy(a16).astype("float64")
    out = {"max_diff_rel": float(d.max() / scale)}
    for s in specials:
        at = an == numpy.float16(s)
        out["at_%g" % s] = {"n": int(at.sum()), "max_diff_rel": float(d[at].max() / scale) if at.any() else None,
                            "fused_nonzero": int((cupy.asnumpy(yf)[at] != 0).sum()),
                            "composed_nonzero": int((cupy.asnumpy(yc)[at] != 0).sum())}
    off = numpy.ones(x_shape, bool)
    for s in specials:
        off &= an != numpy.float16(s)
    out["elsewhere_max_diff_rel"] = float(d[off].max() / scale)
    res[name] = out
    print(name, json.dumps(out))
json.dump(res, open(sys.argv[1], "w"), indent=1)
