# cython: language_level=3
"""The graph engine: cuDNN's backend ("graph") API with a per-thread plan cache.

Map of this file (cuDNN's backend API reference has the cuDNN side of each step):

* ``GraphArgs``: one call's problem (shapes, layout strides, pointers and
  their alignment, handle).  Its descriptors are built only on a miss.
* ``GraphChoice``: one engine config as a *finalized* execution plan, with
  its tag (``eng62_k2=1_k3=0``), notes, workspace, how it was chosen, and
  the last variant pack with the pointers it holds.  A cache hit on unchanged
  pointers executes that pack again: no cuDNN descriptor is created.
* ``GraphDirection``: this engine's side of the shared search protocol
  (``cudnnconv.search``): ``candidates`` (heuristics mode A, then FALLBACK,
  lazily, first that runs wins; with benchmark, every plan timed with CUDA
  events, median of several runs, fastest first), ``default``, ``execute``
  and ``context``.  The directions differ only in the operation node they
  build (``graph_descriptors.conv_operation``) and the fused graph's extra
  pointwise nodes; the loop, workspace and OOM fallback are shared.
* ``PlanCache`` / ``GraphCaches``: plans belong to the thread that built
  them (as PyTorch keeps them), so each thread has its own bounded LRU;
  ``CACHE`` aggregates them for ``cudnnconv.cache_info()``/``clear_cache()``.

Lifetimes: a plan keeps a reference to the ``Handle`` it was built with, so
plans are always destroyed before their handle.  At interpreter shutdown
descriptors are leaked, never destroyed (see graph_descriptors).
"""
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free

from cudnnconv.decl.cudnn cimport (
    cudnnHandle_t, cudnnStatus_t, CUDNN_DATA_FLOAT, CUDNN_DATA_DOUBLE)
from cudnnconv.decl.cudnn_backend cimport *
from cudnnconv.core.status cimport check
from cudnnconv.core.handle cimport Handle, get_handle
from cudnnconv.core.arrays cimport current_stream
from cudnnconv.core.executor cimport (
    Executor, alignment as _alignment, trace, trace_reset, TRACE_ENGINE, TRACE_KEY, TRACE_HANDLE, TRACE_LOOKUP, TRACE_PACK, TRACE_EXECUTE)
from cudnnconv.core cimport state as _cstate
from cudnnconv.engines.graph_descriptors cimport (
    BackendDescriptor, VariantPacks, variant_packs, create, tensor, convolution, conv_operation,
    pointwise_operation, pointwise_backward_operation, operation_graph)

import collections
import threading
import weakref

from cudnnconv.core import executor as _executor

from cudnnconv import (_log, activations, errata, exhaustive_budget, gpu_timing, knob_sandbox, knob_space, options,
                       params, ranking, records, search, workspace)
from cudnnconv.cache import AlgoCache, CacheInfo, check_maxsize
from cudnnconv.core.status import CuDNNError, CuDNNOutOfMemoryError

ENGINE = "graph"
# A geometry's padding may be one (before, after) pair per dim (params.tile_padding): cuDNN's
# graph takes pre- and post-padding apiece, so a spatial tile runs on a view of its window.
ONE_SIDED_PADDING = True
# The ops whose key ends with an epilogue's key fields (activations.key_fields): 'epilogue'
# (y = act(alpha1 * conv + alpha2 * z + bias)) and 'dgrad_act' (dx = dgrad(dy) * act'(act_input)).
EPILOGUE_OPS = ("epilogue", "dgrad_act")

cdef enum:
    UID_X = 1
    UID_W = 2
    UID_Y = 3
    UID_Z = 4
    UID_B = 5
    UID_T0 = 101
    UID_T1 = 102
    UID_T2 = 103
    UID_T3 = 104
    UID_T4 = 105
    MAX_TENSORS = 5
    NOTE_CAP = 64            # above every *_TYPE_COUNT of cuDNN 9.x

NUMERICAL_NOTES = {0: "TENSOR_CORE", 1: "DOWN_CONVERT_INPUTS", 2: "REDUCED_PRECISION_REDUCTION", 3: "FFT",
                   4: "NONDETERMINISTIC", 5: "WINOGRAD", 6: "WINOGRAD_TILE_4x4", 7: "WINOGRAD_TILE_6x6",
                   8: "WINOGRAD_TILE_13x13", 9: "STRICT_NAN_PROP"}
BEHAVIOR_NOTES = {0: "RUNTIME_COMPILATION", 1: "REQUIRES_FILTER_INT8x32_REORDER",
                  2: "REQUIRES_BIAS_INT8x32_REORDER", 3: "SUPPORTS_CUDA_GRAPH_NATIVE_API",
                  4: "CUBLASLT_DEPENDENCY"}

_NOT_SUPPORTED = 3000

# Benchmark mode: each plan is timed by cudnnconv.gpu_timing (warm-up runs,
# then the median of k spin-guarded CUDA-event samples; settable with
# cudnnconv.benchmark_settings), and the plans are ordered by cudnnconv.ranking
# (near-ties within the margin go to the smaller workspace, then the tag),
# host-aware where the fastest run is short (gpu_timing.rank_host_aware).


# ---------------------------------------------------------------------------
# Stage trace of the full path (a diagnostic: tools/first_call_probe.py)
# ---------------------------------------------------------------------------
#
# The stamps are the shared call trace's (cudnnconv.core.executor); these two
# functions keep the engine's own view of a call that went through run().

STAGES = ("key", "handle", "lookup", "variant_pack", "execute")


def trace_stages(bint on):
    """Turn the call trace on or off (see ``stage_times``)."""
    _executor.trace_stages(on)


def stage_times():
    """{stage: microseconds} of the last traced call that found its choice
    in run()'s cache (key, handle, lookup, variant_pack, execute); {} when
    the last traced call searched, or ran on a bound call plan (then
    ``cudnnconv.stage_times()`` has its stages)."""
    st = _executor.stamps()
    names = ("engine",) + STAGES
    slots = (TRACE_ENGINE, TRACE_KEY, TRACE_HANDLE, TRACE_LOOKUP, TRACE_PACK, TRACE_EXECUTE)
    if not all(st[i] for i in slots):
        return {}
    return {names[i]: (st[slots[i]] - st[slots[i - 1]]) * 1e-3 for i in range(1, len(slots))}


# ---------------------------------------------------------------------------
# Key helpers (pure, no GPU)
# ---------------------------------------------------------------------------

cpdef int64_t alignment(size_t ptr):
    """The byte alignment we declare for a pointer: min(16, the largest power
    of two dividing it), never more.  NULL (an empty tensor) counts as 16."""
    return _alignment(ptr)


def key_extra(op, ptrs, alpha=1.0):
    """The graph engine's extension of the shared key: the alignment of each
    tensor's pointer (x, w, y, and z, bias for fused), and alpha for fused."""
    al = tuple(alignment(p) for p in ptrs)
    return al + (float(alpha),) if op == "fused" else al


def epilogue_key_extra(ptrs, epi):
    """``key_extra`` of an epilogue problem (``epi``: an activations.Epilogue): the alignment of
    each of its tensors (x, w, y, then z and the bias where given), 0 for the slots it leaves
    empty, then ``activations.key_fields(epi)``."""
    al = [alignment(p) for p in ptrs] + [0] * (MAX_TENSORS - len(ptrs))
    return tuple(al) + activations.key_fields(epi)


def problem_key(op, device, dtype_code, x_shape, w_shape, layout, geom, opts, ptrs, alpha=1.0, epilogue=None):
    """The cache key of one graph problem: the shared key (``params.make_key``,
    the one key builder) extended with ``key_extra`` (``epilogue_key_extra`` for
    op 'epilogue'), as ``run`` builds it."""
    extra = epilogue_key_extra(ptrs, epilogue) if op in EPILOGUE_OPS else key_extra(op, ptrs, alpha)
    return _make_key(op, ENGINE, device, dtype_code, x_shape, w_shape, layout, geom, opts, tuple(extra))


cdef object _make_key = params.make_key


# ---------------------------------------------------------------------------
# One call's problem
# ---------------------------------------------------------------------------

