"""The public functions (policy tier, top).

Each function: check the arguments (before any GPU work), resolve the flags,
pick the memory layout, pack the arrays into it, split the batch where 32-bit
indexing needs it, and hand each chunk to an engine's ``run``.  Engines see
packed arrays in the roles of the forward convolution (x: input, w: filter,
y: output) whatever the direction.
"""
import threading

import numpy

from cudnnconv import options as _flags
from cudnnconv import params, split, _engines
from cudnnconv.core import build
from cudnnconv.core.status import CuDNNError

_last = threading.local()


def last_call():
    """What the most recent call on this thread ran: a dict with the function,
    the engine, the path ('direct', 'fused' or 'composed') and, per chunk, the
    choice (algorithm or engine config, math type, workspace, how chosen).
    None before the first call."""
    rec = getattr(_last, "rec", None)
    if rec is None:
        return None
    fn, engine, path, choices = rec
    return {"function": fn, "engine": engine, "path": path,
            "choices": [c.as_dict() for c in choices]}


def _record(fn, engine, path, choices):
    _last.rec = (fn, engine, path, choices)


def _options(benchmark, deterministic, allow_tf32, workspace_limit, engine):
    return _flags.resolve(benchmark, deterministic, allow_tf32, workspace_limit, engine)


def _inspect(**named):
    """ArrayArgs for the array arguments (None stays None): type checks only."""
    return {k: (None if v is None else params.inspect_array(v, k)) for k, v in named.items()}


def _prepare(args, out, result_shape, may_alias=()):
    """Check dtypes and ``out`` on metadata (no GPU yet), then materialize
    the arrays as CuPy views, check that they share one device and that
    ``out`` does not overlap an input.  Returns (arrays, out, device)."""
    out_arg = None if out is None else params.inspect_array(out, "out")
    dtype = params.check_same_dtype(list(args.values()) + [out_arg])
    if out_arg is not None:
        params.check_out(out_arg, result_shape, dtype)
    arrays = {k: (None if a is None else a.materialize()) for k, a in args.items()}
    out_arr = None if out_arg is None else out_arg.materialize()
    named = [(k, v.device.id) for k, v in arrays.items() if v is not None]
    if out_arr is not None:
        named.append(("out", out_arr.device.id))
    device = params.check_same_device(named)
    if out_arr is not None:
        for k, v in arrays.items():
            if v is not None and k not in may_alias and params.overlaps(out_arr, v):
                raise ValueError("out overlaps %s: the result would overwrite its own input" % k)
    return arrays, out_arr, device


def _result(out, shape, dtype, layout):
    """The array the engine writes: ``out`` itself when it is packed in the
    compute layout, else a fresh packed array (copied into ``out`` after)."""
    if out is not None and params.has_layout(out, layout):
        return out
    return params.empty_in_layout(shape, dtype, layout)


def _finish(y, out):
    if out is not None and y is not out:
        out[...] = y
        return out
    return y


def _bias_shape(k, ndim):
    return (1, k) + (1,) * (ndim - 2)


def _add_bias(y, b):
    """y += b over the channel dim, computed in fp32 for 16-bit data."""
    bb = b.reshape(_bias_shape(b.shape[0], y.ndim))
    if y.dtype.itemsize == 2:
        y[...] = (y.astype(numpy.float32) + bb.astype(numpy.float32)).astype(y.dtype)
    else:
        y += bb


def _pad_end(x, extra, layout):
    """Copy of x with ``extra[i]`` zeros appended to spatial dim i ('same'
    padding with an even dilated kernel: PyTorch pads the end by one)."""
    shape = x.shape[:2] + tuple(s + e for s, e in zip(x.shape[2:], extra))
    xp = params.empty_in_layout(shape, x.dtype, layout)
    xp.fill(0)
    xp[(slice(None), slice(None)) + tuple(slice(0, s) for s in x.shape[2:])] = x
    return xp


def _chunks(n, in_numel, out_numel, max_worksize):
    return split.plan_batch_split(n, in_numel, out_numel, max_worksize, build.INDEX_LIMIT)


