# cython: language_level=3
"""The legacy (v7) engine: cuDNN's cudnnGet*_v7 / cudnnFind*Ex / cudnnConvolution* API.

It follows PyTorch's Conv_v7 behaviour (its Conv_v7.cpp):

* the convolution descriptor's math type is set *before* get/find (tensor
  ops for 16-bit data, FMA for fp32 without TF32), and set again to each
  result's math type before it runs (cuDNN picks kernels by algo + math);
* benchmark off: cudnnGet*_v7's ranking; on: cudnnFind*Ex with a search
  workspace as large as the largest algorithm that fits what is free (and the
  user's workspace_limit), released when the search ends;
* where we go beyond PyTorch's Conv_v7 behaviour: cudnnFind times each algorithm once, and that
  single sample flips the choice between processes.  So (``RETIME``, on by
  default) the algorithms Find kept are timed again by cudnnconv.gpu_timing
  (the median of k spin-guarded samples, as the graph engine does) and
  ordered by cudnnconv.ranking.  ``RETIME = False`` keeps Find's own order,
  exactly as PyTorch's Conv_v7 behaviour does;
* results are kept when their status is OK, deterministic when asked, within
  the workspace limit, and (fp32 without TF32) FMA-only and not in
  cudnnconv.errata (algorithms that report FMA math but compute at TF32-like
  precision);
* deterministic without benchmark uses only the default algorithm.

The direction classes below supply only what differs between directions:
their algorithm list, default, and the four cuDNN calls.  The loop, the cache
and the workspace are shared (cudnnconv.search, cache, workspace).
"""
from cudnnconv.decl.cudnn cimport (
    cudnnHandle_t, cudnnStatus_t, cudnnMathType_t,
    CUDNN_STATUS_SUCCESS, CUDNN_DATA_FLOAT, CUDNN_DATA_DOUBLE, CUDNN_DATA_HALF, CUDNN_DATA_BFLOAT16,
    CUDNN_DEFAULT_MATH, CUDNN_TENSOR_OP_MATH, CUDNN_FMA_MATH)
from cudnnconv.decl.cudnn_legacy cimport *
from cudnnconv.core.status cimport check
from cudnnconv.core.handle cimport Handle, get_handle
from cudnnconv.core.arrays cimport current_stream
from cudnnconv.engines.legacy_descriptors cimport (
    TensorDescriptor, FilterDescriptor, ConvolutionDescriptor, ActivationDescriptor)

import cupy

from cudnnconv import errata, gpu_timing, params, ranking, search, workspace
from cudnnconv.cache import AlgoCache
from cudnnconv.core.status import CuDNNError
from cudnnconv.engines.legacy_descriptors import MATH_NAMES

ENGINE = "legacy"
CACHE = AlgoCache("legacy")
RETIME = True       # time Find's algorithms again (median of k); False: Find's order, as PyTorch's Conv_v7

ALGO_NAMES = {
    "forward": ("IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM", "DIRECT", "FFT", "FFT_TILING",
                "WINOGRAD", "WINOGRAD_NONFUSED"),
    "backward_data": ("ALGO_0", "ALGO_1", "FFT", "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"),
    "backward_filter": ("ALGO_0", "ALGO_1", "FFT", "ALGO_3", "WINOGRAD", "WINOGRAD_NONFUSED", "FFT_TILING"),
}
ALGO_NAMES["fused"] = ALGO_NAMES["forward"]

cdef enum:
    MAX_RESULTS = 16


