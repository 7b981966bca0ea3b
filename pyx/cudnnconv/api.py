"""The public functions (policy tier, top).

Each function enters the typed path (``callplan.call``); a call that does not
run there goes through one driver (``_full_path``) with the function's own
first pass (check the arguments before any GPU work, pick the memory layout,
split the batch where 32-bit indexing needs it) and execute (pack the arrays
into the layout, hand each chunk to an engine's ``run``).  Engines see
packed arrays in the roles of the forward convolution (x: input, w: filter,
y: output) whatever the direction.
"""
import math

import numpy

from cudnnconv import activations, epilogue_composed, fusion_choice, params, split, engine_registry, tiled_calls
from cudnnconv.options import flags as _flag_defaults
from cudnnconv import callplan
from cudnnconv.callplan import CallPlan, FnSpec, Miss, conv_plan, rel_span
from cudnnconv.core.state import state as _state
from cudnnconv.core.status import CuDNNError


def last_call():
    """What the most recent call on this thread ran: a dict with the function,
    the engine, the path ('direct', 'fused' or 'composed') and, per chunk, the
    choice (algorithm or engine config, math type, workspace, how chosen).
    None before the first call.  The dict is built here, when asked: a call
    only keeps a reference to what it ran."""
    rec = _state().last
    if rec is None:
        return None
    if type(rec) is dict:              # a function made of others (conv_backward_weight_bias)
        return dict(rec)
    if type(rec) is CallPlan:          # a bound call plan ran
        return {"function": rec.fn, "engine": rec.engine, "path": "direct", "choices": [rec.choice]}
    fn, engine, path, choices = rec
    return {"function": fn, "engine": engine, "path": path,
            "choices": [c.as_dict() for c in choices]}


def _record(fn, engine, path, choices):
    _state().last = (fn, engine, path, choices)


_OPTIONAL_ARRAYS = frozenset(("bias", "z"))


def _inspect(**named):
    """ArrayArgs for the array arguments: type checks only.  None stays None
    for an optional argument (the bias) and is a TypeError naming any other."""
    return {k: (None if v is None and k in _OPTIONAL_ARRAYS else params.inspect_array(v, k))
            for k, v in named.items()}


def _prepare(args, out, result_shape, may_alias=()):
    """Check dtypes and ``out`` on metadata (no GPU yet), then materialize
    the arrays as CuPy views, check that they share one device and that
    ``out`` does not overlap an input.  Returns (arrays, out, device)."""
    out_arg = None if out is None else params.inspect_array(out, "out")
    dtype = params.check_same_dtype(list(args.values()) + [out_arg])
    if out_arg is not None:
        params.check_out(out_arg, result_shape, dtype)
    try:
        arrays = {k: (None if a is None else a.materialize()) for k, a in args.items()}
        out_arr = None if out_arg is None else out_arg.materialize()
    except Exception:
        _check_cuda()
        raise
    named = [(k, v.device.id) for k, v in arrays.items() if v is not None]
    if out_arr is not None:
        named.append(("out", out_arr.device.id))
    device = params.check_same_device(named)
    if out_arr is not None:
        for k, v in arrays.items():
            if v is not None and k not in may_alias and params.overlaps(out_arr, v):
                raise ValueError("out overlaps %s: the result would overwrite its own input" % k)
    return arrays, out_arr, device


class CudaUnavailableError(RuntimeError):
    """A valid call found no usable CUDA device or driver."""


