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
from cudnnconv import activations, params

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

# The activation's derivative as a C expression of its input ``v`` (acc_t), or, in _DERIVATIVE_OUT,
# of its output ``v`` (for the activations cudnnconv.activations.needs() says allow it).
_DERIVATIVE = {
    "relu": "(v > (acc_t)0 ? (acc_t)1 : (acc_t)0)",
    "leaky_relu": "(v > (acc_t)0 ? (acc_t)1 : p0)",
    "clamp": "((v > p0 && v < p1) ? (acc_t)1 : (acc_t)0)",
    "elu": "(v > (acc_t)0 ? (acc_t)1 : p0 * exp(v))",
    "gelu": "((acc_t)0.5 * ((acc_t)1 + erf(v * (acc_t)0.70710678118654752440)) + "
            "v * exp((acc_t)-0.5 * v * v) * (acc_t)0.39894228040143267794)",
    "gelu_tanh": "_gelu_tanh_d(v)",
    "silu": "_silu_d(v)",
    "sigmoid": "_sigmoid_d(v)",
    "tanh": "((acc_t)1 - tanh(v) * tanh(v))",
}
_DERIVATIVE_OUT = {
    "relu": "(v > (acc_t)0 ? (acc_t)1 : (acc_t)0)",
    "leaky_relu": "(v > (acc_t)0 ? (acc_t)1 : p0)",
    "clamp": "((v > p0 && v < p1) ? (acc_t)1 : (acc_t)0)",
    "elu": "(v > (acc_t)0 ? (acc_t)1 : v + p0)",
    "sigmoid": "(v * ((acc_t)1 - v))",
    "tanh": "((acc_t)1 - v * v)",
}
_DERIVATIVE_HELPERS = r"""
__device__ __forceinline__ acc_t _sigmoid_d(acc_t v) {
    acc_t s = (acc_t)1 / ((acc_t)1 + exp(-v));
    return s * ((acc_t)1 - s);
}
__device__ __forceinline__ acc_t _silu_d(acc_t v) {
    acc_t s = (acc_t)1 / ((acc_t)1 + exp(-v));
    return s * ((acc_t)1 + v * ((acc_t)1 - s));
}
__device__ __forceinline__ acc_t _gelu_tanh_d(acc_t v) {
    acc_t k = (acc_t)0.79788456080286535588;
    acc_t t = tanh(k * (v + (acc_t)0.044715 * v * v * v));
    return (acc_t)0.5 * ((acc_t)1 + t) +
           (acc_t)0.5 * v * ((acc_t)1 - t * t) * k * ((acc_t)1 + (acc_t)3 * (acc_t)0.044715 * v * v);
}
"""

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
    t, load, store, acc = _types(dtype_name)
    ins = ["%s c" % t] + (["%s z" % t] if has_z else []) + (["%s b" % t] if has_bias else []) + \
        ["%s alpha1" % acc, "%s alpha2" % acc, "%s p0" % acc, "%s p1" % acc]
    terms = ["alpha1 * " + load % "c"] + (["alpha2 * " + load % "z"] if has_z else []) + \
        ([load % "b"] if has_bias else [])
    op = "acc_t v = %s;\nv = %s;\ny = %s;" % (" + ".join(terms), _ACT[act_name], store % "v")
    preamble = "typedef %s acc_t;\n" % ("double" if acc == "float64" else "float") + \
        (_BF16_PREAMBLE if dtype_name == "bfloat16" else "")
    return ", ".join(ins), "%s y" % t, op, preamble


def derivative_source(act_name, from_output, dtype_name):
    """``(in_params, out_params, operation, preamble)`` of ``g = g * act'(a)`` in place, ``a`` the
    activation's input (or, ``from_output``, its output)."""
    table = _DERIVATIVE_OUT if from_output else _DERIVATIVE
    if act_name not in table:
        raise ValueError("no %s derivative of %r" % ("from-output" if from_output else "", act_name))
    t, load, store, acc = _types(dtype_name)
    ins = "%s g, %s a, %s p0, %s p1" % (t, t, acc, acc)
    op = "acc_t v = %s;\nv = %s;\ny = %s;" % (load % "a", table[act_name], store % ("(acc_t)(%s * v)" % (load % "g")))
    preamble = "typedef %s acc_t;\n" % ("double" if acc == "float64" else "float") + _DERIVATIVE_HELPERS + \
        (_BF16_PREAMBLE if dtype_name == "bfloat16" else "")
    return ins, "%s y" % t, op, preamble


