# cython: language_level=3
"""What a call signature resolves to, typed (public-API tier).

``api.py`` checks a call signature once (the shapes, strides, dtypes and
devices of its CuPy arrays, its scalar parameters, its flags) and memoizes
the outcome in this thread's memo (``cudnnconv.core.state``): a CallPlan,
holding the layout, the geometry, the output shape, which arrays need
packing, the batch chunks, the repro, and the byte spans used by the overlap
check.  Once the call has run, the plan is *bound*: it holds the engine's
choice on this thread's handle (an ``Executor``), the pointer alignments the
choice was made for, and the layout of the output it allocates.  A repeat
call is then, all in this module:

    flags -> signature -> plan -> check what can differ (device, alignment,
    out overlap) -> allocate the output -> bind the stream if it changed ->
    variant pack (kept for the last few pointer sets) -> execute -> return.

The signature is read in C (``cudnnconv.core.arrays``: each array's shape,
strides, dtype, device and pointer) and hashed to a 64-bit digest, the memo's
key; the memo's entry holds the scalars and flags it was made for and the
plan, which holds the arrays' metadata, so a hit is confirmed field for field
(a digest collision is a miss, never a wrong plan).  No problem key is built,
no choice cache is consulted, and no Python frame runs but the public
function's own.  The problem key, the choice cache, the auto engine's
fallback, the tuning file and explain run only on a miss, in ``api.py``'s
full path, which holds every check and its message and binds the plan when
it is done.  A plan is bound only where the typed path can run the whole
call: one batch chunk, packed arrays, no 'same' end padding, no bias or crop,
``out`` absent or written directly, an engine with an executor (the graph
engine; the legacy engine's calls keep the full path).

A bound plan is also the public plan object (``cudnnconv.plan``): called
with arrays only, it checks that they match its signature and runs.

``conv_plan`` is the first pass of ``conv()`` for the common case (CuPy
arrays, int or tuple parameters, numeric padding).  It never raises a
validation error of its own: anything that is not the common case, and
anything invalid, returns None, and the call takes ``api.py``'s full path.
A property test (tests/test_callplan_property.py) checks that the two agree
on every input.
"""
from cpython.ref cimport PyObject
from cpython.dict cimport PyDict_GetItem
from cpython.tuple cimport PyTuple_Check, PyTuple_GET_SIZE
from libc.stdint cimport int64_t, uint64_t

from cudnnconv.core.state cimport ThreadState, get_state, generation
from cudnnconv.core.executor cimport (
    Executor, alignment, trace, trace_reset, TRACE_ENTRY, TRACE_SIGNATURE, TRACE_OUTPUT, TRACE_RETURN)
from cudnnconv.core.arrays cimport (
    MAX_DIMS,
    ArrayMeta, Layout, read_meta, same_meta, mix, mix_meta, layout_of, new_array, current_device, current_stream,
    array_type)

import weakref

import numpy

from cudnnconv import params, split
from cudnnconv import options as _options
from cudnnconv.core import arrays as _arrays
from cudnnconv.core import build

cdef object _weakref = weakref.ref
cdef object _NP_INTEGER = numpy.integer
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
cdef Py_ssize_t _MEMO_MAX = MEMO_MAX
cdef dict _RESOLVED = {}                   # (flags, thread defaults) -> Options

cdef inline object _nd():
    return array_type()


def _use_array_type(cls):
    """Treat ``cls`` as the array type (tests without a GPU: a fake array
    with shape, strides, dtype, itemsize, size and data.ptr/device_id); None:
    cupy.ndarray again."""
    _arrays.use_array_type(cls)


# ---------------------------------------------------------------------------
# The per-function description, the plan, a miss
# ---------------------------------------------------------------------------

cdef class FnSpec:
    """What differs between the public functions, for the shared driver:
    the name, the engine op, which forward role (0 x, 1 w, 2 y; -1 none)
    each array argument takes and which the result takes, whether the typed
    path may run it, and ``redo(arrays, scalars, out, opts)``, the public
    function called with these values (a plan whose fast checks fail)."""

    def __init__(self, str name, str op, tuple roles, int out_role, bint bindable, redo):
        cdef int i
        if len(roles) > MAX_ARRAYS:
            raise ValueError("at most %d array arguments" % MAX_ARRAYS)
        self.name, self.op, self.out_role, self.bindable, self.redo = name, op, out_role, bindable, redo
        self.name_hash = hash(name)
        self.n_arrays = len(roles)
        for i in range(MAX_ARRAYS):
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


