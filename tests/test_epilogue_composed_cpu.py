"""The composed epilogue's kernels without a GPU: their C source, compiled by the host's C compiler
with the CUDA-only names defined for the host, checked against cudnnconv.activations' float64
references (every activation's forward, its derivative from the input and from the output, the
whole forward operation in float64 and bfloat16, and bfloat16's round-to-nearest-even store)."""
import ctypes
import math

import numpy
import pytest

from conftest import build_shared_library
from cudnnconv import activations, epilogue_composed as E

PARAMS = {"identity": (0.0, 0.0), "relu": (0.0, 0.0), "leaky_relu": (0.2, 0.0), "elu": (0.7, 0.0),
          "gelu": (0.0, 0.0), "gelu_tanh": (0.0, 0.0), "silu": (0.0, 0.0), "sigmoid": (0.0, 0.0),
          "tanh": (0.0, 0.0), "clamp": (-0.8, 1.3)}

HOST = r"""
#include <math.h>
#include <string.h>
#define __device__
#define __forceinline__ static inline
static inline float __uint_as_float(unsigned int u) { float f; memcpy(&f, &u, 4); return f; }
static inline unsigned int __float_as_uint(float f) { unsigned int u; memcpy(&u, &f, 4); return u; }
"""


def _spec(name):
    return activations.unpadded(name, *PARAMS[name])


def _operation_function(fname, dtype_name, act, has_z, has_bias):
    """A C function computing the kernel's operation on one element, from its source()."""
    ins, outs, op, _ = E.source(act, has_z, has_bias, dtype_name)
    ctype = {"float64": "double", "bfloat16": "unsigned short"}[dtype_name]
    scal = "double" if dtype_name == "float64" else "float"
    return "%s %s(%s c, %s z, %s b, %s alpha1, %s alpha2, %s p0, %s p1) {\n  %s y;\n  %s\n  return y;\n}\n" % (
        ctype, fname, ctype, ctype, ctype, scal, scal, scal, scal, ctype, op.replace("\n", "\n  "))


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("composed")
    parts = [HOST, "typedef double acc_t;\n", E._DERIVATIVE_HELPERS, E._BF16_PREAMBLE]
    for name in activations.NAMES:
        parts.append("double fwd_%s(acc_t v, acc_t p0, acc_t p1) { return %s; }\n" % (name, E._ACT[name]))
        if name in E._DERIVATIVE:
            parts.append("double der_%s(acc_t v, acc_t p0, acc_t p1) { return %s; }\n" % (name, E._DERIVATIVE[name]))
        if name in E._DERIVATIVE_OUT:
            parts.append("double dout_%s(acc_t v, acc_t p0, acc_t p1) { return %s; }\n"
                         % (name, E._DERIVATIVE_OUT[name]))
        parts.append(_operation_function("op64_%s" % name, "float64", name, True, True))
    parts.append("unsigned short bf16_store(float f) { return _bf16_store(f); }\n")
    parts.append("float bf16_load(unsigned short u) { return _bf16_load(u); }\n")
    so = build_shared_library(d, "composed.so", "".join(parts), "the kernels' host copy")
    # the bfloat16 operation computes in float: a second library, with float acc_t
    so16 = build_shared_library(d, "composed16.so", HOST + "typedef float acc_t;\n" + E._BF16_PREAMBLE + "".join(
        _operation_function("op16_%s" % n, "bfloat16", n, True, True) for n in activations.NAMES),
        "the kernels' host copy")
    return ctypes.CDLL(so), ctypes.CDLL(so16)


def _f64(lib, name):
    f = getattr(lib, name)
    f.restype = ctypes.c_double
    f.argtypes = [ctypes.c_double] * 3
    return f


GRID = numpy.concatenate([numpy.linspace(-6, 6, 1201), [-30.0, -12.0, 12.0, 30.0]])


def _away_from_kinks(name, v):
    kinks = {"relu": [0.0], "leaky_relu": [0.0], "elu": [0.0], "clamp": list(PARAMS["clamp"])}.get(name, [])
    for k in kinks:
        v = v[numpy.abs(v - k) > 1e-9]
    return v