class LegacyChoice:
    """One algorithm as the search saw it: what runs, and how it was chosen."""
    keeps_workspace = False        # a block per call, kept only under capture (cudnnconv.search.run_choice)
    __slots__ = ("op", "algo", "math_type", "workspace", "time_ms", "deterministic", "benchmarked", "samples",
                 "issue_ms", "ws_mem", "ws_stream", "ws_more")

    def __init__(self, op, algo, math_type, workspace, time_ms, deterministic, benchmarked, samples=()):
        self.op = op
        self.samples = tuple(samples)
        self.algo = int(algo)
        self.math_type = int(math_type)
        self.workspace = int(workspace)
        self.time_ms = float(time_ms)
        self.deterministic = bool(deterministic)
        self.benchmarked = bool(benchmarked)
        self.issue_ms = -1.0          # host issue time (gpu_timing.rank_host_aware), or -1: not measured
        # the workspace blocks kept per stream for captured calls (cudnnconv.workspace.kept_pointer)
        self.ws_mem = None
        self.ws_stream = 0
        self.ws_more = None

    @property
    def tag(self):
        """The fixed order among near-ties (cudnnconv.ranking): the algorithm id."""
        return self.algo

    @property
    def name(self):
        names = ALGO_NAMES[self.op]
        return names[self.algo] if 0 <= self.algo < len(names) else str(self.algo)

    def describe(self):
        return "%s(%d)/%s ws=%d" % (self.name, self.algo, MATH_NAMES.get(self.math_type), self.workspace)

    def as_dict(self):
        return {"engine": ENGINE, "op": self.op, "algo": self.algo, "algo_name": self.name,
                "math_type": MATH_NAMES.get(self.math_type), "workspace": self.workspace,
                "time_ms": self.time_ms, "deterministic": self.deterministic,
                "benchmarked": self.benchmarked, "issue_ms": self.issue_ms}

    def __repr__(self):
        return "LegacyChoice(%s %s)" % (self.op, self.describe())


cdef float F_ONE = 1.0
cdef float F_ZERO = 0.0
cdef double D_ONE = 1.0
cdef double D_ZERO = 0.0


cdef class LegacyArgs:
    """Descriptors, pointers and the bound handle of one call."""
    cdef cudnnHandle_t handle
    cdef readonly TensorDescriptor x, y, z, b
    cdef readonly FilterDescriptor w
    cdef readonly ConvolutionDescriptor conv
    cdef readonly ActivationDescriptor act
    cdef void* xp
    cdef void* yp
    cdef void* wp
    cdef void* zp
    cdef void* bp
    cdef readonly int dtype
    cdef readonly bint allow_tf32
    cdef float alpha2_f
    cdef double alpha2_d
    cdef object keep
    cdef object repro
    cdef readonly size_t stream      # the stream the handle is bound to (the workspace is kept per stream)

    cdef const void* one(self):
        return <const void*>&D_ONE if self.dtype == <int>CUDNN_DATA_DOUBLE else <const void*>&F_ONE

    cdef const void* zero(self):
        return <const void*>&D_ZERO if self.dtype == <int>CUDNN_DATA_DOUBLE else <const void*>&F_ZERO

    cdef const void* alpha2(self):
        return <const void*>&self.alpha2_d if self.dtype == <int>CUDNN_DATA_DOUBLE else <const void*>&self.alpha2_f

    def describe(self):
        lines = ["input: %r" % (self.x,), "weight: %r" % (self.w,), "output: %r" % (self.y,),
                 "convolution: %r" % (self.conv,)]
        if self.z is not None:
            lines += ["z: %r" % (self.z,), "bias: %r" % (self.b,), "activation: %r" % (self.act,)]
        return "\n".join(lines)


cdef int default_math(int dtype, bint allow_tf32):
    if dtype == <int>CUDNN_DATA_HALF or dtype == <int>CUDNN_DATA_BFLOAT16:
        return <int>CUDNN_TENSOR_OP_MATH
    if dtype == <int>CUDNN_DATA_FLOAT and not allow_tf32:
        return <int>CUDNN_FMA_MATH
    return <int>CUDNN_DEFAULT_MATH


