# cython: language_level=3
"""What a call signature resolves to, typed (public-API tier).

``api.py`` checks a call signature once (the shapes, strides, dtypes and
devices of its CuPy arrays, its scalar parameters, its flags) and memoizes
the outcome in this thread's memo (``cudnnconv.core.state``): a CallPlan,
holding the layout, the geometry, the output shape, which arrays need
packing, the batch chunks, the repro, and the byte spans used by the overlap
check.  Once the call has run, the plan is *bound*: it holds the engine's
choice on this thread's handle (an ``Executor``), the pointer alignments the
choice was made for, and how to allocate the output.  A repeat call is then,
all in this module:

    flags -> signature -> plan -> check what can differ (device, alignment,
    out overlap) -> allocate the output -> bind the stream if it changed ->
    variant pack (kept for the last few pointer sets) -> execute -> return.

No problem key is built, no choice cache is consulted, and no Python frame
runs but the public function's own.  The problem key, the choice cache, the
auto engine's fallback, the tuning file and explain run only on a miss, in
``api.py``'s full path, which holds every check and its message and binds
the plan when it is done.  A plan is bound only where the typed path can run
the whole call: one batch chunk, packed arrays, no 'same' end padding, no
bias or crop, ``out`` absent or written directly, an engine with an
executor (the graph engine; the legacy engine's calls keep the full path).

A bound plan is also the public plan object (``cudnnconv.plan``): called
with arrays only, it checks that they match its signature and runs.

``conv_plan`` is the first pass of ``conv()`` for the common case (CuPy
arrays, int or tuple parameters, numeric padding).  It never raises a
validation error of its own: anything that is not the common case, and
anything invalid, returns None, and the call takes ``api.py``'s full path.
A property test (tests/test_callplan_property.py) checks that the two agree
on every input.
"""
from libc.stdint cimport int64_t

from cudnnconv.core.state cimport ThreadState, get_state, generation
from cudnnconv.core.executor cimport (
    Executor, alignment, trace, trace_reset, TRACE_ENTRY, TRACE_SIGNATURE, TRACE_OUTPUT, TRACE_RETURN)

import weakref

import numpy

from cudnnconv import params, split
from cudnnconv import options as _options
from cudnnconv.core import build

cdef object _NDARRAY = None
cdef object _weakref = weakref.ref
cdef object _NP_INTEGER = numpy.integer
cdef object _get_device = None
cdef object _get_stream = None
cdef object _alloc = None
cdef long long _INDEX_LIMIT = build.INDEX_LIMIT
cdef long long _FWD_WORKSIZE = split.FORWARD_MAX_WORKSIZE
cdef object _Geometry = params.Geometry
cdef object _cudnn_dtype = params.cudnn_dtype
cdef object _plan_batch_split = split.plan_batch_split
cdef object _repro_kwargs = params.repro_kwargs
cdef object _resolve_flags = _options.resolve
cdef object _DEFAULT_OPTIONS = _options._DEFAULT        # the built-in defaults (no flags() block)
cdef str _NCHW = params.NCHW
cdef str _NHWC = params.CHANNELS_LAST
cdef int _DOUBLE = params._CUDNN_DTYPE["float64"]
cdef tuple _ZEROS = ((), (0,), (0, 0), (0, 0, 0))
cdef long long _PARAM_MAX = 2147483647     # larger spatial parameters take the full path
MEMO_MAX = 2048          # signatures a thread memoizes before it starts over
cdef dict _RESOLVED = {}                   # (flags, thread defaults) -> Options


cdef inline object _nd():
    global _NDARRAY, _get_device, _get_stream, _alloc
    if _NDARRAY is None:
        import cupy
        _get_device = cupy.cuda.runtime.getDevice
        _get_stream = cupy.cuda.get_current_stream
        _alloc = cupy.cuda.alloc
        _NDARRAY = cupy.ndarray
    return _NDARRAY


def _use_array_type(cls):
    """Treat ``cls`` as the array type (tests without a GPU: a fake array
    with shape, strides, dtype, itemsize, size and data.ptr/device_id)."""
    global _NDARRAY
    _NDARRAY = cls


