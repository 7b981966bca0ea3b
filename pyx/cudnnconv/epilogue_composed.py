"""The composed epilogue: ``y = act(alpha1 * y + alpha2 * z + bias)`` in one kernel, over a
convolution's output, in place; the activation's derivative ``g = g * act'(a)`` likewise; and the
bias gradient, a sum over every dim but the channels.

This is what ``conv_epilogue`` runs where cuDNN will not fuse the epilogue (the legacy engine, a
pattern no engine config takes, a tiled call), and what ``fusion='composed'`` asks for.  One kernel
reads the convolution's output once (and z and the bias) and writes the result once: the
arithmetic is in float32 (float64 for double data), rounded once on the store.  bfloat16 arrays are
read and written through their 16 bits, so that bfloat16 needs no CuPy support of its own.

Each kernel comes in two forms: a vector kernel (a CuPy RawKernel, ``vector_source``) for packed,
aligned operands, and a CuPy elementwise kernel (``source``, ``derivative_source``) for any other.
Their sources are pure text, so that the CPU tests can check and run them; each is compiled once
per (activation, parts, dtype, and for the vector kernel the index width).  The scales and the
activation's parameters are kernel arguments, not part of the source: a new value compiles nothing.
"""
from cudnnconv import activations, params, workspace

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


# ---------------------------------------------------------------------------
# The vector kernels: the same operations over packed arrays, 16 bytes per thread and step
# ---------------------------------------------------------------------------
#
# CuPy's elementwise kernels load one element per thread and index with 64-bit arithmetic, and a
# bias broadcast along the channels costs them a 64-bit division per operand and element: on an
# H200 they ran the forward epilogue at about 0.85 TB/s and the derivative at about 1.25 TB/s,
# where PyTorch's vectorised kernels run near 4.  These kernels load and store 16 bytes (8 half
# values) at once, find an element's channel with one division and one modulo per 16 bytes and
# step it along, and
# index in 32 bits where the array allows.  apply() and apply_derivative() take them wherever every
# operand is one packed run in memory order, 16-byte aligned; elsewhere the elementwise kernels
# above.  The text is plain C with three names left to the caller (KERNEL, the launch bounds'
# blockIdx / threadIdx / gridDim / blockDim, and uint4), so that the CPU tests compile and run it
# on the host over a simulated grid.

_VECTOR_BYTES = 16

_FP16_PREAMBLE = r"""
__device__ __forceinline__ float _f16_load(unsigned short u) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(u));
    return f;
}
__device__ __forceinline__ unsigned short _f16_store(float f) {
    unsigned short u;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(u) : "f"(f));     /* round to nearest, ties to even */
    return u;
}
"""


def _vector_types(dtype_name):
    """(C element type, load format, store format, acc_t) of the vector kernels for a dtype."""
    if dtype_name == "float16":
        return "unsigned short", "_f16_load(%s)", "_f16_store(%s)", "float"
    if dtype_name == "bfloat16":
        return "unsigned short", "_bf16_load(%s)", "_bf16_store(%s)", "float"
    if dtype_name == "float32":
        return "float", "(acc_t)(%s)", "(float)(%s)", "float"
    if dtype_name == "float64":
        return "double", "(%s)", "(%s)", "double"
    raise ValueError("no composed epilogue for dtype %r" % (dtype_name,))


def _vector_width(dtype_name):
    return _VECTOR_BYTES // {"float64": 8, "float32": 4}.get(dtype_name, 2)


def vector_name(kind, act_name, a, b, dtype_name, wide):
    return "cudnnconv_v%s_%s_%d%d_%s_%s" % (kind, act_name, a, b, dtype_name, "i64" if wide else "i32")


