# cython: language_level=3
"""The bound executor and the call's stage trace (tier 2: no policy).

``Executor`` is what a call plan (callplan.pyx) holds once its call has run:
an engine's choice bound to this thread's cuDNN handle, run on raw pointers
through a C method, with no key, no cache lookup and no Python frame.  An
engine subclasses it (the graph engine's ``GraphExecutor``); the call plan
only knows this base, so the public tier never imports an engine.

The stage trace (a diagnostic, off by default) stamps CLOCK_MONOTONIC at
fixed points of a call, from the typed entry to the return, so that a probe
can say where a call's host time goes.  Off, each point costs one test of a
C flag.
"""
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

cdef bint _tracing = False
cdef double _stamps[TRACE_SLOTS]
_NAMES = ("entry", "signature", "output", "engine", "key", "handle", "lookup", "variant_pack", "execute", "return")


cdef void trace(int slot) noexcept nogil:
    cdef timespec ts
    if _tracing:
        clock_gettime(CLOCK_MONOTONIC, &ts)
        _stamps[slot] = ts.tv_sec * 1e9 + ts.tv_nsec


cdef void trace_reset() noexcept nogil:
    cdef int i
    if _tracing:
        for i in range(TRACE_SLOTS):
            _stamps[i] = 0


def trace_stages(bint on):
    """Turn the stage trace on or off (see ``stage_times``)."""
    global _tracing
    cdef int i
    for i in range(TRACE_SLOTS):
        _stamps[i] = 0
    _tracing = on


def stamps():
    """The raw stamps of the last traced call, in ns (0 where not reached)."""
    return [_stamps[i] for i in range(TRACE_SLOTS)]


def stage_times():
    """{stage: microseconds} of the last traced call that ran to its return
    on the typed path: each stamped stage's time since the stage before it,
    plus ``total`` (entry to return) and ``outside_execute`` (total less
    execute).  {} when the last traced call took the full path."""
    cdef int i
    if not (_stamps[TRACE_ENTRY] and _stamps[TRACE_RETURN] and _stamps[TRACE_EXECUTE]):
        return {}
    out = {}
    prev = _stamps[TRACE_ENTRY]
    for i in range(1, TRACE_SLOTS):
        if _stamps[i]:
            out[_NAMES[i]] = (_stamps[i] - prev) * 1e-3
            prev = _stamps[i]
    out["total"] = (_stamps[TRACE_RETURN] - _stamps[TRACE_ENTRY]) * 1e-3
    out["outside_execute"] = out["total"] - out.get("execute", 0.0)
    return out


cdef class Executor:
    """An engine's choice bound to one thread's handle (see the module doc)."""

    cdef int execute(self, size_t stream, void** ptrs) except -1:
        raise NotImplementedError("an engine's executor runs its choice")