def _types(dtype_name):
    """(the kernel's array type, load format, store format, scalar type) of a dtype."""
    if dtype_name == "bfloat16":
        return "uint16", "_bf16_load(%s)", "_bf16_store(%s)", "float32"
    if dtype_name in ("float16", "float32", "float64"):
        return dtype_name, "(acc_t)(%s)", "(%s)", "float64" if dtype_name == "float64" else "float32"
    raise ValueError("no composed epilogue for dtype %r" % (dtype_name,))


_KERNELS = {}


def _kernel(kind, act_name, a, b, dtype_name):
    """The compiled kernel: ``kind`` 'forward' (a, b: has_z, has_bias) or 'derivative' (a:
    from_output), compiled once per process."""
    k = (kind, act_name, a, b, dtype_name)
    kern = _KERNELS.get(k)
    if kern is None:
        import cupy
        ins, outs, op, preamble = (source(act_name, a, b, dtype_name) if kind == "forward"
                                   else derivative_source(act_name, a, dtype_name))
        kern = _KERNELS[k] = cupy.ElementwiseKernel(
            ins, outs, op, "cudnnconv_%s_%s_%d%d_%s" % (kind, act_name, a, b, dtype_name), preamble=preamble)
    return kern


def _raw(a):
    """bfloat16 arrays as their 16 bits (the kernels decode them)."""
    return a.view("uint16") if a.dtype.name == "bfloat16" else a


def apply(y, epi, z=None, bias=None):
    """``y = act(alpha1 * y + alpha2 * z + bias)`` in place (``epi``: an activations.Epilogue;
    ``z`` of y's shape where ``epi.has_z``; ``bias`` a (K,) vector where ``epi.has_bias``), in
    one kernel on y's stream."""
    kern = _kernel("forward", epi.act.name, epi.has_z, epi.has_bias, y.dtype.name)
    # every operand in y's memory order (params.memory_order): a packed y is then one contiguous run
    # for CuPy, where a channels-last y seen as (N, C, H, W) was indexed as strided dims, about 20 G
    # elements/s on an H200.  One object as input and output: CuPy copies an input that overlaps an
    # output unless it is the output itself, and a second bfloat16 view or transpose would be another
    order = params.memory_order(y)
    ry = _raw(y).transpose(order)
    args = [ry]
    if epi.has_z:
        args.append(_raw(z).transpose(order))
    if epi.has_bias:
        args.append(_raw(bias).reshape((1, bias.shape[0]) + (1,) * (y.ndim - 2)).transpose(order))
    p = activations.padded(epi.act)
    kern(*args, epi.alpha1, epi.alpha2, p[0], p[1], ry)
    return y


def apply_derivative(g, act, a, from_output=False):
    """``g = g * act'(a)`` in place (``act``: an activations.Activation, not the identity; ``a``
    the activation's input of g's shape, or its output where ``from_output``), in one kernel."""
    kern = _kernel("derivative", act.name, bool(from_output), False, g.dtype.name)
    p = activations.padded(act)
    order = params.memory_order(g)
    rg = _raw(g).transpose(order)       # in g's memory order, one object as input and output (see apply)
    kern(rg, _raw(a).transpose(order), p[0], p[1], rg)
    return g


_BIAS_KERNELS = {}


def bias_gradient(g, out=None):
    """``sum of g`` over every dim but the channels (dim 1): the bias gradient, accumulated in
    float32 (float64 for double data) and rounded once, into ``out`` (a (K,) array of g's dtype)
    or a new array; one reduction kernel."""
    import cupy
    name = g.dtype.name
    t, load, store, acc = _types(name)
    kern = _BIAS_KERNELS.get(name)
    if kern is None:
        kern = _BIAS_KERNELS[name] = cupy.ReductionKernel(
            "%s g" % t, "%s y" % t, load % "g", "a + b", "y = %s" % (store % "a"), "0",
            "cudnnconv_bias_gradient_%s" % name, reduce_type="double" if acc == "float64" else "float",
            preamble="typedef %s acc_t;\n" % ("double" if acc == "float64" else "float") +
            (_BF16_PREAMBLE if name == "bfloat16" else ""))
    if out is None:
        out = cupy.empty((g.shape[1],), dtype=g.dtype)
    axes = (0,) + tuple(range(2, g.ndim))
    kern(_raw(g), out=_raw(out), axis=axes)
    return out