cdef class GraphArgs:
    """Shapes, strides, pointers and the bound handle of one call."""
    cdef readonly str op
    cdef readonly int dtype
    cdef readonly str layout
    cdef readonly tuple x_shape, w_shape, y_shape, x_strides, w_strides, y_strides, b_shape
    cdef readonly tuple padding, post_padding, stride, dilation
    cdef readonly double alpha
    cdef readonly object epilogue    # op 'epilogue': its activations.Epilogue, else None
    cdef int n
    cdef void* ptrs[MAX_TENSORS]
    cdef int64_t align[MAX_TENSORS]
    cdef cudnnHandle_t handle
    cdef Handle handle_obj
    cdef readonly BackendDescriptor graph
    cdef readonly list rejected
    cdef readonly list excluded      # (ExcludedConfig or GraphChoice, reason) for explain()
    cdef object keep
    cdef object repro
    cdef readonly size_t stream      # the stream the handle is bound to (the workspace is kept per stream)
    cdef readonly object key         # the problem's cache key (the knob sweep sends it to its worker), or None

    def __cinit__(self):
        self.rejected = []
        self.excluded = []
        self.n = 3
        self.handle = NULL
        for i in range(MAX_TENSORS):
            self.ptrs[i] = NULL
            self.align[i] = 16

    cdef int set_shapes(self, str op, int dtype, str layout, x_shape, w_shape, y_shape, geom,
                        double alpha) except -1:
        self.op = op
        self.dtype = dtype
        self.layout = layout
        self.x_shape = tuple(int(s) for s in x_shape)
        self.w_shape = tuple(int(s) for s in w_shape)
        self.y_shape = tuple(int(s) for s in y_shape)
        self.x_strides = params.layout_strides(self.x_shape, layout)
        self.w_strides = params.layout_strides(self.w_shape, layout)
        self.y_strides = params.layout_strides(self.y_shape, layout)
        self.b_shape = (1, self.w_shape[0]) + (1,) * (len(self.w_shape) - 2)
        # geom.padding: one int per dim (the same before and after), or one (before, after) pair per
        # dim: a spatial tile's one-sided padding (params.one_sided)
        pairs = params.padding_pairs(geom.padding)
        self.padding = tuple(lo for lo, _ in pairs)
        self.stride = tuple(int(v) for v in geom.stride)
        self.dilation = tuple(int(v) for v in geom.dilation)
        self.alpha = alpha
        self.n = 5 if op == "fused" else 3
        self.epilogue = None
        nsp = len(self.x_shape) - 2
        if not 1 <= nsp <= 3 or len(self.w_shape) != nsp + 2 or len(self.y_shape) != nsp + 2:
            raise ValueError("x %s, w %s and y %s must all be (N, C, *spatial) with 1 to 3 spatial dims"
                             % (self.x_shape, self.w_shape, self.y_shape))
        if not len(self.padding) == len(self.stride) == len(self.dilation) == nsp:
            raise ValueError("padding %s, stride %s and dilation %s must have %d entries (one per spatial dim)"
                             % (self.padding, self.stride, self.dilation, nsp))
        # cuDNN's graph API wants y's size to follow exactly from x's; a
        # transposed convolution with output_padding gives an x larger than
        # that.  The pre-padding alone fixes where each output window sits,
        # so the post-padding is chosen (nearest the one asked for: the
        # pre-padding, or a tile's own post-padding) to make the sizes agree;
        # the result is unchanged.
        post = []
        for i in range(nsp):
            effk = self.dilation[i] * (self.w_shape[2 + i] - 1) + 1
            lo = (self.y_shape[2 + i] - 1) * self.stride[i] + effk - self.x_shape[2 + i] - self.padding[i]
            post.append(min(max(pairs[i][1], lo), lo + self.stride[i] - 1))
        self.post_padding = tuple(post)
        return 0

    cdef int set_epilogue(self, epi) except -1:
        """Op 'epilogue': what follows the convolution (an activations.Epilogue); its tensors
        are x, w, y, then z and the bias where given, in that order.  Op 'dgrad_act': the input
        gradient times the activation's derivative at ``act_input`` (the input's shape), which
        takes z's slot (``epi.has_z``); its tensors are dx (the result), w, dy, act_input."""
        if self.op not in EPILOGUE_OPS:
            raise ValueError("an epilogue belongs to op 'epilogue' or 'dgrad_act', not %r" % self.op)
        if self.op == "dgrad_act" and not (epi.has_z and not epi.has_bias and epi.alpha1 == 1.0
                                           and epi.alpha2 == 1.0 and epi.act.name != "identity"):
            raise ValueError("op 'dgrad_act' takes an activation and its input, and no bias or scale")
        self.epilogue = epi
        self.n = 3 + int(epi.has_z) + int(epi.has_bias)
        return 0

    cdef list epilogue_ops(self, BackendDescriptor X, BackendDescriptor W, BackendDescriptor Y,
                           BackendDescriptor conv, int ct, bint dbl):
        """conv -> (alpha1 *) + alpha2 * z -> + bias -> act, through virtual intermediates in the
        compute type, in the order of the fused graph above; the scale alpha1 goes on the first
        pointwise node (an IDENTITY node where nothing else follows the convolution)."""
        epi = self.epilogue
        cdef int slot = 3
        steps = []                       # (mode, second operand, alpha1, alpha2, attributes)
        a1 = epi.alpha1
        if epi.has_z:
            Z = tensor(4 + slot - 3, self.dtype, self.y_shape, self.y_strides, self.align[slot], False)
            slot += 1
            steps.append((<int>CUDNN_POINTWISE_ADD, Z, a1, epi.alpha2, None))
            a1 = 1.0
        if epi.has_bias:
            B = tensor(4 + slot - 3, self.dtype, self.b_shape, params.layout_strides(self.b_shape, "NCHW"),
                       self.align[slot], False)
            steps.append((<int>CUDNN_POINTWISE_ADD, B, a1, 1.0, None))
            a1 = 1.0
        act = activations.cudnn_forward(epi.act)
        if act is not None:
            steps.append((act[0], None, a1, 1.0, act[1]))
            a1 = 1.0
        if a1 != 1.0 or not steps:
            steps.append((<int>CUDNN_POINTWISE_IDENTITY, None, a1, 1.0, None))
        virtual = (UID_T0, UID_T1, UID_T2, UID_T3, UID_T4)
        cur = tensor(virtual[0], ct, self.y_shape, self.y_strides, 16, True)
        ops = [conv_operation("forward", X, W, cur, conv, dbl)]
        for i, (mode, other, alpha1, alpha2, attrs) in enumerate(steps):
            out = Y if i == len(steps) - 1 else tensor(virtual[i + 1], ct, self.y_shape, self.y_strides, 16, True)
            ops.append(pointwise_operation(mode, ct, cur, other, out, alpha2, dbl, alpha1, attrs))
            cur = out
        return ops

    cdef list dgrad_act_ops(self, BackendDescriptor DX, BackendDescriptor W, BackendDescriptor DY,
                            BackendDescriptor conv, int ct, bint dbl):
        """backward data -> (virtual, compute type) -> the activation's backward mode with the
        activation's input (uid 4) -> dx."""
        T0 = tensor(UID_T0, ct, self.x_shape, self.x_strides, 16, True)
        A = tensor(4, self.dtype, self.x_shape, self.x_strides, self.align[3], False)
        mode, attrs = activations.cudnn_backward(self.epilogue.act)
        return [conv_operation("backward_data", T0, W, DY, conv, dbl),
                pointwise_backward_operation(mode, ct, A, T0, DX, dbl, attrs)]

    cdef list build_ops(self):
        """The operation nodes: one convolution, or (fused) conv -> +alpha*z
        -> +bias -> relu, through virtual FLOAT intermediates, in the order
        that gets the precompiled fused engines."""
        cdef bint dbl = self.dtype == <int>CUDNN_DATA_DOUBLE
        cdef int ct = <int>CUDNN_DATA_DOUBLE if dbl else <int>CUDNN_DATA_FLOAT
        X = tensor(UID_X, self.dtype, self.x_shape, self.x_strides, self.align[0], False)
        W = tensor(UID_W, self.dtype, self.w_shape, self.w_strides, self.align[1], False)
        Y = tensor(UID_Y, self.dtype, self.y_shape, self.y_strides, self.align[2], False)
        conv = convolution(ct, self.padding, self.post_padding, self.stride, self.dilation)
        if self.op == "epilogue":
            return self.epilogue_ops(X, W, Y, conv, ct, dbl)
        if self.op == "dgrad_act":
            return self.dgrad_act_ops(X, W, Y, conv, ct, dbl)
        if self.op != "fused":
            return [conv_operation(self.op, X, W, Y, conv, dbl)]
        Z = tensor(UID_Z, self.dtype, self.y_shape, self.y_strides, self.align[3], False)
        B = tensor(UID_B, self.dtype, self.b_shape, params.layout_strides(self.b_shape, "NCHW"),
                   self.align[4], False)
        T0 = tensor(UID_T0, ct, self.y_shape, self.y_strides, 16, True)
        T1 = tensor(UID_T1, ct, self.y_shape, self.y_strides, 16, True)
        T2 = tensor(UID_T2, ct, self.y_shape, self.y_strides, 16, True)
        return [conv_operation("forward", X, W, T0, conv, dbl),
                pointwise_operation(<int>CUDNN_POINTWISE_ADD, ct, T0, Z, T1, self.alpha, dbl),
                pointwise_operation(<int>CUDNN_POINTWISE_ADD, ct, T1, B, T2, 1.0, dbl),
                pointwise_operation(<int>CUDNN_POINTWISE_RELU_FWD, ct, T2, None, Y, 1.0, dbl)]

    cdef BackendDescriptor ensure_graph(self):
        if self.graph is None:
            self.graph = operation_graph(self.build_ops(), self.handle)
        return self.graph

    def describe(self):
        names = ["x", "w", "y", "z", "bias"]
        shapes = [self.x_shape, self.w_shape, self.y_shape, self.y_shape, self.b_shape]
        strides = [self.x_strides, self.w_strides, self.y_strides, self.y_strides,
                   params.layout_strides(self.b_shape, "NCHW")]
        if self.op == "dgrad_act":                                    # the activation's input in z's slot
            names[3], shapes[3], strides[3] = "act_input", self.x_shape, self.x_strides
        elif self.epilogue is not None and not self.epilogue.has_z:   # the bias in z's slot
            del names[3], shapes[3], strides[3]
        lines = ["%s: dims=%s strides=%s alignment=%d dtype=%s" % (
            names[i], shapes[i], strides[i], self.align[i], _DTYPE_NAMES.get(self.dtype, self.dtype))
            for i in range(self.n)]
        lines.append("convolution: padding=%s post_padding=%s stride=%s dilation=%s groups=%d layout=%s%s" % (
            self.padding, self.post_padding, self.stride, self.dilation, self.x_shape[1] // self.w_shape[1], self.layout,
            (" alpha=%r" % self.alpha) if self.op == "fused" else ""))
        if self.epilogue is not None:
            e = self.epilogue
            lines.append("epilogue: %s(%r * conv%s%s)%s" % (
                e.act.name, e.alpha1, " + %r * z" % e.alpha2 if e.has_z else "", " + bias" if e.has_bias else "",
                " with %s" % (e.act.params,) if e.act.params else ""))
        return "\n".join(lines)


