# cython: language_level=3
"""cudnnconv.torch's typed forward: a repeated convolution call decided and run in C.

A converted model's forward at a small batch is host-bound, and each convolution module spent more
host time in its Python layer (tensor checks, autocast, the autograd route, argument resolution,
the output's layout, the flags) than cuDNN's execute costs.  ``forward`` does that work in C for
the calls a network makes over and over: the same input and weight layouts, plain int arguments.
The modules (``Conv1d/2d/3d``) and the functional forms call it first; it returns None for any call
it does not take, and the caller then takes the Python path (``functional._conv``), which checks
everything and raises every error.

It takes a call only where the Python path would run it without casting, padding or unbatching
anything: exact ``torch.Tensor`` (or ``Parameter``) arguments, dense (strided) and all CUDA, of a dtype cudnnconv runs,
the weight (and bias) in the input's dtype, a batched input, autocast off, no forward-mode AD, no
functorch transform or wrapper, plain int (or tuple of int) stride, padding and dilation (or a
padding string that needs no extra element), a bias of shape (out_channels,).  Then it does what
the Python path does, in the same order, with the same functions:

- the input and the weight are read once, in C, as the typed path for strided tensors reads them
  (``callplan.read_strided``: pointer, shape, strides, dtype, device);
- the resolved arguments and output shape come from ``torch_rules.forward_plan``, and the output's
  strides from ``bridge.out_strides``, once per (input and weight layouts as a signature holds them,
  arguments): an entry of this module's memo, found by a digest of what was read (the call plan
  memo's own mix, ``core.arrays.mix_meta``) and confirmed field for field (``same_meta``), so that
  a repeated call builds no key object;
- the output comes from ``new_empty_strided`` (torch's caching allocator), the flags are the
  thread's ``cudnnconv.flags()`` block or torch's cudnn flags (``bridge.call_flags``), the call
  runs on the typed path for strided tensors on torch's current stream, with the signature already
  read and the output's taken from the entry (``callplan.run_strided_sig``), or, where that
  declines, through ``functional._convolve``;
- where no gradient is to be recorded, a bias is added by torch; where one is, the C++ autograd
  node records the call (``conv_node.record``: the bias added, x and w saved, the node made the
  output's grad_fn), as the Python path's ``DIRECT`` route does; where that node is not built, the
  call goes to the autograd Function's C entry instead, with the entry's arguments.

The node's backward calls back into this module (``backward_capsule``): each gradient the engine
asks for is read and run like the forward, on the typed path for strided tensors where this
thread holds a bound plan for its signature, else through ``functional._convolve``.

The torch objects and the Python functions it calls are handed over once by ``configure`` (this
module imports nothing from torch, so it builds and imports without it).  tests/gpu/test_gpu_torch.py
holds its results and its choice of path equal to the Python path's, call for call, on random
arguments.
"""
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_New
from cpython.dict cimport PyDict_GetItem
from libc.stdint cimport uint64_t

from cudnnconv.core.arrays cimport ArrayMeta, MAX_DIMS, mix, mix_meta, same_meta
from cudnnconv.core.executor cimport trace, trace_reset, TRACE_ENTRY
from cudnnconv.core.state cimport ThreadState, get_state
from cudnnconv.callplan cimport FnSpec, Sig, meta_tuple, read_strided, run_strided_sig


cdef extern from "cudnnconv_torch_node.h":
    enum:
        CUDNNCONV_NODE_DIMS
    const char* CUDNNCONV_NODE_BACKWARD_CAPSULE
    ctypedef struct cudnnconv_node_tensor:
        PyObject* tensor
        PyObject* dtype
        size_t ptr
        int ndim
        int device
        long long shape[CUDNNCONV_NODE_DIMS]
        long long strides[CUDNNCONV_NODE_DIMS]

# the node's reads hold as many dims as a signature does (include/cudnnconv_torch_node.h)
assert CUDNNCONV_NODE_DIMS == MAX_DIMS, (CUDNNCONV_NODE_DIMS, MAX_DIMS)