# ---------------------------------------------------------------------------
# The per-function description, the plan, a miss
# ---------------------------------------------------------------------------

cdef class FnSpec:
    """What differs between the public functions, for the shared driver:
    the name, the engine op, which forward role (0 x, 1 w, 2 y; -1 none)
    each array argument takes and which the result takes, whether the typed
    path may run it, and ``redo(arrays, scalars, out, opts)``, the public
    function called with these values (a plan whose fast checks fail)."""
    cdef readonly str name, op
    cdef readonly int n_arrays, out_role
    cdef readonly bint bindable
    cdef readonly object redo
    cdef int roles[4]

    def __init__(self, str name, str op, tuple roles, int out_role, bint bindable, redo):
        cdef int i
        if len(roles) > 4:
            raise ValueError("at most 4 array arguments")
        self.name, self.op, self.out_role, self.bindable, self.redo = name, op, out_role, bindable, redo
        self.n_arrays = len(roles)
        for i in range(4):
            self.roles[i] = roles[i] if i < self.n_arrays else -1

    @property
    def roles(self):
        return tuple(self.roles[i] for i in range(self.n_arrays))

    def __repr__(self):
        return "FnSpec(%s)" % self.name


cdef class Miss:
    """What the typed entry hands the full path on a miss: the signature
    (None when the call cannot be memoized), the memoized plan or None, the
    resolved flags, the call's scalar parameters as given, and the plan
    generation before the call ran."""
    cdef readonly object sig, plan, opts, scalars
    cdef readonly unsigned long long gen


cdef class CallPlan:
    """What one validated call signature resolves to (see the module doc).
    Immutable from Python; calling it runs its call on new arrays."""
    cdef readonly object fn, device, layout, geom, shape, pack, chunks, repro, out_direct
    cdef readonly object spans, out_span, names, pad, extra
    # memoized with: its signature's parts and resolved flags
    cdef readonly FnSpec spec
    cdef readonly tuple metas
    cdef readonly object om, scalars, opts
    cdef object owner               # a weak reference to the ThreadState whose memo holds it
    # bound: the executor, the generation it was bound in, the alignments
    # (x, w, y roles) it was chosen for, and how to allocate the output
    cdef readonly Executor executor
    cdef unsigned long long gen
    cdef int64_t align[3]
    cdef readonly object dtype
    cdef readonly tuple out_strides
    cdef long long nbytes

    @property
    def bound(self):
        """Whether a call runs on the typed path (see the module doc)."""
        return self.executor is not None and self.gen == generation()

    @property
    def engine(self):
        return None if self.executor is None else self.executor.engine

    @property
    def choice(self):
        """The bound choice as last_call() reports it (a dict), or None."""
        return None if self.executor is None else self.executor.choice.as_dict()

    @property
    def workspace(self):
        """Bytes of workspace the bound choice runs with (0 when unbound)."""
        return 0 if self.executor is None else int(self.executor.choice.workspace)

    def __call__(self, *arrays, out=None):
        """Run this plan's call on ``arrays`` (the function's positional
        arrays, e.g. input, weight[, bias] for conv; trailing optional
        arrays left out are None).  Arrays that match the
        plan's signature run on the typed path; anything else goes through
        the public function, with every check."""
        cdef ThreadState st = get_state()
        trace_reset()
        trace(TRACE_ENTRY)
        if self.metas is not None and len(arrays) < len(self.metas):
            arrays = arrays + (None,) * (len(self.metas) - len(arrays))     # trailing optional arrays left out
        if self.executor is not None and self.gen != generation():
            self.executor = None            # stale: let its cuDNN plan and workspace go
        if (self.executor is not None and self.owner() is st
                and st.explain is None and self._matches(arrays, out)):
            trace(TRACE_SIGNATURE)
            r = _run_bound(self, arrays, out, st)
            if r is not None:
                return r
        if self.spec is None:
            raise TypeError("this CallPlan was not made by a call; use cudnnconv.plan()")
        return self.spec.redo(arrays, self.scalars, out, self.opts)

    cdef bint _matches(self, tuple arrays, out) except -1:
        cdef object nd = _nd()
        cdef Py_ssize_t i, n = len(arrays)
        if n != len(self.metas):
            return False
        for i in range(n):
            if not _meta_equal(arrays[i], self.metas[i], nd):
                return False
        if out is None:
            return self.om is None
        if self.om is not None:
            if not _meta_equal(out, self.om, nd):
                return False
            check_overlap(self, arrays, out)
            return True
        # A plan made without out= takes an out of exactly the layout it
        # would allocate (then the overlap check runs on its span).
        if (type(out) is not nd or out.shape != self.shape or out.dtype != self.dtype
                or out.strides != self.out_strides or out.data.device_id != self.device):
            return False
        _check_spans(self, arrays, out, rel_span(out))
        return True

    def describe(self):
        if self.executor is None:
            return "CallPlan(%s, unbound)" % self.fn
        return "CallPlan(%s, %s %s, workspace %d)" % (self.fn, self.executor.engine,
                                                       self.executor.choice.describe(), self.workspace)

    def __repr__(self):
        return "<%s>" % self.describe()