_DTYPE_NAMES = {0: "float32", 1: "float64", 2: "float16", 9: "bfloat16"}


# ---------------------------------------------------------------------------
# Choices: finalized plans
# ---------------------------------------------------------------------------

cdef class GraphChoice:
    """One engine config with its finalized plan, as the search saw it."""
    cdef readonly str op
    cdef readonly int engine_index
    cdef readonly tuple knobs
    cdef readonly str tag
    cdef readonly object workspace
    cdef readonly tuple notes
    cdef readonly tuple behavior
    cdef readonly str how
    cdef readonly double time_ms
    cdef readonly bint benchmarked
    cdef readonly tuple samples     # the timed runs (ms) of a benchmarked plan
    cdef public double issue_ms     # its host issue time (gpu_timing.rank_host_aware), or -1: not measured
    cdef public object plan_json    # the plan's JSON once read (choice_to_record), or None
    cdef BackendDescriptor plan
    cdef int64_t ws_size
    cdef int n
    cdef int64_t uids[MAX_TENSORS]
    # The variant packs of its last pointer sets (graph_descriptors.VariantPacks).
    cdef VariantPacks packs
    # The workspace blocks kept with the choice, one per stream (cudnnconv.workspace.kept_pointer
    # says why): ws_mem for the stream ws_stream, ws_more a dict for any other.
    cdef public object ws_mem
    cdef public size_t ws_stream
    cdef public object ws_more

    def __cinit__(self):
        self.packs = variant_packs(NULL, 0)     # an empty ring until _new_choice gives it the uids
        self.issue_ms = -1.0

    @property
    def deterministic(self):
        return "NONDETERMINISTIC" not in self.notes

    cdef void forget_packs(self):
        """Drop the variant packs (they may hold pointers about to be freed,
        such as the search's workspace)."""
        self.packs.clear()

    cdef int run(self, cudnnHandle_t h, void** ptrs, void* ws) except -1:
        """Execute on these pointers, with the variant pack of an earlier run
        on the same pointers and workspace where one is kept."""
        cdef cudnnBackendDescriptor_t vp = self.packs.get(ptrs, ws)
        trace(TRACE_PACK)
        with nogil:
            check(cudnnBackendExecute(h, self.plan.ptr, vp))
        trace(TRACE_EXECUTE)
        return 0

    def variant_pack_cost_us(self, int repeats=2000):
        """µs cuDNN takes to build this plan's variant pack for new pointers
        (``VariantPacks.build_cost_us``); None before the plan has run."""
        return self.packs.build_cost_us(repeats)

    def describe(self):
        return "%s ws=%d (%s)" % (self.tag, self.ws_size, self.how)

    def as_dict(self):
        return {"engine": ENGINE, "op": self.op, "engine_index": self.engine_index, "knobs": dict(self.knobs),
                "tag": self.tag, "workspace": self.ws_size, "numerical_notes": list(self.notes),
                "behavior_notes": list(self.behavior), "how": self.how,
                "time_ms": self.time_ms if self.benchmarked else -1.0, "deterministic": self.deterministic,
                "benchmarked": self.benchmarked, "issue_ms": self.issue_ms}

    def __repr__(self):
        return "GraphChoice(%s %s)" % (self.op, self.describe())


cdef list _get_descriptors(BackendDescriptor owner, cudnnBackendAttributeName_t name,
                           cudnnBackendDescriptorType_t kind, int64_t capacity):
    """The descriptors ``owner`` holds under attribute ``name``, at most
    ``capacity``: cuDNN fills descriptors of ``kind`` made here, which are then
    finalized (cuDNN made them so)."""
    cdef cudnnBackendDescriptor_t* arr
    cdef BackendDescriptor d
    cdef int64_t got = 0
    ds = [create(kind) for _ in range(capacity)]
    arr = <cudnnBackendDescriptor_t*>malloc(capacity * sizeof(cudnnBackendDescriptor_t))
    if arr == NULL:
        raise MemoryError()
    try:
        for i in range(capacity):
            d = ds[i]
            arr[i] = d.ptr
        check(cudnnBackendGetAttribute(owner.ptr, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, capacity, &got, <void*>arr))
    finally:
        free(arr)
    got = min(got, capacity)
    for i in range(got):
        d = ds[i]
        d.finalized = True
    return ds[:got]


cdef list _heuristic_configs(BackendDescriptor graph, int mode):
    """The engine configs heuristics ``mode`` proposes, best first.  A mode
    that proposes nothing, or refuses the graph, gives an empty list."""
    cdef BackendDescriptor heur
    cdef int64_t count = 0
    cdef int64_t got = 0
    cdef cudnnBackendDescriptor_t* arr
    cdef BackendDescriptor cfg
    try:
        heur = create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR)
        heur.set_desc(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph)
        heur.set_enum(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, mode)
        heur.finalize()
        check(cudnnBackendGetAttribute(heur.ptr, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                       0, &count, NULL))
    except MemoryError:
        raise
    except CuDNNError as e:
        _log.debug("graph: heuristics mode %d refused the graph (%s: %s)", mode, e.name, e.message)
        return []
    if count <= 0:
        return []
    return _get_descriptors(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, count)


cdef tuple _config_info(BackendDescriptor cfg):
    """(global index, knobs, numerical notes, behavior notes, workspace) of a config."""
    cdef int64_t count = 0
    cdef int buf[NOTE_CAP]
    cdef int n
    cdef BackendDescriptor eng = create(CUDNN_BACKEND_ENGINE_DESCRIPTOR)
    cdef BackendDescriptor kc
    check(cudnnBackendGetAttribute(cfg.ptr, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                   1, &count, <void*>&eng.ptr))
    eng.finalized = True
    idx = eng.get_int64(CUDNN_ATTR_ENGINE_GLOBAL_INDEX)
    n = eng.get_enums(CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE, buf, NOTE_CAP)
    notes = tuple(NUMERICAL_NOTES.get(buf[i], str(buf[i])) for i in range(min(n, NOTE_CAP)))
    n = eng.get_enums(CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE, buf, NOTE_CAP)
    behavior = tuple(BEHAVIOR_NOTES.get(buf[i], str(buf[i])) for i in range(min(n, NOTE_CAP)))
    # the knob choices are read into descriptors made beforehand, as many as there are knob types (as
    # cudnn-frontend reads them).  A count-only query (no array) found none on cuDNN 9.19, so every
    # config read as knob-less (H200, 2026-12-02: a heuristics config of a 3x3 fp16 forward reads
    # eng62_k2=4_k13=0_k18=0_k25=1_k27=7_k28=1 this way, eng62 the other).  Configs are deduplicated by
    # tag, so a benchmark search used to lose every config that differed from an earlier one by its
    # knobs alone (mode B's or FALLBACK's variant of an engine mode A had proposed), configs
    # PyTorch's own search keeps apart.  A tuning record of that time replays exactly through its
    # plan JSON; only where the JSON cannot be loaded is its config rebuilt, with the knobs it
    # recorded (none: the engine's defaults).
    knobs = []
    for kc in _get_descriptors(cfg, CUDNN_ATTR_ENGINECFG_KNOB_CHOICES, CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR,
                               <int>CUDNN_KNOB_TYPE_COUNTS):
        kc.get_enums(CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE, CUDNN_TYPE_KNOB_TYPE, buf, 1)
        knobs.append((buf[0], kc.get_int64(CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE)))
    knobs.sort()
    ws = cfg.get_int64(CUDNN_ATTR_ENGINECFG_WORKSPACE_SIZE)
    return idx, tuple(knobs), notes, behavior, ws


def make_tag(idx, knobs):
    """A stable, readable id of a config: eng62_k2=1_k3=0."""
    return "eng%d" % idx + "".join("_k%d=%d" % kv for kv in knobs)


def exclude_reason(notes, int dtype, opts, workspace_size):
    """Why the flags drop a config with these notes (PyTorch's
    filterEngineConfigs), or None when they keep it: never
    DOWN_CONVERT_INPUTS; deterministic -> no NONDETERMINISTIC; fp32 without
    TF32 -> no TENSOR_CORE; within the workspace limit."""
    if "DOWN_CONVERT_INPUTS" in notes:
        return "DOWN_CONVERT_INPUTS is never used"
    if opts.deterministic and "NONDETERMINISTIC" in notes:
        return "deterministic=True drops NONDETERMINISTIC"
    if dtype == <int>CUDNN_DATA_FLOAT and not opts.allow_tf32 and "TENSOR_CORE" in notes:
        return "allow_tf32=False drops TENSOR_CORE on float32"
    if opts.workspace_limit is not None and workspace_size > opts.workspace_limit:
        return "workspace %d > workspace_limit %d" % (workspace_size, opts.workspace_limit)
    return None