cdef class CallPlan:
    """What one validated call signature resolves to (see the module doc).
    Immutable from Python; calling it runs its call on new arrays."""
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
        cdef Sig s
        trace_reset()
        trace(TRACE_ENTRY)
        if self.metas is not None and len(arrays) < len(self.metas):
            arrays = arrays + (None,) * (len(self.metas) - len(arrays))     # trailing optional arrays left out
        if self.executor is not None and self.gen != generation():
            self.executor = None            # stale: let its cuDNN plan and workspace go
        if (self.executor is not None and self.owner() is st and st.explain is None
                and _read_sig(arrays, out, &s) and self._matches(&s)):
            trace(TRACE_SIGNATURE)
            r = _run_bound(self, &s, out, st)
            if r is not None:
                return r
        if self.spec is None:
            raise TypeError("this CallPlan was not made by a call; use cudnnconv.plan()")
        return self.spec.redo(arrays, self.scalars, out, self.opts)

    def accepts(self, *arrays, out=None):
        """Whether a call with these arrays runs on the typed path: the plan
        is bound, this is its thread and no explain() runs here, and the
        arrays (and ``out``) have its signature's shapes, strides, dtypes
        (the same dtype objects) and devices and the pointer alignments it
        was bound for.  An ``out`` that overlaps an input raises ValueError,
        as the call would.  (The current device and the cache generation are
        checked when the plan runs.)"""
        cdef Sig s
        cdef int i, role
        cdef FnSpec spec = self.spec
        cdef ThreadState st = get_state()
        if self.metas is not None and len(arrays) < len(self.metas):
            arrays = arrays + (None,) * (len(self.metas) - len(arrays))
        if self.executor is None or self.owner() is not st or st.explain is not None:
            return False
        if not _read_sig(arrays, out, &s) or not self._matches(&s):
            return False
        for i in range(spec.n_arrays):
            role = spec.roles[i]
            if role >= 0 and alignment(s.a[i].ptr) != self.align[role]:
                return False
        return not s.has_out or alignment(s.out.ptr) == self.align[spec.out_role]

    cdef bint _matches(self, Sig* s) except -1:
        """``s`` is this plan's signature; its out (if any) is checked for
        overlap.  A plan made without out= takes an out of exactly the layout
        it would allocate."""
        if not self.has_raw or not _same_arrays(&self.raw, s):
            return False
        if not s.has_out:
            return not self.raw.has_out
        if self.raw.has_out:
            if not same_meta(&self.raw.out, &s.out):
                return False
            _check_overlap(self, s, self.has_out_span, self.out_lo, self.out_hi)
            return True
        if self.alloc_meta.ndim == 0 or not same_meta(&self.alloc_meta, &s.out):
            return False
        _check_overlap(self, s, self.alloc_span, self.alloc_lo, self.alloc_hi)
        return True

    def describe(self):
        if self.executor is None:
            return "CallPlan(%s, unbound)" % self.fn
        return "CallPlan(%s, %s %s, workspace %d)" % (self.fn, self.executor.engine,
                                                       self.executor.choice.describe(), self.workspace)

    def __repr__(self):
        return "<%s>" % self.describe()


def new_plan(fn, device, layout, geom, shape, pack, chunks, repro, names, out_direct, out_span, spans, pad,
             extra=None):
    """A CallPlan from the full path's first pass (unbound, not memoized)."""
    cdef CallPlan plan = CallPlan.__new__(CallPlan)
    plan.fn, plan.device, plan.layout, plan.geom, plan.shape = fn, device, layout, geom, shape
    plan.pack, plan.chunks, plan.repro, plan.names = pack, chunks, repro, names
    plan.out_direct, plan.out_span, plan.spans, plan.pad, plan.extra = out_direct, out_span, spans, pad, extra
    return plan