cdef inline bint _meta_equal(a, tuple m, object nd):
    if a is None or m is None:
        return a is None and m is None
    return (type(a) is nd and a.shape == m[0] and a.strides == m[1] and a.dtype == m[2]
            and a.data.device_id == m[3])


def new_plan(fn, device, layout, geom, shape, pack, chunks, repro, names, out_direct, out_span, spans, pad,
             extra=None):
    """A CallPlan from the full path's first pass (unbound, not memoized)."""
    cdef CallPlan plan = CallPlan.__new__(CallPlan)
    plan.fn, plan.device, plan.layout, plan.geom, plan.shape = fn, device, layout, geom, shape
    plan.pack, plan.chunks, plan.repro, plan.names = pack, chunks, repro, names
    plan.out_direct, plan.out_span, plan.spans, plan.pad, plan.extra = out_direct, out_span, spans, pad, extra
    return plan


# ---------------------------------------------------------------------------
# Every call: flags, the signature, the overlap check, the typed run
# ---------------------------------------------------------------------------

cdef object _meta(object a, object nd):
    """(shape, strides, dtype, device) of a CuPy array; None for None; a
    NotImplemented marker for anything else (no memo for that call)."""
    if a is None:
        return None
    if type(a) is not nd:
        return NotImplemented
    return (a.shape, a.strides, a.dtype, a.data.device_id)


cdef inline bint _none_or(object v, type t):
    return v is None or type(v) is t


cdef object _resolve(tuple flags, ThreadState st):
    """The call's Options: this thread's defaults where all flags are None,
    else options.resolve's answer, memoized per (flags, defaults) where
    every flag has its exact type (1 == True and hash alike, so a memo keyed
    on 1 would answer for True, or the other way round: anything else is
    resolved, and checked, every time)."""
    cdef object d = st.options
    if flags[0] is None and flags[1] is None and flags[2] is None and flags[3] is None and flags[4] is None:
        return _DEFAULT_OPTIONS if d is None else d
    if not (_none_or(flags[0], bool) and _none_or(flags[1], bool) and _none_or(flags[2], bool)
            and _none_or(flags[3], int) and _none_or(flags[4], str)):
        return _resolve_flags(*flags)
    key = (flags, d)
    try:
        opts = _RESOLVED.get(key)
    except TypeError:                      # an unhashable flag: resolve raises its error
        return _resolve_flags(*flags)
    if opts is None:
        opts = _resolve_flags(*flags)       # raises for a bad flag, and then nothing is memoized
        if len(_RESOLVED) >= 256:
            _RESOLVED.clear()
        _RESOLVED[key] = opts
    return opts


cdef bint _exact(object v):
    """An exact int, a tuple of exact ints, a str or None: the values whose
    equality is their identity as arguments (True == 1 == 1.0 and hash
    alike, but only 1 is a valid stride)."""
    if type(v) is int or type(v) is str or v is None:
        return True
    if type(v) is not tuple:
        return False
    for e in <tuple>v:
        if type(e) is not int:
            return False
    return True