def keep_config(notes, int dtype, opts, workspace_size):
    """Whether the flags allow a config with these notes (see exclude_reason)."""
    return exclude_reason(notes, dtype, opts, workspace_size) is None


class ExcludedConfig:
    """An engine config the search did not time (for explain()): its tag,
    notes and workspace as the config states them."""
    __slots__ = ("tag", "engine_index", "knobs", "notes", "behavior", "workspace")

    def __init__(self, tag, engine_index, knobs, notes, behavior, workspace):
        self.tag, self.engine_index, self.knobs = tag, engine_index, knobs
        self.notes, self.behavior, self.workspace = notes, behavior, workspace

    @property
    def deterministic(self):
        return "NONDETERMINISTIC" not in self.notes

    def describe(self):
        return "%s ws=%d (excluded)" % (self.tag, self.workspace)

    def __repr__(self):
        return "ExcludedConfig(%s)" % self.describe()


cdef GraphChoice _make_choice(GraphArgs a, BackendDescriptor cfg, str how, opts, set seen):
    """A finalized plan for ``cfg``, or None when the flags drop it or cuDNN
    refuses to finalize it (recorded in ``a.rejected``)."""
    cdef BackendDescriptor plan
    try:
        idx, knobs, notes, behavior, cfg_ws = _config_info(cfg)
    except CuDNNError as e:
        a.rejected.append(("config?", e.name))
        return None
    tag = make_tag(idx, knobs)
    if tag in seen:
        return None
    seen.add(tag)
    reason = exclude_reason(notes, a.dtype, opts, cfg_ws)
    if reason is None:
        reason = errata.graph_reason(a.op, idx, a.dtype, opts.allow_tf32)
    if reason is not None:
        a.excluded.append((ExcludedConfig(tag, idx, knobs, notes, behavior, cfg_ws), reason))
        return None
    try:
        plan = create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR)
        plan.set_handle(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, a.handle)
        plan.set_desc(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, cfg)
        plan.finalize()
        ws = plan.get_int64(CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE)
    except CuDNNError as e:
        a.rejected.append((tag, e.name))
        a.excluded.append((ExcludedConfig(tag, idx, knobs, notes, behavior, cfg_ws),
                           "failed to finalize: %s" % e.name))
        _log.debug("graph: %s: plan %s refused at finalize (%s)", a.op, tag, e.name)
        return None
    if opts.workspace_limit is not None and ws > opts.workspace_limit:
        a.excluded.append((ExcludedConfig(tag, idx, knobs, notes, behavior, ws),
                           "plan workspace %d > workspace_limit %d" % (ws, opts.workspace_limit)))
        return None
    plan.keep(a.handle_obj)        # the plan dies before its handle
    return _new_choice(a.op, idx, knobs, tag, ws, notes, behavior, plan, a.n, how)


cdef GraphChoice _new_choice(str op, idx, knobs, str tag, ws, notes, behavior, BackendDescriptor plan, int n,
                             how):
    """A choice around a finalized plan: fresh, not benchmarked, no variant pack yet."""
    plan.text = tag
    cdef GraphChoice c = GraphChoice.__new__(GraphChoice)
    c.op = op
    c.engine_index = idx
    c.knobs = knobs
    c.tag = tag
    c.ws_size = ws
    c.workspace = ws
    c.notes = notes
    c.behavior = behavior
    c.how = how
    c.time_ms = -1.0
    c.benchmarked = False
    c.samples = ()
    c.plan_json = None
    c.plan = plan
    c.n = n
    c.uids[0] = UID_X
    c.uids[1] = UID_W
    c.uids[2] = UID_Y
    c.uids[3] = UID_Z
    c.uids[4] = UID_B
    c.packs = variant_packs(c.uids, c.n)
    c.ws_mem = None
    c.ws_stream = 0
    c.ws_more = None
    return c


_MODE_B_LOCK = threading.Lock()     # mode B's queries one at a time, as cuDNN's frontend runs them


def _mode_b_applies(GraphArgs a):
    """Heuristics mode B (cuDNN's neural-net heuristic) serves 2-d convolutions
    without groups or dilation only (and no fused graph)."""
    return a.op not in ("fused",) + EPILOGUE_OPS and len(a.x_shape) == 4 and a.x_shape[1] == a.w_shape[1] \
        and all(d == 1 for d in a.dilation)


def _heuristic_choices(GraphArgs a, opts, seen=None, bint mode_b=False):
    """Mode A's configs, then (``mode_b``, where it applies) mode B's, then
    FALLBACK's (each mode queried only when needed), as finalized plans,
    filtered by the flags, each config once (``seen``: the tags met so far,
    which it adds to).  Mode B costs the host 10-100x mode A's query, so only
    a benchmarking search asks it."""
    cdef GraphChoice c
    if seen is None:
        seen = set()
    modes = [(<int>CUDNN_HEUR_MODE_A, "heuristic")]
    if mode_b and _mode_b_applies(a):
        modes.append((<int>CUDNN_HEUR_MODE_B, "heuristic"))
    modes.append((<int>CUDNN_HEUR_MODE_FALLBACK, "fallback"))
    for mode, how in modes:
        if mode == <int>CUDNN_HEUR_MODE_B:
            with _MODE_B_LOCK:
                cfgs = _heuristic_configs(a.graph, mode)
        else:
            cfgs = _heuristic_configs(a.graph, mode)
        for cfg in cfgs:
            c = _make_choice(a, cfg, how, opts, seen)
            if c is not None:
                yield c


cdef int64_t _engine_count(BackendDescriptor graph) except -1:
    """How many engines cuDNN has for ``graph`` (0 where it will not say)."""
    try:
        return graph.get_int64(CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT)
    except CuDNNError as e:
        _log.debug("graph: the engine count was refused (%s)", e.name)
        return 0


cdef BackendDescriptor _engine(BackendDescriptor graph, int64_t idx):
    """Engine ``idx`` of ``graph``, finalized (CuDNNError where the engine does not take the graph)."""
    eng = create(CUDNN_BACKEND_ENGINE_DESCRIPTOR)
    eng.set_desc(CUDNN_ATTR_ENGINE_OPERATION_GRAPH, graph)
    eng.set_int64(CUDNN_ATTR_ENGINE_GLOBAL_INDEX, idx)
    eng.finalize()
    return eng


cdef GraphChoice _config_choice(GraphArgs a, int64_t idx, knobs, str how, opts, set seen):
    """Engine ``idx`` of ``a``'s graph with the knob setting ``knobs`` as a finalized plan, or None
    where ``_make_choice`` drops it.  CuDNNError where the engine or the config will not finalize."""
    return _make_choice(a, _engine_config(_engine(a.graph, idx), knobs), how, opts, seen)


cdef list _engines_and_knobs(BackendDescriptor graph):
    """``[(engine index, [KnobInfo, ...] or the status name of its refusal), ...]`` for every
    engine ``graph`` has."""
    out = []
    for idx in range(_engine_count(graph)):
        try:
            out.append((idx, _knob_infos(_engine(graph, idx))))
        except CuDNNError as e:
            out.append((idx, e.name))
    return out


cdef list _knob_infos(BackendDescriptor eng):
    """A finalized engine's knobs as knob_space.KnobInfo (CuDNNError where it will not say them)."""
    cdef BackendDescriptor ki
    cdef int kt[1]
    out = []
    for ki in _get_descriptors(eng, CUDNN_ATTR_ENGINE_KNOB_INFO, CUDNN_BACKEND_KNOB_INFO_DESCRIPTOR,
                               <int64_t>CUDNN_KNOB_TYPE_COUNTS):
        ki.get_enums(CUDNN_ATTR_KNOB_INFO_TYPE, CUDNN_TYPE_KNOB_TYPE, kt, 1)
        out.append(knob_space.KnobInfo(kt[0], ki.get_int64(CUDNN_ATTR_KNOB_INFO_MINIMUM_VALUE),
                                       ki.get_int64(CUDNN_ATTR_KNOB_INFO_MAXIMUM_VALUE),
                                       ki.get_int64(CUDNN_ATTR_KNOB_INFO_STRIDE)))
    return out


def _exhaustive_extra(GraphArgs a, opts, set seen, budget):
    """Every engine of the graph with cuDNN's default knobs, as finalized plans
    filtered by the flags, past the configs in ``seen`` (the heuristics' own),
    until ``budget`` runs out.  An engine that does not take the graph is
    skipped; a config that does not finalize is skipped and listed with its
    status (``a.rejected``, and ``a.excluded`` where the plan was refused).
    This is what the exhaustive search adds in this process where the knob sweep
    is off or its worker could not run (cudnnconv.knob_sandbox)."""
    cdef GraphChoice c
    cdef BackendDescriptor cfg, eng
    cdef int64_t count = _engine_count(a.graph)
    for idx in range(count):
        if budget.exhausted():
            return
        tag = make_tag(idx, ())
        if tag in seen:
            continue
        try:
            eng = _engine(a.graph, idx)
        except CuDNNError as e:             # an engine that will not take the graph: skipped
            _log.debug("graph: engine %d skipped (%s)", idx, e.name)
            continue
        try:
            cfg = _engine_config(eng, ())
        except CuDNNError as e:
            a.rejected.append((tag, e.name))
            continue
        c = _make_choice(a, cfg, "exhaustive", opts, seen)     # dedups by the tag the config reads back
        if c is not None:
            yield c


