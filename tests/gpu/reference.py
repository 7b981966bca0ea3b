"""Float64 references for the GPU suite, independent of cuDNN.

Every function here works on CuPy arrays (or NumPy arrays: the module is
written against ``xp = cupy.get_array_module(...)``, so it can be checked on a
machine without a GPU) and computes in float64 by its definition, as a direct
loop over kernel offsets:

* forward: for each offset ``o`` of the kernel, the input positions
  ``o*dilation + i*stride`` (a strided slice of the padded input) times the
  weight slice ``w[..., o]``, contracted over the channels of each group;
* backward-input: the adjoint of that, a scatter-add of ``grad_output`` times
  the weight slice into the same strided slices, then the padding cropped;
* backward-weight: for each offset, the correlation of the strided input
  slice with ``grad_output`` over the batch and output positions;
* transposed convolution: its own definition (each input position ``i``
  scatters ``x[i] * w[o]`` to output position ``i*stride + o*dilation -
  padding``), written separately from backward-input on purpose, so that
  the two computations check each other;
* conv_bias_add_relu: relu(conv + alpha*z + bias), composed.

Padding: an int or tuple (symmetric), 'valid', 'same' (stride 1; when the
total d*(k-1) is odd, the extra element goes at the end, as PyTorch does), or
one (before, after) pair per spatial dim.

Also the helpers the tests share: layouts, poisoned outputs, relative error
and per-dtype tolerances.
"""
import itertools

import numpy

try:
    import ml_dtypes
    BFLOAT16 = numpy.dtype(ml_dtypes.bfloat16)
except ImportError:          # pragma: no cover - ml_dtypes is a test dependency
    ml_dtypes = None
    BFLOAT16 = None


def _xp(a):
    try:
        import cupy
        return cupy.get_array_module(a)
    except ImportError:      # pragma: no cover
        return numpy


def _tuple(v, nsp):
    if isinstance(v, (tuple, list)):
        v = tuple(int(e) for e in v)
        return v * nsp if len(v) == 1 else v
    return (int(v),) * nsp


