# cython: language_level=3
"""What a call signature resolves to, typed (public-API tier; no cuDNN).

``api.py`` checks a call signature once (the shapes, strides, dtypes and
devices of its CuPy arrays, its scalar parameters, its flags) and memoizes
the outcome, a CallPlan: the layout, the geometry, the output shape, which
arrays need packing, the batch chunks, the repro, and the byte spans used by
the overlap check.  This module holds the parts that run on every call, or
on every new signature, typed:

* ``lookup``: the signature and its memoized plan (every call);
* ``check_overlap``: a repeat call's ``out`` against its inputs, by address;
* ``conv_plan``: the first pass of ``conv()`` for the common case (CuPy
  arrays, int or tuple parameters, numeric padding).  It was Python, about
  0.06 ms per new signature on an H100 host with warm caches and twice that
  with cold ones, which is the same order as a whole steady-state call
  (``bench/results/first_call/``).

``conv_plan`` never raises a validation error of its own: anything that is
not the common case, and anything invalid, returns None, and the call takes
``api.py``'s full path, which holds every check and its message.  So there
is one source of truth for what is valid, and the GPU tests check that both
paths give the same plan (tests/gpu/test_gpu_forward.py).
"""
from cudnnconv import params, split
from cudnnconv.core import build

cdef object _NDARRAY = None
cdef long long _INDEX_LIMIT = build.INDEX_LIMIT
cdef long long _FWD_WORKSIZE = split.FORWARD_MAX_WORKSIZE
cdef object _Geometry = params.Geometry
cdef object _cudnn_dtype = params.cudnn_dtype
cdef object _plan_batch_split = split.plan_batch_split
cdef object _repro_kwargs = params.repro_kwargs
cdef str _NCHW = params.NCHW
cdef str _NHWC = params.CHANNELS_LAST
cdef int _DOUBLE = params._CUDNN_DTYPE["float64"]
cdef tuple _ZEROS = ((), (0,), (0, 0), (0, 0, 0))
MEMO_MAX = 2048          # signatures api.py memoizes before it starts over


cdef inline object _nd():
    global _NDARRAY
    if _NDARRAY is None:
        import cupy
        _NDARRAY = cupy.ndarray
    return _NDARRAY


cdef class CallPlan:
    """What one validated call signature resolves to (see the module doc)."""
    cdef public object fn, device, layout, geom, shape, pack, chunks, repro, out_direct
    cdef public object spans, out_span, names, pad, extra


# ---------------------------------------------------------------------------
# Every call: the signature, and the overlap check of a repeat call
# ---------------------------------------------------------------------------

cdef object _meta(object a, object nd):
    """(shape, strides, dtype, device) of a CuPy array; None for None; a
    NotImplemented marker for anything else (no memo for that call)."""
    if a is None:
        return None
    if type(a) is not nd:
        return NotImplemented
    return (a.shape, a.strides, a.dtype, a.data.device_id)


def lookup(dict memo, str fn, tuple arrays, out, scalars, opts):
    """(signature, plan): the call's signature (None when its arrays are not
    all CuPy arrays or a parameter is unhashable, then nothing is memoized)
    and the memoized plan (None on a miss).  On a hit, ``out`` is checked
    against the inputs (``check_overlap``)."""
    cdef object nd = _nd()
    cdef list metas = []
    for a in arrays:
        m = _meta(a, nd)
        if m is NotImplemented:
            return None, None
        metas.append(m)
    om = _meta(out, nd)
    if om is NotImplemented:
        return None, None
    sig = (fn, tuple(metas), om, scalars, opts)
    try:
        plan = memo.get(sig)
    except TypeError:            # an unhashable parameter (a list)
        return None, None
    if plan is None and metas[0] is not None:
        # The same call with its int parameters written as tuples (what
        # warm-up calls with, and what torch modules pass): its plan serves
        # this call too, and is remembered under this signature as well.
        canon = _canonical(fn, scalars, len(metas[0][0]) - 2)
        if canon is not None:
            plan = memo.get((fn, sig[1], om, canon, opts))
            if plan is not None and len(memo) < MEMO_MAX:
                memo[sig] = plan
    if plan is not None:
        check_overlap(<CallPlan>plan, arrays, out)
    return sig, plan


def remember(dict memo, sig, plan):
    """Memoize ``plan`` under ``sig``, and under its canonical form (int
    parameters as tuples) where that differs, so that the same call written
    either way finds it.  The memo starts over when it is full."""
    if sig is None:
        return
    if len(memo) >= MEMO_MAX - 1:
        memo.clear()
    memo[sig] = plan
    metas = sig[1]
    if metas and metas[0] is not None:
        canon = _canonical(sig[0], sig[3], len(metas[0][0]) - 2)
        if canon is not None:
            memo[(sig[0], metas, sig[2], canon, sig[4])] = plan