def cuda_available():
    """Whether a CUDA device and driver are usable from CuPy here."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def _check_cuda():
    """Raise CudaUnavailableError when CUDA cannot run here (called when a
    valid call's arrays fail to become CuPy arrays, so that the user sees
    why instead of CuPy's raw runtime error)."""
    if not cuda_available():
        raise CudaUnavailableError(
            "cudnnconv: no usable CUDA device was found (cudnnconv.cuda_available() is False): the "
            "arguments are valid, but running the call needs a CUDA GPU and a driver that supports the "
            "installed CUDA runtime") from None


def _finish(y, out):
    if out is not None and y is not out:
        out[...] = y
        return out
    return y


def _bias_shape(k, ndim):
    return (1, k) + (1,) * (ndim - 2)


def _add_bias(y, b):
    """y += b over the channel dim, in one kernel (CuPy computes float16
    arithmetic in float32 and rounds once); bfloat16 goes through float32."""
    bb = b.reshape(_bias_shape(b.shape[0], y.ndim))
    if y.dtype.name == "bfloat16":
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


def _positional(*named):
    """Repro entries for positional array arguments; a trailing None is dropped."""
    out = [(name, a if a is None or isinstance(a, tuple) else tuple(a.shape)) for name, a in named]
    while out and out[-1][1] is None:
        out.pop()
    return out


# ---------------------------------------------------------------------------
# Call plans: what a validated call signature resolves to
# ---------------------------------------------------------------------------
#
# Every public function enters through ``callplan.call`` (typed): it resolves
# the flags, hashes the call signature (the shapes, strides, dtypes and
# devices of its CuPy arrays and of ``out``, its scalar parameters, its
# resolved flags) and looks it up in this thread's memo.  A bound plan runs
# there and then, and its result is returned.  Anything else comes back as a
# ``Miss`` and runs the full path below: the first call of a signature runs
# every check and records the outcome in a CallPlan; a memoized plan skips
# validation, layout choice and split planning.  After the engine ran, the
# plan is bound to the choice that ran (``_bind``), so the next call with
# this signature runs on the typed path.  Calls with arrays that are not
# CuPy arrays, or with unhashable parameters (lists), take the full path
# every time.  A plan is also remembered under its signature's canonical
# form (int parameters written as tuples), so stride=2 and stride=(2, 2)
# share it, and a call finds the plan that warm-up made for its problem.
# conv()'s common-case first pass is typed too (callplan.conv_plan); the
# full path here is the one source of truth for what is valid (conv_plan
# only ever answers None where it is).

_call = callplan.call


def _remember(spec, miss, plan):
    callplan.remember_plan(spec, miss, plan)


def _bind(miss, plan, choices, x, w, y):
    """Bind ``plan`` to the choice that just ran on x, w, y (forward roles); ``callplan.bind``
    refuses what it cannot bind (a tiled plan among them)."""
    if miss.sig is not None and len(choices) == 1:
        callplan.bind(plan, engine_registry.executor(choices[0], plan.device), x, w, y, miss)


def _new_plan(fn, names, arrays, out, device, layout, geom, shape, pack, chunks, repro, may_alias=(), extra=None,
              out_direct=True):
    """An unbound CallPlan; ``out_direct=False`` makes the call compute into
    a fresh array even where ``out`` has the layout."""
    return callplan.new_plan(
        fn, device, layout, geom, shape, pack, chunks, repro, names,
        out_direct and out is not None and params.has_layout(out, layout), None if out is None else rel_span(out),
        tuple(None if n in may_alias else rel_span(a) for n, a in zip(names, arrays)), any(geom.same_extra),
        extra)


class _NullContext:
    __slots__ = ()

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


_NULL = _NullContext()


def _on_device(device):
    """Make ``device`` current for the call (a no-op when it already is)."""
    import cupy
    if cupy.cuda.runtime.getDevice() == device:
        return _NULL
    return cupy.cuda.Device(device)


def _packed(plan, i, a):
    return params.to_layout(a, plan.layout) if plan.pack[i] else a


def _output(plan, out, dtype):
    return out if plan.out_direct else params.empty_in_layout(plan.shape, dtype, plan.layout)


def _run_chunks(eng, op, plan, x, w, y, opts, z=None, bias=None, alpha=1.0):
    """Run ``op`` over the plan's batch chunks (x, y and z are split, w not), or its tiles."""
    chunks = plan.chunks
    if tiled_calls.is_tiled(chunks):
        return tiled_calls.run(eng, op, plan, x, w, y, opts, z=z, bias=bias, alpha=alpha)
    if len(chunks) == 1:
        return [eng.run(op, x, w, y, plan.geom, opts, plan.layout, plan.device, plan.repro,
                        z=z, bias=bias, alpha=alpha)]
    return [eng.run(op, x[s:s + n], w, y[s:s + n], plan.geom, opts, plan.layout, plan.device, plan.repro,
                    z=None if z is None else z[s:s + n], bias=bias, alpha=alpha)
            for s, n in chunks]


# ---------------------------------------------------------------------------
# The driver: the one sequence every public function runs
# ---------------------------------------------------------------------------
#
# A public function checks what only it has (conv_bias_add_relu's fusion and
# alpha), then calls ``_call``: a bound plan runs there, on the typed path,
# and its result is returned.  Anything else is a ``Miss`` and runs
# ``_full_path`` with the function's description (``_Path``):
#
# * ``first_pass(arrays, scalars, out, opts, miss)`` when the signature has
#   no plan yet: every check, then ``(plan, arrays, out)`` with the arrays as
#   CuPy views; the plan is remembered under the signature;
# * ``execute(eng, plan, arrays, scalars, out, opts, miss)`` on the plan's
#   device: pack, compute into the output, bind the plan to the choice that
#   ran where it can be bound; returns ``(result, path, choices)``;
#
# and the driver records the call (``last_call``) and writes ``out``.
# ``scalars`` are the function's own non-array parameters as passed, in its
# positional order (for the backward functions the shape comes first).

class _Path:
    """One public function's description for the driver."""
    __slots__ = ("spec", "first_pass", "execute")

    def __init__(self, spec, first_pass, execute):
        self.spec, self.first_pass, self.execute = spec, first_pass, execute


def _full_path(path, miss, arrays, scalars, out):
    """Run a call that the typed path did not: plan it if it has no plan yet, run it, record it."""
    opts, plan = miss.opts, miss.plan
    eng = engine_registry.select(opts)
    if plan is None:
        plan, arrays, out = path.first_pass(arrays, scalars, out, opts, miss)
        _remember(path.spec, miss, plan)
    with _on_device(plan.device):
        y, how, choices = path.execute(eng, plan, arrays, scalars, out, opts, miss)
        _record(path.spec.name, eng.ENGINE, how, choices)
        return _finish(y, out)


# ---------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------

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
    arrays, scalars = (input, weight, bias), (stride, padding, dilation, groups)
    r = _call(_CONV, arrays, out, scalars, (benchmark, deterministic, allow_tf32, workspace_limit, engine))
    return r if type(r) is not Miss else _full_path(_CONV_PATH, r, arrays, scalars, out)


def _conv_plan(arrays, scalars, out, opts, miss):
    if miss.sig is not None:            # CuPy arrays: the typed first pass answers the common case
        plan = conv_plan(*arrays, *scalars, out, opts)
        if plan is not None:
            return plan, arrays, out
    return _conv_first_pass(*arrays, *scalars, out, opts)


def _conv_first_pass(input, weight, bias, stride, padding, dilation, groups, out, opts):
    """conv()'s full first pass: every check, then (plan, arrays, out) with
    the arrays as CuPy views.  callplan.conv_plan is its typed twin for the
    common case (tests/test_callplan_property.py checks they agree)."""
    a = _inspect(input=input, weight=weight, bias=bias)
    geom, y_shape = params.conv_geometry(a["input"].shape, a["weight"].shape, stride, padding, dilation, groups)
    params.check_bias(a["bias"], y_shape[1])
    size = math.prod(y_shape)
    chunks = tiled_calls.plan(a["input"].shape, a["weight"].shape, geom, split.FORWARD_MAX_WORKSIZE) if size else []
    arr, out, device = _prepare(a, out, y_shape)
    arrays = x, w, b = arr["input"], arr["weight"], arr["bias"]
    layout = params.suggest_layout(x, w)
    repro = ("conv", _positional(("input", x.shape), ("weight", w.shape), ("bias", b)), x.dtype, layout,
             params.repro_kwargs(geom, opts))
    plan = _new_plan("conv", ("input", "weight", "bias"), arrays, out, device, layout, geom, y_shape,
                     (not params.has_layout(x, layout), not params.has_layout(w, layout)), chunks, repro)
    return plan, arrays, out


def _conv_execute(eng, plan, arrays, scalars, out, opts, miss):
    x, w, b = arrays
    xs, ws = _packed(plan, 0, x), _packed(plan, 1, w)
    if plan.pad:
        xs = _pad_end(xs, plan.geom.same_extra, plan.layout)
    y = _output(plan, out, x.dtype)
    choices = []
    if plan.chunks:
        choices = _run_chunks(eng, "forward", plan, xs, ws, y, opts)
        if b is not None:
            _add_bias(y, b)
        _bind(miss, plan, choices, xs, ws, y)
    return y, "direct", choices


# ---------------------------------------------------------------------------
# backward
# ---------------------------------------------------------------------------

def conv_backward_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                        out=None, benchmark=None, deterministic=None, allow_tf32=None, workspace_limit=None,
                        engine=None):
    """Gradient of ``conv`` with respect to its input (like
    torch.nn.grad.conv2d_input): returns an array of ``input_shape``."""
    arrays, scalars = (weight, grad_output), (input_shape, stride, padding, dilation, groups)
    r = _call(_BACKWARD_INPUT, arrays, out, _shape_scalars(input_shape, stride, padding, dilation, groups),
              (benchmark, deterministic, allow_tf32, workspace_limit, engine))
    return r if type(r) is not Miss else _full_path(_BACKWARD_INPUT_PATH, r, arrays, scalars, out)


def _backward_input_first_pass(arrays, scalars, out, opts, miss):
    input_shape, stride, padding, dilation, groups = scalars
    a = _inspect(weight=arrays[0], grad_output=arrays[1])
    geom = params.backward_input_geometry(input_shape, a["weight"].shape, a["grad_output"].shape,
                                          stride, padding, dilation, groups)
    x_shape = tuple(int(s) for s in input_shape)
    size, gy_size = math.prod(x_shape), math.prod(a["grad_output"].shape)
    chunks = (tiled_calls.plan(x_shape, a["weight"].shape, geom, split.BACKWARD_INPUT_MAX_WORKSIZE)
              if size and gy_size else [])
    return _backward_plan("conv_backward_input", a, out, ("input_shape", 0, x_shape), geom, chunks, opts, (1, 0))