def pads_for(padding, ksz, dilation):
    """Per spatial dim, (before, after) padding.  ``padding`` may also give the pairs themselves, one
    (before, after) per spatial dim (a spatial tile's own padding, tests/test_tiling.py)."""
    nsp = len(ksz)
    dilation = _tuple(dilation, nsp)
    if isinstance(padding, (tuple, list)) and padding and isinstance(padding[0], (tuple, list)):
        if len(padding) != nsp or any(len(p) != 2 for p in padding):
            raise ValueError(padding)
        return [(int(a), int(b)) for a, b in padding]
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * nsp
        if padding == "same":
            out = []
            for k, d in zip(ksz, dilation):
                total = d * (k - 1)
                out.append((total // 2, total - total // 2))
            return out
        raise ValueError(padding)
    return [(p, p) for p in _tuple(padding, nsp)]


def _f64(a):
    return a.astype(numpy.float64)


def _offset_slices(offs, dilation, stride, out_sp):
    """The strided slice of the (padded) input that kernel offset ``offs``
    multiplies, for every output position."""
    return tuple(slice(o * d, o * d + (n - 1) * s + 1, s)
                 for o, d, s, n in zip(offs, dilation, stride, out_sp))


def conv_out_shape(x_shape, w_shape, stride=1, padding=0, dilation=1):
    nsp = len(x_shape) - 2
    stride, dilation = _tuple(stride, nsp), _tuple(dilation, nsp)
    pads = pads_for(padding, w_shape[2:], dilation)
    out = []
    for i in range(nsp):
        padded = x_shape[2 + i] + sum(pads[i])
        out.append((padded - dilation[i] * (w_shape[2 + i] - 1) - 1) // stride[i] + 1)
    return (x_shape[0], w_shape[0]) + tuple(out)


def conv(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Forward convolution (cross-correlation) in float64."""
    xp = _xp(x)
    x, w = _f64(x), _f64(w)
    nsp = x.ndim - 2
    stride, dilation = _tuple(stride, nsp), _tuple(dilation, nsp)
    ksz = w.shape[2:]
    pads = pads_for(padding, ksz, dilation)
    xpad = xp.pad(x, [(0, 0), (0, 0)] + pads)
    n, c = x.shape[:2]
    k, cg = w.shape[:2]
    g = groups
    out_sp = conv_out_shape(x.shape, w.shape, stride, padding, dilation)[2:]
    xg = xpad.reshape((n, g, cg) + xpad.shape[2:])
    wg = w.reshape((g, k // g, cg) + ksz)
    y = xp.zeros((n, g, k // g) + tuple(out_sp), dtype=numpy.float64)
    for offs in itertools.product(*[range(kk) for kk in ksz]):
        xs = xg[(Ellipsis,) + _offset_slices(offs, dilation, stride, out_sp)].reshape(n, g, cg, -1)
        ws = wg[(slice(None),) * 3 + offs]
        y += xp.einsum("ngcp,gkc->ngkp", xs, ws).reshape(y.shape)
    y = y.reshape((n, k) + out_sp)
    if bias is not None:
        y += _f64(bias).reshape((1, k) + (1,) * nsp)
    return y


def conv_backward_input(input_shape, w, gy, stride=1, padding=0, dilation=1, groups=1):
    """Gradient of ``conv`` with respect to its input: the adjoint, a
    scatter-add over kernel offsets into the padded input, then cropped."""
    xp = _xp(w)
    w, gy = _f64(w), _f64(gy)
    input_shape = tuple(int(s) for s in input_shape)
    nsp = len(input_shape) - 2
    stride, dilation = _tuple(stride, nsp), _tuple(dilation, nsp)
    ksz = w.shape[2:]
    pads = pads_for(padding, ksz, dilation)
    n, c = input_shape[:2]
    k, cg = w.shape[:2]
    g = groups
    out_sp = gy.shape[2:]
    padded = tuple(s + a + b for s, (a, b) in zip(input_shape[2:], pads))
    gxp = xp.zeros((n, g, cg) + padded, dtype=numpy.float64)
    gyg = gy.reshape(n, g, k // g, -1)
    wg = w.reshape((g, k // g, cg) + ksz)
    for offs in itertools.product(*[range(kk) for kk in ksz]):
        ws = wg[(slice(None),) * 3 + offs]
        gxp[(Ellipsis,) + _offset_slices(offs, dilation, stride, out_sp)] += \
            xp.einsum("ngkp,gkc->ngcp", gyg, ws).reshape((n, g, cg) + tuple(out_sp))
    crop = tuple(slice(a, a + s) for s, (a, b) in zip(input_shape[2:], pads))
    return xp.ascontiguousarray(gxp[(slice(None),) * 3 + crop].reshape(input_shape))


def conv_backward_weight(x, weight_shape, gy, stride=1, padding=0, dilation=1, groups=1):
    """Gradient of ``conv`` with respect to its weight: per kernel offset,
    the strided input slice correlated with grad_output."""
    xp = _xp(x)
    x, gy = _f64(x), _f64(gy)
    weight_shape = tuple(int(s) for s in weight_shape)
    nsp = x.ndim - 2
    stride, dilation = _tuple(stride, nsp), _tuple(dilation, nsp)
    ksz = weight_shape[2:]
    pads = pads_for(padding, ksz, dilation)
    xpad = xp.pad(x, [(0, 0), (0, 0)] + pads)
    n = x.shape[0]
    k, cg = weight_shape[:2]
    g = groups
    out_sp = gy.shape[2:]
    xg = xpad.reshape((n, g, cg) + xpad.shape[2:])
    gyg = gy.reshape(n, g, k // g, -1)
    gw = xp.zeros((g, k // g, cg) + tuple(ksz), dtype=numpy.float64)
    for offs in itertools.product(*[range(kk) for kk in ksz]):
        xs = xg[(Ellipsis,) + _offset_slices(offs, dilation, stride, out_sp)].reshape(n, g, cg, -1)
        gw[(slice(None),) * 3 + offs] = xp.einsum("ngkp,ngcp->gkc", gyg, xs)
    return gw.reshape(weight_shape)


def transpose_out_shape(x_shape, w_shape, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    nsp = len(x_shape) - 2
    stride, dilation = _tuple(stride, nsp), _tuple(dilation, nsp)
    padding, output_padding = _tuple(padding, nsp), _tuple(output_padding, nsp)
    sp = tuple((x_shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (w_shape[2 + i] - 1)
               + output_padding[i] + 1 for i in range(nsp))
    return (x_shape[0], w_shape[1] * groups) + sp


def conv_transpose(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution by its definition: input position ``i`` and
    kernel offset ``o`` add ``x[i] * w[o]`` at output position
    ``i*stride + o*dilation - padding``; output_padding extends the end.
    weight is (C_in, C_out/groups, *kernel)."""
    xp = _xp(x)
    x, w = _f64(x), _f64(w)
    nsp = x.ndim - 2
    stride, dilation = _tuple(stride, nsp), _tuple(dilation, nsp)
    padding = _tuple(padding, nsp)
    out_shape = transpose_out_shape(x.shape, w.shape, stride, padding, output_padding, groups, dilation)
    n, cin = x.shape[:2]
    coutg = w.shape[1]
    g = groups
    ksz = w.shape[2:]
    in_sp = x.shape[2:]
    # The full (uncropped) output: every position any (i, o) pair reaches,
    # plus room for output_padding and the crop.
    full = tuple(max((in_sp[i] - 1) * stride[i] + dilation[i] * (ksz[i] - 1) + 1, out_shape[2 + i] + padding[i])
                 for i in range(nsp))
    yfull = xp.zeros((n, g, coutg) + full, dtype=numpy.float64)
    xg = x.reshape((n, g, cin // g) + in_sp)
    wg = w.reshape((g, cin // g, coutg) + ksz)
    for offs in itertools.product(*[range(kk) for kk in ksz]):
        dst = tuple(slice(o * d, o * d + (m - 1) * s + 1, s)
                    for o, d, s, m in zip(offs, dilation, stride, in_sp))
        yfull[(Ellipsis,) + dst] += xp.einsum("ngcp,gck->ngkp", xg.reshape(n, g, cin // g, -1),
                                              wg[(slice(None),) * 3 + offs]).reshape((n, g, coutg) + in_sp)
    crop = tuple(slice(p, p + m) for p, m in zip(padding, out_shape[2:]))
    y = xp.ascontiguousarray(yfull[(slice(None),) * 3 + crop]).reshape(out_shape)
    if bias is not None:
        y += _f64(bias).reshape((1, out_shape[1]) + (1,) * nsp)
    return y


def conv_bias_add_relu(x, w, z, alpha, bias, stride=1, padding=0, dilation=1, groups=1):
    """relu(conv(x, w) + alpha*z + bias), composed in float64."""
    xp = _xp(x)
    y = conv(x, w, None, stride, padding, dilation, groups)
    y += float(alpha) * _f64(z)
    if bias is not None:
        y += _f64(bias).reshape((1, y.shape[1]) + (1,) * (y.ndim - 2))
    return xp.maximum(y, 0)


# ---------------------------------------------------------------------------
# Helpers shared by the tests
# ---------------------------------------------------------------------------

def dtype_of(name):
    if name == "bfloat16":
        if BFLOAT16 is None:
            raise RuntimeError("bfloat16 needs ml_dtypes")
        return BFLOAT16
    return numpy.dtype(name)


def _perm(nd):
    """Axes order of the channels-last memory layout: (N, *spatial, C)."""
    return (0,) + tuple(range(2, nd)) + (1,)


def _inv(nd):
    return (0, nd - 1) + tuple(range(1, nd - 1))


def channels_last(a):
    """A channels-last copy of ``a`` (same logical shape, C innermost in memory)."""
    xp = _xp(a)
    if a.ndim < 3:
        return a
    return xp.ascontiguousarray(a.transpose(_perm(a.ndim))).transpose(_inv(a.ndim))


def in_layout(a, layout):
    return channels_last(a) if layout == "channels_last" else _xp(a).ascontiguousarray(a)


def is_channels_last(a):
    """``a`` is packed with C innermost (strides of size-1 dims ignored)."""
    if a.ndim < 3:
        return False
    nd = a.ndim
    shape = [a.shape[p] for p in _perm(nd)]
    strides = [a.strides[p] for p in _perm(nd)]
    expect = a.itemsize
    for n, s in reversed(list(zip(shape, strides))):
        if n != 1 and s != expect:
            return False
        expect *= n
    return True


def is_nchw(a):
    expect = a.itemsize
    for n, s in reversed(list(zip(a.shape, a.strides))):
        if n != 1 and s != expect:
            return False
        expect *= n
    return True


def random(shape, dtype, layout="nchw", scale=1.0, rng=None):
    """Fresh standard-normal data (never zeros) in ``dtype`` and ``layout``."""
    import cupy
    rng = rng or cupy.random
    a = (rng.standard_normal(shape) * scale).astype(dtype_of(dtype) if isinstance(dtype, str) else dtype)
    return in_layout(a, layout)


def poisoned(shape, dtype, layout="nchw", value=float("nan")):
    """An ``out=`` array filled with NaN (or ``value``), so that any element
    the library fails to write shows in the error."""
    import cupy
    a = cupy.empty(shape, dtype=dtype_of(dtype) if isinstance(dtype, str) else dtype)
    a.fill(value)                  # before the layout copy reads it (compute-sanitizer's initcheck)
    return in_layout(a, layout)


def rel_error(out, ref):
    """‖out − ref‖ / ‖ref‖ in float64; inf when ``out`` has a NaN or inf."""
    xp = _xp(ref)
    o = out.astype(numpy.float64)
    if not bool(xp.isfinite(o).all()):
        return float("inf")
    den = float(xp.linalg.norm(ref.ravel()))
    num = float(xp.linalg.norm((o - ref).ravel()))
    return num / den if den else num


# Relative-error tolerances (‖out−ref‖/‖ref‖).  Each sits about an order of
# magnitude above what the format's rounding gives on these problem sizes:
#   float64: unit roundoff 1.1e-16, sums of a few thousand terms;
#   float32 (FMA): 6e-8 roundoff; FFT/Winograd algorithms (which benchmark
#     may pick) lose about one more decimal, still far below 1e-5;
#   float32 with TF32: 10-bit mantissa inputs, about 5e-4 per product;
#   float16: the output's own rounding is 2^-11 = 4.9e-4 (fp32 accumulation);
#   bfloat16: the output's own rounding is 2^-8 = 3.9e-3.
TOLERANCE = {"float64": 1e-10, "float32": 1e-5, "float16": 5e-3, "bfloat16": 3e-2}
TF32_TOLERANCE = 5e-3


def tolerance(dtype, tf32=False):
    name = numpy.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name == "float32" and tf32:
        return TF32_TOLERANCE
    return TOLERANCE[name]


def bits(a):
    """The raw bits of ``a`` (NaN-safe bitwise comparisons)."""
    import cupy
    a = cupy.ascontiguousarray(a)
    return a.view({8: numpy.uint64, 4: numpy.uint32, 2: numpy.uint16}[a.itemsize])


def capture_then_launch(stream, run, out, x, dtype, layout):
    """CUDA-graph capture of ``run()`` on ``stream`` (entered by the caller),
    with ``out`` poisoned first: the capture must not run it.  Then ``x`` is
    refilled with fresh data and the graph launched, so ``out`` holds what the
    captured call computes on the new ``x``."""
    import cupy
    out.fill(float("nan"))
    stream.begin_capture()
    run()
    g = stream.end_capture()
    stream.synchronize()
    assert bool(cupy.isnan(out).all())                # captured, not run
    x[...] = random(x.shape, dtype, layout)
    g.launch(stream)
    stream.synchronize()