# The positions of the per-spatial-dim parameters in each function's scalars.
cdef dict _SPATIAL_POS = {
    "conv": (0, 1, 2),                       # stride, padding, dilation, groups
    "conv_backward_input": (1, 2, 3),        # input_shape, stride, padding, dilation, groups
    "conv_backward_weight": (1, 2, 3),       # weight_shape, stride, padding, dilation, groups
    "conv_transpose": (0, 1, 2, 4),          # stride, padding, output_padding, groups, dilation
    "conv_bias_add_relu": (0, 1, 2),         # stride, padding, dilation, groups, alpha, fusion
}


cpdef object _canonical(str fn, scalars, Py_ssize_t nsp):
    """``scalars`` with each int per-spatial-dim parameter written as the
    tuple it stands for (``params.spatial_tuple``: v -> (v,) * nsp); None
    when nothing changes or the function has no such parameters.  Only
    exact ints: a bool or a NumPy integer keeps its own signature."""
    pos = _SPATIAL_POS.get(fn)
    if pos is None or type(scalars) is not tuple or nsp < 1:
        return None
    cdef list out = list(<tuple>scalars)
    cdef bint changed = False
    for i in pos:
        if i < len(out) and type(out[i]) is int:
            out[i] = (out[i],) * nsp
            changed = True
    return tuple(out) if changed else None


def check_overlap(CallPlan plan, tuple arrays, out):
    """``out`` against each input, by address, with the plan's spans."""
    if out is None or plan.out_span is None:
        return
    cdef long long op = out.data.ptr
    cdef long long olo = op + plan.out_span[0]
    cdef long long ohi = op + plan.out_span[1]
    cdef long long p
    for a, span, name in zip(arrays, plan.spans, plan.names):
        if span is not None:
            p = a.data.ptr
            if p + <long long>span[0] < ohi and olo < p + <long long>span[1]:
                raise ValueError("out overlaps %s: the result would overwrite its own input" % name)


# ---------------------------------------------------------------------------
# Typed helpers of a first pass
# ---------------------------------------------------------------------------

cpdef object rel_span(a):
    """(lo, hi): the bytes an array touches, relative to its data pointer
    (None for None or an empty array)."""
    if a is None:
        return None
    cdef tuple shape = a.shape
    cdef tuple strides = a.strides
    cdef long long lo = 0, hi = 0, n, s
    cdef Py_ssize_t i
    for i in range(len(shape)):
        n = shape[i]
        if n == 0:
            return None
        s = strides[i]
        if s > 0:
            hi += (n - 1) * s
        else:
            lo += (n - 1) * s
    return (lo, hi + <long long>a.itemsize)


cpdef bint has_layout(tuple shape, tuple strides, long long itemsize, bint channels_last):
    """``params.has_layout`` on shape and byte strides: packed in NCHW, or in
    channels-last order (strides of size-1 dims are ignored)."""
    cdef Py_ssize_t nd = len(shape), i, d
    cdef long long acc = itemsize, n
    if not channels_last or nd < 3:
        for i in range(nd - 1, -1, -1):
            n = shape[i]
            if n != 1 and <long long>strides[i] != acc:
                return False
            acc *= n
        return True
    # channels-last: C innermost, then the spatial dims from last to first, then N
    d = 1
    n = shape[d]
    if n != 1 and <long long>strides[d] != acc:
        return False
    acc *= n
    for i in range(nd - 1, 1, -1):
        n = shape[i]
        if n != 1 and <long long>strides[i] != acc:
            return False
        acc *= n
    n = shape[0]
    if n != 1 and <long long>strides[0] != acc:
        return False
    return True


cdef tuple _spatial(object value, int nsp, long minimum):
    """``params.spatial_tuple`` for exact ints and tuples/lists of exact
    ints; None for anything else or a value below ``minimum``."""
    cdef long v
    cdef list out
    if type(value) is int:
        v = value
        if v < minimum:
            return None
        return (value,) * nsp
    if type(value) is not tuple and type(value) is not list:
        return None
    if len(value) == 1 and nsp > 1:
        value = tuple(value) * nsp
    if len(value) != nsp:
        return None
    out = []
    for e in value:
        if type(e) is not int:
            return None
        v = e
        if v < minimum:
            return None
        out.append(e)
    return tuple(out)


cdef object _dtype_code(dt):
    """params.cudnn_dtype (memoized there), or None for a dtype cuDNN lacks."""
    try:
        return _cudnn_dtype(dt)
    except TypeError:
        return None