def _positional(*named):
    """Repro entries for positional array arguments; a trailing None is dropped."""
    out = [(name, a if a is None or isinstance(a, tuple) else tuple(a.shape)) for name, a in named]
    while out and out[-1][1] is None:
        out.pop()
    return out


def _kw(geom, opts, **extra):
    kw = list(extra.items()) + [("stride", geom.stride), ("padding", geom.padding),
                                ("dilation", geom.dilation), ("groups", geom.groups)]
    kw += [("benchmark", opts.benchmark), ("deterministic", opts.deterministic),
           ("allow_tf32", opts.allow_tf32), ("workspace_limit", opts.workspace_limit),
           ("engine", opts.engine)]
    return kw


# ---------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------

class _ConvPlan:
    """What a validated conv() call signature resolved to, kept so that a
    repeat call with the same shapes, strides, dtypes, devices, parameters
    and flags skips validation, layout choice and split planning."""
    __slots__ = ("geom", "y_shape", "layout", "pack_x", "pack_w", "chunks", "repro", "device")


_MEMO_MAX = 1024
_conv_memo = {}


def _conv_signature(x, w, b, stride, padding, dilation, groups, opts):
    """A hashable signature of a conv() call on CuPy arrays, or None when an
    argument is unhashable (then the call takes the full path)."""
    sig = (x.shape, x.strides, x.dtype, x.data.device_id, w.shape, w.strides, w.dtype, w.data.device_id,
           None if b is None else (b.shape, b.dtype, b.data.device_id), stride, padding, dilation, groups, opts)
    try:
        hash(sig)
    except TypeError:
        return None
    return sig


def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, out=None,
         benchmark=None, deterministic=None, allow_tf32=None, workspace_limit=None, engine=None):
    """N-d convolution (cross-correlation) like torch.nn.functional.conv1d/2d/3d.

    input ``(N, C, *spatial)`` with 1 to 3 spatial dims; weight
    ``(K, C/groups, *kernel)``; bias ``(K,)`` or None.  stride, padding and
    dilation are an int or one int per spatial dim; padding may also be
    'valid' or 'same' (stride 1).  Flags left as None take the thread's
    ``cudnnconv.flags()`` defaults.  Returns a CuPy array on the input's
    device, channels-last when the input or the weight is.
    """
    import cupy
    opts = _options(benchmark, deterministic, allow_tf32, workspace_limit, engine)
    eng = _engines.select(opts)
    plan = sig = None
    if out is None and type(input) is cupy.ndarray and type(weight) is cupy.ndarray \
            and (bias is None or type(bias) is cupy.ndarray):
        sig = _conv_signature(input, weight, bias, stride, padding, dilation, groups, opts)
        if sig is not None:
            plan = _conv_memo.get(sig)
    if plan is None:
        plan, x, w, b, out = _conv_validate(input, weight, bias, stride, padding, dilation, groups, out, opts)
        if sig is not None:
            if len(_conv_memo) >= _MEMO_MAX:
                _conv_memo.clear()
            _conv_memo[sig] = plan
    else:
        x, w, b = input, weight, bias
    with cupy.cuda.Device(plan.device):
        layout = plan.layout
        xs = params.to_layout(x, layout) if plan.pack_x else x
        ws = params.to_layout(w, layout) if plan.pack_w else w
        geom = plan.geom
        if any(geom.same_extra):
            xs = _pad_end(xs, geom.same_extra, layout)
        y = _result(out, plan.y_shape, x.dtype, layout)
        choices = []
        if y.size:
            for s, n in plan.chunks:
                choices.append(eng.run("forward", xs[s:s + n], ws, y[s:s + n], geom, opts, layout, plan.device,
                                       plan.repro))
            if b is not None:
                _add_bias(y, b)
        _record("conv", eng.ENGINE, "direct", choices)
        return _finish(y, out)