def _swept_choices(GraphArgs a, opts, set seen, swept):
    """The knob sweep's fastest settings (``swept``: a knob_sandbox.Sweep), as finalized plans in
    this process, past the configs in ``seen``; every other setting it tried goes to
    ``a.excluded`` with what the worker found (its time, or why it was dropped), for explain().
    Each of these settings ran to completion in the worker on this very problem."""
    cdef GraphChoice c
    cdef BackendDescriptor cfg
    bring = {r.tag for r in swept.fastest(knob_sandbox.RETIME, seen)}
    for r in swept.results:
        if r.tag in seen:
            continue
        if r.tag not in bring:
            a.excluded.append((ExcludedConfig(r.tag, r.engine_index, r.knobs, r.notes, r.behavior, r.workspace),
                               r.reason()))
            continue
        try:
            c = _config_choice(a, r.engine_index, r.knobs, "exhaustive", opts, seen)
        except CuDNNError as e:
            a.rejected.append((r.tag, e.name))
            continue
        if c is not None:
            yield c


# The knob sweep's side in its worker process (cudnnconv.knob_sweep_worker); the search never calls these.

def sweep_args(key, ptrs):
    """The problem ``key`` names, bound to the worker's own device pointers ``ptrs`` (one per
    tensor: x, w, y, and z and bias for the fused graph) on this thread's handle, its operation
    graph built."""
    cdef Handle h = get_handle(int(key.device))
    cdef cudnnHandle_t hp = h.bind(current_stream())
    cdef GraphArgs a = _args_from_key(key, h, hp)
    if len(ptrs) != a.n:
        raise ValueError("%d pointers for a %s problem of %d tensors" % (len(ptrs), key.op, a.n))
    for i in range(a.n):
        if alignment(<size_t>ptrs[i]) < a.align[i]:
            raise ValueError("pointer %d is aligned to %d bytes, the key says %d"
                             % (i, alignment(<size_t>ptrs[i]), a.align[i]))
        a.ptrs[i] = <void*><size_t>ptrs[i]
    a.ensure_graph()
    return a


def sweep_options(key):
    """The search options a key was made under."""
    return _key_opts(key)


def sweep_heuristics(GraphArgs a, opts):
    """The configs a benchmarking search starts from: mode A's, mode B's where it applies,
    FALLBACK's, as finalized plans (filtered by the flags)."""
    return list(_heuristic_choices(a, opts, None, True))


def sweep_engines(GraphArgs a):
    """``[(engine index, [KnobInfo, ...]), ...]`` for every engine that takes ``a``'s graph."""
    return [(idx, infos) for idx, infos in _engines_and_knobs(a.graph) if type(infos) is list]


def sweep_build(GraphArgs a, int engine_index, knobs, opts):
    """Engine ``engine_index`` with the knob setting ``knobs`` as a finalized plan, or None where
    the flags or the workspace exclude it (``a.excluded`` says why).  CuDNNError where it does
    not finalize."""
    return _config_choice(a, engine_index, knobs, "exhaustive", opts, set())


def sweep_runner(GraphChoice c, GraphArgs a, size_t ws_ptr):
    """A callable that executes ``c`` once on ``a``'s pointers with the workspace at ``ws_ptr``."""
    return _plan_run(c, a, ws_ptr)


cdef class _PlanRun:
    """One execute of a plan on the search's pointers (what gpu_timing times)."""
    cdef GraphChoice c
    cdef GraphArgs a
    cdef void* ws

    def __call__(self):
        self.c.run(self.a.handle, self.a.ptrs, self.ws)


cdef _PlanRun _plan_run(GraphChoice c, GraphArgs a, size_t ws_ptr):
    cdef _PlanRun runner = _PlanRun.__new__(_PlanRun)
    runner.c = c
    runner.a = a
    runner.ws = <void*>ws_ptr
    return runner


def _benchmark(GraphArgs a, opts):
    """Every plan of the heuristics (mode A, FALLBACK and, where it applies, mode B; with
    ``benchmark_settings(exhaustive=True)``, besides, the knob sweep's fastest settings,
    ``_swept_choices``, or where it did not run or timed nothing every engine with its default
    knobs, ``_exhaustive_extra``) within the workspace budget, timed by
    cudnnconv.gpu_timing (warm-up runs, then the median of k spin-guarded
    CUDA-event samples), in cudnnconv.ranking's noise-robust order (cheapest
    first, host-aware where the runs are short: gpu_timing.rank_host_aware;
    near-ties within the margin to the smaller workspace, then the tag)."""
    import cupy
    cdef GraphChoice c
    cdef _PlanRun runner
    exhaustive = gpu_timing.EXHAUSTIVE
    clock = exhaustive_budget.Budget(gpu_timing.EXHAUSTIVE_BUDGET_S) if exhaustive else None
    seen = set()
    plans = list(_heuristic_choices(a, opts, seen, True))
    heuristic = {c.tag for c in plans}     # always timed, so exhaustive is never worse than benchmark
    swept_tags = set()
    if exhaustive:
        progress = exhaustive_budget.Progress("%s x=%s w=%s" % (a.op, a.x_shape, a.w_shape))
        swept = None
        sweep_s = clock.seconds * knob_sandbox.SHARE - clock.spent()
        if gpu_timing.KNOB_SWEEP and a.key is not None and params.persistent(a.key) \
                and sweep_s >= knob_sandbox.MIN_SWEEP_S:
            # every engine and knob setting, tried in a worker process (a setting can run a kernel
            # that never returns; cudnnconv.knob_sandbox), within its share of the budget; its
            # fastest settings are then built and timed here with the heuristics' own.  The GPU
            # is idle first, so that the caller's queued work does not share it with the worker.
            cupy.cuda.Device().synchronize()
            swept = knob_sandbox.sweep(a.key, sweep_s, progress,
                                       timing={"repeats": gpu_timing.REPEATS, "warmup": gpu_timing.WARMUP})
            a.excluded.extend((ExcludedConfig("knob sweep", -1, (), (), (), 0), "knob sweep: " + why)
                              for why in swept.problems)
            swept_tags = {r.tag for r in swept.results if r.status == "timed"}     # counted as it timed them
            if swept.ran:
                n = len(plans)
                plans.extend(_swept_choices(a, opts, seen, swept))
                heuristic.update(c.tag for c in plans[n:])      # what the sweep was for: always timed
        if swept is None or not swept.ran:
            # every engine with its default knobs, in this process, on a clock of its own where a
            # sweep ran and found nothing (half the budget): building ends at half of that clock,
            # counted from the search's start with the heuristics' own building where no sweep
            # ran (a config compiled at runtime can take hundreds of ms to finalize), so that the
            # rest is left for timing: a config built with no time left to time it is waste
            if swept is not None and swept.seconds >= knob_sandbox.MIN_SWEEP_S:
                clock = exhaustive_budget.Budget(clock.seconds / 2)     # a sweep that took time found nothing
            build_s = clock.seconds / 2 - clock.spent()
            plans.extend(_exhaustive_extra(a, opts, seen, exhaustive_budget.Budget(build_s)))
    budget = workspace.search_budget(opts.workspace_limit)
    for c in plans:
        if c.ws_size > budget:
            a.excluded.append((c, "workspace %d > the search budget %d" % (c.ws_size, budget)))
    plans = [c for c in plans if c.ws_size <= budget]
    mem, nbytes = workspace.allocate_for_search([c.ws_size for c in plans], budget)
    for c in plans:
        if c.ws_size > nbytes:
            a.excluded.append((c, "workspace %d > the %d bytes the search could allocate" % (c.ws_size, nbytes)))
    plans = [c for c in plans if c.ws_size <= nbytes]
    stream = cupy.cuda.get_current_stream()
    timed = []
    ws_ptr = workspace.pointer(mem)
    try:
        for c in plans:
            if exhaustive and c.tag not in heuristic and clock.exhausted():
                a.excluded.append((c, "not timed: the exhaustive search's %.1f s ran out" % clock.seconds))
                continue
            runner = _plan_run(c, a, ws_ptr)
            try:
                times = gpu_timing.time_samples(runner, stream=stream)
            except (CuDNNError, MemoryError) as e:
                a.rejected.append((c.tag, getattr(e, "name", type(e).__name__)))
                a.excluded.append((c, "failed to run: %s" % getattr(e, "name", type(e).__name__)))
                c.forget_packs()
                continue
            c.samples = tuple(times)
            c.time_ms = ranking.median_and_spread(times)[0]
            c.benchmarked = True
            c.how = "exhaustive" if exhaustive else "benchmark"
            c.forget_packs()          # they held the search workspace's pointer
            timed.append(c)
            if exhaustive and c.tag not in swept_tags:
                progress.add(c.tag, c.time_ms)
        timed = gpu_timing.rank_host_aware(timed, lambda ch: _plan_run(ch, a, ws_ptr), stream)
        if exhaustive:
            progress.done()
    finally:
        for c in timed:
            c.forget_packs()          # the issue-time runs held the search workspace's pointer too
        runner = None
        mem = None                    # the search workspace goes back to the pool now
    _log.debug("graph: %s: benchmarked %d plans: %s", a.op, len(timed),
               ", ".join("%s %.4f ms%s" % (ch.tag, ch.time_ms, " (issue %.4f)" % ch.issue_ms
                                            if ch.issue_ms >= 0 else "") for ch in timed[:8]))
    return timed