cdef class _Direction:
    """The legacy engine's part of the shared search, common to all directions."""
    cdef readonly str op
    cdef readonly tuple algos
    cdef readonly int default_algo

    # What each direction supplies.  The three cuDNN perf structs share one
    # layout, so one array type serves them all (cast at the call).
    cdef int _get(self, LegacyArgs a, int n, int* count, cudnnConvolutionFwdAlgoPerf_t* out) except -1:
        raise NotImplementedError

    cdef int _find(self, LegacyArgs a, int n, int* count, cudnnConvolutionFwdAlgoPerf_t* out,
                   void* ws, size_t ws_size) except -1:
        raise NotImplementedError

    cdef cudnnStatus_t _ws(self, LegacyArgs a, int algo, size_t* size):
        return CUDNN_STATUS_SUCCESS

    cdef int _run(self, LegacyArgs a, int algo, void* ws, size_t ws_size) except -1:
        raise NotImplementedError

    # The shared part.
    def candidates(self, LegacyArgs a, opts, excluded=None):
        """Ranked choices (see cudnnconv.search).  ``excluded``, when a list,
        receives (choice, reason) for each result the filters drop (for
        cudnnconv.explain); the returned list is the same either way."""
        cdef cudnnConvolutionFwdAlgoPerf_t perf[MAX_RESULTS]
        cdef int count = 0
        cdef int n = len(self.algos)
        cdef size_t size
        cdef size_t ws_ptr
        a.conv.set_math_type(default_math(a.dtype, a.allow_tf32))
        if opts.benchmark:
            sizes = []
            for algo in self.algos:
                if self._ws(a, algo, &size) == CUDNN_STATUS_SUCCESS:
                    sizes.append(size)
            mem, nbytes = workspace.allocate_for_search(sizes, workspace.search_budget(opts.workspace_limit))
            ws_ptr = workspace.pointer(mem)
            try:
                self._find(a, n, &count, perf, <void*>ws_ptr, nbytes)
                out = self._filter(a, opts, perf, count, excluded)
                if RETIME and len(out) > 1:
                    out = self._retime(a, out, ws_ptr, nbytes)
            finally:
                mem = None          # the search workspace goes back to the pool now
            return self._or_default(a, opts, out)
        self._get(a, n, &count, perf)
        return self._or_default(a, opts, self._filter(a, opts, perf, count, excluded))

    cdef list _filter(self, LegacyArgs a, opts, cudnnConvolutionFwdAlgoPerf_t* perf, int count, excluded):
        """The results the flags keep, in cuDNN's order; ``excluded`` (a list
        or None) receives (choice, reason) for the others."""
        limit = opts.workspace_limit
        fp32_strict = a.dtype == <int>CUDNN_DATA_FLOAT and not a.allow_tf32
        out = []
        for i in range(min(count, MAX_RESULTS)):
            p = perf[i]
            # One reason per dropped result (search time only, so built eagerly).
            # Over the budget first: cudnnFind also marks an algorithm whose
            # workspace it could not have with a failure status.
            if limit is not None and p.memory > limit:
                reason = "workspace %d > workspace_limit %d" % (p.memory, limit)
            elif p.status != CUDNN_STATUS_SUCCESS:
                reason = "cuDNN status %d" % <int>p.status
            elif opts.deterministic and p.determinism != CUDNN_DETERMINISTIC:
                reason = "not deterministic (deterministic=True)"
            elif fp32_strict and p.mathType != CUDNN_FMA_MATH:
                reason = "not FMA math (float32 with allow_tf32=False)"
            else:
                reason = errata.legacy_reason(self.op, p.algo, a.dtype, a.allow_tf32)
            choice = LegacyChoice(self.op, p.algo, p.mathType, p.memory, p.time,
                                  p.determinism == CUDNN_DETERMINISTIC, opts.benchmark)
            if reason is None:
                out.append(choice)
            elif excluded is not None:
                excluded.append((choice, reason))
        return out

    def _retime(self, LegacyArgs a, list found, size_t ws_ptr, size_t nbytes):
        """Find's algorithms timed again (gpu_timing: the median of k
        samples) on the search workspace, in cudnnconv.ranking's order, host-aware
        where the runs are short (gpu_timing.rank_host_aware).  One
        that fails to run now keeps no samples and ranks last (try_all then
        meets its failure as it would have)."""
        stream = cupy.cuda.get_current_stream()
        wsp = int(ws_ptr)
        out = []
        for ch in found:
            samples = ()
            if ch.workspace <= nbytes:
                try:
                    samples = tuple(gpu_timing.time_samples(lambda ch=ch: self.execute(a, ch, wsp), stream=stream))
                except (CuDNNError, MemoryError):
                    samples = ()
            med, _ = ranking.median_and_spread(samples)
            out.append(LegacyChoice(ch.op, ch.algo, ch.math_type, ch.workspace,
                                    med if samples else ch.time_ms, ch.deterministic, ch.benchmarked, samples))
        return gpu_timing.rank_host_aware(out, lambda ch: (lambda: self.execute(a, ch, wsp)), stream)

    def _or_default(self, LegacyArgs a, opts, list out):
        """``out``, or (when the filters kept nothing) the default algorithm."""
        limit = opts.workspace_limit
        if not out:
            # The default algorithm is deterministic and runs in FMA math for
            # strict fp32, so it is a valid last resort for every filter but
            # the workspace budget, which it must still fit.
            d = self.default(a, opts)
            if limit is not None and d.workspace > limit:
                raise CuDNNError(3000, "no %s algorithm fits workspace_limit=%d bytes (the default, %s, "
                                 "needs %d)" % (self.op, limit, d.describe(), d.workspace))
            out.append(d)
        return out

    def default(self, LegacyArgs a, opts):
        cdef size_t size = 0
        cdef int math = default_math(a.dtype, a.allow_tf32)
        a.conv.set_math_type(math)
        check(self._ws(a, self.default_algo, &size))
        return LegacyChoice(self.op, self.default_algo, math, size, -1.0, True, False)

    def execute(self, LegacyArgs a, choice, size_t ws_ptr):
        if a.dtype == <int>CUDNN_DATA_FLOAT and not a.allow_tf32 and choice.math_type != <int>CUDNN_FMA_MATH:
            raise RuntimeError("internal error: fp32 with allow_tf32=False must run FMA math, got %s"
                               % choice.describe())
        a.conv.set_math_type(choice.math_type)
        self._run(a, choice.algo, <void*>ws_ptr, choice.workspace)

    def context(self, LegacyArgs a, choice):
        text = "engine: legacy, op: %s" % self.op
        if choice is not None:
            text += ", algorithm: %s" % choice.describe()
        text += "\n" + a.describe()
        if a.repro is not None:
            text += "\nrepro: " + params.repro(*a.repro)
        return text