def _conv_validate(input, weight, bias, stride, padding, dilation, groups, out, opts):
    """The full argument check of conv(); returns (plan, x, w, b, out)."""
    a = _inspect(input=input, weight=weight, bias=bias)
    geom, y_shape = params.conv_geometry(a["input"].shape, a["weight"].shape, stride, padding, dilation, groups)
    params.check_bias(a["bias"], y_shape[1])
    arr, out, device = _prepare(a, out, y_shape)
    x, w, b = arr["input"], arr["weight"], arr["bias"]
    plan = _ConvPlan()
    plan.geom, plan.y_shape, plan.device = geom, y_shape, device
    plan.layout = layout = params.suggest_layout(x, w)
    plan.pack_x = not params.has_layout(x, layout)
    plan.pack_w = not params.has_layout(w, layout)
    in_numel = x.size
    if any(geom.same_extra):
        in_numel = x.shape[0] * x.shape[1] * int(numpy.prod([s + e for s, e in zip(x.shape[2:], geom.same_extra)]))
    size = int(numpy.prod(y_shape))
    plan.chunks = _chunks(y_shape[0], in_numel, size, split.FORWARD_MAX_WORKSIZE) if size else []
    plan.repro = ("conv", _positional(("input", x.shape), ("weight", w.shape), ("bias", b)), x.dtype, layout,
                  _kw(geom, opts))
    return plan, x, w, b, out


# ---------------------------------------------------------------------------
# backward
# ---------------------------------------------------------------------------

def conv_backward_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                        out=None, benchmark=None, deterministic=None, allow_tf32=None, workspace_limit=None,
                        engine=None):
    """Gradient of ``conv`` with respect to its input (like
    torch.nn.grad.conv2d_input): returns an array of ``input_shape``."""
    a = _inspect(weight=weight, grad_output=grad_output)
    opts = _options(benchmark, deterministic, allow_tf32, workspace_limit, engine)
    geom = params.backward_input_geometry(input_shape, a["weight"].shape, a["grad_output"].shape,
                                          stride, padding, dilation, groups)
    x_shape = tuple(int(s) for s in input_shape)
    eng = _engines.select(opts)
    arr, out, device = _prepare(a, out, x_shape)
    w, gy = arr["weight"], arr["grad_output"]
    import cupy
    with cupy.cuda.Device(device):
        layout = params.suggest_layout(gy, w)
        ws, gys = params.to_layout(w, layout), params.to_layout(gy, layout)
        gx = _result(out, x_shape, w.dtype, layout)
        choices = []
        if gx.size:
            if gys.size == 0:
                gx.fill(0)
            else:
                repro = ("conv_backward_input", [("input_shape", x_shape), ("weight", w.shape),
                                                 ("grad_output", gy.shape)], w.dtype, layout, _kw(geom, opts))
                for s, n in _chunks(x_shape[0], gx.size, gys.size, split.BACKWARD_INPUT_MAX_WORKSIZE):
                    choices.append(eng.run("backward_data", gx[s:s + n], ws, gys[s:s + n], geom, opts, layout,
                                           device, repro))
        _record("conv_backward_input", eng.ENGINE, "direct", choices)
        return _finish(gx, out)


