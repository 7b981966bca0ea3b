# cython: language_level=3
"""cuDNN status checking and the exceptions it raises (tier 2).

Every cuDNN call in the package goes through ``check``.  A failure becomes a
``CuDNNError`` carrying the status name and cuDNN's own last-error message;
the layer that knows the shapes adds them with ``CuDNNError.add_context``.
Out-of-memory statuses become ``CuDNNOutOfMemoryError`` (also a
``MemoryError``), which the search's try-all loop treats like CuPy's own
out-of-memory error.
"""
from cudnnconv.decl.cudnn cimport (
    cudnnStatus_t, cudnnGetErrorString, cudnnGetLastErrorString,
    CUDNN_STATUS_SUCCESS,
    CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED,
    CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)

_OOM_STATUSES = frozenset((<int>CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED,
                           <int>CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED))


class CuDNNError(RuntimeError):
    """A cuDNN call failed.

    Attributes: ``status`` (int), ``name`` (e.g. ``'CUDNN_STATUS_BAD_PARAM'``),
    ``message`` (cuDNN's explanation, when it gave one) and ``context`` (the
    descriptors, the algorithm or engine, and a one-line Python repro of the
    call).  Instances pickle and unpickle with all of these.
    """

    def __init__(self, status, message="", context=""):
        self.status = int(status)
        self.name = status_name(self.status)
        self.message = message or ""
        self.context = context or ""
        RuntimeError.__init__(self, self._text())

    def _text(self):
        text = self.name
        if self.message:
            text += ": " + self.message
        if self.context:
            text += "\n" + self.context
        return text

    def add_context(self, context):
        """Append ``context`` (shapes, descriptors, repro) to the message."""
        self.context = (self.context + "\n" + context) if self.context else context
        self.args = (self._text(),)
        return self

    def __str__(self):
        return self._text()

    def __reduce__(self):
        return (type(self), (self.status, self.message, self.context))


class CuDNNOutOfMemoryError(CuDNNError, MemoryError):
    """cuDNN, or a workspace for it, could not get the memory it needed."""


def status_name(int status):
    """The cuDNN name of a status code, e.g. 2000 -> 'CUDNN_STATUS_BAD_PARAM'."""
    cdef const char* s = cudnnGetErrorString(<cudnnStatus_t>status)
    if s == NULL:
        return "CUDNN_STATUS_%d" % status
    name = s.decode("utf-8", "replace")
    if not name.startswith("CUDNN_"):
        return "CUDNN_STATUS_%d (%s)" % (status, name)
    return name


def is_oom_status(int status):
    return status in _OOM_STATUSES


def last_error_string():
    """cuDNN's explanation of the most recent failure on this thread."""
    cdef char buf[2048]
    buf[0] = 0
    cudnnGetLastErrorString(buf, sizeof(buf))
    return buf.decode("utf-8", "replace").strip()


def raise_status(int status, context=""):
    cls = CuDNNOutOfMemoryError if status in _OOM_STATUSES else CuDNNError
    raise cls(status, last_error_string(), context)


cdef int check(cudnnStatus_t status) except -1 nogil:
    if status == CUDNN_STATUS_SUCCESS:
        return 0
    with gil:
        raise_status(<int>status)
    return -1