# ---------------------------------------------------------------------------
# The signature: read in C, hashed, confirmed field for field
# ---------------------------------------------------------------------------

cdef int _read_sig(tuple arrays, object out, Sig* s) except -1:
    """1 with ``s`` filled where every argument is an array or None, else 0
    (then the call is not memoized: the full path checks it)."""
    cdef Py_ssize_t i, n = len(arrays)
    if n > MAX_ARRAYS:
        return 0
    s.n = <int>n
    for i in range(n):
        a = arrays[i]
        if a is None:
            s.has[i] = False
        elif read_meta(a, &s.a[i]):
            s.has[i] = True
        else:
            return 0
    if out is None:
        s.has_out = False
    elif read_meta(out, &s.out):
        s.has_out = True
    else:
        return 0
    return 1


cdef int _sig_from_metas(tuple metas, object om, Sig* s) except -1:
    """``s`` from a signature's (shape, strides, dtype, device) tuples: 1, or
    0 where they do not fit (more arrays or dims than a Sig holds)."""
    cdef Py_ssize_t i, n = len(metas)
    if n > MAX_ARRAYS:
        return 0
    s.n = <int>n
    for i in range(n):
        s.has[i] = metas[i] is not None
        if s.has[i] and not _meta_from_tuple(metas[i], &s.a[i]):
            return 0
    s.has_out = om is not None
    if s.has_out and not _meta_from_tuple(om, &s.out):
        return 0
    return 1


cdef int _meta_from_tuple(tuple m, ArrayMeta* a) except -1:
    cdef tuple shape = m[0], strides = m[1]
    cdef Py_ssize_t i, n = len(shape)
    if n > 8 or len(strides) != n:
        return 0
    a.ndim = <int>n
    for i in range(n):
        a.shape[i] = shape[i]
        a.strides[i] = strides[i]
    a.dtype = <PyObject*>m[2]          # the signature tuple (held by the plan) keeps it
    a.device = m[3]
    a.ptr = 0
    return 1


cdef bint _same_arrays(const Sig* a, const Sig* b) noexcept nogil:
    """The same input arrays (present, shape, strides, dtype, device); out
    is the caller's to compare."""
    cdef int i
    if a.n != b.n:
        return False
    for i in range(a.n):
        if a.has[i] != b.has[i] or (a.has[i] and not same_meta(&a.a[i], &b.a[i])):
            return False
    return True


cdef uint64_t _digest(const Sig* s, Py_hash_t fn, Py_hash_t scalars, Py_hash_t opts) noexcept nogil:
    """The memo key of a signature: its arrays' layouts (dtype by identity),
    the function, and the hashes of its scalars and flags."""
    cdef int i
    cdef uint64_t h = mix(<uint64_t>fn, <uint64_t>s.n)
    for i in range(s.n):
        h = mix_meta(h, &s.a[i]) if s.has[i] else mix(h, 0)
    h = mix_meta(h, &s.out) if s.has_out else mix(h, 0)
    h = mix(h, <uint64_t>scalars)
    return mix(h, <uint64_t>opts)


cdef object _last_opts = None
cdef Py_hash_t _last_opts_hash = 0


cdef Py_hash_t _opts_hash(object opts) except? -1:
    """hash(opts), kept for the last Options seen (a call's flags are nearly
    always the same object: the defaults, or a flags() block's)."""
    global _last_opts, _last_opts_hash
    if opts is not _last_opts:
        _last_opts_hash = hash(opts)
        _last_opts = opts
    return _last_opts_hash


cdef inline bint _entry_is(tuple e, const Sig* s, object scalars, object opts) except -1:
    cdef CallPlan p = <CallPlan>e[2]
    return ((e[1] is opts or e[1] == opts) and (e[0] is scalars or e[0] == scalars)
            and p.has_raw and _same_arrays(&p.raw, s) and p.raw.has_out == s.has_out
            and (not s.has_out or same_meta(&p.raw.out, &s.out)))