@pytest.mark.parametrize("name", activations.NAMES)
def test_forward_expressions_match_the_reference(lib, name):
    f = _f64(lib[0], "fwd_" + name)
    p0, p1 = PARAMS[name]
    got = numpy.array([f(v, p0, p1) for v in GRID])
    # atol: 1 + tanh(u) cancels in the far negative tail of gelu_tanh (libm's and NumPy's tanh differ
    # by an ulp of 1 there), in both
    numpy.testing.assert_allclose(got, activations.reference_forward(_spec(name), GRID), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", [n for n in activations.NAMES if n != "identity"])
def test_derivative_expressions_match_the_reference(lib, name):
    f = _f64(lib[0], "der_" + name)
    p0, p1 = PARAMS[name]
    v = _away_from_kinks(name, GRID)
    got = numpy.array([f(x, p0, p1) for x in v])
    numpy.testing.assert_allclose(got, activations.reference_derivative(_spec(name), v), rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("name", sorted(E._DERIVATIVE_OUT))
def test_derivative_from_the_output_matches_the_reference(lib, name):
    f = _f64(lib[0], "dout_" + name)
    p0, p1 = PARAMS[name]
    v = _away_from_kinks(name, GRID)
    y = activations.reference_forward(_spec(name), v)
    got = numpy.array([f(x, p0, p1) for x in y])
    numpy.testing.assert_allclose(got, activations.reference_derivative(_spec(name), v), rtol=1e-9, atol=1e-12)


def test_the_tables_cover_what_the_api_promises():
    assert set(E._ACT) == set(activations.NAMES)
    assert set(E._DERIVATIVE) == set(activations.NAMES) - {"identity"}
    from_output = {n for n in activations.NAMES if n != "identity" and activations.needs(_spec(n)) == "output"}
    assert set(E._DERIVATIVE_OUT) == from_output
    with pytest.raises(ValueError, match="no from-output derivative of 'gelu'"):
        E.derivative_source("gelu", True, "float16")
    with pytest.raises(ValueError, match="no composed epilogue for dtype 'int8'"):
        E.source("relu", False, False, "int8")


@pytest.mark.parametrize("name", activations.NAMES)
def test_the_whole_float64_operation(lib, name):
    f = getattr(lib[0], "op64_" + name)
    f.restype = ctypes.c_double
    f.argtypes = [ctypes.c_double] * 7
    rng = numpy.random.default_rng(3)
    c, z, b = rng.standard_normal((3, 200))
    p0, p1 = PARAMS[name]
    got = numpy.array([f(ci, zi, bi, 0.75, -1.5, p0, p1) for ci, zi, bi in zip(c, z, b)])
    expect = activations.reference_forward(_spec(name), 0.75 * c - 1.5 * z + b)
    numpy.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-14)


def _bf16_bits_to_float(u):
    return numpy.array([u], dtype=numpy.uint32).__lshift__(16).view(numpy.float32)[0]


def test_bfloat16_store_rounds_to_nearest_even_and_keeps_nan(lib):
    store = lib[0].bf16_store
    store.restype = ctypes.c_ushort
    store.argtypes = [ctypes.c_float]
    load = lib[0].bf16_load
    load.restype = ctypes.c_float
    load.argtypes = [ctypes.c_ushort]
    rng = numpy.random.default_rng(5)
    values = numpy.concatenate([rng.standard_normal(2000).astype(numpy.float32) * 10.0 ** rng.integers(-30, 30, 2000),
                                numpy.array([0.0, -0.0, 1.0, numpy.inf, -numpy.inf, 3.4e38], numpy.float32)])
    for f in values:
        bits = numpy.array([f], numpy.float32).view(numpy.uint32)[0]
        # round to nearest, ties to even, on the top 16 bits (what a correct bfloat16 cast gives)
        expect = (int(bits) + 0x7FFF + ((int(bits) >> 16) & 1)) >> 16 & 0xFFFF
        assert store(float(f)) == expect, (f, hex(bits))
        if math.isfinite(float(f)):
            back = load(expect)
            assert back == _bf16_bits_to_float(expect)
    # ties: 1 + 2^-8 lies halfway between two bfloat16 values; it rounds to the even one (1.0)
    assert store(1.0 + 2.0 ** -8) == 0x3F80 and store(1.0 + 3 * 2.0 ** -8) == 0x3F82
    assert (store(float("nan")) & 0x7F80) == 0x7F80 and (store(float("nan")) & 0x7F) != 0      # still a NaN


@pytest.mark.parametrize("name", ["silu", "gelu", "clamp", "relu"])
def test_the_whole_bfloat16_operation(lib, name):
    f = getattr(lib[1], "op16_" + name)
    f.restype = ctypes.c_ushort
    f.argtypes = [ctypes.c_ushort] * 3 + [ctypes.c_float] * 4
    rng = numpy.random.default_rng(9)
    bits = (rng.standard_normal((3, 300)).astype(numpy.float32).view(numpy.uint32) >> 16).astype(numpy.uint16)
    vals = (bits.astype(numpy.uint32) << 16).view(numpy.float32).astype(numpy.float64)
    p0, p1 = PARAMS[name]
    got = numpy.array([f(int(c), int(z), int(b), 2.0, 0.5, p0, p1) for c, z, b in bits.T], numpy.uint32)
    got = (got << 16).view(numpy.float32).astype(numpy.float64)
    expect = activations.reference_forward(_spec(name), 2.0 * vals[0] + 0.5 * vals[1] + vals[2])
    # float32 arithmetic, then one rounding to bfloat16: within one bfloat16 ulp (2^-7 relative)
    assert (numpy.abs(got - expect) <= numpy.abs(expect) * 2.0 ** -7 + 1e-6).all()


# ---------------------------------------------------------------------------
# apply() and apply_derivative(): which operands the kernel gets, in which axis order
# ---------------------------------------------------------------------------

class _RecordingKernel:
    """Stands in for the CuPy kernel on NumPy arrays: records each operand's shape and strides,
    and computes the operation with cudnnconv.activations' float64 references."""

    def __init__(self, kind, act_name, has_z=True, has_bias=True):
        self.kind, self.act_name, self.has_z, self.has_bias, self.seen = kind, act_name, has_z, has_bias, []
        self.same_object = []           # whether the first input is the output object itself

    def __call__(self, *args):
        arrays = [a for a in args if isinstance(a, numpy.ndarray)]
        self.seen.append([(a.shape, a.strides) for a in arrays])
        self.same_object.append(arrays[0] is arrays[-1])
        out = arrays[-1]
        p0, p1 = args[-3], args[-2]
        act = activations.unpadded(self.act_name, p0, p1)
        if self.kind == "forward":
            alpha1, alpha2 = args[-5], args[-4]
            rest = iter(arrays[1:-1])
            v = alpha1 * arrays[0]
            if self.has_z:
                v = v + alpha2 * next(rest)
            if self.has_bias:
                v = v + next(rest)
            out[...] = activations.reference_forward(act, v)
        else:
            out[...] = arrays[0] * activations.reference_derivative(act, arrays[1])


def _channels_last(shape, rng):
    """A float64 (N, C, *spatial) array laid out as (N, *spatial, C)."""
    perm = (0,) + tuple(range(2, len(shape))) + (1,)
    inv = numpy.argsort(perm)
    return numpy.ascontiguousarray(rng.standard_normal([shape[i] for i in perm])).transpose(inv)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3, 7), (1, 4, 2, 3, 5)])