cdef object _NOT_EXACT = object()


cdef object _as_exact(object v):
    """A NumPy integer (or a tuple with some) as the exact int(s) the full
    path reads it as; _NOT_EXACT for anything else that is not exact."""
    if isinstance(v, _NP_INTEGER):
        return int(v)
    if type(v) is not tuple:
        return _NOT_EXACT
    out = []
    for e in <tuple>v:
        if type(e) is int:
            out.append(e)
        elif isinstance(e, _NP_INTEGER):
            out.append(int(e))
        else:
            return _NOT_EXACT
    return tuple(out)


cdef object _sig_scalars(object scalars):
    """``scalars`` as a signature holds them: themselves where every value is
    exact (``_exact``); NumPy integers as the ints the full path reads them
    as; each float tagged by its type (fused's alpha, already a float: 1.0
    must not match an int parameter's 1); and None (no memo: the full path
    checks every call) for anything else, such as a bool, a list or a float
    where an int is due."""
    cdef bint changed = False
    cdef list out = None
    cdef Py_ssize_t i
    if type(scalars) is not tuple:
        return None
    for i in range(len(<tuple>scalars)):
        v = (<tuple>scalars)[i]
        if _exact(v):
            continue
        if type(v) is float:
            v = (float, v)
        else:
            v = _as_exact(v)
            if v is _NOT_EXACT:
                return None
        if out is None:
            out = list(<tuple>scalars)
        out[i] = v
    return scalars if out is None else tuple(out)


cdef tuple _lookup(dict memo, str fn, tuple arrays, out, scalars, opts):
    cdef object nd = _nd()
    cdef list metas = []
    scalars = _sig_scalars(scalars)
    if scalars is None:          # not memoizable (see _sig_scalars): the full path checks this call
        return None, None
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


def lookup(dict memo, str fn, tuple arrays, out, scalars, opts):
    """(signature, plan): the call's signature (None when its arrays are not
    all CuPy arrays or a parameter is unhashable, then nothing is memoized)
    and the memoized plan (None on a miss).  On a hit, ``out`` is checked
    against the inputs (``check_overlap``)."""
    return _lookup(memo, fn, arrays, out, scalars, opts)


def call(FnSpec spec, tuple arrays, out, scalars, tuple flags):
    """The typed entry of every public function: the result of a bound
    plan's run, or a ``Miss`` for the full path (see the module doc)."""
    cdef ThreadState st = get_state()
    trace_reset()
    trace(TRACE_ENTRY)
    opts = _resolve(flags, st)
    sig, plan = _lookup(st.memo, spec.name, arrays, out, scalars, opts)
    trace(TRACE_SIGNATURE)
    cdef CallPlan p
    if plan is not None:
        p = <CallPlan>plan
        st.last_plan = p
        if p.executor is not None and p.gen != generation():
            p.executor = None               # stale: let its cuDNN plan and workspace go
        if p.executor is not None and st.explain is None:
            r = _run_bound(p, arrays, out, st)
            if r is not None:
                return r
    else:
        st.last_plan = None
    cdef Miss m = Miss.__new__(Miss)
    m.sig, m.plan, m.opts, m.scalars, m.gen = sig, plan, opts, scalars, generation()
    return m


cdef object _run_bound(CallPlan plan, tuple arrays, out, ThreadState st):
    """Run a bound plan; None where something differs from what it was bound
    for (device, alignment) or its executor failed: then the full path runs
    the call (and raises any error with its context)."""
    cdef void* ptrs[3]
    cdef int i, role
    cdef FnSpec spec = plan.spec
    if _get_device() != plan.device:
        return None
    y = out if out is not None else _NDARRAY(plan.shape, plan.dtype, _alloc(plan.nbytes), plan.out_strides)
    for i in range(spec.n_arrays):
        role = spec.roles[i]
        if role >= 0:
            ptrs[role] = <void*><size_t>arrays[i].data.ptr
    ptrs[spec.out_role] = <void*><size_t>y.data.ptr
    for i in range(3):
        if alignment(<size_t>ptrs[i]) != plan.align[i]:
            return None
    trace(TRACE_OUTPUT)
    try:
        plan.executor.execute(<size_t>_get_stream().ptr, ptrs)
    except Exception:
        plan.executor = None             # the full path runs it, and reports what failed
        return None
    st.last = plan
    trace(TRACE_RETURN)
    return y


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