cdef CallPlan _find(dict memo, FnSpec spec, const Sig* s, object scalars, object opts):
    """The memoized plan of this signature, or None.  A call whose int
    parameters are written as tuples elsewhere (or the other way round)
    finds that plan too (``_canonical``), and it is remembered under this
    signature as well."""
    cdef Py_hash_t ho = _opts_hash(opts)
    key = _digest(s, spec.name_hash, hash(scalars), ho)
    e = memo.get(key)
    if e is not None and _entry_is(<tuple>e, s, scalars, opts):
        return <CallPlan>(<tuple>e)[2]
    if s.n == 0 or not s.has[0]:
        return None
    canon = _canonical(spec.name, scalars, s.a[0].ndim - 2)
    if canon is None:
        return None
    e = memo.get(_digest(s, spec.name_hash, hash(canon), ho))
    if e is None or not _entry_is(<tuple>e, s, canon, opts):
        return None
    if len(memo) < _MEMO_MAX:
        memo[key] = (scalars, opts, (<tuple>e)[2])
    return <CallPlan>(<tuple>e)[2]


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


cdef object _sig_tuple(str fn, tuple arrays, out, scalars, opts):
    """The signature as a miss reports it: (function, array metas, out's
    meta, scalars, flags), each meta (shape, strides, dtype, device)."""
    cdef object nd = _nd()
    return (fn, tuple([_meta(a, nd) for a in arrays]), _meta(out, nd), scalars, opts)


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


def lookup(dict memo, str fn, tuple arrays, out, scalars, opts):
    """(signature, plan): the call's signature (None when its arrays are not
    all CuPy arrays or a parameter is not memoizable, then nothing is
    memoized) and the memoized plan (None on a miss).  On a hit, ``out`` is
    checked against the inputs (``check_overlap``)."""
    cdef Sig s
    cdef FnSpec spec = FnSpec(fn, "", (), -1, False, None)
    scal = _sig_scalars(scalars)
    if scal is None or not _read_sig(arrays, out, &s):
        return None, None
    plan = _find(memo, spec, &s, scal, opts)
    if plan is not None and s.has_out:
        _check_overlap(plan, &s, (<CallPlan>plan).has_out_span, (<CallPlan>plan).out_lo, (<CallPlan>plan).out_hi)
    return _sig_tuple(fn, arrays, out, scal, opts), plan


def call(FnSpec spec, tuple arrays, out, scalars, tuple flags):
    """The typed entry of every public function: the result of a bound
    plan's run, or a ``Miss`` for the full path (see the module doc)."""
    cdef ThreadState st = get_state()
    cdef Sig s
    cdef CallPlan p = None
    trace_reset()
    trace(TRACE_ENTRY)
    opts = _resolve(flags, st)
    scal = _sig_scalars(scalars)
    cdef bint memo_ok = scal is not None and _read_sig(arrays, out, &s)
    if memo_ok:
        p = _find(st.memo, spec, &s, scal, opts)
    trace(TRACE_SIGNATURE)
    st.last_plan = p
    if p is not None:
        if s.has_out:
            _check_overlap(p, &s, p.has_out_span, p.out_lo, p.out_hi)
        if p.executor is not None and p.gen != generation():
            p.executor = None               # stale: let its cuDNN plan and workspace go
        if p.executor is not None and st.explain is None:
            r = _run_bound(p, &s, out, st)
            if r is not None:
                return r
    cdef Miss m = Miss.__new__(Miss)
    m.sig = _sig_tuple(spec.name, arrays, out, scal, opts) if memo_ok else None
    m.plan, m.opts, m.scalars, m.gen = p, opts, scalars, generation()
    return m


