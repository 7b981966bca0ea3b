# cython: language_level=3
"""One cuDNN handle per (thread, device) (tier 2).

A handle is created on first use by a thread on a device and lives as long as
that thread does (it sits in a ``threading.local``).  ``Handle.bind`` binds the
caller's current stream, so work always goes on it; it calls cudnnSetStream
only when the stream differs from the one bound last (cuDNN asks the driver
about the stream on every cudnnSetStream, about 1-2.5 us even for the same
stream, and nothing but this object sets this handle's stream).

What happens at exit: a thread's handles are destroyed when the thread ends.
At interpreter shutdown the handles that remain are deliberately leaked, as
PyTorch does: CUDA may already be tearing down, and cudnnDestroy then can
crash; the driver reclaims everything when the process ends.
"""
import sys
import threading

from cudnnconv.decl.cudnn cimport (
    cudnnHandle_t, cudnnCreate, cudnnDestroy, cudnnSetStream, cudaStream_t)
from cudnnconv.core.status cimport check

_is_finalizing = sys.is_finalizing
_local = threading.local()


cdef class Handle:
    """Owns one ``cudnnHandle_t`` for one device."""

    def __cinit__(self, int device):
        self.ptr = NULL
        self.device = device
        self._stream = <size_t>-1
        import cupy
        with cupy.cuda.Device(device):
            check(cudnnCreate(&self.ptr))

    def __dealloc__(self):
        # Never raises.  Leak during interpreter shutdown (see module doc).
        if self.ptr == NULL:
            return
        fin = _is_finalizing
        if fin is None or fin():
            return
        cudnnDestroy(self.ptr)
        self.ptr = NULL

    cdef cudnnHandle_t bind(self, size_t stream) except NULL:
        if stream != self._stream:
            check(cudnnSetStream(self.ptr, <cudaStream_t>stream))
            self._stream = stream
        return self.ptr

    def __repr__(self):
        return "<cudnnconv Handle device=%d thread-local>" % self.device


cpdef Handle get_handle(int device):
    """This thread's handle for ``device``, created on first use."""
    cdef dict handles
    try:
        handles = _local.handles
    except AttributeError:
        handles = _local.handles = {}
    h = handles.get(device)
    if h is None:
        h = handles[device] = Handle(device)
    return <Handle>h