def _backward_input_execute(eng, plan, arrays, scalars, out, opts, miss):
    w, gy = arrays
    ws, gys = _packed(plan, 0, w), _packed(plan, 1, gy)
    gx = _output(plan, out, w.dtype)
    choices = []
    if plan.chunks:
        choices = _run_chunks(eng, "backward_data", plan, gx, ws, gys, opts)
        _bind(miss, plan, choices, gx, ws, gys)
    elif gx.size:
        gx.fill(0)          # an empty grad_output contributes nothing
    return gx, "direct", choices


def conv_backward_weight(input, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                         out=None, benchmark=None, deterministic=None, allow_tf32=None, workspace_limit=None,
                         engine=None):
    """Gradient of ``conv`` with respect to its weight (like
    torch.nn.grad.conv2d_weight): returns an array of ``weight_shape``.

    When the batch must be split, the partial gradients are summed in
    float32 for float16/bfloat16 (in the dtype itself otherwise), then
    written into the result.
    """
    arrays, scalars = (input, grad_output), (weight_shape, stride, padding, dilation, groups)
    r = _call(_BACKWARD_WEIGHT, arrays, out, _shape_scalars(weight_shape, stride, padding, dilation, groups),
              (benchmark, deterministic, allow_tf32, workspace_limit, engine))
    return r if type(r) is not Miss else _full_path(_BACKWARD_WEIGHT_PATH, r, arrays, scalars, out)


def _backward_weight_first_pass(arrays, scalars, out, opts, miss):
    weight_shape, stride, padding, dilation, groups = scalars
    a = _inspect(input=arrays[0], grad_output=arrays[1])
    geom = params.backward_weight_geometry(a["input"].shape, weight_shape, a["grad_output"].shape,
                                           stride, padding, dilation, groups)
    w_shape = tuple(int(s) for s in weight_shape)
    x_shape = tuple(a["input"].shape)
    chunks = (tiled_calls.plan(x_shape, w_shape, geom, split.BACKWARD_WEIGHT_MAX_WORKSIZE)
              if x_shape[0] else [])
    return _backward_plan("conv_backward_weight", a, out, ("weight_shape", 1, w_shape), geom, chunks, opts,
                          (0, 1))


def _backward_plan(fn, a, out, shape_arg, geom, chunks, opts, layout_from, repro_extra=(), extra=None):
    """The backward functions' first-pass tail, once the geometry is known:
    materialize the arrays, pick the layout from them (in the order
    ``layout_from`` gives), and make the plan.  ``shape_arg`` is (name,
    position, value) of the function's shape argument, which is the result's
    shape; ``repro_extra``, the function's own keywords for its repro line."""
    names = tuple(a)
    arr, out, device = _prepare(a, out, shape_arg[2])
    arrays = tuple(arr[n] for n in names)
    layout = params.suggest_layout(*(arrays[i] for i in layout_from))
    entries = [(n, v.shape) for n, v in zip(names, arrays)]
    entries.insert(shape_arg[1], (shape_arg[0], shape_arg[2]))
    repro = (fn, entries, arrays[0].dtype, layout, params.repro_kwargs(geom, opts, repro_extra))
    plan = _new_plan(fn, names, arrays, out, device, layout, geom, shape_arg[2],
                     tuple(not params.has_layout(v, layout) for v in arrays), chunks, repro, extra=extra)
    return plan, arrays, out


def _backward_weight_execute(eng, plan, arrays, scalars, out, opts, miss):
    x, gy = arrays
    xs, gys = _packed(plan, 0, x), _packed(plan, 1, gy)
    gw = _output(plan, out, x.dtype)
    choices = []
    if not plan.chunks:
        gw.fill(0)          # an empty batch contributes nothing
    elif len(plan.chunks) == 1 or tiled_calls.is_tiled(plan.chunks):     # tiles sum their own samples
        choices = _run_chunks(eng, "backward_filter", plan, xs, gw, gys, opts)
        _bind(miss, plan, choices, xs, gw, gys)
    else:
        import cupy
        acc = cupy.zeros(plan.shape, dtype=split.accumulation_dtype(x.dtype))
        part = params.empty_in_layout(plan.shape, x.dtype, plan.layout)
        for s, n in plan.chunks:
            choices.append(eng.run("backward_filter", xs[s:s + n], part, gys[s:s + n], plan.geom, opts,
                                   plan.layout, plan.device, plan.repro))
            acc += part.astype(acc.dtype) if part.dtype != acc.dtype else part
        gw[...] = acc.astype(x.dtype) if acc.dtype != x.dtype else acc
    return gw, "direct", choices


# ---------------------------------------------------------------------------
# transposed
# ---------------------------------------------------------------------------

def conv_transpose(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                   out=None, benchmark=None, deterministic=None, allow_tf32=None, workspace_limit=None,
                   engine=None):
    """Transposed convolution like torch.nn.functional.conv_transpose1d/2d/3d.

    input ``(N, C_in, *spatial)``, weight ``(C_in, C_out/groups, *kernel)``.
    It is the backward-input computation of the forward convolution whose
    output is ``input``: the roles are swapped, as PyTorch's Conv_v7 notes.
    """
    arrays, scalars = (input, weight, bias), (stride, padding, output_padding, groups, dilation)
    r = _call(_TRANSPOSE, arrays, out, scalars, (benchmark, deterministic, allow_tf32, workspace_limit, engine))
    return r if type(r) is not Miss else _full_path(_TRANSPOSE_PATH, r, arrays, scalars, out)


def _transpose_first_pass(arrays, scalars, out, opts, miss):
    stride, padding, output_padding, groups, dilation = scalars
    a = _inspect(input=arrays[0], weight=arrays[1], bias=arrays[2])
    geom, y_shape = params.transpose_geometry(a["input"].shape, a["weight"].shape, stride, padding,
                                              output_padding, groups, dilation)
    params.check_bias(a["bias"], y_shape[1])
    opad = params.spatial_tuple(output_padding, geom.nsp, "output_padding", 0)
    crop = _transpose_crop(a["input"].shape, a["weight"].shape, geom, opad)
    # forward roles: the (full) transposed output is the convolution's input, its input the output
    chunks = (tiled_calls.plan(crop[1] if crop else y_shape, a["weight"].shape, crop[0] if crop else geom,
                               split.BACKWARD_INPUT_MAX_WORKSIZE) if math.prod(y_shape) else [])
    arr, out, device = _prepare(a, out, y_shape)
    arrays = x, w, b = arr["input"], arr["weight"], arr["bias"]
    layout = params.suggest_layout(x, w)
    repro = ("conv_transpose", _positional(("input", x.shape), ("weight", w.shape), ("bias", b)),
             x.dtype, layout, params.repro_kwargs(geom, opts, [("output_padding", opad)]))
    plan = _new_plan("conv_transpose", ("input", "weight", "bias"), arrays, out, device, layout,
                     crop[0] if crop else geom, y_shape,
                     (not params.has_layout(x, layout), not params.has_layout(w, layout)), chunks, repro,
                     extra=crop)
    return plan, arrays, out