cdef int read_strided(object t, ArrayMeta* m, dict dtypes) except -1:
    """``t``, a strided tensor read through its own accessors (``data_ptr()``,
    ``shape``, ``stride()`` in elements, ``dtype``, ``get_device()``, as torch
    tensors have them), as the signature of a CuPy array over the same memory
    reads (``cudnnconv.core.arrays.view`` makes that array): 1, or 0 where its
    dtype is not in ``dtypes`` (dtype -> (numpy dtype, itemsize)) or its shape
    does not fit."""
    cdef PyObject* e = PyDict_GetItem(dtypes, t.dtype)
    cdef Py_ssize_t i, n, itemsize
    if e == NULL:
        return 0
    shape = t.shape
    strides = t.stride()
    if not (PyTuple_Check(shape) and PyTuple_Check(strides)):
        return 0
    n = PyTuple_GET_SIZE(shape)
    if n > MAX_DIMS or PyTuple_GET_SIZE(strides) != n:
        return 0
    entry = <tuple><object>e
    itemsize = entry[1]
    for i in range(n):
        m.shape[i] = <Py_ssize_t>(<tuple>shape)[i]
        m.strides[i] = <Py_ssize_t>(<tuple>strides)[i] * itemsize
        if m.strides[i] < 0:
            return 0
    m.ndim = <int>n
    m.dtype = <PyObject*>entry[0]        # ``dtypes`` holds it
    m.ptr = <size_t>t.data_ptr()
    m.device = t.get_device()
    return 1


cdef object meta_tuple(const ArrayMeta* m):
    return (tuple([m.shape[i] for i in range(m.ndim)]), tuple([m.strides[i] for i in range(m.ndim)]),
            <object>m.dtype, m.ptr, m.device)


def strided_signature(t, dict dtypes):
    """What ``run_strided`` reads of the strided tensor ``t``: (shape, byte strides, dtype, pointer,
    device), or None where it declines it (tests hold it equal to ``array_signature`` of the array
    ``cudnnconv.core.arrays.view`` makes over the same memory)."""
    cdef ArrayMeta m
    return meta_tuple(&m) if read_strided(t, &m, dtypes) else None


def array_signature(a):
    """What a call's signature reads of the array ``a``, as ``strided_signature`` gives it; None
    for anything but an array of the array type."""
    cdef ArrayMeta m
    return meta_tuple(&m) if read_meta(a, &m) else None


def run_strided(FnSpec spec, tuple tensors, out, scalars, tuple flags, dict dtypes, size_t stream):
    """The typed path for strided tensors that are not CuPy arrays (torch's):
    True where this thread's bound plan for the call's signature ran it on
    ``stream``, writing ``out``; False where the caller must make CuPy views
    and take the public function, which checks, plans, binds and raises as
    ever.  No array is made: each tensor is read as its view's signature
    would read (``read_strided``), so a call finds the plan that the same
    call through views bound.  ``tensors``, ``scalars`` and ``flags`` are
    the public function's (the backward functions' shape argument a tuple);
    ``out`` is required.  False also where ``stream`` is not CuPy's current
    stream or explain() is active, so that everything a plain call does
    there (the workspace per stream, the search handler) stays as it is."""
    cdef Sig s
    cdef Py_ssize_t i, n = len(tensors)
    if out is None or n > MAX_ARRAYS:
        return False
    trace_reset()
    trace(TRACE_ENTRY)
    s.n = <int>n
    for i in range(n):
        t = tensors[i]
        if t is None:
            s.has[i] = False
        elif read_strided(t, &s.a[i], dtypes):
            s.has[i] = True
        else:
            return False
    if not read_strided(out, &s.out, dtypes):
        return False
    s.has_out = True
    return run_strided_sig(spec, &s, out, scalars, flags, stream) == 1


cdef int run_strided_sig(FnSpec spec, Sig* s, object out, object scalars, tuple flags, size_t stream) except -1:
    """(The caller stamps the trace's entry, before it reads the tensors.)"""
    cdef ThreadState st
    cdef CallPlan p
    if current_stream() != stream:
        return 0
    st = get_state()
    if st.explain is not None:
        return 0
    opts = _resolve(flags, st)
    scal = _sig_scalars(scalars)
    if scal is None:
        return 0
    p = _find(st.memo, spec, s, scal, opts)
    trace(TRACE_SIGNATURE)
    if p is None or p.executor is None or p.gen != generation():
        return 0
    _check_overlap(p, s, p.has_out_span, p.out_lo, p.out_hi)
    st.last_plan = p
    return 1 if _run_bound(p, s, out, st) is not None else 0


