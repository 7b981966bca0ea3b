from cudnnconv.decl.cudnn cimport cudnnHandle_t

cdef class Handle:
    cdef cudnnHandle_t ptr
    cdef readonly int device
    cdef size_t _stream
    # Binds ``stream`` (a cudaStream_t as an integer) and returns the handle.
    cdef cudnnHandle_t bind(self, size_t stream) except NULL

cpdef Handle get_handle(int device)