def vector_source(kind, act_name, a, b, dtype_name, wide):
    """``(name, body, preamble)`` of a vector kernel: ``kind`` 'forward' (``a``, ``b``: has_z,
    has_bias) computes ``y = act(alpha1 * y + alpha2 * z + bias[channel])`` in place, with
    arguments ``(y, [z,] [b,] alpha1, alpha2, p0, p1, n, C, S)``; 'derivative' (``a``: from the
    output) computes ``g = g * act'(a)`` in place, with ``(g, a, p0, p1, n)``.  n is the element
    count; an element i's channel is ``(i / S) % C``.  ``wide``: 64-bit indices (n >= 2^31).
    ``body`` opens with ``KERNEL name(``; ``preamble`` holds acc_t, the index and element types and
    the load / store helpers."""
    t, load, store, acc = _vector_types(dtype_name)
    name = vector_name(kind, act_name, a, b, dtype_name, wide)
    w = _vector_width(dtype_name)
    if kind == "forward":
        if act_name not in _ACT:
            raise ValueError("unknown activation %r" % (act_name,))
        has_z, has_bias = a, b
        args = ["T *y"] + (["const T *z"] if has_z else []) + (["const T *b"] if has_bias else []) + \
            ["acc_t alpha1", "acc_t alpha2", "acc_t p0", "acc_t p1", "idx_t n", "idx_t C", "idx_t S"]

        def value(yy, zz, ch):
            return " + ".join(["alpha1 * " + load % yy] + (["alpha2 * " + load % zz] if has_z else []) +
                              ([load % ("b[%s]" % ch)] if has_bias else []))
        vec = ("        vec_t yv = ((const vec_t *)y)[k];\n        T *ye = (T *)&yv;\n" +
               ("        vec_t zv = ((const vec_t *)z)[k];\n        const T *ze = (const T *)&zv;\n" if has_z else "") +
               ("        idx_t q = (k * VEC) / S, r = k * VEC - q * S, ch = q % C;\n" if has_bias else "") +
               "        for (int j = 0; j < VEC; ++j) {\n"
               "            acc_t v = %s;\n            v = %s;\n            ye[j] = %s;\n" % (
                   value("ye[j]", "ze[j]", "ch"), _ACT[act_name], store % "v") +
               ("            if (++r == S) { r = 0; if (++ch == C) ch = 0; }\n" if has_bias else "") +
               "        }\n        ((vec_t *)y)[k] = yv;\n")
        tail = ("        acc_t v = %s;\n        v = %s;\n        y[i] = %s;\n" % (
            value("y[i]", "z[i]", "(i / S) % C"), _ACT[act_name], store % "v"))
        helpers = ""
    elif kind == "derivative":
        table = _DERIVATIVE_OUT if a else _DERIVATIVE
        if act_name not in table:
            raise ValueError("no %s derivative of %r" % ("from-output" if a else "", act_name))
        args = ["T *g", "const T *a", "acc_t p0", "acc_t p1", "idx_t n"]
        vec = ("        vec_t gv = ((const vec_t *)g)[k], av = ((const vec_t *)a)[k];\n"
               "        T *ge = (T *)&gv;\n        const T *ae = (const T *)&av;\n"
               "        for (int j = 0; j < VEC; ++j) {\n"
               "            acc_t v = %s;\n            v = %s;\n            ge[j] = %s;\n"
               "        }\n        ((vec_t *)g)[k] = gv;\n" % (
                   load % "ae[j]", table[act_name], store % ("(acc_t)(%s * v)" % (load % "ge[j]"))))
        tail = ("        acc_t v = %s;\n        v = %s;\n        g[i] = %s;\n" % (
            load % "a[i]", table[act_name], store % ("(acc_t)(%s * v)" % (load % "g[i]"))))
        helpers = _DERIVATIVE_HELPERS
    else:
        raise ValueError("unknown kernel kind %r" % (kind,))
    body = ("KERNEL %s(%s)\n{\n"
            "    const idx_t step = (idx_t)gridDim.x * blockDim.x;\n"
            "    const idx_t first = (idx_t)blockIdx.x * blockDim.x + threadIdx.x;\n"
            "    const idx_t nvec = n / VEC;\n"
            "    for (idx_t k = first; k < nvec; k += step) {\n%s    }\n"
            "    for (idx_t i = nvec * VEC + first; i < n; i += step) {\n%s    }\n}\n") % (name, ", ".join(args), vec, tail)
    preamble = ("typedef %s acc_t;\ntypedef %s idx_t;\ntypedef %s T;\ntypedef uint4 vec_t;\n#define VEC %d\n"
                % (acc, "unsigned long long" if wide else "unsigned int", t, w) + helpers +
                {"float16": _FP16_PREAMBLE, "bfloat16": _BF16_PREAMBLE}.get(dtype_name, ""))
    return name, body, preamble


_VECTOR_KERNELS = {}
_BLOCK = 256
_MOST_BLOCKS = 8192         # more vectors than this many blocks' threads: each thread loops (grid-stride)


def vector_program(kind, act_name, a, b, dtype_name, wide):
    """``(name, the whole CUDA text)`` of a vector kernel, as the GPU compiles it."""
    name, body, preamble = vector_source(kind, act_name, a, b, dtype_name, wide)
    return name, preamble + '#define KERNEL extern "C" __global__ void __launch_bounds__(%d)\n' % _BLOCK + body


def _vector_kernel(kind, act_name, a, b, dtype_name, wide):
    k = (kind, act_name, a, b, dtype_name, wide)
    kern = _VECTOR_KERNELS.get(k)
    if kern is None:
        import cupy
        name, text = vector_program(kind, act_name, a, b, dtype_name, wide)
        kern = _VECTOR_KERNELS[k] = cupy.RawKernel(text, name)
    return kern