cdef object _run_bound(CallPlan plan, Sig* s, out, ThreadState st):
    """Run a bound plan; None where something differs from what it was bound
    for (device, alignment) or its executor failed: then the full path runs
    the call (and raises any error with its context)."""
    cdef void* ptrs[3]
    cdef size_t yptr
    cdef int i, role
    cdef FnSpec spec = plan.spec
    if current_device() != plan.device_id:
        return None
    if out is None:
        y = new_array(&plan.out_layout, plan.dtype, plan.nbytes_obj, plan.shape, plan.out_strides, &yptr)
    else:
        y = out
        yptr = s.out.ptr
    for i in range(spec.n_arrays):
        role = spec.roles[i]
        if role >= 0:
            ptrs[role] = <void*>s.a[i].ptr
    ptrs[spec.out_role] = <void*>yptr
    for i in range(3):
        if alignment(<size_t>ptrs[i]) != plan.align[i]:
            return None
    trace(TRACE_OUTPUT)
    try:
        plan.executor.execute(current_stream(), ptrs)
    except Exception:
        plan.executor = None             # the full path runs it, and reports what failed
        return None
    st.last = plan
    trace(TRACE_RETURN)
    return y


# ---------------------------------------------------------------------------
# Memoizing and binding (the full path, once per signature)
# ---------------------------------------------------------------------------

def memoized(dict memo=None):
    """The plans in ``memo`` (default: this thread's), each once, in the
    order they were memoized."""
    if memo is None:
        memo = get_state().memo
    seen = {}
    for e in memo.values():
        seen.setdefault(id(e[2]), e[2])
    return list(seen.values())


def remember(dict memo, sig, CallPlan plan):
    """Memoize ``plan`` under ``sig``, and under its canonical form (int
    parameters as tuples) where that differs, so that the same call written
    either way finds it.  The plan takes the signature's array metadata
    (what a hit is confirmed against).  The memo starts over when it is
    full."""
    cdef Sig s
    if sig is None or not _sig_from_metas(sig[1], sig[2], &s):
        return
    plan.raw = s
    plan.has_raw = True
    plan.metas, plan.om = sig[1], sig[2]       # they hold the dtypes plan.raw points to
    _take_spans(plan)
    fn, scalars, opts = sig[0], sig[3], sig[4]
    cdef Py_hash_t hf = hash(fn), ho = _opts_hash(opts)
    if len(memo) >= _MEMO_MAX - 1:
        memo.clear()
    memo[_digest(&s, hf, hash(scalars), ho)] = (scalars, opts, plan)
    if s.n and s.has[0]:
        canon = _canonical(fn, scalars, s.a[0].ndim - 2)
        if canon is not None:
            memo[_digest(&s, hf, hash(canon), ho)] = (canon, opts, plan)


cdef int _take_spans(CallPlan plan) except -1:
    """The plan's spans (Python tuples from its first pass) as C fields."""
    cdef Py_ssize_t i
    spans = plan.spans if plan.spans is not None else ()
    plan.n_spans = <int>min(len(spans), MAX_ARRAYS)
    for i in range(plan.n_spans):
        plan.has_span[i] = spans[i] is not None
        if plan.has_span[i]:
            plan.span_lo[i], plan.span_hi[i] = spans[i]
    plan.has_out_span = plan.out_span is not None
    if plan.has_out_span:
        plan.out_lo, plan.out_hi = plan.out_span
    return 0


def remember_plan(FnSpec spec, Miss miss, CallPlan plan):
    """The full path's plan for ``miss``: memoized in this thread's memo with
    its signature's parts (what a call of the plan object checks)."""
    cdef ThreadState st = get_state()
    st.last_plan = plan if miss.sig is not None else None
    if miss.sig is None:
        return
    plan.spec = spec
    plan.scalars = miss.scalars
    plan.opts = miss.opts
    plan.owner = _weakref(st)
    remember(st.memo, miss.sig, plan)