cdef class _Forward(_Direction):
    def __init__(self):
        self.op = "forward"
        self.algos = tuple(range(<int>CUDNN_CONVOLUTION_FWD_ALGO_COUNT))
        self.default_algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM

    cdef int _get(self, LegacyArgs a, int n, int* count, cudnnConvolutionFwdAlgoPerf_t* out) except -1:
        check(cudnnGetConvolutionForwardAlgorithm_v7(a.handle, a.x.ptr, a.w.ptr, a.conv.ptr, a.y.ptr,
                                                     n, count, out))
        return 0

    cdef int _find(self, LegacyArgs a, int n, int* count, cudnnConvolutionFwdAlgoPerf_t* out,
                   void* ws, size_t ws_size) except -1:
        check(cudnnFindConvolutionForwardAlgorithmEx(a.handle, a.x.ptr, a.xp, a.w.ptr, a.wp, a.conv.ptr,
                                                     a.y.ptr, a.yp, n, count, out, ws, ws_size))
        return 0

    cdef cudnnStatus_t _ws(self, LegacyArgs a, int algo, size_t* size):
        return cudnnGetConvolutionForwardWorkspaceSize(a.handle, a.x.ptr, a.w.ptr, a.conv.ptr, a.y.ptr,
                                                       <cudnnConvolutionFwdAlgo_t>algo, size)

    cdef int _run(self, LegacyArgs a, int algo, void* ws, size_t ws_size) except -1:
        check(cudnnConvolutionForward(a.handle, a.one(), a.x.ptr, a.xp, a.w.ptr, a.wp, a.conv.ptr,
                                      <cudnnConvolutionFwdAlgo_t>algo, ws, ws_size, a.zero(), a.y.ptr, a.yp))
        return 0