def test_apply_runs_the_kernel_in_the_outputs_memory_order(monkeypatch, shape, layout):
    """The kernel gets y, z and the bias transposed to y's memory order: a packed y, channels-last
    or not, reaches CuPy as one C-contiguous array (which CuPy indexes as one dim), and the bias
    broadcasts along y's channel axis wherever that lies; the result is the float64 composition."""
    rng = numpy.random.default_rng(7)
    make = (lambda s: _channels_last(s, rng)) if layout == "channels_last" else \
        (lambda s: rng.standard_normal(s))
    y, z, b = make(shape), make(shape), rng.standard_normal(shape[1])
    y0 = y.copy()
    kern = _RecordingKernel("forward", "silu")
    monkeypatch.setattr(E, "_kernel", lambda *a: kern)
    epi = activations.epilogue(0.5, -2.0, "silu", True, True)
    assert E.apply(y, epi, z, b) is y
    (ys, zs, bs, outs), = kern.seen
    assert kern.same_object == [True]          # one object as input and output: no copy of y by CuPy
    mem = numpy.lib.stride_tricks.as_strided(y, ys[0], ys[1])      # y as the kernel saw it
    assert mem.flags.c_contiguous and zs == ys and outs == ys
    # the channel axis is last in memory for channels-last, second for NCHW
    channel_axis = len(shape) - 1 if layout == "channels_last" else 1
    assert [n for n in bs[0]] == [shape[1] if i == channel_axis else 1 for i in range(len(shape))]
    bview = b.reshape((1, shape[1]) + (1,) * (len(shape) - 2))
    expect = activations.reference_forward("silu", 0.5 * y0 + -2.0 * z + bview)
    numpy.testing.assert_allclose(y, expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_apply_derivative_runs_the_kernel_in_the_gradients_memory_order(monkeypatch, layout):
    rng = numpy.random.default_rng(8)
    shape = (2, 3, 4, 5)
    make = (lambda s: _channels_last(s, rng)) if layout == "channels_last" else \
        (lambda s: rng.standard_normal(s))
    g, a = make(shape), make(shape)
    g0 = g.copy()
    kern = _RecordingKernel("derivative", "gelu")
    monkeypatch.setattr(E, "_kernel", lambda *args: kern)
    assert E.apply_derivative(g, activations.activation("gelu"), a) is g
    (gs, as_, outs), = kern.seen
    assert kern.same_object == [True]
    assert numpy.lib.stride_tricks.as_strided(g, gs[0], gs[1]).flags.c_contiguous
    assert as_ == gs and outs == gs
    numpy.testing.assert_allclose(g, g0 * activations.reference_derivative("gelu", a), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("has_z, has_bias", [(True, False), (False, True), (False, False)])
def test_apply_with_some_parts_given(monkeypatch, has_z, has_bias):
    """z alone, the bias alone, neither: the kernel gets exactly those, and y the composition."""
    rng = numpy.random.default_rng(9)
    shape = (2, 3, 4, 5)
    y, z, b = _channels_last(shape, rng), _channels_last(shape, rng), rng.standard_normal(3)
    y0 = y.copy()
    kern = _RecordingKernel("forward", "tanh", has_z, has_bias)
    monkeypatch.setattr(E, "_kernel", lambda *a: kern)
    epi = activations.epilogue(1.5, 0.25, "tanh", has_z, has_bias)
    E.apply(y, epi, z if has_z else None, b if has_bias else None)
    assert len(kern.seen[0]) == 2 + has_z + has_bias and kern.same_object == [True]
    v = 1.5 * y0 + (0.25 * z if has_z else 0.0) + (b.reshape(1, 3, 1, 1) if has_bias else 0.0)
    numpy.testing.assert_allclose(y, numpy.tanh(v), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# the vector kernels: their C text run on the host over a simulated grid
# ---------------------------------------------------------------------------

VECTOR_HOST = HOST + r"""
typedef struct { unsigned int x, y, z, w; } uint4;
typedef struct { unsigned int x; } dim_t;
static dim_t blockIdx, threadIdx, gridDim, blockDim;
#define KERNEL static void
"""

_C_TYPES = {"T *": ctypes.c_void_p, "const T *": ctypes.c_void_p}


def _vector_library(tmp_path, kind, act, a, b, dtype_name, wide):
    """The vector kernel compiled for the host, with ``run(grid, block, args...)`` running every
    (block, thread) of the grid in turn; returns (run, its argument types)."""
    name, body, preamble = E.vector_source(kind, act, a, b, dtype_name, wide)
    args = body[body.index("(") + 1:body.index(")")].split(", ")
    names = [x.split()[-1].lstrip("*") for x in args]
    driver = ("void run(unsigned grid, unsigned block, %s) {\n"
              "    gridDim.x = grid; blockDim.x = block;\n"
              "    for (unsigned bi = 0; bi < grid; ++bi)\n"
              "        for (unsigned ti = 0; ti < block; ++ti) {\n"
              "            blockIdx.x = bi; threadIdx.x = ti; %s(%s);\n"
              "        }\n}\n") % (", ".join(args), name, ", ".join(names))
    so = build_shared_library(tmp_path, name + ".so", VECTOR_HOST + preamble + body + driver, "the vector kernel's host copy")
    acc = ctypes.c_double if dtype_name == "float64" else ctypes.c_float
    idx = ctypes.c_ulonglong if wide else ctypes.c_uint
    types = []
    for x in args:
        t = x.rsplit(" ", 1)[0] if "*" not in x else x[:x.index("*") + 1]
        types.append({"acc_t": acc, "idx_t": idx}.get(t, ctypes.c_void_p))
    run = ctypes.CDLL(so).run
    run.argtypes = [ctypes.c_uint, ctypes.c_uint] + types
    run.restype = None
    return run, types


def _memory(shape, layout, rng):
    """A random (N, C, *spatial) float64 array packed in ``layout``, and its memory-order view."""
    a = _channels_last(shape, rng) if layout == "channels_last" else rng.standard_normal(shape)
    order = sorted(range(a.ndim), key=lambda i: -a.strides[i])
    return a, a.transpose(order), order


def _bf16_bits(x):
    """float64 values rounded to bfloat16 (nearest even), as their 16 bits."""
    u = numpy.asarray(x, dtype=numpy.float32).view(numpy.uint32).astype(numpy.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(numpy.uint16)


def _bf16_values(bits):
    return (bits.astype(numpy.uint32) << 16).view(numpy.float32).astype(numpy.float64)


# shapes whose element count is not a multiple of the vector width (the scalar tail), whose channel
# run (C for channels-last, the spatial size for NCHW) is not either (the channel stepped across a
# vector), and a grid too small for the array (the grid-stride loop)
VECTOR_CASES = [((2, 3, 5, 7), "channels_last"), ((2, 3, 5, 7), "nchw"), ((3, 16, 4, 4), "channels_last"),
                ((1, 5, 3), "nchw"), ((2, 2, 3, 2, 3), "channels_last"), ((1, 1, 1, 1), "nchw")]


@pytest.mark.parametrize("wide", [False, True], ids=["i32", "i64"])
@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
@pytest.mark.parametrize("shape, layout", VECTOR_CASES)
def test_vector_forward_kernel_on_the_host(tmp_path, shape, layout, dtype_name, wide):
    """y = act(alpha1 * y + alpha2 * z + bias[channel]) over a packed array in memory order: every
    element, its own channel's bias, on a grid of 3 blocks of 4 threads."""
    rng = numpy.random.default_rng(11)
    run, _ = _vector_library(tmp_path, "forward", "silu", True, True, dtype_name, wide)
    y, ym, order = _memory(shape, layout, rng)
    z, zm, _ = _memory(shape, layout, rng)
    b = rng.standard_normal(shape[1])
    flat = [numpy.ascontiguousarray(m).reshape(-1).astype(dtype_name) for m in (ym, zm)]
    bb = b.astype(dtype_name)
    ymem, zmem = flat
    cpos = order.index(1)
    S = int(numpy.prod(ym.shape[cpos + 1:], dtype=numpy.int64))
    run(3, 4, ymem.ctypes.data, zmem.ctypes.data, bb.ctypes.data, 0.5, -2.0, 0.0, 0.0, ymem.size, shape[1], S)
    got = ymem.reshape(ym.shape).transpose(numpy.argsort(order)).astype(numpy.float64)
    v = 0.5 * y.astype(dtype_name) + -2.0 * z.astype(dtype_name) + bb.reshape((1, -1) + (1,) * (len(shape) - 2))
    expect = activations.reference_forward("silu", v.astype(numpy.float64))
    tol = 1e-12 if dtype_name == "float64" else 1e-5
    numpy.testing.assert_allclose(got, expect, rtol=tol, atol=tol)


@pytest.mark.parametrize("has_z, has_bias", [(False, True), (True, False), (False, False)])
@pytest.mark.parametrize("shape, layout", VECTOR_CASES[:3])
def test_vector_forward_kernel_bfloat16_parts(tmp_path, shape, layout, has_z, has_bias):
    """bfloat16 (eight values a vector): the parts given, float32 arithmetic rounded once."""
    rng = numpy.random.default_rng(12)
    run, _ = _vector_library(tmp_path, "forward", "gelu_tanh", has_z, has_bias, "bfloat16", False)
    y, ym, order = _memory(shape, layout, rng)
    z, zm, _ = _memory(shape, layout, rng)
    ybits = _bf16_bits(numpy.ascontiguousarray(ym).reshape(-1))
    zbits = _bf16_bits(numpy.ascontiguousarray(zm).reshape(-1))
    bbits = _bf16_bits(rng.standard_normal(shape[1]))
    yv = _bf16_values(ybits).reshape(ym.shape).transpose(numpy.argsort(order))
    zv = _bf16_values(zbits).reshape(zm.shape).transpose(numpy.argsort(order))
    cpos = order.index(1)
    S = int(numpy.prod(ym.shape[cpos + 1:], dtype=numpy.int64))
    args = [ybits.ctypes.data] + ([zbits.ctypes.data] if has_z else []) + ([bbits.ctypes.data] if has_bias else [])
    run(2, 3, *args, 1.5, 0.25, 0.0, 0.0, ybits.size, shape[1], S)
    got = _bf16_values(ybits).reshape(ym.shape).transpose(numpy.argsort(order))
    v = 1.5 * yv + (0.25 * zv if has_z else 0.0) + \
        (_bf16_values(bbits).reshape((1, -1) + (1,) * (len(shape) - 2)) if has_bias else 0.0)
    expect = activations.reference_forward("gelu_tanh", v)
    assert (numpy.abs(got - expect) <= numpy.abs(expect) * 2.0 ** -7 + 1e-5).all()


@pytest.mark.parametrize("from_output", [False, True])
@pytest.mark.parametrize("shape, layout", VECTOR_CASES)
def test_vector_derivative_kernel_on_the_host(tmp_path, shape, layout, from_output):
    rng = numpy.random.default_rng(13)
    act = "sigmoid"
    run, _ = _vector_library(tmp_path, "derivative", act, from_output, False, "float64", False)
    g, gm, order = _memory(shape, layout, rng)
    a, am, _ = _memory(shape, layout, rng)
    if from_output:
        a = activations.reference_forward(act, a)
        am = a.transpose(order)
    gmem, amem = (numpy.array(m, order="C").reshape(-1) for m in (gm, am))      # copies: g is checked after
    run(2, 5, gmem.ctypes.data, amem.ctypes.data, 0.0, 0.0, gmem.size)
    got = gmem.reshape(gm.shape).transpose(numpy.argsort(order))
    d = activations.reference_derivative_from_output(act, a) if from_output else activations.reference_derivative(act, a)
    numpy.testing.assert_allclose(got, g * d, rtol=1e-12, atol=1e-12)


def test_vector_sources_refuse_what_they_cannot_build():
    with pytest.raises(ValueError, match="unknown activation"):
        E.vector_source("forward", "swishy", True, True, "float16", False)
    with pytest.raises(ValueError, match="derivative"):
        E.vector_source("derivative", "gelu", True, False, "float16", False)       # gelu from its output
    with pytest.raises(ValueError, match="dtype"):
        E.vector_source("forward", "relu", False, False, "int8", False)
    with pytest.raises(ValueError, match="kind"):
        E.vector_source("sideways", "relu", False, False, "float16", False)


def test_every_vector_kernel_compiles_for_the_gpu():
    """Every (kind, activation, parts, dtype, index width) through NVRTC for sm_90, where NVRTC
    loads: the text the GPU compiles is the one the host tests above ran.  One program per dtype,
    each kernel with its preamble in a namespace of its own."""
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
    except Exception as e:                  # noqa: BLE001 - no NVRTC library here
        pytest.skip("NVRTC does not load here: %s" % e)
    import itertools
    failures, count = [], 0
    for dtype_name in ("float16", "bfloat16", "float32", "float64"):
        parts = []
        for act in activations.NAMES:
            variants = [("forward", a, b, w) for a, b, w in itertools.product((False, True), repeat=3)]
            variants += [("derivative", fo, False, w) for fo in (False, True) for w in (False, True)
                         if act in (E._DERIVATIVE_OUT if fo else E._DERIVATIVE)]
            for kind, a, b, wide in variants:
                name, text = E.vector_program(kind, act, a, b, dtype_name, wide)      # as the GPU gets it
                parts.append("namespace %s_ns {\n%s\n#undef KERNEL\n}\n" % (name, text))
                count += 1
        prog = nvrtc.createProgram("".join(parts), "vector_%s.cu" % dtype_name, [], [])
        try:
            nvrtc.compileProgram(prog, ["-arch=compute_90"])
        except Exception:                    # noqa: BLE001 - collected with the compiler's log
            failures.append((dtype_name, nvrtc.getProgramLog(prog)[:800]))
    assert not failures, failures
    assert count == 4 * (10 * 8 + 2 * (9 + 6))        # forward: 10 activations x 8; derivatives: 9 + 6, twice


class _VectorStandIn:
    """Stands in for a vector kernel on NumPy arrays: records the launch and computes what the
    kernel text computes, element i of the packed run with channel (i // S) % C."""

    def __init__(self, kind, act_name, has_z, has_bias):
        self.kind, self.act_name, self.has_z, self.has_bias, self.launches = kind, act_name, has_z, has_bias, []

    def __call__(self, grid, block, args):
        self.launches.append((grid, block, args))
        if self.kind == "forward":
            y = args[0].reshape(-1)
            rest = list(args[1:1 + self.has_z + self.has_bias])
            alpha1, alpha2, p0, p1, n, C, S = args[1 + self.has_z + self.has_bias:]
            v = float(alpha1) * y
            if self.has_z:
                v = v + float(alpha2) * rest.pop(0).reshape(-1)
            if self.has_bias:
                v = v + rest.pop(0)[(numpy.arange(int(n)) // int(S)) % int(C)]
            y[...] = activations.reference_forward(activations.unpadded(self.act_name, float(p0), float(p1)), v)
        else:
            g, a, p0, p1, n = args
            g.reshape(-1)[...] *= activations.reference_derivative(self.act_name, a.reshape(-1))


@pytest.mark.parametrize("has_z, has_bias", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3, 7), (1, 4, 2, 3, 5)])
def test_apply_takes_the_vector_kernel_where_ready(monkeypatch, shape, layout, has_z, has_bias):
    """Where every operand is packed and aligned, apply() launches the vector kernel with y itself
    (as its packed run), the element count, C, and S, the elements per channel step of y's memory
    order (1 for channels-last, the spatial size for NCHW); the elementwise kernel is not used."""
    rng = numpy.random.default_rng(14)
    make = (lambda s: _channels_last(s, rng)) if layout == "channels_last" else (lambda s: rng.standard_normal(s))
    y, z, b = make(shape), make(shape), rng.standard_normal(shape[1])
    y0 = y.copy()
    stand_in = _VectorStandIn("forward", "elu", has_z, has_bias)
    keys = []
    monkeypatch.setattr(E, "_vector_ready", lambda *arrays: True)
    monkeypatch.setattr(E, "_packed_on_device", lambda a: True)
    monkeypatch.setattr(E, "_vector_kernel", lambda *key: keys.append(key) or stand_in)
    monkeypatch.setattr(E, "_kernel", lambda *a: pytest.fail("the elementwise kernel ran"))
    epi = activations.epilogue(0.5, -2.0, ("elu", 0.7), has_z, has_bias)
    assert E.apply(y, epi, z if has_z else None, b if has_bias else None) is y
    assert keys == [("forward", "elu", has_z, has_bias, "float64", False)]
    (grid, block, args), = stand_in.launches
    n, C, S = (int(v) for v in args[-3:])
    spatial = int(numpy.prod(shape[2:]))
    assert (n, C, S) == (y.size, shape[1], 1 if layout == "channels_last" else spatial)
    assert numpy.shares_memory(args[0], y) and args[0].flags.c_contiguous
    assert block == (E._BLOCK,) and 1 <= grid[0] <= E._MOST_BLOCKS
    v = 0.5 * y0 + (-2.0 * z if has_z else 0.0) + (b.reshape((1, -1) + (1,) * (len(shape) - 2)) if has_bias else 0.0)
    numpy.testing.assert_allclose(y, activations.reference_forward(activations.unpadded("elu", 0.7, 0.0), v),
                                  rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_apply_derivative_takes_the_vector_kernel_where_ready(monkeypatch, layout):
    rng = numpy.random.default_rng(15)
    shape = (2, 3, 4, 5)
    make = (lambda s: _channels_last(s, rng)) if layout == "channels_last" else (lambda s: rng.standard_normal(s))
    g, a = make(shape), make(shape)
    g0 = g.copy()
    stand_in = _VectorStandIn("derivative", "tanh", False, False)
    monkeypatch.setattr(E, "_vector_ready", lambda *arrays: True)
    monkeypatch.setattr(E, "_vector_kernel", lambda *key: stand_in)
    monkeypatch.setattr(E, "_kernel", lambda *a: pytest.fail("the elementwise kernel ran"))
    assert E.apply_derivative(g, activations.activation("tanh"), a) is g
    (grid, block, args), = stand_in.launches
    assert numpy.shares_memory(args[0], g) and numpy.shares_memory(args[1], a) and int(args[-1]) == g.size
    numpy.testing.assert_allclose(g, g0 * activations.reference_derivative("tanh", a), rtol=1e-12, atol=1e-12)


def test_vector_ready_wants_packed_aligned_device_arrays():
    class Ptr:
        def __init__(self, ptr):
            self.ptr = ptr

    class Dev:
        def __init__(self, ptr, contiguous=True):
            self.data, self.flags = Ptr(ptr), type("F", (), {"c_contiguous": contiguous})()
    assert E._vector_ready(Dev(4096), Dev(256))
    assert not E._vector_ready(Dev(4096), Dev(4104))                  # 8-byte aligned only
    assert not E._vector_ready(Dev(4096, contiguous=False))
    assert not E._vector_ready(numpy.zeros(8))                       # host memory: the elementwise kernel's
    assert E._packed_on_device(Dev(4098)) and not E._packed_on_device(Dev(4096, contiguous=False))
    assert not E._packed_on_device(numpy.zeros(8))


# ---------------------------------------------------------------------------
# the bias gradient's reduction steps
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape, cpos", [((128, 56, 56, 256), 3), ((128, 256, 56, 56), 1), ((128, 64, 112, 112), 1),
                                         ((128, 112, 112, 64), 3), ((1, 4320, 7680, 64), 3), ((128, 2048, 7, 7), 1),
                                         ((2, 5, 3), 1), ((8, 4, 4, 1024, 6), 4)])
def test_bias_plan_keeps_the_channels_and_enough_blocks(shape, cpos):
    """Each step sums a suffix of the non-channel axes (in memory order), never the channel axis,
    and says where the channel lies in its result; a step that keeps axes keeps them until CuPy
    would run at least _MIN_BLOCKS blocks (32 outputs a block where the channels are innermost,
    one otherwise), or keeps all but one; the last step leaves (C,)."""
    c, steps, given, given_cpos = shape[cpos], 0, shape, cpos
    while True:
        steps += 1
        axes, channel = E.bias_plan(shape, cpos)
        others = [i for i in range(len(shape)) if i != cpos]
        assert axes and cpos not in axes and list(axes) == others[len(others) - len(axes):]
        if channel is None:
            break
        kept = others[:len(others) - len(axes)]
        per_block = 32 if cpos == len(shape) - 1 else 1
        blocks = c * int(numpy.prod([shape[i] for i in kept])) // per_block
        fewer = c * int(numpy.prod([shape[i] for i in kept[:-1]])) // per_block
        assert (blocks >= E._MIN_BLOCKS and fewer < E._MIN_BLOCKS) or len(axes) == 1
        shape = tuple(n for i, n in enumerate(shape) if i not in axes)
        assert shape[channel] == c
        cpos = channel
    assert steps <= 4
    if int(numpy.prod(given)) > E._ONE_STEP_UP_TO and c // (32 if given_cpos == len(given) - 1 else 1) < E._MIN_BLOCKS:
        assert steps > 1                       # the cases one reduction ran on a few blocks
    one = E.bias_plan((4, 3, 5, 5), 1)
    assert one == ((0, 2, 3), None)                   # small: one reduction


@pytest.mark.parametrize("capturing", [False, True], ids=["eager", "capturing"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", [(64, 32, 40, 40), (16, 8, 90, 100), (3, 5, 70), (4, 6, 8, 9, 10), (2, 64, 700, 1),
                                   (1, 40, 1, 1)])
def test_bias_gradient_steps_sum_every_element_once(monkeypatch, shape, layout, capturing):
    """bias_gradient with each step a float64 NumPy sum over the axes it is given: the result is
    g summed over every dim but the channels, whichever steps the plan takes; no step sums only
    size-1 dims; while a stream is captured, the same steps, each writing a kept array."""
    rng = numpy.random.default_rng(16)
    kept = []

    def partial_sums(shape_, acc, capturing_):
        assert capturing_ is capturing
        if not capturing_:
            return None
        kept.append((shape_, acc))
        return numpy.full(shape_, numpy.nan)
    monkeypatch.setattr(E.workspace, "current_stream_capturing", lambda: capturing)
    monkeypatch.setattr(E, "_partial_sums", partial_sums)
    g = _channels_last(shape, rng) if layout == "channels_last" else rng.standard_normal(shape)
    monkeypatch.setattr(E, "_ONE_STEP_UP_TO", 100)          # several steps on small arrays
    monkeypatch.setattr(E, "_MIN_BLOCKS", 64)
    launches = []

    def kernel(dtype_name, acc_in, acc_out):
        def run(m, out=None, axis=None):
            launches.append((m.shape, axis, acc_in, acc_out, out is not None))
            assert any(m.shape[i] != 1 for i in axis) or m.size == shape[1]      # a step sums something
            r = m.sum(axis=axis)
            if out is None:
                return r
            assert out.shape == r.shape
            out[...] = r
            return out
        return run
    monkeypatch.setattr(E, "_bias_kernel", kernel)
    out = numpy.full(shape[1], numpy.nan)
    import sys
    monkeypatch.setitem(sys.modules, "cupy", numpy)          # bias_gradient's `import cupy`, for empty()
    assert E.bias_gradient(g, out) is out
    numpy.testing.assert_allclose(out, g.sum(axis=(0,) + tuple(range(2, len(shape)))), rtol=1e-12)
    assert launches[-1][3] is False and launches[-1][4] is True          # the last step writes out
    assert all(l[2] for l in launches[1:])                   # later steps read the float32 partial sums
    assert all(l[3] for l in launches[:-1])
    # captured: every step but the last writes a kept array; eager: the reduction allocates
    assert [l[4] for l in launches[:-1]] == [capturing] * (len(launches) - 1)
    assert len(kept) == (len(launches) - 1 if capturing else 0)
    if shape == (64, 32, 40, 40):
        assert len(launches) >= 2                            # the plan took steps here