def bind(CallPlan plan, Executor executor, x, w, y, Miss miss):
    """Bind ``plan`` to the executor of the choice that just ran on x, w, y
    (the forward roles), where the typed path can run the whole call (see
    the module doc), and never while a search handler (explain) is set.  The
    generation is the one from before the run: a choice dropped or replaced
    while it ran is never bound."""
    cdef FnSpec spec = plan.spec
    cdef Py_ssize_t i
    cdef long long n = 1
    if executor is None or spec is None or not spec.bindable or miss.sig is None or plan.owner is None:
        return False
    if not plan.has_raw or get_state().explain is not None:
        return False      # explain()/last_choice()/warm-up chose outside the cache: bind on a plain call
    if len(plan.chunks) != 1 or any(plan.pack) or plan.pad or plan.extra is not None:
        return False
    if getattr(plan.chunks, "tiles", None) is not None:
        return False                       # one sample in spatial tiles (tiled_calls.Tiled): many runs
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
    plan.nbytes_obj = n * ys.itemsize
    plan.device_id = plan.device
    _take_output_layout(plan, ys)
    for i in range(3):
        plan.align[i] = al[i]
    plan.executor = executor
    plan.gen = miss.gen
    return True


cdef int _take_output_layout(CallPlan plan, ys) except -1:
    """The layout of the output the plan allocates, from ``ys`` (the output
    the full path made for this call) where it has exactly that layout; else
    none (then the plan allocates through cupy.ndarray's constructor), and
    the same as a signature's meta, for an out= given to the plan object."""
    cdef ArrayMeta* m = &plan.alloc_meta
    cdef Py_ssize_t i, nd = len(plan.shape)
    plan.out_layout.ndim = 0
    m.ndim = 0
    if nd > 8:
        return 0
    if ys.shape == tuple(plan.shape) and ys.strides == plan.out_strides:
        layout_of(ys, &plan.out_layout)
    m.ndim = <int>nd
    for i in range(nd):
        m.shape[i] = plan.shape[i]
        m.strides[i] = plan.out_strides[i]
    m.dtype = <PyObject*>plan.dtype
    m.device = plan.device
    m.ptr = 0
    span = _rel_span(tuple(plan.shape), plan.out_strides, ys.itemsize)
    plan.alloc_span = span is not None
    if plan.alloc_span:
        plan.alloc_lo, plan.alloc_hi = span
    return 0


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


cdef int _check_overlap(CallPlan plan, const Sig* s, bint has_span, long long lo, long long hi) except -1:
    """``out`` (``s.out``, spanning [lo, hi) from its pointer) against each
    input, by address, with the plan's spans."""
    cdef long long olo, ohi, p
    cdef int i
    if not has_span or not s.has_out:
        return 0
    olo = <long long>s.out.ptr + lo
    ohi = <long long>s.out.ptr + hi
    for i in range(min(plan.n_spans, s.n)):
        if plan.has_span[i] and s.has[i]:
            p = <long long>s.a[i].ptr
            if p + plan.span_lo[i] < ohi and olo < p + plan.span_hi[i]:
                raise ValueError("out overlaps %s: the result would overwrite its own input" % plan.names[i])
    return 0


def check_overlap(CallPlan plan, tuple arrays, out):
    """``out`` against each input, by address, with the plan's spans: the
    typed check (``_check_overlap``) on pointers read by attribute, so any
    object with ``data.ptr`` will do."""
    cdef Sig s
    cdef Py_ssize_t i
    if out is None or plan.out_span is None:
        return
    _take_spans(plan)
    s.n = <int>min(len(arrays), MAX_ARRAYS)
    for i in range(s.n):
        s.has[i] = arrays[i] is not None
        if s.has[i]:
            s.a[i].ptr = <size_t>arrays[i].data.ptr
    s.has_out = True
    s.out.ptr = <size_t>out.data.ptr
    _check_overlap(plan, &s, plan.has_out_span, plan.out_lo, plan.out_hi)


# ---------------------------------------------------------------------------
# Typed helpers of a first pass
# ---------------------------------------------------------------------------

cpdef object rel_span(a):
    """(lo, hi): the bytes an array touches, relative to its data pointer
    (None for None or an empty array)."""
    if a is None:
        return None
    return _rel_span(a.shape, a.strides, a.itemsize)


cdef object _rel_span(tuple shape, tuple strides, long long itemsize):
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
    return (lo, hi + itemsize)


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
    if <long long>w.size > _INDEX_LIMIT:
        return None                  # a weight over the limit: the full path names it (tiled_calls.plan)
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