def remember_plan(FnSpec spec, Miss miss, CallPlan plan):
    """The full path's plan for ``miss``: memoized in this thread's memo with
    its signature's parts (what a call of the plan object checks)."""
    cdef ThreadState st = get_state()
    st.last_plan = plan if miss.sig is not None else None
    if miss.sig is None:
        return
    plan.spec = spec
    plan.metas = miss.sig[1]
    plan.om = miss.sig[2]
    plan.scalars = miss.scalars
    plan.opts = miss.opts
    plan.owner = _weakref(st)
    remember(st.memo, miss.sig, plan)


def bind(CallPlan plan, Executor executor, x, w, y, Miss miss):
    """Bind ``plan`` to the executor of the choice that just ran on x, w, y
    (the forward roles), where the typed path can run the whole call (see
    the module doc), and never while a search handler (explain) is set.  The generation is the one from before the run: a
    choice dropped or replaced while it ran is never bound."""
    cdef FnSpec spec = plan.spec
    cdef Py_ssize_t i
    cdef long long n = 1
    if executor is None or spec is None or not spec.bindable or miss.sig is None or plan.owner is None:
        return False
    if get_state().explain is not None:
        return False      # explain()/last_choice()/warm-up chose outside the cache: bind on a plain call
    if len(plan.chunks) != 1 or any(plan.pack) or plan.pad or plan.extra is not None:
        return False
    if plan.om is not None and not plan.out_direct:
        return False
    for i in range(spec.n_arrays):
        if spec.roles[i] < 0 and plan.metas[i] is not None:
            return False                   # a bias: added outside the kernel, by the full path
    cdef int64_t al[3]
    al[0] = alignment(<size_t>x.data.ptr)
    al[1] = alignment(<size_t>w.data.ptr)
    al[2] = alignment(<size_t>y.data.ptr)
    if plan.executor is not None and plan.gen == generation():
        # Bound and current: this call differed in alignment only.  Keep the
        # binding unless this call's pointers are at least as aligned in
        # every role (so an odd view does not evict the common case).
        for i in range(3):
            if al[i] < plan.align[i]:
                return False
    ys = (x, w, y)[spec.out_role]
    plan.dtype = ys.dtype
    plan.out_strides = params.layout_strides(tuple(plan.shape), plan.layout)
    plan.out_strides = tuple(s * ys.itemsize for s in plan.out_strides)
    for i in range(len(plan.shape)):
        n *= <long long>plan.shape[i]
    plan.nbytes = n * ys.itemsize
    for i in range(3):
        plan.align[i] = al[i]
    plan.executor = executor
    plan.gen = miss.gen
    return True


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
    _check_spans(plan, arrays, out, plan.out_span)


cdef int _check_spans(CallPlan plan, tuple arrays, out, out_span) except -1:
    if out_span is None:
        return 0
    cdef long long op = out.data.ptr
    cdef long long olo = op + out_span[0]
    cdef long long ohi = op + out_span[1]
    cdef long long p
    for a, span, name in zip(arrays, plan.spans, plan.names):
        if span is not None:
            p = a.data.ptr
            if p + <long long>span[0] < ohi and olo < p + <long long>span[1]:
                raise ValueError("out overlaps %s: the result would overwrite its own input" % name)
    return 0


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
    ints; None for anything else, a value below ``minimum``, or one above
    2**31 - 1 (the full path handles those: the typed arithmetic below must
    not overflow)."""
    cdef list out
    if type(value) is int:
        if value < minimum or value > _PARAM_MAX:
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
        if type(e) is not int or e < minimum or e > _PARAM_MAX:
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
    if type(groups) is not int or groups < 1 or groups > _PARAM_MAX:
        return None
    cdef long long g = groups
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