def _transpose_execute(eng, plan, arrays, scalars, out, opts, miss):
    x, w, b = arrays
    xs, ws = _packed(plan, 0, x), _packed(plan, 1, w)
    y = _output(plan, out, x.dtype)
    choices = []
    if plan.chunks:
        # forward roles: the transposed output is the convolution's input
        if plan.extra is None:
            choices = _run_chunks(eng, "backward_data", plan, y, ws, xs, opts)
            _bind(miss, plan, choices, y, ws, xs)
        else:
            full = params.empty_in_layout(plan.extra[1], x.dtype, plan.layout)
            choices = _run_chunks(eng, "backward_data", plan, full, ws, xs, opts)
            _crop_into(y, full, plan.extra[2])
        if b is not None:
            _add_bias(y, b)
    return y, "direct", choices


def _transpose_crop(x_shape, w_shape, geom, opad):
    """None, or (geometry, full_shape, padding) when some output_padding is
    >= its stride (allowed while it is < the dilation).  Then the output is
    not a size whose forward convolution gives back the input, which cuDNN's
    legacy backward-data refuses.  We compute instead the unpadded transposed
    convolution (padding 0, no output padding: always consistent) and crop
    it: output[i] = full[i + padding], zero where nothing reaches."""
    if all(o < s for o, s in zip(opad, geom.stride)):
        return None
    full_sp = tuple((i - 1) * s + d * (k - 1) + 1
                    for i, s, d, k in zip(x_shape[2:], geom.stride, geom.dilation, w_shape[2:]))
    full_shape = (x_shape[0], w_shape[1] * geom.groups) + full_sp
    return geom._replace(padding=(0,) * geom.nsp), full_shape, geom.padding


def _crop_into(y, full, padding):
    y.fill(0)
    dst, src = [slice(None), slice(None)], [slice(None), slice(None)]
    for o, f, p in zip(y.shape[2:], full.shape[2:], padding):
        n = max(0, min(o, f - p))
        dst.append(slice(0, n))
        src.append(slice(p, p + n))
    y[tuple(dst)] = full[tuple(src)]


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
    if not isinstance(fusion, str) or fusion not in FUSION_MODES:
        raise ValueError("fusion must be one of %s, got %r" % (FUSION_MODES, fusion))
    if z is None:
        raise TypeError("z must be an array of the output's shape (use conv() with bias for no residual)")
    alpha = params.finite_real("alpha", alpha)
    arrays, scalars = (input, weight, z, bias), (stride, padding, dilation, groups, alpha, fusion)
    r = _call(_FUSED, arrays, out, scalars, (benchmark, deterministic, allow_tf32, workspace_limit, engine))
    return r if type(r) is not Miss else _full_path(_FUSED_PATH, r, arrays, scalars, out)   # never bound


def _epilogue_arrays(arrays, geometry, out):
    """The checks an epilogue's arrays (input, weight, z, bias) share, before any GPU work: the
    geometry, z of the output's shape where given, bias of (K,); then the arrays as CuPy views.
    Returns (geom, output shape, chunks, (x, w, z, bias), out, device, layout)."""
    a = _inspect(input=arrays[0], weight=arrays[1], z=arrays[2], bias=arrays[3])
    geom, y_shape = params.conv_geometry(a["input"].shape, a["weight"].shape, *geometry)
    if a["z"] is not None and tuple(a["z"].shape) != y_shape:
        raise ValueError("z must have the output's shape %s, got %s" % (y_shape, tuple(a["z"].shape)))
    params.check_bias(a["bias"], y_shape[1])
    size = math.prod(y_shape)
    chunks = tiled_calls.plan(a["input"].shape, a["weight"].shape, geom, split.FORWARD_MAX_WORKSIZE) if size else []
    arr, out, device = _prepare(a, out, y_shape, may_alias=("z",))
    x, w = arr["input"], arr["weight"]
    return (geom, y_shape, chunks, (x, w, arr["z"], arr["bias"]), out, device,
            params.suggest_layout(x, w))


def _fused_first_pass(arrays, scalars, out, opts, miss):
    stride, padding, dilation, groups, alpha, fusion = scalars
    geom, y_shape, chunks, arrays, out, device, layout = _epilogue_arrays(arrays, scalars[:4], out)
    x, w, zz, b = arrays
    repro = ("conv_bias_add_relu", [("input", x.shape), ("weight", w.shape), ("z", y_shape),
                                    ("alpha", alpha), ("bias", None if b is None else tuple(b.shape))],
             x.dtype, layout, params.repro_kwargs(geom, opts, [("fusion", fusion)]))
    # out may alias z (an in-place residual): then compute into a fresh array.
    plan = _new_plan("conv_bias_add_relu", ("input", "weight", "z", "bias"), arrays, out, device, layout,
                     geom, y_shape, (not params.has_layout(x, layout), not params.has_layout(w, layout),
                                     not params.has_layout(zz, layout)), chunks, repro, may_alias=("z",),
                     out_direct=out is None or not params.overlaps(out, zz))
    return plan, arrays, out


def _fused_execute(eng, plan, arrays, scalars, out, opts, miss):
    import cupy
    from cudnnconv import _log
    x, w, zz, b = arrays
    alpha, fusion = scalars[4], scalars[5]
    xs, ws, zs = _packed(plan, 0, x), _packed(plan, 1, w), _packed(plan, 2, zz)
    if plan.pad:
        xs = _pad_end(xs, plan.geom.same_extra, plan.layout)
    bs = cupy.zeros((plan.shape[1],), dtype=x.dtype) if b is None else cupy.ascontiguousarray(b)
    y = _output(plan, out, x.dtype)
    if plan.out_direct and params.overlaps(out, zz):     # an in-place residual this time
        y = params.empty_in_layout(plan.shape, x.dtype, plan.layout)
    path, choices = "fused", []
    if fusion != "composed" and plan.chunks:
        try:
            choices = _run_chunks(eng, "fused", plan, xs, ws, y, opts, z=zs, bias=bs, alpha=alpha)
        except CuDNNError as e:
            if fusion == "fused":
                raise
            _log.debug("conv_bias_add_relu: the fused kernel cannot run this case (%s); composing", e.name)
            path, choices = "composed", []
    else:
        path = "composed"
    if path == "composed" and plan.chunks:
        choices = _run_chunks(eng, "forward", plan, xs, ws, y, opts)
        _compose_bias_add_relu(y, zs, alpha, bs)
    _log.debug("conv_bias_add_relu ran the %s path on the %s engine", path, eng.ENGINE)
    return y, path, choices