def conv_backward_weight(input, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                         out=None, benchmark=None, deterministic=None, allow_tf32=None, workspace_limit=None,
                         engine=None):
    """Gradient of ``conv`` with respect to its weight (like
    torch.nn.grad.conv2d_weight): returns an array of ``weight_shape``.

    When the batch must be split, the partial gradients are summed in
    float32 for float16/bfloat16 (in the dtype itself otherwise), then
    written into the result.
    """
    a = _inspect(input=input, grad_output=grad_output)
    opts = _options(benchmark, deterministic, allow_tf32, workspace_limit, engine)
    geom = params.backward_weight_geometry(a["input"].shape, weight_shape, a["grad_output"].shape,
                                           stride, padding, dilation, groups)
    w_shape = tuple(int(s) for s in weight_shape)
    eng = _engines.select(opts)
    arr, out, device = _prepare(a, out, w_shape)
    x, gy = arr["input"], arr["grad_output"]
    import cupy
    with cupy.cuda.Device(device):
        layout = params.suggest_layout(x, gy)
        xs, gys = params.to_layout(x, layout), params.to_layout(gy, layout)
        gw = _result(out, w_shape, x.dtype, layout)
        choices = []
        if x.shape[0] == 0:
            gw.fill(0)
        else:
            repro = ("conv_backward_weight", [("input", x.shape), ("weight_shape", w_shape),
                                              ("grad_output", gy.shape)], x.dtype, layout, _kw(geom, opts))
            chunks = _chunks(x.shape[0], xs.size, gys.size, split.BACKWARD_WEIGHT_MAX_WORKSIZE)
            if len(chunks) == 1:
                choices.append(eng.run("backward_filter", xs, gw, gys, geom, opts, layout, device, repro))
            else:
                acc = cupy.zeros(w_shape, dtype=split.accumulation_dtype(x.dtype))
                part = params.empty_in_layout(w_shape, x.dtype, layout)
                for s, n in chunks:
                    choices.append(eng.run("backward_filter", xs[s:s + n], part, gys[s:s + n], geom, opts,
                                           layout, device, repro))
                    acc += part.astype(acc.dtype) if part.dtype != acc.dtype else part
                gw[...] = acc.astype(x.dtype) if acc.dtype != x.dtype else acc
        _record("conv_backward_weight", eng.ENGINE, "direct", choices)
        return _finish(gw, out)


# ---------------------------------------------------------------------------
# transposed
# ---------------------------------------------------------------------------

def conv_transpose(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                   out=None, benchmark=None, deterministic=None, allow_tf32=None, workspace_limit=None,
                   engine=None):
    """Transposed convolution like torch.nn.functional.conv_transpose1d/2d/3d.

    input ``(N, C_in, *spatial)``, weight ``(C_in, C_out/groups, *kernel)``.
    It is the backward-input computation of the forward convolution whose
    output is ``input``: the roles are swapped, as the seed notes.
    """
    a = _inspect(input=input, weight=weight, bias=bias)
    opts = _options(benchmark, deterministic, allow_tf32, workspace_limit, engine)
    geom, y_shape = params.transpose_geometry(a["input"].shape, a["weight"].shape, stride, padding,
                                              output_padding, groups, dilation)
    params.check_bias(a["bias"], y_shape[1])
    eng = _engines.select(opts)
    arr, out, device = _prepare(a, out, y_shape)
    x, w, b = arr["input"], arr["weight"], arr["bias"]
    import cupy
    with cupy.cuda.Device(device):
        layout = params.suggest_layout(x, w)
        xs, ws = params.to_layout(x, layout), params.to_layout(w, layout)
        y = _result(out, y_shape, x.dtype, layout)
        choices = []
        if y.size:
            repro = ("conv_transpose", _positional(("input", x.shape), ("weight", w.shape), ("bias", b)),
                     x.dtype, layout,
                     _kw(geom, opts, output_padding=tuple(int(v) for v in params.spatial_tuple(
                             output_padding, geom.nsp, "output_padding", 0))))
            for s, n in _chunks(y_shape[0], y.size, xs.size, split.BACKWARD_INPUT_MAX_WORKSIZE):
                choices.append(eng.run("backward_data", y[s:s + n], ws, xs[s:s + n], geom, opts, layout, device,
                                       repro))
            if b is not None:
                _add_bias(y, b)
        _record("conv_transpose", eng.ENGINE, "direct", choices)
        return _finish(y, out)


# ---------------------------------------------------------------------------
# fused
# ---------------------------------------------------------------------------

FUSION_MODES = ("auto", "fused", "composed")