cdef class GraphDirection:
    """The graph engine's side of the shared search (cudnnconv.search)."""
    cdef readonly str op

    def __init__(self, op):
        self.op = op

    def candidates(self, GraphArgs a, opts, excluded=None):
        """Ranked choices.  ``excluded``, a list, receives (config, reason)
        for every config the search dropped (flags, workspace, failed to
        finalize or to run); the candidates are then a list, not lazy."""
        try:
            a.ensure_graph()
        except CuDNNError as e:
            raise e.add_context(self.context(a, None))
        if opts.benchmark:
            out = _benchmark(a, opts)
        else:
            out = _heuristic_choices(a, opts)
            if excluded is not None:
                out = list(out)
        if excluded is not None:
            excluded.extend(a.excluded)
        return out

    def default(self, GraphArgs a, opts):
        """deterministic without benchmark: the first deterministic config
        that runs (the graph API has no 'default algorithm')."""
        failures = []
        for c in self.candidates(a, opts):
            try:
                search.run_choice(self, a, c)
                return c
            except (MemoryError, CuDNNError) as e:
                failures.append(e)
                a.rejected.append((c.tag, getattr(e, "name", type(e).__name__)))
        if failures and all(isinstance(e, MemoryError) for e in failures):
            raise CuDNNOutOfMemoryError(4004, "every deterministic config ran out of memory",
                                        self.context(a, None))
        raise CuDNNError(_NOT_SUPPORTED, "no deterministic engine config could run this %s convolution"
                         % self.op, self.context(a, None))

    def execute(self, GraphArgs a, GraphChoice c, size_t ws_ptr):
        c.run(a.handle, a.ptrs, <void*>ws_ptr)

    def context(self, GraphArgs a, choice):
        text = "engine: graph, op: %s" % self.op
        if choice is not None:
            text += ", config: %s" % choice.describe()
        text += "\n" + a.describe()
        if a.rejected:
            text += "\nrefused: " + ", ".join("%s (%s)" % r for r in a.rejected[:16])
        if a.repro is not None:
            text += "\nrepro: " + params.repro(*a.repro)
        return text


DIRECTIONS = {op: GraphDirection(op) for op in ("forward", "fused", "epilogue", "dgrad_act", "backward_data",
                                                "backward_filter")}


# ---------------------------------------------------------------------------
# The per-thread plan cache
# ---------------------------------------------------------------------------

class PlanCache(AlgoCache):
    """One thread's finalized plans: the shared LRU of cudnnconv.cache
    (bounded, locked, observable, clearable) plus the hit path's lookup."""

    def __init__(self, name="graph", maxsize=1024):
        AlgoCache.__init__(self, name, maxsize)

    def fast_get(self, key, bint benchmark):
        """A usable plan for ``key``, counting a hit; None (and nothing
        counted: the search's get counts) otherwise."""
        with self._lock:
            value = self._data.get(key)
            if not _usable(value, benchmark):
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def count_miss(self):
        with self._lock:
            self.misses += 1


class GraphCaches:
    """All threads' plan caches seen as one: ``info()`` sums sizes, hits and
    misses over the live threads; ``clear()`` and ``set_maxsize()`` act on
    every thread's cache (a bound applies to each thread's cache).  get/peek/
    put act on the calling thread's cache."""

    def __init__(self, name="graph", maxsize=1024):
        self.name = name
        self._maxsize = maxsize
        self._caches = weakref.WeakSet()
        self._lock = threading.Lock()
        self._local = threading.local()

    def local(self):
        try:
            return self._local.cache
        except AttributeError:
            pass
        with self._lock:
            c = PlanCache(self.name, self._maxsize)
            self._caches.add(c)
        self._local.cache = c
        return c

    def _all(self):
        with self._lock:
            return list(self._caches)

    def get(self, key):
        return self.local().get(key)

    def peek(self, key):
        return self.local().peek(key)

    def put(self, key, value):
        self.local().put(key, value)

    def set_maxsize(self, maxsize):
        check_maxsize(maxsize)
        with self._lock:
            self._maxsize = maxsize
        for c in self._all():
            c.set_maxsize(maxsize)

    def clear(self):
        """Empty every thread's cache, and forget the graph records loaded
        from tuning files (they are decoded on a miss): the next call searches."""
        for c in self._all():
            c.clear()
        _forget_records(ENGINE)

    def items(self):
        return self.local().items()

    def info(self):
        size = hits = misses = 0
        for c in self._all():
            i = c.info()
            size += i.size
            hits += i.hits
            misses += i.misses
        return CacheInfo(size, self._maxsize, hits, misses)

    def __len__(self):
        return self.info().size


CACHE = GraphCaches("graph")


# ---------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------

cdef dict _DTYPE_CODES = {}


cdef int _dtype_code(dt) except -1:
    code = _DTYPE_CODES.get(dt)
    if code is None:
        code = _DTYPE_CODES[dt] = params.cudnn_dtype(dt)
    return code


cdef inline size_t _workspace(GraphChoice c, size_t stream) except? 0:
    """The workspace pointer ``c`` runs with on ``stream``: the block it keeps for that stream
    (cudnnconv.workspace.kept_pointer), looked up without a Python call when it has one."""
    if c.ws_size <= 0:
        return 0
    if c.ws_mem is not None and c.ws_stream == stream:
        return <size_t>c.ws_mem.ptr
    return <size_t>workspace.kept_pointer(c, stream)


cdef inline bint _explain_active():
    """explain.active() (a search handler is set on this thread), without
    its Python frame (run's hot path)."""
    return _cstate.get_state().explain is not None


cdef class GraphExecutor(Executor):
    """A GraphChoice bound to this thread's handle: what a bound call plan
    (cudnnconv.callplan) runs.  No key, no lookup: the plan was looked up
    when it was bound, and the call plan drops this object when a choice
    cache drops or replaces an entry (cudnnconv.core.state's generation)."""
    cdef GraphChoice c
    cdef Handle h
    cdef object cache          # this thread's PlanCache: a bound call counts as its hit

    cdef int execute(self, size_t stream, void** ptrs) except -1:
        cdef GraphChoice c = self.c
        cdef cudnnHandle_t hp = self.h.bind(stream)
        trace(TRACE_HANDLE)
        c.run(hp, ptrs, <void*>_workspace(c, stream))
        self.cache.hits += 1
        return 0


def bind(choice, int device):
    """A GraphExecutor for ``choice`` on this thread's handle of ``device``;
    None for anything but a GraphChoice of a forward, backward-data or
    backward-filter problem (a fused call keeps the full path)."""
    if type(choice) is not GraphChoice or (<GraphChoice>choice).op == "fused" \
            or (<GraphChoice>choice).op in EPILOGUE_OPS:
        return None
    cdef GraphExecutor ex = GraphExecutor.__new__(GraphExecutor)
    ex.engine = ENGINE
    ex.choice = choice
    ex.c = <GraphChoice>choice
    ex.h = get_handle(device)
    ex.cache = CACHE.local()
    return ex


cdef GraphArgs _args(str op, int dtype, x, w, y, geom, opts, str layout, double alpha, Handle h,
                     cudnnHandle_t hp, size_t stream, repro, void** ptrs, int n, epi=None):
    cdef GraphArgs a = GraphArgs.__new__(GraphArgs)
    a.set_shapes(op, dtype, layout, x.shape, w.shape, y.shape, geom, alpha)
    if epi is not None:
        a.set_epilogue(epi)
    for i in range(n):
        a.ptrs[i] = ptrs[i]
        a.align[i] = alignment(<size_t>ptrs[i])
    a.handle = hp
    a.handle_obj = h
    a.stream = stream
    a.repro = repro
    a.keep = (x, w, y)
    return a