def _compose_bias_add_relu(y, z, alpha, b):
    """y = relu(y + alpha*z + b), computed in fp32 (fp64 for double data)."""
    acc_t = numpy.float64 if y.dtype == numpy.float64 else numpy.float32
    acc = y.astype(acc_t)
    acc += acc_t(alpha) * z.astype(acc_t)
    acc += b.astype(acc_t).reshape(_bias_shape(b.shape[0], y.ndim))
    import cupy
    cupy.maximum(acc, 0, out=acc)
    y[...] = acc.astype(y.dtype)


# ---------------------------------------------------------------------------
# the general epilogue
# ---------------------------------------------------------------------------

def conv_epilogue(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, z=None, act=None,
                  alpha1=1.0, alpha2=1.0, out=None, fusion="auto", benchmark=None, deterministic=None,
                  allow_tf32=None, workspace_limit=None, engine=None):
    """act(alpha1 * conv(input, weight) + alpha2 * z + bias), each part optional.

    ``act``: None (identity), 'relu', 'leaky_relu' (slope 0.01), ('leaky_relu', slope), 'elu'
    (alpha 1), ('elu', alpha), 'gelu' (erf), 'gelu_tanh', 'silu' (or 'swish'), 'sigmoid',
    'tanh' or ('clamp', min, max) (``cudnnconv.activations``).  ``z`` has the output's shape;
    ``bias`` is ``(K,)``; ``alpha1`` and ``alpha2`` are real numbers.
    ``fusion``: 'auto' runs the graph engine's fused graph (the convolution and every pointwise
    step in cuDNN's one plan) where cuDNN supports the case, and otherwise the composed path: the
    convolution on the call's engine, then the whole epilogue in one elementwise kernel; with
    ``benchmark=True`` the first call of a signature times both paths and later calls take the
    faster (``cudnnconv.fusion_choice``: a fused plan is not always the faster); 'fused' raises
    where it cannot fuse; 'composed' always composes.  The legacy engine, and a call that
    must be tiled, compose.  ``cudnnconv.last_call()['path']`` says which ran ('fused' or
    'composed').
    """
    if not isinstance(fusion, str) or fusion not in FUSION_MODES:
        raise ValueError("fusion must be one of %s, got %r" % (FUSION_MODES, fusion))
    a = activations.activation(act)
    p = activations.padded(a)      # the activation as a name and two floats: scalars a call signature holds
    arrays = (input, weight, z, bias)
    scalars = (stride, padding, dilation, groups, a.name, p[0], p[1], params.finite_real("alpha1", alpha1),
               params.finite_real("alpha2", alpha2), fusion)
    r = _call(_EPILOGUE, arrays, out, scalars, (benchmark, deterministic, allow_tf32, workspace_limit, engine))
    return r if type(r) is not Miss else _full_path(_EPILOGUE_PATH, r, arrays, scalars, out)   # never bound


def _act_repr(act):
    """An activation as a repro line writes it: its name, or its (name, *parameters) tuple."""
    return act.name if not act.params else (act.name,) + tuple(act.params)


def _epilogue_of(scalars, z, bias):
    """The call's activations.Epilogue, from its scalars and which of z and bias it was given."""
    name, p0, p1, alpha1, alpha2 = scalars[4:9]
    return activations.epilogue(alpha1, alpha2, activations.unpadded(name, p0, p1), z is not None, bias is not None)


def _epilogue_first_pass(arrays, scalars, out, opts, miss):
    fusion = scalars[9]
    epi = _epilogue_of(scalars, arrays[2], arrays[3])
    geom, y_shape, chunks, arrays, out, device, layout = _epilogue_arrays(arrays, scalars[:4], out)
    x, w, zz, b = arrays
    repro = ("conv_epilogue",
             [("input", x.shape), ("weight", w.shape), ("bias", None if b is None else tuple(b.shape))],
             x.dtype, layout, params.repro_kwargs(geom, opts, [
                 ("z", None if zz is None else params.RandomArray(y_shape)), ("act", _act_repr(epi.act)),
                 ("alpha1", epi.alpha1), ("alpha2", epi.alpha2), ("fusion", fusion)]))
    # out may alias z (an in-place residual): then compute into a fresh array.
    plan = _new_plan("conv_epilogue", ("input", "weight", "z", "bias"), arrays, out, device, layout,
                     geom, y_shape, (not params.has_layout(x, layout), not params.has_layout(w, layout),
                                     zz is not None and not params.has_layout(zz, layout)), chunks, repro,
                     may_alias=("z",), out_direct=out is None or zz is None or not params.overlaps(out, zz),
                     extra=fusion_choice.Slot(epi))   # the call's Epilogue, built once per signature, and
    #                                                   fusion='auto''s Decision (the plan is never bound)
    return plan, arrays, out


def _fuser(eng):
    """The graph engine where ``eng`` runs it (itself, or engine='auto''s first), else None."""
    if getattr(eng, "ENGINE", None) == "graph" and hasattr(eng, "DIRECTIONS"):
        return eng
    first = getattr(eng, "first", None)
    if first is not None and getattr(first, "ENGINE", None) == "graph":
        return first
    return None


def _run_fused(eng, fuser, op, plan, x, w, y, z, bias, epi, opts, fusion):
    """Op ``op`` ('epilogue' or 'dgrad_act') on the graph engine over the plan's batch chunks (x, y
    and z split, w and the bias not): ('fused', choices), or, where cuDNN refuses it and
    ``fusion`` is not 'fused', ('composed', []) for the caller to compose."""
    from cudnnconv import _log
    one = len(plan.chunks) == 1
    try:
        ran = [fuser.run(op, x if one else x[s:s + n], w, y if one else y[s:s + n], plan.geom, opts,
                         plan.layout, plan.device, plan.repro,
                         z=None if z is None else (z if one else z[s:s + n]), bias=bias, epilogue=epi)
               for s, n in plan.chunks]
    except CuDNNError as e:
        if fusion == "fused":
            raise
        _log.debug("%s: the fused graph cannot run this case (%s); composing", op, e.name)
        return "composed", []
    if hasattr(eng, "ran_on"):
        eng.ran_on(fuser.ENGINE)         # engine='auto': last_call() names the engine that ran
    return "fused", ran


