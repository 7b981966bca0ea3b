# An engine's choice bound to one thread's handle: what a cached call runs.

cdef enum:
    TRACE_ENTRY = 0        # the call's typed entry (callplan.call)
    TRACE_SIGNATURE = 1    # signature built, plan found
    TRACE_OUTPUT = 2       # output allocated, pointers and alignments read
    TRACE_ENGINE = 3       # graph.run entered (full path only)
    TRACE_KEY = 4          # graph.run: problem key built (full path only)
    TRACE_HANDLE = 5       # handle fetched, stream bound
    TRACE_LOOKUP = 6       # graph.run: choice cache looked up (full path only)
    TRACE_PACK = 7         # variant pack ready
    TRACE_EXECUTE = 8      # cudnnBackendExecute returned
    TRACE_RETURN = 9       # about to return the result (typed path only)
    TRACE_SLOTS = 10

from libc.stdint cimport int64_t

cdef void trace(int slot) noexcept nogil
cdef void trace_reset() noexcept nogil

cdef class Executor:
    cdef readonly str engine        # the engine's name ('graph')
    cdef readonly object choice     # the engine's choice object (what last_call() reports)
    # Run the choice on ``ptrs`` (x, w, y in the forward roles) on ``stream``.
    cdef int execute(self, size_t stream, void** ptrs) except -1


# The byte alignment declared for a pointer: min(16, the largest power of
# two dividing it); NULL (an empty tensor) counts as 16.  The graph engine
# declares it to cuDNN and keys its plans on it; a bound call plan checks it.
cdef inline int64_t alignment(size_t ptr) noexcept nogil:
    if ptr == 0:
        return 16
    cdef size_t low = ptr & (~ptr + 1)
    return 16 if low >= 16 else <int64_t>low