def run(str op, x, w, y, geom, opts, str layout, int device, repro=None, z=None, bias=None, double alpha=1.0,
        epilogue=None):
    """Run one (already split, already packed) problem on the graph engine.

    ``x``, ``w``, ``y`` are in the forward roles whatever the direction
    (backward data writes ``x``, backward filter writes ``w``; fused:
    y = relu(conv(x, w) + alpha*z + bias); epilogue: y = act(alpha1 * conv(x, w)
    + alpha2 * z + bias) as ``epilogue``, an activations.Epilogue, says, with
    ``z`` and ``bias`` where it says they are given).  Returns the choice that ran.
    """
    cdef void* ptrs[MAX_TENSORS]
    cdef int n = 3
    cdef GraphChoice c
    cdef GraphArgs a
    cdef object cache
    trace(TRACE_ENGINE)
    cdef int dtype = _dtype_code(x.dtype)
    ptrs[0] = <void*><size_t>x.data.ptr
    ptrs[1] = <void*><size_t>w.data.ptr
    ptrs[2] = <void*><size_t>y.data.ptr
    if op == "fused":
        n = 5
        ptrs[3] = <void*><size_t>z.data.ptr
        ptrs[4] = <void*><size_t>bias.data.ptr
        extra = (alignment(<size_t>ptrs[0]), alignment(<size_t>ptrs[1]), alignment(<size_t>ptrs[2]),
                 alignment(<size_t>ptrs[3]), alignment(<size_t>ptrs[4]), alpha)
    elif op in EPILOGUE_OPS:
        if epilogue.has_z:
            ptrs[n] = <void*><size_t>z.data.ptr
            n += 1
        if epilogue.has_bias:
            ptrs[n] = <void*><size_t>bias.data.ptr
            n += 1
        extra = epilogue_key_extra([<size_t>ptrs[i] for i in range(n)], epilogue)
    else:
        extra = (alignment(<size_t>ptrs[0]), alignment(<size_t>ptrs[1]), alignment(<size_t>ptrs[2]))
    key = _make_key(op, ENGINE, device, dtype, x.shape, w.shape, layout, geom, opts, extra)
    trace(TRACE_KEY)
    cdef Handle h = get_handle(device)
    cdef size_t stream = current_stream()
    cdef cudnnHandle_t hp = h.bind(stream)
    trace(TRACE_HANDLE)
    try:
        cache = CACHE._local.cache
    except AttributeError:
        cache = CACHE.local()
    # explain() and last_choice() must see the search: no fast path for them.
    cdef bint explaining = _explain_active()
    hit = None if explaining else cache.fast_get(key, opts.benchmark)
    trace(TRACE_LOOKUP)
    if hit is not None:
        c = <GraphChoice>hit
        try:
            c.run(hp, ptrs, <void*>_workspace(c, stream))
            return c
        except MemoryError as e:
            _log.debug("graph: %s: cached %s ran out of memory; searching again", op, c.tag)
        except CuDNNError as e:
            a = _args(op, dtype, x, w, y, geom, opts, layout, alpha, h, hp, stream, repro, ptrs, n, epilogue)
            raise e.add_context(DIRECTIONS[op].context(a, c))
    a = _args(op, dtype, x, w, y, geom, opts, layout, alpha, h, hp, stream, repro, ptrs, n, epilogue)
    a.key = key
    if op == "fused" or op in EPILOGUE_OPS:
        a.keep = (x, w, y, z, bias)
    if opts.deterministic and not opts.benchmark:
        cache.count_miss()       # try_all does not consult the cache then
        prior = None
    else:
        prior = cache.peek(key)
        # (a cached NoneRan, cuDNN's refusal of the problem, is not looked up in the file again)
        # (a spatial tile's one-sided padding is in no file: params.persistent)
        if not explaining and not _usable(prior, opts.benchmark) and type(prior) is not search.NoneRan \
                and params.persistent(key):
            prior = _from_tuning_file(key, cache, opts.benchmark)
    choice = search.try_all(DIRECTIONS[op], a, cache, key, opts)
    if choice is not prior and type(choice) is GraphChoice and not explaining and params.persistent(key):
        _record_choice(key, choice)            # CUDNNCONV_TUNING_CACHE: merged into the file now
    trace_reset()                  # a search ran: no stage times for this call
    return choice




# The tuning cache, as the engine registry hands it over (cudnnconv.engine_registry calls set_persistence):
# this engine imports no tuning cache.  Until then there is no file and no record.
def _no_record(key):
    return None


def _ignore(*args):
    return None


_stored_record = _no_record         # stored_record(key): a loaded record for ``key``, or None
_record_choice = _ignore            # record_choice(key, choice): a new choice, for CUDNNCONV_TUNING_CACHE
_forget_records = _ignore           # forget_records(engine): clear_cache() forgets the loaded records


def set_persistence(stored_record, record_choice, forget_records):
    """Connect the engine to the tuning cache (cudnnconv.tuning's three calls of the same names)."""
    global _stored_record, _record_choice, _forget_records
    _stored_record, _record_choice, _forget_records = stored_record, record_choice, forget_records


cdef bint _usable(value, bint benchmark):
    """A cached or stored choice serves a call (gpu_timing.answers, asked only of a benchmarking
    call: any plan serves a heuristic one)."""
    return type(value) is GraphChoice and (not benchmark or gpu_timing.answers(value, True))


cdef object _from_tuning_file(key, cache, bint benchmark):
    """On a miss: the tuning file's record for ``key`` (the tuning cache's stored_record,
    which also loads CUDNNCONV_TUNING_CACHE at first use), decoded in this
    thread and put in this thread's cache.  Returns what the cache holds
    now; a record that does not decode is a miss (the search runs)."""
    try:
        rec = _stored_record(key)
    except Exception as e:
        _log.debug("graph: tuning cache lookup failed (%s: %s)", type(e).__name__, e)
        return cache.peek(key)
    now = cache.peek(key)                 # the first lookup may have loaded the file into this cache
    if rec is None or _usable(now, benchmark):
        return now
    try:
        c = choice_from_record(rec, key)
    except Exception as e:
        _log.debug("graph: stored plan for %s did not load (%s: %s); searching", key.op, type(e).__name__, e)
        return now
    if c is None or not _usable(c, benchmark):
        return now
    cache.put(key, c)
    return c


# ---------------------------------------------------------------------------
# The tuning-file codec (cudnnconv.tuning): a plan as a record and back
# ---------------------------------------------------------------------------

# cuDNN statuses that mean "this serialised plan is not for this process"
# when a plan's JSON is finalized: another cuDNN version
# (SUBLIBRARY_VERSION_MISMATCH, 1002), another schema (1003), another SM
# count (NOT_SUPPORTED_ARCH_MISMATCH, 3007).  A miss, never a crash.
PLAN_MISMATCH_STATUSES = (1002, 1003, 3007)
_RECORD_FIELDS = frozenset(("plan_json", "tag", "engine_index", "knobs", "workspace", "numerical_notes",
                            "behavior_notes", "how", "time_ms", "issue_ms", "benchmarked", "digest"))
_MAX_KNOBS = NOTE_CAP


cdef str _plan_json(BackendDescriptor plan):
    """The plan's JSON (CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION)."""
    cdef int64_t n = 0
    cdef int64_t got = 0
    cdef char* buf
    check(cudnnBackendGetAttribute(plan.ptr, CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION, CUDNN_TYPE_CHAR,
                                   0, &n, NULL))
    if n <= 0 or n > records.MAX_PLAN_JSON + 1:
        raise ValueError("plan JSON of %d bytes" % n)
    buf = <char*>malloc(n + 1)
    if buf == NULL:
        raise MemoryError()
    try:
        check(cudnnBackendGetAttribute(plan.ptr, CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION, CUDNN_TYPE_CHAR,
                                       n, &got, <void*>buf))
        if got < 0 or got > n:
            got = n
        buf[got] = 0
        text = (<bytes>buf[:got]).decode("utf-8")
    finally:
        free(buf)
    return text.rstrip("\x00")


cdef BackendDescriptor _plan_from_json(str text, cudnnHandle_t hp):
    """A finalized plan from its JSON: create, SET the JSON, SET the handle
    (cuDNN 9.19 segfaults without it), finalize."""
    cdef bytes raw = text.encode("utf-8")
    cdef const char* p = raw
    cdef BackendDescriptor plan = create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR)
    check(cudnnBackendSetAttribute(plan.ptr, CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION, CUDNN_TYPE_CHAR,
                                   len(raw), <const void*>p))
    plan.set_handle(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, hp)
    plan.finalize()
    return plan


cdef BackendDescriptor _engine_config(BackendDescriptor eng, knobs):
    """An ENGINECFG for the finalized engine ``eng`` (``_engine``) with these knob choices."""
    cdef cudnnBackendDescriptor_t karr[NOTE_CAP]
    cdef BackendDescriptor kc
    cdef int n = len(knobs)
    cfg = create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR)
    cfg.set_desc(CUDNN_ATTR_ENGINECFG_ENGINE, eng)
    if n > NOTE_CAP:
        raise ValueError("too many knobs")
    kcs = []
    for i in range(n):
        kt, kv = knobs[i]
        kc = create(CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR)
        kc.set_enum(CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE, CUDNN_TYPE_KNOB_TYPE, int(kt))
        kc.set_int64(CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE, int(kv))
        kc.finalize()
        kcs.append(kc)
        karr[i] = kc.ptr
        cfg.keep(kc)
    if n:
        check(cudnnBackendSetAttribute(cfg.ptr, CUDNN_ATTR_ENGINECFG_KNOB_CHOICES, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                       n, <const void*>karr))
    cfg.finalize()
    return cfg


def record_digest(key, plan_json, tag):
    """A digest tying a record to its key: a plan (whose JSON holds its own
    shapes) copied under another key is a miss, not a run on wrong shapes."""
    import hashlib
    text = records.canonical_json(records.key_to_json(key)) + "|" + str(tag) + "|" + (plan_json or "")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def check_record(record):
    """Raise ValueError unless ``record`` has the graph record's fields and types (host only)."""
    if not isinstance(record, dict) or not set(record) <= _RECORD_FIELDS:
        raise ValueError("graph record fields must be among %s" % ", ".join(sorted(_RECORD_FIELDS)))
    for f in ("tag", "engine_index", "knobs", "workspace"):
        if f not in record:
            raise ValueError("graph record lacks %s" % f)
    tag = record["tag"]
    idx = record["engine_index"]
    if not isinstance(tag, str) or len(tag) > 4096:
        raise ValueError("tag must be a string")
    if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < (1 << 31):
        raise ValueError("engine_index must be a small non-negative int")
    knobs = record["knobs"]
    if not isinstance(knobs, list) or len(knobs) > _MAX_KNOBS:
        raise ValueError("knobs must be a list of at most %d [type, value] pairs" % _MAX_KNOBS)
    out = []
    for kv in knobs:
        if not isinstance(kv, list) or len(kv) != 2 or any(isinstance(v, bool) or not isinstance(v, int)
                                                          for v in kv):
            raise ValueError("a knob must be [type, value] ints")
        if not 0 <= kv[0] < (1 << 31) or not -(1 << 62) <= kv[1] < (1 << 62):
            raise ValueError("knob out of range")
        out.append((kv[0], kv[1]))
    if make_tag(idx, sorted(out)) != tag:
        raise ValueError("tag %r does not match engine_index and knobs" % tag)
    ws = record["workspace"]
    if isinstance(ws, bool) or not isinstance(ws, int) or not 0 <= ws < records.WORKSPACE_CAP:
        raise ValueError("workspace must be an int in [0, 1 TiB)")
    for f in ("numerical_notes", "behavior_notes"):
        v = record.get(f, [])
        if not isinstance(v, list) or len(v) > NOTE_CAP or not all(isinstance(n, str) and len(n) < 64 for n in v):
            raise ValueError("%s must be a list of short strings" % f)
    pj = record.get("plan_json")
    if pj is not None and not isinstance(pj, str):
        raise ValueError("plan_json must be a string or null")
    if not isinstance(record.get("benchmarked", False), bool):
        raise ValueError("benchmarked must be a bool")
    for f in ("time_ms", "issue_ms"):
        t = record.get(f, -1.0)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not -1.0 <= t <= 1e9:
            raise ValueError("%s must be a number in [-1, 1e9]" % f)
    how = record.get("how", "heuristic")
    if how not in ("heuristic", "fallback", "benchmark", "exhaustive"):
        raise ValueError("how must be heuristic, fallback, benchmark or exhaustive")
    return tuple(sorted(out))


