"""The composed epilogue: ``y = act(alpha1 * y + alpha2 * z + bias)`` in one CuPy elementwise kernel,
over a convolution's output, in place.

This is what ``conv_epilogue`` runs where cuDNN will not fuse the epilogue (the legacy engine, a
pattern no engine config takes, a tiled call), and what ``fusion='composed'`` asks for.  One kernel
reads the convolution's output once (and z and the bias) and writes the result once: the
arithmetic is in float32 (float64 for double data), rounded once on the store.  bfloat16 arrays are
read and written through their 16 bits, so that bfloat16 needs no CuPy support of its own.

The kernel's source (``source``) is pure text, so that the CPU tests can check it; the kernel is
compiled once per (activation, parts, dtype) and cached by CuPy.  The scales and the activation's
parameters are kernel arguments, not part of the source: a new value compiles nothing.
"""
from cudnnconv import activations

# The activation as a C expression of ``v`` (acc_t) and the parameters p0, p1 (acc_t).  The
# functions are CUDA's float/double overloads.
_ACT = {
    "identity": "v",
    "relu": "(v > (acc_t)0 ? v : (acc_t)0)",
    "leaky_relu": "(v > (acc_t)0 ? v : p0 * v)",
    "clamp": "fmin(fmax(v, p0), p1)",
    "elu": "(v > (acc_t)0 ? v : p0 * expm1(v))",
    "gelu": "((acc_t)0.5 * v * ((acc_t)1 + erf(v * (acc_t)0.70710678118654752440)))",
    "gelu_tanh": "((acc_t)0.5 * v * ((acc_t)1 + tanh((acc_t)0.79788456080286535588 * "
                 "(v + (acc_t)0.044715 * v * v * v))))",
    "silu": "(v / ((acc_t)1 + exp(-v)))",
    "sigmoid": "((acc_t)1 / ((acc_t)1 + exp(-v)))",
    "tanh": "tanh(v)",
}
assert set(_ACT) == set(activations.NAMES)

_BF16_PREAMBLE = r"""
__device__ __forceinline__ float _bf16_load(unsigned short u) {
    return __uint_as_float(((unsigned int)u) << 16);
}
__device__ __forceinline__ unsigned short _bf16_store(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (unsigned short)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);          /* round to nearest, ties to even */
    return (unsigned short)(u >> 16);
}
"""


def source(act_name, has_z, has_bias, dtype_name):
    """``(in_params, out_params, operation, preamble)`` of the kernel for one activation, the
    parts given and the dtype ('float16', 'bfloat16', 'float32' or 'float64')."""
    if act_name not in _ACT:
        raise ValueError("unknown activation %r" % (act_name,))
    if dtype_name == "bfloat16":
        t, load, store, acc = "uint16", "_bf16_load(%s)", "_bf16_store(%s)", "float32"
    elif dtype_name in ("float16", "float32", "float64"):
        t, load, store, acc = dtype_name, "(acc_t)(%s)", "(%s)", "float64" if dtype_name == "float64" else "float32"
    else:
        raise ValueError("no composed epilogue for dtype %r" % (dtype_name,))
    ins = ["%s c" % t] + (["%s z" % t] if has_z else []) + (["%s b" % t] if has_bias else []) + \
        ["%s alpha1" % acc, "%s alpha2" % acc, "%s p0" % acc, "%s p1" % acc]
    terms = ["alpha1 * " + load % "c"] + (["alpha2 * " + load % "z"] if has_z else []) + \
        ([load % "b"] if has_bias else [])
    op = "acc_t v = %s;\nv = %s;\ny = %s;" % (" + ".join(terms), _ACT[act_name], store % "v")
    preamble = "typedef %s acc_t;\n" % ("double" if acc == "float64" else "float") + \
        (_BF16_PREAMBLE if dtype_name == "bfloat16" else "")
    return ", ".join(ins), "%s y" % t, op, preamble


_KERNELS = {}


def _kernel(act_name, has_z, has_bias, dtype_name):
    k = (act_name, has_z, has_bias, dtype_name)
    kern = _KERNELS.get(k)
    if kern is None:
        import cupy
        ins, outs, op, preamble = source(act_name, has_z, has_bias, dtype_name)
        kern = _KERNELS[k] = cupy.ElementwiseKernel(
            ins, outs, op, "cudnnconv_epilogue_%s_%d%d_%s" % (act_name, has_z, has_bias, dtype_name),
            preamble=preamble)
    return kern


def apply(y, epi, z=None, bias=None):
    """``y = act(alpha1 * y + alpha2 * z + bias)`` in place (``epi``: an activations.Epilogue;
    ``z`` of y's shape where ``epi.has_z``; ``bias`` a (K,) vector where ``epi.has_bias``), in
    one kernel on y's stream."""
    dtype_name = y.dtype.name
    kern = _kernel(epi.act.name, epi.has_z, epi.has_bias, dtype_name)
    bf16 = dtype_name == "bfloat16"

    def raw(a):
        return a.view("uint16") if bf16 else a
    args = [raw(y)]
    if epi.has_z:
        args.append(raw(z))
    if epi.has_bias:
        args.append(raw(bias).reshape((1, bias.shape[0]) + (1,) * (y.ndim - 2)))
    p = tuple(epi.act.params) + (0.0,) * (2 - len(epi.act.params))
    kern(*args, epi.alpha1, epi.alpha2, p[0], p[1], raw(y))
    return y