cdef bint _ready = False
cdef object _Tensor = None                 # torch.Tensor
cdef object _Parameter = None              # torch.nn.Parameter
cdef object _strided = None                # torch.strided (a dense tensor's layout)
cdef dict _DTYPES = None                   # torch dtype -> (numpy dtype, itemsize), as read_strided reads them
cdef object _grad_enabled = None           # torch.is_grad_enabled
cdef object _forward_ad = None             # torch.autograd.forward_ad (its _current_level)
cdef object _transforms_active = None      # functorch: a transform is active
cdef object _wrapped = None                # functorch: the tensor is a wrapper (None: no such check)
cdef object _autocast_on = None            # whether any autocast is on (then the Python path casts)
cdef object _flag_getters = None           # torch's C getters of its cudnn flags, or None (call_flags then)
cdef object _call_flags = None             # bridge.call_flags
cdef object _raw_stream = None             # device index -> torch's current raw stream there
cdef object _run_strided = None            # callplan.run_strided: what a CPU test's stand-in replaces
cdef FnSpec _conv_spec = None              # the public conv's FnSpec (bridge.CONV)
cdef FnSpec _input_grad_spec = None        # conv_backward_input's (bridge.BACKWARD_INPUT)
cdef FnSpec _weight_grad_spec = None       # conv_backward_weight's (bridge.BACKWARD_WEIGHT)
cdef object _record = None                 # conv_node.record, or None (the Function's C entry then)
cdef object _convolve = None               # functional._convolve: the typed path, else the public function
cdef object _forward_plan = None           # torch_rules.forward_plan
cdef object _out_strides = None            # bridge.out_strides
cdef object _grad_geom = None              # functional._grad_geom
cdef dict _ENTRIES = {}                    # digest -> _Entry
cdef Py_ssize_t _ENTRIES_MAX = 4096        # the memo starts over when full (a program of endless shapes)
cdef tuple _BIAS_VIEW = ((1, -1), (1, -1, 1), (1, -1, 1, 1), (1, -1, 1, 1, 1))
cdef tuple _NO_LIMIT_NO_ENGINE = (None, None)
cdef unsigned long long _taken = 0         # calls this module ran or handed to the Function's C entry
cdef unsigned long long _grads_typed = 0   # the node's gradient calls run on the typed path
cdef bint _cuda_only = True                # False only in CPU tests, with stand-ins for the CUDA calls


cdef class _Entry:
    """What a call signature resolves to: the Resolved arguments and output shape (forward_plan),
    the output's strides (in elements, and as a signature reads them), the public function's
    scalars, and whether the call is ours at all; and the signature itself, to confirm a digest."""
    cdef int nsp
    cdef ArrayMeta xm, wm, om
    cdef object stride, padding, dilation, groups
    cdef object r, shape, strides, scalars
    cdef tuple geom                        # the input and weight gradient calls' scalars
    cdef Py_ssize_t k
    cdef bint ours


def configure(*, Tensor, Parameter, strided, dtypes, grad_enabled, forward_ad, transforms_active, wrapped,
              autocast_on, flag_getters, call_flags, raw_stream, run_strided, conv_spec, input_grad_spec,
              weight_grad_spec, convolve, forward_plan, out_strides, grad_geom, record, cuda_only=True):
    """Hand over the torch objects and the functions the typed forward calls (functional does, once,
    at import).  ``dtypes``: torch dtype -> (numpy dtype, itemsize), as ``run_strided`` takes it;
    ``autocast_on()``: whether an autocast is on; ``flag_getters``: torch's (benchmark,
    deterministic, deterministic algorithms, allow_tf32) C getters, or None to call ``call_flags``
    outside a flags() block too.  ``record``: the C++ node's ``conv_node.record``, or None where
    a recorded call goes to the Function's C entry.  ``cuda_only=False`` takes CPU tensors too and runs through
    ``run_strided`` (with the tensors as given) instead of its C twin: for CPU tests, which hand over
    stand-ins for the functions that run the convolution."""
    global _ready, _Tensor, _Parameter, _strided, _DTYPES, _grad_enabled, _forward_ad, _transforms_active, _wrapped, \
        _autocast_on, _flag_getters, _call_flags, _raw_stream, _run_strided, _conv_spec, _convolve, \
        _forward_plan, _out_strides, _cuda_only, _input_grad_spec, _weight_grad_spec, _record, _grad_geom
    _Tensor, _Parameter, _strided, _DTYPES = Tensor, Parameter, strided, dict(dtypes)
    _grad_enabled, _forward_ad, _transforms_active, _wrapped = grad_enabled, forward_ad, transforms_active, wrapped
    _autocast_on, _call_flags, _raw_stream, _run_strided = autocast_on, call_flags, raw_stream, run_strided
    _flag_getters = None if flag_getters is None else tuple(flag_getters)
    _conv_spec, _convolve, _forward_plan, _out_strides = conv_spec, convolve, forward_plan, out_strides
    _input_grad_spec, _weight_grad_spec, _record = input_grad_spec, weight_grad_spec, record
    _grad_geom = grad_geom
    _cuda_only = cuda_only
    _ENTRIES.clear()
    _ready = True