def choice_to_record(choice, key=None):
    """A GraphChoice as a tuning-file record (None for anything else): the
    plan's JSON (null where it does not serialise), the tag, engine index and
    knobs (to rebuild the config where the JSON cannot be loaded), the
    workspace, the notes, how it was chosen, its time and its issue time."""
    cdef GraphChoice c
    if type(choice) is not GraphChoice:
        return None
    c = <GraphChoice>choice
    if c.plan_json is None:
        try:
            c.plan_json = _plan_json(c.plan)
        except Exception as e:
            _log.debug("graph: plan %s does not serialise (%s: %s)", c.tag, type(e).__name__, e)
            c.plan_json = ""
    pj = c.plan_json or None
    rec = {"plan_json": pj, "tag": c.tag, "engine_index": int(c.engine_index),
           "knobs": [[int(k), int(v)] for k, v in c.knobs], "workspace": int(c.ws_size),
           "numerical_notes": list(c.notes), "behavior_notes": list(c.behavior), "how": c.how,
           "time_ms": float(c.time_ms) if c.benchmarked else -1.0,
           "issue_ms": float(c.issue_ms) if c.benchmarked and c.issue_ms >= 0 else -1.0,
           "benchmarked": bool(c.benchmarked)}
    if key is not None:
        rec["digest"] = record_digest(key, pj, c.tag)
    return rec


def _key_opts(key):
    return options.Options(True, bool(key.deterministic), bool(key.allow_tf32), key.workspace_limit, ENGINE)


def _tensor_count(key):
    """The tensors a key's plan binds: x, w, y, then z and the bias for the fused graph, and z
    (or an activation's input) and the bias where an epilogue key says they are given."""
    if key.op == "fused":
        return 5
    if key.op in EPILOGUE_OPS:
        epi = activations.from_key_fields(key.extra[MAX_TENSORS:])
        return 3 + int(epi.has_z) + int(epi.has_bias)
    return 3


cdef GraphArgs _args_from_key(key, Handle h, cudnnHandle_t hp):
    """The problem a key names, with no arrays (for rebuilding a config)."""
    cdef GraphArgs a = GraphArgs.__new__(GraphArgs)
    nsp = len(key.input_shape) - 2
    geom, y_shape = params.conv_geometry(key.input_shape, key.weight_shape, key.stride, key.padding,
                                         key.dilation, key.groups)
    n = 5 if key.op == "fused" else 3
    if len(key.extra) < n or (key.op == "fused" and len(key.extra) < 6):
        raise ValueError("key.extra lacks the alignments")
    alpha = float(key.extra[5]) if key.op == "fused" else 1.0
    a.set_shapes(key.op, key.dtype, key.layout, key.input_shape, key.weight_shape, y_shape, geom, alpha)
    if key.op in EPILOGUE_OPS:
        if len(key.extra) != MAX_TENSORS + activations.KEY_FIELDS:
            raise ValueError("key.extra of an epilogue has %d fields, not %d"
                             % (len(key.extra), MAX_TENSORS + activations.KEY_FIELDS))
        a.set_epilogue(activations.from_key_fields(key.extra[MAX_TENSORS:]))
        n = a.n
        if any(al != 0 for al in key.extra[n:MAX_TENSORS]):
            raise ValueError("key.extra has an alignment for a tensor the epilogue does not take")
    for i in range(n):
        al = key.extra[i]
        if isinstance(al, bool) or not isinstance(al, int) or al not in (1, 2, 4, 8, 16):
            raise ValueError("bad alignment in key.extra")
        a.align[i] = al
    a.handle = hp
    a.handle_obj = h
    a.stream = current_stream()
    a.key = key
    return a


def choice_from_record(record, key):
    """The GraphChoice a record stands for, finalized in the calling thread
    with its handle, or None (a miss).  The plan is loaded from its JSON; if
    there is none, or cuDNN refuses it, the config is rebuilt from the engine index
    and knobs on the key's operation graph (a plan refused as made for
    another cuDNN, schema or SM count -- statuses 1002, 1003, 3007 -- is a
    miss instead: its record contradicts its environment).  Raises
    ValueError for a record that is malformed or was written for another key."""
    cdef GraphChoice c
    cdef BackendDescriptor plan = None
    cdef Handle h
    cdef cudnnHandle_t hp
    cdef GraphArgs a
    if key is None or getattr(key, "engine", None) != ENGINE:
        return None
    knobs = check_record(record)
    if errata.graph_reason(key.op, record["engine_index"], key.dtype, key.allow_tf32) is not None:
        return None                       # made before the erratum was known: a miss, the search runs
    pj = record.get("plan_json")
    if "digest" in record and record["digest"] != record_digest(key, pj, record["tag"]):
        raise ValueError("the record's digest does not match its key")
    h = get_handle(int(key.device))
    hp = h.bind(current_stream())
    opts = _key_opts(key)
    how = record.get("how", "heuristic")
    if pj:
        try:
            plan = _plan_from_json(pj, hp)
        except CuDNNError as e:
            if e.status in PLAN_MISMATCH_STATUSES:
                # Made for another cuDNN, schema or SM count, though its
                # environment block says otherwise: the record is wrong; a miss.
                _log.debug("graph: stored plan %s is for another cuDNN/GPU (%s); a miss", record["tag"], e.name)
                return None
            _log.debug("graph: stored plan %s did not deserialise (%s); rebuilding its config", record["tag"], e.name)
            plan = None
    if plan is None:
        a = _args_from_key(key, h, hp)
        a.ensure_graph()
        c = _config_choice(a, record["engine_index"], knobs, how, opts, set())
        if c is None or c.tag != record["tag"]:
            return None
    else:
        ws = plan.get_int64(CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE)
        if key.workspace_limit is not None and ws > key.workspace_limit:
            return None
        notes = tuple(record.get("numerical_notes", ()))
        if exclude_reason(notes, key.dtype, opts, ws) is not None:
            return None
        plan.keep(h)
        c = _new_choice(key.op, record["engine_index"], knobs, record["tag"], ws, notes,
                        tuple(record.get("behavior_notes", ())), plan, _tensor_count(key), how)
        c.plan_json = pj
    c.how = how
    c.benchmarked = bool(record.get("benchmarked", False))
    c.time_ms = float(record.get("time_ms", -1.0)) if c.benchmarked else -1.0
    c.issue_ms = float(record.get("issue_ms", -1.0)) if c.benchmarked else -1.0
    c.samples = ()
    if pj and c.plan_json is None:
        c.plan_json = pj
    return c



def validate_problem(op, x_shape, w_shape, y_shape, geom, layout="NCHW", dtype="float32", alpha=1.0,
                     with_graph=False, with_knobs=False, epilogue=None):
    """Build and finalize the descriptors of one problem on the host, with no
    handle and no GPU: tensors, convolution and operation nodes (and, with
    ``with_graph``, the operation graph).  cuDNN's own shape checks run at
    finalize, so a bad problem raises CuDNNError (BAD_PARAM with cuDNN's
    message).  Needs libcuda.so.1 to be loadable.  Returns the descriptors'
    summaries; with ``with_knobs``, the graph's too, then for each engine
    index ``(index, [KnobInfo, ...])`` as the exhaustive search's knob sweep
    reads them, or ``(index, status name)`` where the engine will not take
    the graph (without a GPU, most engines refuse it as made for another
    architecture).  ``epilogue``: op 'epilogue''s activations.Epilogue."""
    cdef GraphArgs a = GraphArgs.__new__(GraphArgs)
    a.set_shapes(op, params.cudnn_dtype(dtype), layout, x_shape, w_shape, y_shape, geom, alpha)
    if op in EPILOGUE_OPS:
        a.set_epilogue(epilogue)
    ops = a.build_ops()
    out = [(<BackendDescriptor>o).text for o in ops]
    cdef BackendDescriptor g
    if with_graph or with_knobs:
        g = operation_graph(ops, NULL)
        out.append("operation graph")
    if with_knobs:
        out.extend(_engines_and_knobs(g))
    return out
