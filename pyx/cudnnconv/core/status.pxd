from cudnnconv.decl.cudnn cimport cudnnStatus_t

# The one place where a cuDNN status becomes a Python exception.  Takes the
# GIL only to raise.
cdef int check(cudnnStatus_t status) except -1 nogil