cdef class _Fused(_Forward):
    """conv + alpha*z + bias, then ReLU, in one cudnnConvolutionBiasActivationForward.
    Its candidates are the forward ones (cuDNN runs the fused ReLU only with
    IMPLICIT_PRECOMP_GEMM; the others fail and the loop moves on)."""
    def __init__(self):
        _Forward.__init__(self)
        self.op = "fused"

    cdef int _run(self, LegacyArgs a, int algo, void* ws, size_t ws_size) except -1:
        check(cudnnConvolutionBiasActivationForward(
            a.handle, a.one(), a.x.ptr, a.xp, a.w.ptr, a.wp, a.conv.ptr,
            <cudnnConvolutionFwdAlgo_t>algo, ws, ws_size, a.alpha2(), a.z.ptr, a.zp,
            a.b.ptr, a.bp, a.act.ptr, a.y.ptr, a.yp))
        return 0


cdef class _BackwardData(_Direction):
    def __init__(self):
        self.op = "backward_data"
        self.algos = tuple(range(<int>CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT))
        self.default_algo = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1

    cdef int _get(self, LegacyArgs a, int n, int* count, cudnnConvolutionFwdAlgoPerf_t* out) except -1:
        check(cudnnGetConvolutionBackwardDataAlgorithm_v7(a.handle, a.w.ptr, a.y.ptr, a.conv.ptr, a.x.ptr,
                                                          n, count, <cudnnConvolutionBwdDataAlgoPerf_t*>out))
        return 0

    cdef int _find(self, LegacyArgs a, int n, int* count, cudnnConvolutionFwdAlgoPerf_t* out,
                   void* ws, size_t ws_size) except -1:
        check(cudnnFindConvolutionBackwardDataAlgorithmEx(a.handle, a.w.ptr, a.wp, a.y.ptr, a.yp, a.conv.ptr,
                                                          a.x.ptr, a.xp, n, count,
                                                          <cudnnConvolutionBwdDataAlgoPerf_t*>out, ws, ws_size))
        return 0

    cdef cudnnStatus_t _ws(self, LegacyArgs a, int algo, size_t* size):
        return cudnnGetConvolutionBackwardDataWorkspaceSize(a.handle, a.w.ptr, a.y.ptr, a.conv.ptr, a.x.ptr,
                                                            <cudnnConvolutionBwdDataAlgo_t>algo, size)

    cdef int _run(self, LegacyArgs a, int algo, void* ws, size_t ws_size) except -1:
        check(cudnnConvolutionBackwardData(a.handle, a.one(), a.w.ptr, a.wp, a.y.ptr, a.yp, a.conv.ptr,
                                           <cudnnConvolutionBwdDataAlgo_t>algo, ws, ws_size, a.zero(),
                                           a.x.ptr, a.xp))
        return 0


cdef class _BackwardFilter(_Direction):
    def __init__(self):
        self.op = "backward_filter"
        # WINOGRAD is not implemented for backward filter: left out, as in PyTorch's Conv_v7 behaviour.
        self.algos = tuple(a for a in range(<int>CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT)
                           if a != <int>CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD)
        self.default_algo = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1

    cdef int _get(self, LegacyArgs a, int n, int* count, cudnnConvolutionFwdAlgoPerf_t* out) except -1:
        check(cudnnGetConvolutionBackwardFilterAlgorithm_v7(a.handle, a.x.ptr, a.y.ptr, a.conv.ptr, a.w.ptr,
                                                            n, count, <cudnnConvolutionBwdFilterAlgoPerf_t*>out))
        return 0

    cdef int _find(self, LegacyArgs a, int n, int* count, cudnnConvolutionFwdAlgoPerf_t* out,
                   void* ws, size_t ws_size) except -1:
        check(cudnnFindConvolutionBackwardFilterAlgorithmEx(a.handle, a.x.ptr, a.xp, a.y.ptr, a.yp, a.conv.ptr,
                                                            a.w.ptr, a.wp, n, count,
                                                            <cudnnConvolutionBwdFilterAlgoPerf_t*>out, ws, ws_size))
        return 0

    cdef cudnnStatus_t _ws(self, LegacyArgs a, int algo, size_t* size):
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(a.handle, a.x.ptr, a.y.ptr, a.conv.ptr, a.w.ptr,
                                                              <cudnnConvolutionBwdFilterAlgo_t>algo, size)

    cdef int _run(self, LegacyArgs a, int algo, void* ws, size_t ws_size) except -1:
        check(cudnnConvolutionBackwardFilter(a.handle, a.one(), a.x.ptr, a.xp, a.y.ptr, a.yp, a.conv.ptr,
                                             <cudnnConvolutionBwdFilterAlgo_t>algo, ws, ws_size, a.zero(),
                                             a.w.ptr, a.wp))
        return 0