def set_record(record):
    """Record with ``record`` (``conv_node.record``) or, given None, through the Function's C entry;
    the memo stays (``functional.use_autograd_node``)."""
    global _record
    _record = record


def clear():
    """Forget every memoized call signature."""
    _ENTRIES.clear()


def taken():
    """How many calls ``forward`` has taken (run, or handed to the Function's C entry)."""
    return _taken


def gradients():
    """How many of the C++ node's gradient calls ran on the typed path for strided tensors (the
    others went through ``functional._convolve``)."""
    return _grads_typed


def entries():
    """How many call signatures the memo holds."""
    return len(_ENTRIES)


cdef inline bint _is_tensor(object t):
    cdef object ty = type(t)
    return ty is _Tensor or ty is _Parameter


cdef inline bint _plain(object v):
    """torch_rules' test for an argument the memo can key on: an int, a str, or a tuple of ints."""
    cdef object t = type(v)
    if t is int or t is str:
        return True
    if t is not tuple:
        return False
    for e in <tuple>v:
        if type(e) is not int:
            return False
    return True


cdef inline bint _same(object a, object b) except -1:
    return a is b or a == b


cdef inline object _flags():
    """bridge.call_flags(): the thread's flags() block, spelled out, else torch's three cudnn flags."""
    cdef ThreadState st = get_state()
    if st.options is not None or _flag_getters is None:
        return _call_flags()
    g = <tuple>_flag_getters
    return (bool(g[0]()), bool(g[1]() or g[2]()), bool(g[3]())) + _NO_LIMIT_NO_ENGINE


cdef _Entry _entry(int nsp, Sig* s, x, w, stride, padding, dilation, groups):
    """The memo's entry for this call, made on its first call (forward_plan raises for arguments the
    Python path would refuse, with the same error: it is the next check that path makes)."""
    cdef _Entry e
    cdef uint64_t h = mix(<uint64_t>nsp, mix_meta(mix_meta(0, &s.a[0]), &s.a[1]))
    cdef Py_ssize_t i, itemsize
    h = mix(h, <uint64_t>hash(stride))
    h = mix(h, <uint64_t>hash(padding))
    h = mix(h, <uint64_t>hash(dilation))
    h = mix(h, <uint64_t>hash(groups))
    key = <object>h
    cdef PyObject* got = PyDict_GetItem(_ENTRIES, key)
    if got != NULL:
        e = <_Entry>got
        if (e.nsp == nsp and same_meta(&e.xm, &s.a[0]) and same_meta(&e.wm, &s.a[1])
                and _same(e.stride, stride) and _same(e.padding, padding) and _same(e.dilation, dilation)
                and _same(e.groups, groups)):
            return e
    r, shape = _forward_plan(nsp, x.shape, w.shape, stride, padding, dilation, groups)
    e = _Entry.__new__(_Entry)
    e.nsp, e.xm, e.wm = nsp, s.a[0], s.a[1]
    e.stride, e.padding, e.dilation, e.groups = stride, padding, dilation, groups
    e.r, e.shape, e.k = r, shape, shape[1]
    e.ours = r.pre_pad is None and len(shape) == nsp + 2
    if e.ours:
        e.strides = _out_strides(shape, x, w)
        e.scalars = (r.stride, r.padding, r.dilation, r.groups)
        e.geom = _grad_geom(x, w, r)
        itemsize = (<tuple>_DTYPES[x.dtype])[1]
        e.om.ndim = nsp + 2
        e.om.dtype = s.a[0].dtype          # _DTYPES holds it
        e.om.ptr = 0
        e.om.device = -1
        for i in range(nsp + 2):
            e.om.shape[i] = shape[i]
            e.om.strides[i] = <Py_ssize_t>e.strides[i] * itemsize
    if len(_ENTRIES) >= _ENTRIES_MAX:
        _ENTRIES.clear()
    _ENTRIES[key] = e
    return e