def conv_bias_add_relu(input, weight, z, alpha, bias, stride=1, padding=0, dilation=1, groups=1, *, out=None,
                       fusion="auto", benchmark=None, deterministic=None, allow_tf32=None, workspace_limit=None,
                       engine=None):
    """relu(conv(input, weight) + alpha * z + bias).

    ``z`` has the output's shape; ``bias`` is ``(K,)`` (or None for none).
    ``fusion``: 'auto' runs the engine's fused kernel where cuDNN supports
    the case and the composed computation (conv, then + alpha*z + bias, then
    relu) otherwise; 'fused' raises where it cannot fuse; 'composed' always
    composes.  ``cudnnconv.last_call()['path']`` says which ran ('fused' or
    'composed'), and the debug log says so too.
    """
    if fusion not in FUSION_MODES:
        raise ValueError("fusion must be one of %s, got %r" % (FUSION_MODES, fusion))
    if z is None:
        raise TypeError("z must be an array of the output's shape (use conv() with bias for no residual)")
    a = _inspect(input=input, weight=weight, z=z, bias=bias)
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise TypeError("alpha must be a real number, got %r" % (alpha,)) from None
    opts = _options(benchmark, deterministic, allow_tf32, workspace_limit, engine)
    geom, y_shape = params.conv_geometry(a["input"].shape, a["weight"].shape, stride, padding, dilation, groups)
    if tuple(a["z"].shape) != y_shape:
        raise ValueError("z must have the output's shape %s, got %s" % (y_shape, tuple(a["z"].shape)))
    params.check_bias(a["bias"], y_shape[1])
    eng = _engines.select(opts)
    arr, out, device = _prepare(a, out, y_shape, may_alias=("z",))
    x, w, zz, b = arr["input"], arr["weight"], arr["z"], arr["bias"]
    import cupy
    with cupy.cuda.Device(device):
        layout = params.suggest_layout(x, w)
        xs, ws = params.to_layout(x, layout), params.to_layout(w, layout)
        if any(geom.same_extra):
            xs = _pad_end(xs, geom.same_extra, layout)
        zs = params.to_layout(zz, layout)
        bs = cupy.zeros((y_shape[1],), dtype=x.dtype) if b is None else cupy.ascontiguousarray(b)
        # out may alias z (an in-place residual): then compute into a fresh array.
        y = _result(None if (out is not None and params.overlaps(out, zz)) else out, y_shape, x.dtype, layout)
        repro = ("conv_bias_add_relu", [("input", x.shape), ("weight", w.shape), ("z", y_shape),
                                        ("alpha", alpha), ("bias", None if b is None else tuple(b.shape))],
                 x.dtype, layout, _kw(geom, opts, fusion=fusion))
        chunks = _chunks(y_shape[0], xs.size, y.size, split.FORWARD_MAX_WORKSIZE) if y.size else []
        path, choices = "fused", []
        if fusion != "composed" and y.size:
            try:
                for s, n in chunks:
                    choices.append(eng.run("fused", xs[s:s + n], ws, y[s:s + n], geom, opts, layout, device,
                                           repro, z=zs[s:s + n], bias=bs, alpha=alpha))
            except CuDNNError as e:
                if fusion == "fused":
                    raise
                from cudnnconv import _log
                _log.debug("conv_bias_add_relu: the fused kernel cannot run this case (%s); composing", e.name)
                path, choices = "composed", []
        else:
            path = "composed"
        if path == "composed" and y.size:
            for s, n in chunks:
                choices.append(eng.run("forward", xs[s:s + n], ws, y[s:s + n], geom, opts, layout, device, repro))
            _compose_bias_add_relu(y, zs, alpha, bs)
        from cudnnconv import _log
        _log.debug("conv_bias_add_relu ran the %s path on the %s engine", path, eng.ENGINE)
        _record("conv_bias_add_relu", eng.ENGINE, path, choices)
        return _finish(y, out)


def _compose_bias_add_relu(y, z, alpha, b):
    """y = relu(y + alpha*z + b), computed in fp32 (fp64 for double data)."""
    acc_t = numpy.float64 if y.dtype == numpy.float64 else numpy.float32
    acc = y.astype(acc_t)
    acc += acc_t(alpha) * z.astype(acc_t)
    acc += b.astype(acc_t).reshape(_bias_shape(b.shape[0], y.ndim))
    import cupy
    cupy.maximum(acc, 0, out=acc)
    y[...] = acc.astype(y.dtype)