FORWARD = _Forward()
FUSED = _Fused()
BACKWARD_DATA = _BackwardData()
BACKWARD_FILTER = _BackwardFilter()
DIRECTIONS = {"forward": FORWARD, "fused": FUSED, "backward_data": BACKWARD_DATA,
              "backward_filter": BACKWARD_FILTER}


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------

def _as_4d(a):
    """The legacy API needs >= 4-D tensors: 1-D runs as 2-D with unit height."""
    return a[:, :, None, :] if a.ndim == 3 else a


def _geom_4d(geom):
    if geom.nsp != 1:
        return geom
    return geom._replace(nsp=2, stride=(1,) + geom.stride, padding=(0,) + geom.padding,
                         dilation=(1,) + geom.dilation, same_extra=(0,) + geom.same_extra)


def _tensor(int dtype, a, str layout):
    return TensorDescriptor(dtype, a.shape, params.layout_strides(a.shape, layout))


cdef size_t _ptr(a):
    return 0 if a is None else <size_t>a.data.ptr


def run(str op, x, w, y, geom, opts, str layout, int device, repro=None, z=None, bias=None, double alpha=1.0):
    """Run one (already split, already packed) problem through the search.

    ``x`` is the convolution's input, ``w`` its filter, ``y`` its output, in
    the roles of the forward convolution whatever the direction: backward
    data writes ``x``, backward filter writes ``w``.  Returns the choice.
    """
    cdef LegacyArgs a = LegacyArgs.__new__(LegacyArgs)
    cdef Handle h = get_handle(device)
    cdef int dtype = params.cudnn_dtype(x.dtype)
    x4, w4, y4 = _as_4d(x), _as_4d(w), _as_4d(y)
    g = _geom_4d(geom)
    a.dtype = dtype
    a.allow_tf32 = opts.allow_tf32
    a.x = _tensor(dtype, x4, layout)
    a.y = _tensor(dtype, y4, layout)
    a.w = FilterDescriptor(dtype, w4.shape, layout)
    a.conv = ConvolutionDescriptor(dtype, g.padding, g.stride, g.dilation, g.groups)
    a.xp = <void*>_ptr(x)
    a.yp = <void*>_ptr(y)
    a.wp = <void*>_ptr(w)
    if op == "fused":
        z4 = _as_4d(z)
        a.z = _tensor(dtype, z4, layout)
        bshape = (1, w4.shape[0]) + (1,) * (w4.ndim - 2)
        a.b = TensorDescriptor(dtype, bshape, params.layout_strides(bshape, "NCHW"))
        a.act = ActivationDescriptor()
        a.zp = <void*>_ptr(z)
        a.bp = <void*>_ptr(bias)
        a.alpha2_f = <float>alpha
        a.alpha2_d = alpha
    a.keep = (x, w, y, z, bias)
    a.repro = repro
    a.stream = current_stream()
    a.handle = h.bind(a.stream)
    key = params.make_key(op, ENGINE, device, dtype, x4.shape, w4.shape, layout, g, opts)
    return search.try_all(DIRECTIONS[op], a, CACHE, key, opts)