def forward(int nsp, input, weight, bias, stride, padding, dilation, groups, apply):
    """The forward convolution of ``input`` and ``weight`` (plus ``bias``) over ``nsp`` spatial
    dims, as ``functional._conv`` computes it, or None where the caller must take that Python path
    (see the module doc).  ``apply``: the autograd Function's C entry, called as
    ``apply(input, weight, bias, resolved, shape)`` where a gradient is to be recorded and the C++
    node is not configured."""
    global _taken
    cdef Sig s
    cdef _Entry e
    cdef bint grad
    if not _ready or type(input) is not _Tensor or not _is_tensor(weight):
        return None
    if bias is not None and not _is_tensor(bias):
        return None
    if not (_plain(stride) and _plain(padding) and _plain(dilation) and type(groups) is int):
        return None
    if input.layout is not _strided or weight.layout is not _strided:
        return None
    # CUDA as the Python path reads it (is_cuda): a lazy, XLA or XPU tensor has a device index too
    if _cuda_only and not (input.is_cuda and weight.is_cuda):
        return None
    # A transform's or a wrapper's tensors have no storage to read: these come before any read.
    if getattr(_forward_ad, "_current_level", -1) >= 0 or _transforms_active() or _autocast_on():
        return None
    if _wrapped is not None and (_wrapped(input) or _wrapped(weight) or (bias is not None and _wrapped(bias))):
        return None
    trace_reset()
    trace(TRACE_ENTRY)
    if not (read_strided(input, &s.a[0], _DTYPES) and read_strided(weight, &s.a[1], _DTYPES)):
        return None
    if s.a[0].dtype != s.a[1].dtype or s.a[0].ndim != nsp + 2:
        return None
    if bias is not None and (bias.dtype is not input.dtype or (_cuda_only and not bias.is_cuda)):
        return None
    e = _entry(nsp, &s, input, weight, stride, padding, dilation, groups)
    if not e.ours:
        return None
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != e.k):
        return None
    grad = _grad_enabled() and (input.requires_grad or weight.requires_grad
                                or (bias is not None and bias.requires_grad))
    _taken += 1
    if grad and _record is None:
        return apply(input, weight, bias, e.r, e.shape)
    flags = _flags()
    y = input.new_empty_strided(e.shape, e.strides)
    s.n = 3
    s.has[0] = s.has[1] = True
    s.has[2] = False
    s.out = e.om
    s.out.ptr = <size_t>y.data_ptr()
    s.out.device = s.a[0].device
    s.has_out = True
    stream = _raw_stream(s.a[0].device)
    if not (run_strided_sig(_conv_spec, &s, y, e.scalars, flags, <size_t>stream) if _cuda_only else
            _run_strided(_conv_spec, (input, weight, None), y, e.scalars, flags, _DTYPES, stream)):
        _convolve(_conv_spec, (input, weight, None), y, e.scalars, flags)
    if grad:
        return _record(input, weight, bias, y, e.geom, flags)
    if bias is not None:
        y.add_(bias.view((<tuple>_BIAS_VIEW)[nsp]))
    return y