def _fused_or_decided(eng, fuser, op, plain_op, plan, x, w, y, z, bias, epi, opts, fusion, kernel):
    """The fused run of ``_run_fused``, under fusion='auto' as the plan's Decision says
    (cudnnconv.fusion_choice): ('composed', []) for the caller to compose where the signature was
    found faster composed.  The first call that fuses, with a measured fused time, and may time
    (``fusion_choice.should_time``) also runs the plain op ``plain_op`` (the arrays in the forward
    roles, as for the fused op: backward_data writes x) and times ``kernel``, the composed kernel,
    in place on its result, to decide; where it keeps the fused plan it fuses again, so the output
    holds the path it reports."""
    slot = plan.extra
    decision = slot.current() if fusion == "auto" else None
    if decision is not None and decision.path == "composed":
        return "composed", []
    path, choices = _run_fused(eng, fuser, op, plan, x, w, y, z, bias, epi, opts, fusion)
    if path != "fused" or fusion != "auto" or decision is not None or not fusion_choice.should_time(opts):
        return path, choices
    if fusion_choice.measured_time(choices) is None:      # a heuristic plan: nothing to weigh it against
        slot.decision = fusion_choice.decide(choices, None, None)
        return path, choices
    from cudnnconv import _log
    try:
        plain = _run_chunks(eng, plain_op, plan, x, w, y, opts)
        kernel_ms = fusion_choice.kernel_ms(kernel, x if plain_op == "backward_data" else y)
    except (CuDNNError, MemoryError) as e:      # no plain plan runs, or no memory to time it: fuse
        _log.debug("%s: the composed path cannot be timed (%s); fusing", op, getattr(e, "name", type(e).__name__))
        slot.decision = fusion_choice.decide(choices, None, None)
    else:
        slot.decision = fusion_choice.decide(choices, plain, kernel_ms)
        _log.debug("%s: fusion='auto' decided %r", op, slot.decision)
        if slot.decision.path == "composed":
            return "composed", []
    # the output holds the plain op's result (or part of it, where a chunk failed): fuse again
    return _run_fused(eng, fuser, op, plan, x, w, y, z, bias, epi, opts, fusion)


def _epilogue_execute(eng, plan, arrays, scalars, out, opts, miss):
    import cupy
    from cudnnconv import _log
    x, w, zz, b = arrays
    epi, fusion = plan.extra.epilogue, scalars[9]
    xs, ws = _packed(plan, 0, x), _packed(plan, 1, w)
    zs = None if zz is None else _packed(plan, 2, zz)
    if plan.pad:
        xs = _pad_end(xs, plan.geom.same_extra, plan.layout)
    bs = None if b is None else cupy.ascontiguousarray(b)
    y = _output(plan, out, x.dtype)
    if zs is not None and plan.out_direct and params.overlaps(out, zz):     # an in-place residual this time
        y = params.empty_in_layout(plan.shape, x.dtype, plan.layout)
    path, choices = "composed", []
    fuser = _fuser(eng) if fusion != "composed" else None
    # the legacy engine's one fused entry, cudnnConvolutionBiasActivationForward: relu(conv + alpha2 * z
    # + bias), its "fused" op (the one conv_bias_add_relu runs), tiled where the call is
    legacy = fuser is None and fusion != "composed" and getattr(eng, "ENGINE", None) == "legacy" and \
        epi.act.name == "relu" and epi.alpha1 == 1.0 and epi.has_z
    tiled = tiled_calls.is_tiled(plan.chunks)
    if fusion == "fused" and not legacy and (fuser is None or tiled):
        raise CuDNNError(3000, "conv_epilogue cannot fuse here: %s" % (
            "the %s engine fuses only relu(conv + alpha2 * z + bias), and the graph engine every epilogue"
            % eng.ENGINE if fuser is None else "the call is tiled, and its tiles compose"), "")
    if legacy and plan.chunks:
        try:
            choices = _run_chunks(eng, "fused", plan, xs, ws, y, opts, z=zs, alpha=epi.alpha2,
                                  bias=bs if bs is not None else cupy.zeros((plan.shape[1],), dtype=x.dtype))
            path = "fused"
        except CuDNNError as e:
            if fusion == "fused":
                raise
            _log.debug("conv_epilogue: the legacy engine's fused kernel cannot run this case (%s); composing", e.name)
    elif fuser is not None and plan.chunks and not tiled:
        path, choices = _fused_or_decided(eng, fuser, "epilogue", "forward", plan, xs, ws, y, zs, bs, epi, opts, fusion,
                                          lambda a: epilogue_composed.apply(a, epi, zs, bs))
    if path == "composed" and plan.chunks:
        choices = _run_chunks(eng, "forward", plan, xs, ws, y, opts)
        epilogue_composed.apply(y, epi, zs, bs)
    _log.debug("conv_epilogue ran the %s path on the %s engine", path, eng.ENGINE)
    return y, path, choices


def conv_backward_weight_bias(input, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                              out=None, bias_out=None, benchmark=None, deterministic=None, allow_tf32=None,
                              workspace_limit=None, engine=None):
    """(conv_backward_weight(input, weight_shape, grad_output, ...), the bias gradient): the weight
    gradient, then ``grad_output`` summed over every dim but the channels (accumulated in float32,
    float64 for double data; in a few reduction steps on large arrays,
    ``epilogue_composed.bias_gradient``), into ``bias_out`` where given.  The path
    is 'composed' (``last_call()``); cuDNN has no plan that takes both from one read of
    ``grad_output`` among the patterns this library builds."""
    g = params.inspect_array(grad_output, "grad_output")
    b = gm = bm = None
    if bias_out is not None:            # checked before any GPU work
        b = params.inspect_array(bias_out, "bias_out")
        if len(g.shape) < 3 or tuple(b.shape) != (g.shape[1],):
            raise ValueError("bias_out must have shape (K,) = (%s,), got %s"
                             % (g.shape[1] if len(g.shape) > 1 else "?", tuple(b.shape)))
        params.check_same_dtype([g, b])
        try:
            gm, bm = g.materialize(), b.materialize()          # CuPy views: no GPU work
        except Exception:
            _check_cuda()
            raise
        params.check_same_device([("grad_output", gm.device.id), ("bias_out", bm.device.id)])
        for name, other in (("grad_output", gm), ("input", input), ("out", out)):
            if other is not None and params.overlaps(
                    bm, other if other is gm else params.inspect_array(other, name).materialize()):
                raise ValueError("bias_out overlaps %s: the result would overwrite an input or the other result"
                                 % name)
    dw = conv_backward_weight(input, weight_shape, grad_output, stride, padding, dilation, groups, out=out,
                              benchmark=benchmark, deterministic=deterministic, allow_tf32=allow_tf32,
                              workspace_limit=workspace_limit, engine=engine)
    inner = last_call()
    gm = g.materialize() if gm is None else gm
    with _on_device(gm.device.id):
        db = epilogue_composed.bias_gradient(gm, bm)
    _state().last = {"function": "conv_backward_weight_bias", "engine": inner["engine"], "path": "composed",
                     "choices": inner["choices"]}
    return dw, db


ACT_INPUT_KINDS = ("pre", "output")


