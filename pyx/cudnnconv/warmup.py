"""Warm-up of loaded tuning entries: their first call costs what a steady one does (policy tier).

A tuning file spares the first call its search, but not two costs that
come with running a choice for the first time in a process:

* CUDA loads a kernel's module at the kernel's first launch (lazy loading,
  the default since CUDA 12): 5-20 ms for the first kernels of cuDNN's
  engine libraries, tenths of a millisecond for later ones;
* the workspace a cached choice keeps is allocated at its first call.

``warm_up(keys)`` pays both now: for each key it makes the call that reaches
it (the public function of its direction, or for a fused key the engine's
own ``engine.run``) on scratch arrays of the key's shapes, dtype, layout and
pointer alignments, so that the cached choice runs once; then it
synchronises, so that none of that work is charged to a later call.  The
public call is made as a plain call would be (no ``out=`` where the key's
alignment allows, engine='auto' where that runs the key's engine), so the
call plan it memoizes (api.py; int and tuple parameters share it) is the
one a later call of the problem finds: that call skips its argument
planning too.  It
never searches: the call goes through the shared search skeleton with a
handler that runs only the cached choice (``cache.peek``, so the cache's
hit and miss counts do not move either) and skips a key that has none.
The results written to the scratch arrays are discarded.

``load_tuning(path, warmup=True)`` and ``CUDNNCONV_TUNING_WARMUP=1`` (with
CUDNNCONV_TUNING_CACHE) call it for the entries they load.  The cost: one
run of each loaded problem, and scratch memory up to the largest problem's
tensors, which stays in CuPy's pool for later arrays.
"""
import math

from cudnnconv import _log, activations, options, params, search
from cudnnconv.core.state import state as _thread_state

ENV_VAR = "CUDNNCONV_TUNING_WARMUP"
# A key whose tensors need more scratch than this is not warmed up.
MAX_SCRATCH_BYTES = 4 << 30

_NUMPY_NAME = {code: name for name, code in params._CUDNN_DTYPE.items()}   # cudnnDataType_t -> dtype name
_ROUND = 256


class _NotCached(Exception):
    pass


def _run_cached(direction, args, cache, key, opts):
    """The search handler of a warm-up: run the cached choice, never search."""
    hit = cache.peek(key)
    if hit is None or isinstance(hit, search.NoneRan):
        raise _NotCached()
    search.run_choice(direction, args, hit)
    return hit


def env_enabled():
    import os
    return os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def load_tuning(path, *, override=False, warmup=False):
    """Load the valid entries of a tuning file into the engines' caches.

    Entries for another environment (cuDNN version, GPU name, compute
    capability, SM count, cache format) are skipped with a debug note; bad
    parts are rejected with a warning.  An entry never replaces a choice
    already in the cache unless ``override``.  With ``warmup``, each loaded
    choice also runs once on scratch arrays (``warm_up``), so that its
    kernels are loaded and its workspace allocated before its first call.

    Returns the number of entries this load put into the engines' caches
    that are still held when it returns, not the number it read: a bounded
    cache keeps only the most recent (the legacy engine's holds 4,096), and
    a key given twice counts once (``cudnnconv.tuning.load_file``).

    Raises:
        Nothing for the file's contents: a corrupt or hostile file, or a
        path that is not a regular file (a FIFO, device, directory, socket),
        is rejected with a warning, and so is an OSError other than a
        missing file.  A missing file loads nothing.  With ``warmup``,
        whatever a warm-up run raises (CuDNNOutOfMemoryError, say).
    """
    from cudnnconv import tuning
    return tuning.load_file(path, override=override, after_load=warm_up if warmup else None)


def _warm_up_if_asked(keys):
    """The autoload hook: CUDNNCONV_TUNING_WARMUP is read when the file loads, not at import."""
    if env_enabled():
        warm_up(keys)


