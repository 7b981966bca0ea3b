# One typed object per thread: what every call reads (see state.pyx).

cdef class ThreadState:
    cdef public object options      # this thread's flags() defaults (options.Options), None for the built-in ones
    cdef public dict memo           # call signature -> CallPlan, this thread's (callplan.pyx)
    cdef public object last         # what the last call ran (api.last_call() reads it), or None
    cdef public object last_plan    # the CallPlan of the last memoizable call (cudnnconv.plan() reads it)
    cdef public object explain      # the search handler of explain()/last_choice()/warm-up while one runs, or None
    cdef object __weakref__          # plans refer to their thread's state weakly: no cycle keeps it alive

cdef ThreadState get_state()

# The plan generation: bumped whenever a cached choice may have been dropped
# or replaced (clear_cache, an LRU eviction, a replaced entry).  A call plan
# bound to a choice is used only while the generation it was bound in holds.
cdef unsigned long long generation() noexcept nogil