def conv_backward_input_act(input_shape, weight, grad_output, act_input, stride=1, padding=0, dilation=1, groups=1,
                            *, act, act_input_is="pre", out=None, fusion="auto", benchmark=None, deterministic=None,
                            allow_tf32=None, workspace_limit=None, engine=None):
    """act'(a) * conv_backward_input(input_shape, weight, grad_output): the input gradient times
    the derivative of the activation that made this convolution's input.

    In a network ``x = act(pre)`` feeds this convolution; its input gradient times ``act'(pre)``
    is the gradient of ``pre``, the next step back.  cuDNN runs that as one plan: the input
    gradient with the activation's backward as its epilogue.  ``act_input`` has the input's
    shape: the pre-activation (``act_input_is='pre'``) or, for the activations whose derivative
    the output gives (relu, leaky_relu with a slope of 0 or more, elu with a positive alpha,
    clamp, sigmoid, tanh: ``cudnnconv.activations.needs``), the activation's output
    (``act_input_is='output'``).  ``act`` is as ``conv_epilogue`` takes it, but not the identity
    (that is ``conv_backward_input``).  ``fusion`` and ``last_call()['path']`` are as
    ``conv_epilogue``'s; from the output, only relu, leaky_relu and clamp fuse (cuDNN's backward
    modes read the pre-activation, and for those the output gives the same derivative).
    """
    if not isinstance(fusion, str) or fusion not in FUSION_MODES:
        raise ValueError("fusion must be one of %s, got %r" % (FUSION_MODES, fusion))
    if not isinstance(act_input_is, str) or act_input_is not in ACT_INPUT_KINDS:
        raise ValueError("act_input_is must be one of %s, got %r" % (ACT_INPUT_KINDS, act_input_is))
    a = activations.activation(act)
    need = activations.needs(a)
    if need is None:
        raise ValueError("act must be an activation, not the identity (use conv_backward_input)")
    if act_input_is == "output" and need == "pre":
        raise ValueError("the derivative of %s needs the pre-activation, not the output: pass act_input_is='pre'"
                         % a.name)
    p = activations.padded(a)
    arrays = (weight, grad_output, act_input)
    scalars = (input_shape, stride, padding, dilation, groups, a.name, p[0], p[1], act_input_is, fusion)
    shape = _shape_scalars(input_shape, stride, padding, dilation, groups)
    r = _call(_DGRAD_ACT, arrays, out, None if shape is None else shape + scalars[5:],
              (benchmark, deterministic, allow_tf32, workspace_limit, engine))
    return r if type(r) is not Miss else _full_path(_DGRAD_ACT_PATH, r, arrays, scalars, out)   # never bound


def _dgrad_act_first_pass(arrays, scalars, out, opts, miss):
    input_shape, stride, padding, dilation, groups = scalars[:5]
    a = _inspect(weight=arrays[0], grad_output=arrays[1], act_input=arrays[2])
    geom = params.backward_input_geometry(input_shape, a["weight"].shape, a["grad_output"].shape,
                                          stride, padding, dilation, groups)
    x_shape = tuple(int(s) for s in input_shape)
    if tuple(a["act_input"].shape) != x_shape:
        raise ValueError("act_input must have the input's shape %s, got %s" % (x_shape, tuple(a["act_input"].shape)))
    size, gy_size = math.prod(x_shape), math.prod(a["grad_output"].shape)
    chunks = (tiled_calls.plan(x_shape, a["weight"].shape, geom, split.BACKWARD_INPUT_MAX_WORKSIZE)
              if size and gy_size else [])
    act, act_input_is, fusion = _dgrad_act_of(scalars)
    # the plan carries the graph op's Epilogue (the activation, its input in z's slot), built once
    # per signature, and fusion='auto''s Decision (the plan is never bound)
    return _backward_plan("conv_backward_input_act", a, out, ("input_shape", 0, x_shape), geom, chunks, opts, (1, 0),
                          [("act", _act_repr(act)), ("act_input_is", act_input_is), ("fusion", fusion)],
                          extra=fusion_choice.Slot(activations.epilogue(act=act, has_z=True)))


def _dgrad_act_of(scalars):
    """(the canonical Activation, act_input_is, fusion) of conv_backward_input_act's scalars."""
    name, p0, p1, act_input_is, fusion = scalars[5:]
    return activations.unpadded(name, p0, p1), act_input_is, fusion


# the activations whose cuDNN backward mode, given the output for the input, gives the same derivative
_FUSES_FROM_OUTPUT = ("relu", "leaky_relu", "clamp")


def _dgrad_act_execute(eng, plan, arrays, scalars, out, opts, miss):
    w, gy, a_in = arrays
    epi, (act_input_is, fusion) = plan.extra.epilogue, scalars[8:]
    act = epi.act
    name = act.name
    ws, gys, acts = _packed(plan, 0, w), _packed(plan, 1, gy), _packed(plan, 2, a_in)
    gx = _output(plan, out, w.dtype)
    if not plan.chunks:
        if gx.size:
            gx.fill(0)          # an empty grad_output contributes nothing
        return gx, "composed", []
    can = act_input_is == "pre" or name in _FUSES_FROM_OUTPUT
    fuser = _fuser(eng) if fusion != "composed" and can else None
    tiled = tiled_calls.is_tiled(plan.chunks)
    if fusion == "fused" and (fuser is None or tiled):
        raise CuDNNError(3000, "conv_backward_input_act cannot fuse here: %s" % (
            "cuDNN's %s backward reads the pre-activation" % name if not can else
            "the %s engine has no fused epilogue (the graph engine has)" % eng.ENGINE if fuser is None
            else "the call is tiled, and its tiles compose"), "")
    path, choices = "composed", []
    if fuser is not None and not tiled:
        path, choices = _fused_or_decided(
            eng, fuser, "dgrad_act", "backward_data", plan, gx, ws, gys, acts, None, epi, opts, fusion,
            lambda a: epilogue_composed.apply_derivative(a, act, acts, act_input_is == "output"))
    if path == "composed":
        choices = _run_chunks(eng, "backward_data", plan, gx, ws, gys, opts)
        epilogue_composed.apply_derivative(gx, act, acts, act_input_is == "output")
    return gx, path, choices


# ---------------------------------------------------------------------------
# The per-function descriptions for the shared typed entry, and plan objects
# ---------------------------------------------------------------------------

def _shape_scalars(shape, stride, padding, dilation, groups):
    """The backward functions' scalars: the shape argument as a tuple (None
    for anything but a tuple or a list: the full path says why, and an
    iterator must not be consumed here)."""
    if isinstance(shape, (tuple, list)):
        return (tuple(shape), stride, padding, dilation, groups)
    return None


def _kw(opts):
    return {"benchmark": opts.benchmark, "deterministic": opts.deterministic, "allow_tf32": opts.allow_tf32,
            "workspace_limit": opts.workspace_limit, "engine": opts.engine}


def _planned(opts):
    """The thread's flags set to a plan's for a call through the public
    function: a flag the plan resolved to None (no workspace limit) would
    otherwise read as "the thread's default" there."""
    return _flag_defaults(**opts._asdict())


def _redo_conv(arrays, scalars, out, opts):
    with _planned(opts):
        return conv(*arrays, *scalars, out=out, **_kw(opts))


def _redo_backward_input(arrays, scalars, out, opts):
    with _planned(opts):
        return conv_backward_input(scalars[0], *arrays, *scalars[1:], out=out, **_kw(opts))


def _redo_backward_weight(arrays, scalars, out, opts):
    with _planned(opts):
        return conv_backward_weight(arrays[0], scalars[0], arrays[1], *scalars[1:], out=out, **_kw(opts))


