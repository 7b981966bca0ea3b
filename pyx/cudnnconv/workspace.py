"""Workspace memory from CuPy's current allocator (policy tier).

All workspace comes from ``cupy.cuda.alloc``, i.e. CuPy's memory pool, so
``cupy.get_default_memory_pool().set_limit()`` bounds it and an allocation
past the limit raises CuPy's OutOfMemoryError, which the search's try-all
loop catches.  Blocks go back to the pool when the returned MemoryPointer is
dropped.
"""
from cudnnconv.core.status import CuDNNOutOfMemoryError

TIB = 1 << 40
_DEVICE_ALLOCATION_FAILED = 4004     # CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED


def allocate(nbytes):
    """A MemoryPointer of ``nbytes`` from the pool, or None for zero bytes.

    Requests of 1 TiB or more are refused without trying: cuDNN sometimes
    reports absurd sizes (near 2^63) for algorithms it cannot run, and the
    try-all loop must see that as out-of-memory and move on.
    """
    if nbytes <= 0:
        return None
    if nbytes >= TIB:
        raise CuDNNOutOfMemoryError(
            _DEVICE_ALLOCATION_FAILED,
            "workspace of %d bytes requested (>= 1 TiB): refused without trying" % nbytes)
    import cupy
    return cupy.cuda.alloc(nbytes)


def pointer(mem):
    return 0 if mem is None else mem.ptr


def largest_available():
    """About the largest block the pool or the device could give now."""
    import cupy
    free_dev, _total = cupy.cuda.runtime.memGetInfo()
    pool = cupy.get_default_memory_pool()
    avail = free_dev + pool.free_bytes()
    limit = pool.get_limit()
    if limit:
        avail = min(avail, max(limit - pool.used_bytes(), 0))
    return avail


def search_budget(workspace_limit):
    """Bytes a benchmarking search may take: what is free, under the user's limit."""
    avail = largest_available()
    return avail if workspace_limit is None else min(avail, workspace_limit)


def allocate_for_search(sizes, budget):
    """The largest of ``sizes`` that fits ``budget``, allocated; on OOM, the
    next smaller ones.  Returns (MemoryPointer or None, nbytes)."""
    for size in sorted({s for s in sizes if 0 < s <= budget}, reverse=True):
        try:
            return allocate(size), size
        except MemoryError:
            continue
    return None, 0