def _packed_on_device(a):
    """A CuPy array packed in its axis order (the bias, which the vector kernel reads an element at
    a time, needs no alignment)."""
    return getattr(getattr(a, "data", None), "ptr", None) is not None and a.flags.c_contiguous


def _vector_ready(*arrays):
    """Every array is a CuPy array packed in its axis order and 16-byte aligned (else the
    elementwise kernels run)."""
    return all(_packed_on_device(a) and a.data.ptr % _VECTOR_BYTES == 0 for a in arrays)


def _launch(kern, n, dtype_name, wide, args):
    """``kern`` over n elements: one thread per 16 bytes, up to _MOST_BLOCKS blocks; the Python
    ints in ``args`` passed as idx_t."""
    import numpy
    nvec = n // _vector_width(dtype_name) + 1
    blocks = max(1, min(-(-nvec // _BLOCK), _MOST_BLOCKS))
    idx = numpy.uint64 if wide else numpy.uint32
    kern((blocks,), (_BLOCK,), tuple(idx(v) if isinstance(v, int) else v for v in args))


def _scalar(dtype_name, v):
    import numpy
    return numpy.float64(v) if dtype_name == "float64" else numpy.float32(v)


def apply(y, epi, z=None, bias=None):
    """``y = act(alpha1 * y + alpha2 * z + bias)`` in place (``epi``: an activations.Epilogue;
    ``z`` of y's shape where ``epi.has_z``; ``bias`` a (K,) vector where ``epi.has_bias``), in
    one kernel on y's stream: the vector kernel where y and z are packed and aligned, else the
    elementwise one."""
    # every operand in y's memory order (params.memory_order): a packed y is then one contiguous run
    # for CuPy, where a channels-last y seen as (N, C, H, W) was indexed as strided dims, about 20 G
    # elements/s on an H200.  One object as input and output: CuPy copies an input that overlaps an
    # output unless it is the output itself, and a second bfloat16 view or transpose would be another
    order = params.memory_order(y)
    ry = _raw(y).transpose(order)
    rz = _raw(z).transpose(order) if epi.has_z else None
    rb = _raw(bias) if epi.has_bias else None
    p = activations.padded(epi.act)
    name = y.dtype.name
    if ry.size and _vector_ready(*[a for a in (ry, rz) if a is not None]) and \
            (rb is None or _packed_on_device(rb)):
        n, cpos = ry.size, order.index(1)
        S = 1
        for d in ry.shape[cpos + 1:]:
            S *= d
        wide = n >= 2 ** 31
        kern = _vector_kernel("forward", epi.act.name, epi.has_z, epi.has_bias, name, wide)
        args = [ry] + ([rz] if epi.has_z else []) + ([rb] if epi.has_bias else []) + \
            [_scalar(name, v) for v in (epi.alpha1, epi.alpha2, p[0], p[1])] + [n, y.shape[1], S]
        _launch(kern, n, name, wide, args)
        return y
    kern = _kernel("forward", epi.act.name, epi.has_z, epi.has_bias, name)
    args = [ry]
    if epi.has_z:
        args.append(rz)
    if epi.has_bias:
        args.append(rb.reshape((1, bias.shape[0]) + (1,) * (y.ndim - 2)).transpose(order))
    kern(*args, epi.alpha1, epi.alpha2, p[0], p[1], ry)
    return y


def apply_derivative(g, act, a, from_output=False):
    """``g = g * act'(a)`` in place (``act``: an activations.Activation, not the identity; ``a``
    the activation's input of g's shape, or its output where ``from_output``), in one kernel: the
    vector kernel where g and a are packed and aligned, else the elementwise one."""
    p = activations.padded(act)
    order = params.memory_order(g)
    rg = _raw(g).transpose(order)       # in g's memory order, one object as input and output (see apply)
    ra = _raw(a).transpose(order)
    name = g.dtype.name
    if rg.size and _vector_ready(rg, ra):
        wide = rg.size >= 2 ** 31
        kern = _vector_kernel("derivative", act.name, bool(from_output), False, name, wide)
        _launch(kern, rg.size, name, wide, [rg, ra, _scalar(name, p[0]), _scalar(name, p[1]), rg.size])
        return g
    kern = _kernel("derivative", act.name, bool(from_output), False, name)
    kern(rg, ra, p[0], p[1], rg)
    return g


_BIAS_KERNELS = {}

# The bias gradient reduces in steps where one reduction would leave the GPU idle.  CuPy gives a
# reduction one block per output, or per 32 outputs where the outputs lie next to each other in
# memory: summing a channels-last (N, H, W, C) array straight to its C = 256 channels ran 8 blocks
# (on an H200, 23 GB/s: 9.06 ms where PyTorch's sum took 0.16 ms), and an NCHW one with 64
# channels 64 blocks (135 GB/s).  So each step keeps the outermost non-channel dims in memory
# until it has about _MIN_BLOCKS blocks, sums the rest into float32 partial sums (float64 for double
# data), and the next step reduces those the same way; the last rounds once to the data's type.
_MIN_BLOCKS = 1024
_ONE_STEP_UP_TO = 1 << 20       # elements: below this one reduction is quicker than a second launch


def bias_plan(shape, cpos):
    """``(axes, channel)``: the axes of an array of ``shape`` (in memory order, its channel axis
    at ``cpos``) that the next reduction step sums, and where the channel axis lies in that step's
    result, or None where the result is the (C,) gradient itself."""
    others = [i for i in range(len(shape)) if i != cpos]
    size = 1
    for n in shape:
        size *= n
    if size <= _ONE_STEP_UP_TO:
        return tuple(others), None
    per_block = 32 if cpos == len(shape) - 1 else 1      # CuPy's outputs per block, as above
    kept, count = [], shape[cpos]
    for ax in others[:-1]:                  # at least one axis left to sum
        if count // per_block >= _MIN_BLOCKS:
            break
        kept.append(ax)
        count *= shape[ax]
    axes = tuple(ax for ax in others if ax not in kept)
    return axes, (sorted(kept + [cpos]).index(cpos) if kept else None)


def _bias_kernel(dtype_name, acc_in, acc_out):
    """The reduction of one step: the data's type or the accumulator's in (``acc_in``) and out."""
    key = (dtype_name, acc_in, acc_out)
    kern = _BIAS_KERNELS.get(key)
    if kern is None:
        import cupy
        t, load, store, acc = _types(dtype_name)
        acc_c = "double" if acc == "float64" else "float"
        kern = _BIAS_KERNELS[key] = cupy.ReductionKernel(
            "%s g" % (acc if acc_in else t), "%s y" % (acc if acc_out else t), "g" if acc_in else load % "g",
            "a + b", "y = a" if acc_out else "y = %s" % (store % "a"), "0",
            "cudnnconv_bias_gradient_%s_%d%d" % (dtype_name, acc_in, acc_out), reduce_type=acc_c,
            preamble="typedef %s acc_t;\n" % acc_c + (_BF16_PREAMBLE if dtype_name == "bfloat16" else ""))
    return kern


# The partial sums of a bias gradient captured into a CUDA graph, kept for the process: the graph
# writes them at every replay, so CuPy's pool must never hand their memory to another array.
# Keyed like a captured call's workspace, by device and stream, and by the step's shape and type.
_KEPT_PARTIALS = {}


def _partial_sums(shape, acc, capturing):
    """Where the stream is captured, the kept array for a step's partial sums; else None (the
    reduction allocates its result, freed when the call returns)."""
    if not capturing:
        return None
    import cupy
    key = (cupy.cuda.Device().id, workspace.thread_stream_key(cupy.cuda.get_current_stream().ptr), shape, acc)
    buf = _KEPT_PARTIALS.get(key)
    if buf is None:
        buf = _KEPT_PARTIALS[key] = cupy.empty(shape, dtype=acc)
    return buf


def bias_gradient(g, out=None):
    """``sum of g`` over every dim but the channels (dim 1): the bias gradient, accumulated in
    float32 (float64 for double data) and rounded once, into ``out`` (a (K,) array of g's dtype)
    or a new array; in g's memory order, in one reduction or a few (``bias_plan``).  Captured into
    a CUDA graph, the steps are the same, so that the warm-up call compiled every kernel, and
    their partial sums are kept arrays (``_partial_sums``)."""
    import cupy
    name = g.dtype.name
    acc = _types(name)[3]
    if out is None:
        out = cupy.empty((g.shape[1],), dtype=g.dtype)
    order = params.memory_order(g)
    m, cpos = _raw(g).transpose(order), order.index(1)
    # size-1 dims sum nothing: without them no step is a copy (one is kept where all are, so
    # that there is a dim to sum)
    drop = [i for i, n in enumerate(m.shape) if n == 1 and i != cpos][:m.ndim - 2]
    if drop:
        keep = [i for i in range(m.ndim) if i not in drop]
        m, cpos = m.reshape([m.shape[i] for i in keep]), keep.index(cpos)
    capturing, acc_in = workspace.current_stream_capturing(), False
    while True:
        axes, channel = bias_plan(m.shape, cpos)
        if channel is None:
            _bias_kernel(name, acc_in, False)(m, out=_raw(out), axis=axes)
            return out
        shape = tuple(n for i, n in enumerate(m.shape) if i not in axes)
        m = _bias_kernel(name, acc_in, True)(m, out=_partial_sums(shape, acc, capturing), axis=axes)
        cpos, acc_in = channel, True