# ---------------------------------------------------------------------------
# conv(): the common case's first pass
# ---------------------------------------------------------------------------

def conv_plan(x, w, b, stride, padding, dilation, groups, out, opts):
    """The CallPlan of a valid ``conv()`` call in the common case, or None
    (then ``api.conv`` takes its full path: see the module doc)."""
    cdef object nd = _nd()
    if type(x) is not nd or type(w) is not nd:
        return None
    if (b is not None and type(b) is not nd) or (out is not None and type(out) is not nd):
        return None
    cdef tuple xs = x.shape, ws = w.shape
    cdef Py_ssize_t ndim = len(xs), i
    if ndim < 3 or ndim > 5 or len(ws) != ndim:
        return None
    cdef int nsp = <int>(ndim - 2)
    if type(groups) is not int:
        return None
    cdef long g = groups
    if g < 1:
        return None
    # dtype: one supported dtype for every array
    dt = x.dtype
    code = _dtype_code(dt)
    if code is None or w.dtype != dt or (b is not None and b.dtype != dt) or (out is not None and out.dtype != dt):
        return None
    # shapes and groups
    cdef long long n = xs[0], c = xs[1], k = ws[0], cg = ws[1]
    for i in range(1, ndim):
        if <long long>xs[i] < 1:
            return None
    for i in range(ndim):
        if <long long>ws[i] < 1:
            return None
    if c % g or cg * g != c or k % g:
        return None
    # geometry
    if type(padding) is str:
        return None                  # 'valid' / 'same': the full path
    st = _spatial(stride, nsp, 1)
    dl = _spatial(dilation, nsp, 1)
    pd = _spatial(padding, nsp, 0)
    if st is None or dl is None or pd is None:
        return None
    cdef list y_list = [n, k]
    cdef long long eff_k, padded
    for i in range(nsp):
        eff_k = <long long>dl[i] * (<long long>ws[2 + i] - 1) + 1
        padded = <long long>xs[2 + i] + 2 * <long long>pd[i]
        if eff_k > padded:
            return None
        y_list.append((padded - eff_k) // <long long>st[i] + 1)
    cdef tuple y_shape = tuple(y_list)
    if b is not None and (len(b.shape) != 1 or <long long>b.shape[0] != k):
        return None
    if out is not None and out.shape != y_shape:
        return None
    # one device; out overlaps no input
    dev = x.data.device_id
    if w.data.device_id != dev or (b is not None and b.data.device_id != dev):
        return None
    if out is not None:
        if out.data.device_id != dev:
            return None
        if out.size and (params.overlaps(out, x) or params.overlaps(out, w)
                         or (b is not None and params.overlaps(out, b))):
            return None
    geom = tuple.__new__(_Geometry, (nsp, st, pd, dl, g, _ZEROS[nsp]))
    # layout (params.suggest_layout)
    cdef long long isz = x.itemsize
    cdef tuple xst = x.strides, wst = w.strides
    layout = _NCHW
    if code != _DOUBLE:
        if has_layout(xs, xst, isz, True) and not has_layout(xs, xst, isz, False):
            layout = _NHWC
        elif has_layout(ws, wst, isz, True) and not has_layout(ws, wst, isz, False):
            layout = _NHWC
    cdef bint cl = layout is _NHWC
    # batch chunks (split.plan_batch_split)
    cdef long long in_numel = x.size, size = 1
    for i in range(ndim):
        size *= <long long>y_list[i]
    if size == 0:
        chunks = []
    elif in_numel <= _INDEX_LIMIT and size <= _INDEX_LIMIT:
        chunks = [(0, n)]
    else:
        try:
            chunks = _plan_batch_split(n, in_numel, size, _FWD_WORKSIZE, _INDEX_LIMIT)
        except ValueError:
            return None
    # the plan (api._new_plan)
    positional = [("input", xs), ("weight", ws)]
    if b is not None:
        positional.append(("bias", b.shape))
    cdef CallPlan plan = CallPlan.__new__(CallPlan)
    plan.fn = "conv"
    plan.device = dev
    plan.layout = layout
    plan.geom = geom
    plan.shape = y_shape
    plan.pack = (not has_layout(xs, xst, isz, cl), not has_layout(ws, wst, isz, cl))
    plan.chunks = chunks
    plan.repro = ("conv", positional, dt, layout, _repro_kwargs(geom, opts))
    plan.names = ("input", "weight", "bias")
    plan.out_direct = out is not None and has_layout(y_shape, out.strides, isz, cl)
    plan.out_span = None if out is None else rel_span(out)
    plan.spans = (rel_span(x), rel_span(w), rel_span(b))
    plan.pad = False
    plan.extra = None
    return plan