def install_from_environment():
    """CUDNNCONV_TUNING_CACHE=path (load at first use, add new choices as they
    are found), warming up what it loads when CUDNNCONV_TUNING_WARMUP=1 then."""
    from cudnnconv import tuning
    tuning.install_from_environment(after_load=_warm_up_if_asked)


def _dtype(code):
    import numpy
    name = _NUMPY_NAME[code]
    if name == "bfloat16":
        import ml_dtypes
        return numpy.dtype(ml_dtypes.bfloat16)
    return numpy.dtype(name)


def plan_scratch(key):
    """The arrays a warm-up of ``key`` needs, as [(role, shape, strides in
    elements, byte offset)], and the scratch bytes in all.  Each array
    starts on a 256-byte boundary plus its alignment in the key's extra (the
    graph engine keys on pointer alignment) where that is below 16."""
    geom, y_shape = params.conv_geometry(key.input_shape, key.weight_shape, key.stride, key.padding,
                                         key.dilation, key.groups)
    b_shape = (1, key.weight_shape[0]) + (1,) * (len(key.weight_shape) - 2)
    roles = [("x", key.input_shape, key.layout), ("w", key.weight_shape, key.layout), ("y", y_shape, key.layout)]
    if key.op == "fused":
        roles += [("z", y_shape, key.layout), ("bias", b_shape, params.NCHW)]
    epi = activations.from_key(key)
    if epi is not None:
        roles += [(role, shape, params.NCHW if role == "bias" else key.layout)
                  for role, shape in activations.extra_tensors(key.op, epi, key.input_shape, y_shape)]
    itemsize = _dtype(key.dtype).itemsize
    out, offset = [], 0
    for i, (role, shape, layout) in enumerate(roles):
        al = 0
        if key.engine == "graph" and i < len(key.extra):
            a = key.extra[i]
            al = a if isinstance(a, int) and not isinstance(a, bool) and a in (1, 2, 4, 8) else 0
        out.append((role, tuple(shape), params.layout_strides(shape, layout), offset + al))
        offset += al + math.prod(shape) * itemsize
        offset = -(-offset // _ROUND) * _ROUND
    return geom, out, offset


def _arrays(mem, key, plan):
    import cupy
    dt = _dtype(key.dtype)
    out = {}
    for role, shape, strides, off in plan:
        out[role] = cupy.ndarray(shape, dt, memptr=mem + off, strides=tuple(s * dt.itemsize for s in strides))
    return out


def _engine_module(name):
    from cudnnconv import engine_registry
    return engine_registry.legacy if name == "legacy" else engine_registry.graph if name == "graph" else None


def warm_up(keys, max_scratch_bytes=None):
    """Run the cached choice of each key once on scratch arrays (see the
    module doc), then synchronise.  Returns {"run": n, "skipped": n}.  Never
    raises for a key: a key whose choice is not cached, that needs more than
    ``max_scratch_bytes`` (default MAX_SCRATCH_BYTES), or whose run fails is
    skipped with a debug note."""
    import cupy
    from cudnnconv.explain import intercept_search
    cap = MAX_SCRATCH_BYTES if max_scratch_bytes is None else int(max_scratch_bytes)
    run = skipped = 0
    devices = set()
    with intercept_search(_run_cached):
        for key in keys:
            mod = _engine_module(getattr(key, "engine", None))
            if mod is None:
                skipped += 1
                continue
            try:
                geom, plan, nbytes = plan_scratch(key)
                if nbytes > cap:
                    skipped += 1
                    _log.debug("warm-up: %s needs %d scratch bytes (> %d); skipped", _text(key), nbytes, cap)
                    continue
                opts = options.Options(True, bool(key.deterministic), bool(key.allow_tf32),
                                       key.workspace_limit, key.engine)
                alpha = float(key.extra[5]) if key.engine == "graph" and key.op == "fused" else 1.0
                with cupy.cuda.Device(key.device):
                    mem = cupy.cuda.alloc(max(nbytes, 1))
                    t = _arrays(mem, key, plan)
                    if not _through_public_function(key, t, geom, opts):
                        epi = activations.from_key(key)
                        more = {} if epi is None else {"epilogue": epi}
                        mod.run(key.op, t["x"], t["w"], t["y"], geom, opts, key.layout, key.device,
                                z=t.get("z"), bias=t.get("bias"), alpha=alpha, **more)
                    devices.add(key.device)
                run += 1
            except _NotCached:
                skipped += 1
                _log.debug("warm-up: no cached choice for %s; skipped", _text(key))
            except Exception as e:       # a warm-up must never break loading
                skipped += 1
                _log.debug("warm-up: %s failed (%s: %s); skipped", _text(key), type(e).__name__, e)
            finally:
                mem = t = None
    for dev in devices:
        with cupy.cuda.Device(dev):
            cupy.cuda.get_current_stream().synchronize()
    _log.debug("warm-up: ran %d loaded entries, skipped %d", run, skipped)
    return {"run": run, "skipped": skipped}


def _through_public_function(key, t, geom, opts):
    """Run a forward, backward-data or backward-filter key through its
    public function (conv, conv_backward_input, conv_backward_weight) on the
    scratch arrays, so that the library's Python path runs once too: the
    interpreter's first executions of a code path are slower than later
    ones, and the first calls after a load would pay that.  The arrays are
    in the key's layout and alignments and the parameters are the key's,
    so the call reaches the key's cached choice (the search is intercepted:
    it runs that choice, or raises _NotCached).  Returns False for a key
    this does not cover (fused); ``last_call()`` is left as it was."""
    from cudnnconv import api
    if key.op not in ("forward", "backward_data", "backward_filter"):
        return False
    kw = dict(stride=key.stride, padding=key.padding, dilation=key.dilation, groups=key.groups,
              benchmark=True, deterministic=opts.deterministic, allow_tf32=opts.allow_tf32,
              workspace_limit=opts.workspace_limit, engine=_call_engine(key))
    # The result into CuPy's pool, as a call without out= does, where that
    # reaches the key (the graph engine keys on the result's alignment, and
    # the pool's blocks are 16-byte aligned); else into its scratch array.
    role, index = _RESULT[key.op]
    out = None if _pool_alignment_matches(key, index) else t[role]
    saved = _thread_state().last
    try:
        if key.op == "forward":
            api.conv(t["x"], t["w"], out=out, **kw)
        elif key.op == "backward_data":
            api.conv_backward_input(key.input_shape, t["w"], t["y"], out=out, **kw)
        else:
            api.conv_backward_weight(t["x"], key.weight_shape, t["y"], out=out, **kw)
    finally:
        _thread_state().last = saved
    return True


def _call_engine(key):
    """engine='auto' where that runs the key's engine (nothing has fallen
    back from the graph engine yet), else the key's engine.  A later call
    with the default engine then finds the signature warm-up planned."""
    from cudnnconv import engine_registry
    auto = engine_registry.AUTO
    if auto is None:
        mod = engine_registry.graph if engine_registry.graph is not None else engine_registry.legacy
        return "auto" if mod is not None and mod.ENGINE == key.engine else key.engine
    return "auto" if key.engine == auto.first.ENGINE and not auto.fallbacks() else key.engine


# Per direction: the array the call writes, and its place in plan_scratch's
# roles (x, w, y) and in the graph key's alignments.
_RESULT = {"forward": ("y", 2), "backward_data": ("x", 0), "backward_filter": ("w", 1)}


def _pool_alignment_matches(key, index):
    """Whether an array from CuPy's pool has the alignment the key holds
    for its tensor ``index`` (only the graph engine keys on alignment)."""
    if key.engine != "graph":
        return True
    return index < len(key.extra) and key.extra[index] == 16


def _text(key):
    return "%s %s %s x%s w%s" % (key.engine, key.op, key.layout, key.input_shape, key.weight_shape)
