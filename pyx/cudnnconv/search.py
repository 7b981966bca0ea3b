"""The one search skeleton that every engine and every direction shares.

An engine supplies, per direction, a small object with:

* ``candidates(args, opts)``: ranked choices.  With ``opts.benchmark`` off,
  the engine's heuristic order; with it on, the engine times them (legacy:
  cudnnFind*Ex; graph: CUDA events) and returns them fastest first.
* ``default(args, opts)``: the one choice used when deterministic=True and
  benchmark=False (PyTorch's Conv_v7 rule: only the default algorithm).
* ``execute(args, choice, workspace_ptr)``: run one choice.
* ``context(args)``: descriptors, shapes and a repro line for errors.

A choice has ``workspace`` (bytes), ``benchmarked`` (bool) and ``describe()``.

``try_all`` is PyTorch's Conv_v7 loop: the cached choice first; otherwise the ranked
candidates, skipping any that runs out of memory or that cuDNN refuses; the
first that runs is cached; if none runs, one clear error lists what was
tried.  Errors here clear no CUDA state: cuDNN 9 and CuPy each link their own
CUDA runtime statically, so the cudaGetLastError() of PyTorch's Conv_v7 has nothing to
clear, and a sticky error could not be cleared anyway.
"""
from cudnnconv import _log, gpu_timing, workspace
from cudnnconv.core.state import state as _thread_state
from cudnnconv.core.status import CuDNNError, CuDNNOutOfMemoryError

_NOT_SUPPORTED = 3000


class CaptureError(RuntimeError):
    """A call needed a search while its stream was being captured."""


def check_not_capturing(op):
    """Raise CaptureError if the current stream is capturing a CUDA graph.

    A search runs many kernels, allocates and synchronises: none of that may
    happen inside a capture.  Warm up (call once with the same arguments
    before capturing) so that the choice is cached.
    """
    import cupy
    stream = cupy.cuda.get_current_stream()
    try:
        capturing = stream.is_capturing()
    except AttributeError:
        capturing = cupy.cuda.runtime.streamIsCapturing(stream.ptr) != 0
    if capturing:
        raise CaptureError(
            "cudnnconv: the %s convolution has no cached choice yet, and choosing one (a search) "
            "cannot run while a CUDA graph is being captured. Warm up first: call it once with "
            "the same shapes, dtype, layout and flags before you capture." % op)


class NoneRan:
    """Cache entry for a problem that no candidate could run (cuDNN refused
    them all, for reasons other than memory), so the next call fails at once
    instead of searching again.  Out-of-memory failures are never cached."""
    __slots__ = ("status", "message")
    benchmarked = True
    workspace = 0

    def __init__(self, status, message):
        self.status = status
        self.message = message

    def describe(self):
        return "none (cached failure)"


def run_choice(direction, args, choice):
    """Run ``choice`` on ``args`` with the workspace cudnnconv.workspace.for_call gives it (``held``,
    a block for this call only, lives until the call is enqueued)."""
    ptr, held = workspace.for_call(choice, args)
    direction.execute(args, choice, ptr)


def try_all(direction, args, cache, key, opts):
    """Run the problem with the cached choice, or search, run and cache.

    Returns the choice that ran.  While this thread has a search handler
    (explain(), last_choice(), warm-up: cudnnconv.explain.intercept_search),
    the handler answers instead.
    """
    handler = _thread_state().explain
    if handler is not None:
        return handler(direction, args, cache, key, opts)
    return _search(direction, args, cache, key, opts)


def _search(direction, args, cache, key, opts):
    """try_all's loop (no search handler set on this thread)."""
    only_default = opts.deterministic and not opts.benchmark
    if not only_default:
        hit = cache.get(key)
        # A heuristic entry does not answer a call that asks to benchmark.
        if isinstance(hit, NoneRan):
            raise CuDNNError(hit.status, hit.message + " [cached result of an earlier search]",
                             direction.context(args, None))
        if hit is not None and gpu_timing.answers(hit, opts.benchmark):
            try:
                run_choice(direction, args, hit)
                return hit
            except MemoryError as e:
                _log.debug("%s: cached %s ran out of memory (%s); searching again",
                           direction.op, hit.describe(), _short(e))
            except CuDNNError as e:
                raise e.add_context(direction.context(args, hit))
    check_not_capturing(direction.op)
    try:
        if only_default:
            candidates = [direction.default(args, opts)]
        else:
            candidates = direction.candidates(args, opts)
    except CuDNNError as e:
        # cuDNN refused the problem while ranking (get/find, the graph's finalize,
        # or the default's workspace query): the error still names the descriptors
        # and a repro.  A refusal (a NOT_SUPPORTED status) is the problem's, not the
        # moment's: it is cached as a NoneRan, so that a caller that falls back on
        # it (conv_epilogue's fusion='auto' on a pattern cuDNN does not fuse) pays
        # for the graph once, not on every call.  Memory and other statuses are not.
        err = e.add_context(direction.context(args, None))
        if not only_default and not isinstance(e, MemoryError) and _refusal(e.status):
            cache.put(key, NoneRan(e.status, e.message))
        raise err
    failures = []
    for choice in candidates:
        try:
            run_choice(direction, args, choice)
        except (MemoryError, CuDNNError) as e:
            failures.append((choice, e))
            _log.debug("%s: %s failed (%s); trying the next", direction.op, choice.describe(), _short(e))
            continue
        cache.put(key, choice)
        _log.debug("%s: chose %s for %s", direction.op, choice.describe(), _key_text(key))
        return choice
    err = _none_ran(direction, args, failures)
    if not only_default and not any(isinstance(e, MemoryError) for _, e in failures):
        cache.put(key, NoneRan(err.status, err.message))
    raise err


def _refusal(status):
    """A CUDNN_STATUS_NOT_SUPPORTED* status (3000-3999): cuDNN cannot run this problem."""
    return _NOT_SUPPORTED <= status < _NOT_SUPPORTED + 1000


def _short(e):
    return getattr(e, "name", None) or type(e).__name__


def _key_text(key):
    return "%s %s x%s w%s" % (key.op, key.layout, key.input_shape, key.weight_shape)


def _none_ran(direction, args, failures):
    if failures and all(isinstance(e, MemoryError) for _, e in failures):
        cls, status = CuDNNOutOfMemoryError, 4004
    else:
        cls = CuDNNError
        status = next((e.status for _, e in reversed(failures) if isinstance(e, CuDNNError)), _NOT_SUPPORTED)
    tried = "; ".join("%s -> %s" % (c.describe(), _short(e)) for c, e in failures) or "no candidates"
    msg = "no algorithm could run this %s convolution (tried: %s)" % (direction.op, tried)
    return cls(status, msg, direction.context(args, None))