cdef int _node_meta(const cudnnconv_node_tensor* t, ArrayMeta* m) except -1:
    """A tensor as the C++ node read it, as ``read_strided`` reads the same tensor: 1, or 0 where
    its dtype is not one cudnnconv runs or the node did not read it."""
    cdef PyObject* e
    cdef Py_ssize_t i, itemsize
    if t.ndim < 0 or t.ndim > MAX_DIMS or t.dtype == NULL:
        return 0
    e = PyDict_GetItem(_DTYPES, <object>t.dtype)
    if e == NULL:
        return 0
    entry = <tuple><object>e
    itemsize = entry[1]
    for i in range(t.ndim):
        m.shape[i] = <Py_ssize_t>t.shape[i]
        m.strides[i] = <Py_ssize_t>t.strides[i] * itemsize
        if m.strides[i] < 0:
            return 0
    m.ndim = t.ndim
    m.dtype = <PyObject*>entry[0]        # _DTYPES holds it
    m.ptr = t.ptr
    m.device = t.device
    return 1


cdef int _gradient(FnSpec spec, const cudnnconv_node_tensor* a, const cudnnconv_node_tensor* g,
                   const ArrayMeta* gm, size_t stream, const cudnnconv_node_tensor* out, scalars,
                   flags) except -1:
    """One gradient call (``spec`` on tensor a and the output gradient g, writing ``out``), as the
    forward runs its convolution: the typed path for strided tensors on ``stream`` (torch's current
    one), with g as ``gm`` already reads it (None: g not read, the typed path not tried), else
    ``functional._convolve`` (the Python backward's own call) on the tensors' Python objects."""
    global _grads_typed
    cdef Sig s
    if gm != NULL:
        trace_reset()
        trace(TRACE_ENTRY)
        if _node_meta(a, &s.a[0]) and _node_meta(out, &s.out):
            s.n = 2
            s.a[1] = gm[0]
            s.has[0] = s.has[1] = True
            s.has_out = True
            if run_strided_sig(spec, &s, <object>out.tensor, scalars, <tuple>flags, stream):
                _grads_typed += 1
                return 0
    _convolve(spec, (<object>a.tensor, <object>g.tensor), <object>out.tensor, scalars, flags)
    return 0


cdef int _conv_backward(object geom, object flags, const cudnnconv_node_tensor* t) except -1:
    """The C++ node's backward (``conv_node``, include/cudnnconv_torch_node.h): the input gradient
    into t[3] and the weight gradient into t[4] (None where the engine does not ask for it) of the
    convolution of t[0] (x) and t[1] (w), from t[2], the output gradient made dense; ``geom``: the
    entry's (input gradient scalars, weight gradient scalars); ``flags``: the forward's.  The
    output gradient and torch's stream are read once, for both calls."""
    cdef ArrayMeta gm
    cdef const ArrayMeta* g = NULL
    cdef size_t stream = 0
    # (a tensor off CUDA, device -1, reaches here only where a test stands in for the checks)
    if _cuda_only and _node_meta(&t[2], &gm) and gm.device >= 0:
        g = &gm
        stream = <size_t>_raw_stream(gm.device)
    if <object>t[3].tensor is not None:
        _gradient(_input_grad_spec, &t[1], &t[2], g, stream, &t[3], (<tuple>geom)[0], flags)
    if <object>t[4].tensor is not None:
        _gradient(_weight_grad_spec, &t[0], &t[2], g, stream, &t[4], (<tuple>geom)[1], flags)
    return 0


cdef object _node_signature(const cudnnconv_node_tensor* t):
    """What the typed backward reads of a tensor the C++ node read: (shape, byte strides, dtype,
    pointer, device), as ``callplan.strided_signature`` gives it for ``read_strided``, or None."""
    cdef ArrayMeta m
    return meta_tuple(&m) if _node_meta(t, &m) else None


def node_signature_capsule():
    """``_node_signature`` for ``conv_node.read_probe`` (a test holds it equal to read_strided's)."""
    return PyCapsule_New(<void*>_node_signature, b"cudnnconv.torch.typed.node_signature", NULL)


def backward_capsule():
    """The typed backward as the C++ node calls it (``conv_node.configure`` takes this)."""
    return PyCapsule_New(<void*>_conv_backward, CUDNNCONV_NODE_BACKWARD_CAPSULE, NULL)
