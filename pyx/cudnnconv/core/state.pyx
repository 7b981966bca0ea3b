# cython: language_level=3
"""Per-thread call state and the plan generation (tier 2: no policy).

Everything a call reads about its thread lives in one typed object,
``ThreadState``, created once per thread: the ``flags()`` defaults, the memo
of call plans, the last call's record and the explain hook.  A call fetches
it with one ``threading.local`` lookup and then reads C fields; it never
probes for a missing attribute.

The memo of call plans is per thread because a bound plan holds a cuDNN
execution plan built with this thread's handle (as PyTorch keeps its plan
caches per thread).

``generation`` counts events that can make a bound plan stale: the choice
caches bump it when they drop or replace an entry, and ``clear_cache()``
does.  A bound plan remembers the generation it was bound in and is used only
while it holds; otherwise the call takes the full path, which binds again.
"""
import threading
import weakref

_local = threading.local()
_states = weakref.WeakSet()        # every live thread's state (clear_memos)
# A WeakSet is not safe to iterate while another thread adds to it ("Set changed size during
# iteration"): a thread's first call adds its state under this lock, and clear_memos copies the set
# under it.  (Removals, when a thread's state dies, are deferred by the WeakSet while it is iterated.)
_states_lock = threading.Lock()
cdef unsigned long long _generation = 1


cdef class ThreadState:
    """This thread's flags, call-plan memo, last call and explain hook."""

    def __cinit__(self):
        self.options = None
        self.memo = {}
        self.last = None
        self.last_plan = None
        self.explain = None


cdef ThreadState get_state():
    cdef object st = getattr(_local, "state", None)
    if st is None:
        st = ThreadState()
        _local.state = st
        with _states_lock:
            _states.add(st)
    return <ThreadState>st


def state():
    """This thread's ThreadState (created on first use)."""
    return get_state()


cdef unsigned long long generation() noexcept nogil:
    return _generation


def current_generation():
    return _generation


def invalidate():
    """Make every bound call plan stale (their next call takes the full path)."""
    global _generation
    _generation += 1


def clear_memos():
    """Forget every live thread's memoized call plans (clear_cache(): the
    cuDNN plans and workspaces they were bound to go with them; a plan the
    caller still holds is stale, see ``invalidate``).  A thread's state dies
    with its thread: plans hold it by weak reference."""
    with _states_lock:
        states = list(_states)
    for st in states:
        (<ThreadState>st).memo.clear()