def _redo_transpose(arrays, scalars, out, opts):
    with _planned(opts):
        return conv_transpose(*arrays, *scalars, out=out, **_kw(opts))


def _redo_fused(arrays, scalars, out, opts):
    x, w, z, b = arrays
    stride, padding, dilation, groups, alpha, fusion = scalars
    with _planned(opts):
        return conv_bias_add_relu(x, w, z, alpha, b, stride, padding, dilation, groups, out=out, fusion=fusion,
                                  **_kw(opts))


def _redo_epilogue(arrays, scalars, out, opts):
    x, w, z, b = arrays
    epi = _epilogue_of(scalars, z, b)
    with _planned(opts):
        return conv_epilogue(x, w, b, *scalars[:4], z=z, act=epi.act, alpha1=epi.alpha1, alpha2=epi.alpha2,
                             out=out, fusion=scalars[9], **_kw(opts))


def _redo_dgrad_act(arrays, scalars, out, opts):
    w, gy, a_in = arrays
    act, act_input_is, fusion = _dgrad_act_of(scalars)
    with _planned(opts):
        return conv_backward_input_act(scalars[0], w, gy, a_in, *scalars[1:5], act=act, act_input_is=act_input_is,
                                       out=out, fusion=fusion, **_kw(opts))


# FnSpec(name, engine op, forward role of each array argument (0 x, 1 w,
# 2 y, -1 not given to the engine), the result's role, bindable, redo).
_CONV = FnSpec("conv", "forward", (0, 1, -1), 2, True, _redo_conv)
_BACKWARD_INPUT = FnSpec("conv_backward_input", "backward_data", (1, 2), 0, True, _redo_backward_input)
_BACKWARD_WEIGHT = FnSpec("conv_backward_weight", "backward_filter", (0, 2), 1, True, _redo_backward_weight)
_TRANSPOSE = FnSpec("conv_transpose", "backward_data", (2, 1, -1), 0, True, _redo_transpose)
_FUSED = FnSpec("conv_bias_add_relu", "fused", (0, 1, -1, -1), 2, False, _redo_fused)
_EPILOGUE = FnSpec("conv_epilogue", "epilogue", (0, 1, -1, -1), 2, False, _redo_epilogue)
_DGRAD_ACT = FnSpec("conv_backward_input_act", "dgrad_act", (1, 2, -1), 0, False, _redo_dgrad_act)

_CONV_PATH = _Path(_CONV, _conv_plan, _conv_execute)
_BACKWARD_INPUT_PATH = _Path(_BACKWARD_INPUT, _backward_input_first_pass, _backward_input_execute)
_BACKWARD_WEIGHT_PATH = _Path(_BACKWARD_WEIGHT, _backward_weight_first_pass, _backward_weight_execute)
_TRANSPOSE_PATH = _Path(_TRANSPOSE, _transpose_first_pass, _transpose_execute)
_FUSED_PATH = _Path(_FUSED, _fused_first_pass, _fused_execute)
_EPILOGUE_PATH = _Path(_EPILOGUE, _epilogue_first_pass, _epilogue_execute)
_DGRAD_ACT_PATH = _Path(_DGRAD_ACT, _dgrad_act_first_pass, _dgrad_act_execute)

_FUNCTIONS = {f.__name__: f for f in (conv, conv_backward_input, conv_backward_weight, conv_transpose,
                                      conv_bias_add_relu, conv_epilogue, conv_backward_input_act)}

# What every public function raises (appended to each one's docstring, so help() shows it).
_RAISES = """
    Raises:
        TypeError: an argument of the wrong kind, named in the message: an
            array that is not a CUDA array (a host array, None), an
            unsupported dtype (cudnnconv takes float16, bfloat16, float32
            and float64), arrays of different dtypes, a parameter that is
            not an int or a tuple of ints, a flag that is not a bool.
        ValueError: values that do not fit together, named in the message:
            shapes, channels and groups, stride/padding/dilation (zero,
            negative, too large, 'same' with a stride), an output with a
            dim below 1, ``out`` of the wrong shape or overlapping an
            input, arrays on different devices, a bad pointer or strides.
            All of these are checked before any GPU work.
        CudaUnavailableError: the call is valid but no usable CUDA device
            or driver was found (see ``cudnnconv.cuda_available()``).
        EngineUnavailable: ``engine=`` names an engine this build left out.
        CuDNNOutOfMemoryError: no candidate algorithm could get the memory
            it needs (a pool limit, a workspace_limit, a full device).
        cupy.cuda.memory.OutOfMemoryError: the output array, or a copy of
            an input packed into the call's layout, could not be allocated
            (like CuDNNOutOfMemoryError, a MemoryError).
        CuDNNError: cuDNN refused every candidate; the message has the
            status name, the descriptors and a one-line Python repro.
        CaptureError: the call needed a search while its stream was being
            captured into a CUDA graph (run it once before capturing).
    """
for _f in _FUNCTIONS.values():
    _f.__doc__ = _f.__doc__.rstrip() + "\n" + _RAISES


def plan(function, *args, **kwargs):
    """A plan object for one call signature, for framework builders.

    ``function`` is one of the public functions (or its name); ``args`` and
    ``kwargs`` are a call of it, which runs once: it checks everything,
    searches where needed and binds the plan (its result is dropped).  The
    returned ``CallPlan`` is then called with the arrays alone, in the
    function's positional order::

        p = cudnnconv.plan(cudnnconv.conv, x, w, None, 1, 1, benchmark=True)
        y = p(x2, w)              # conv: input, weight[, bias]
        p(x3, w, out=y)           # conv_backward_input: weight, grad_output
                                  # conv_backward_weight: input, grad_output
                                  # conv_transpose: input, weight[, bias]
                                  # conv_bias_add_relu: input, weight, z, bias

    Arrays with the plan's shapes, strides, dtype, device and (where cuDNN
    was told) pointer alignment run on the typed path, checking only that;
    anything else goes through the public function with every check, so a
    plan is never wrong, only slower.  ``p.bound``, ``p.engine``,
    ``p.choice``, ``p.workspace`` and ``p.describe()`` say what it runs.  A
    plan belongs to the thread that made it (its cuDNN plan was built with
    that thread's handle); called from another thread, it runs through the
    public function.  It works inside CUDA-graph capture once made.

    Raises:
        TypeError: ``function`` is not one of the public functions, or the
            call cannot be planned (arrays that are not CuPy arrays,
            unhashable parameters such as lists).
        Anything the call itself raises (see the function's Raises).
    """
    fn = _FUNCTIONS.get(function) if isinstance(function, str) else function
    if fn is None or _FUNCTIONS.get(getattr(fn, "__name__", None)) is not fn:
        raise TypeError("plan() takes one of %s, got %r" % (", ".join(_FUNCTIONS), function))
    st = _state()
    st.last_plan = None
    fn(*args, **kwargs)
    p = st.last_plan
    if p is None:
        raise TypeError("plan(): this call cannot be planned: its arrays must be CuPy arrays and its parameters "
                        "hashable (tuples, not lists)")
    return p
