"""Workspace memory from CuPy's current allocator (policy tier).

All workspace comes from ``cupy.cuda.alloc``, i.e. CuPy's memory pool, so
``cupy.get_default_memory_pool().set_limit()`` bounds it and an allocation
past the limit raises CuPy's OutOfMemoryError, which the search's try-all
loop catches.  Blocks go back to the pool when the returned MemoryPointer is
dropped.
"""
import threading

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


_KEEP_LOCK = threading.Lock()
KEPT_STREAMS = 8                # streams one choice keeps a block for; past them, a block per call
_per_call = threading.local()   # .mem: this thread's last block taken for one call


def kept_pointer(choice, stream):
    """The workspace pointer ``choice`` runs with on ``stream`` (0 when it needs none).

    A choice keeps one block per stream it has run on: ``ws_mem`` for the first (``ws_stream``), and
    ``ws_more``, a dict, for the others, up to KEPT_STREAMS in all.  The blocks go back to the pool
    with the choice, when its cache entry is dropped or replaced (docs/design.md lists when).

    Kept, not taken per call: a call captured into a CUDA graph runs again at every replay on the
    pointer it had at capture, so that block must still be the workspace's then; a block that went
    back to the pool after the call would by then belong to another array.  One per stream: two
    streams may run the same problem at the same time, and one block shared by both would be
    written by both.  (CuPy's pool is stream-ordered: a block freed on one stream is reused only on
    that stream, so a block dropped here is never handed out under a kernel still using it.)

    Bounded: a program that makes a new stream for every step would otherwise leave one block per
    stream with every choice it uses.  Past KEPT_STREAMS, a call on yet another stream gets a block
    for that call only (held by its thread until the thread's next such block, so past the launch),
    unless that stream is capturing a CUDA graph, which needs its block kept.

    The legacy engine's choices keep blocks only for calls under capture (for_call;
    its calls cost ~100 us of cuDNN host time, so a block per call costs nothing it would notice, and
    its cache, shared by all threads, would otherwise hold the sum of all its workspaces); they come
    here keyed by thread_stream_key.  The lock makes the first block of a stream be taken once when
    threads share a choice; a stream's block, once kept, never changes.
    Raises MemoryError (CuPy's OutOfMemoryError) when the block cannot be had.
    """
    nbytes = choice.workspace
    if nbytes <= 0:
        return 0
    with _KEEP_LOCK:
        mem = choice.ws_mem
        if mem is None:
            mem = allocate(nbytes)
            choice.ws_stream = stream
            choice.ws_mem = mem
        elif choice.ws_stream != stream:
            more = choice.ws_more
            if more is None:
                more = choice.ws_more = {}
            mem = more.get(stream)
            if mem is None:
                mem = allocate(nbytes)
                if len(more) + 1 < KEPT_STREAMS or capturing(stream):
                    more[stream] = mem
                else:
                    _per_call.mem = mem
        return mem.ptr


def for_call(choice, args):
    """The workspace of one call of ``choice`` on ``args.stream`` (an engine's call arguments, read
    only when the choice needs workspace), as (pointer, held): the block the choice keeps for the
    stream (kept_pointer; ``held`` None), or, for a choice that keeps none
    outside a capture (``keeps_workspace`` False: the legacy engine's), a block for this call only,
    which the caller holds until the call is enqueued and then gives back to CuPy's stream-ordered
    pool.  (0, None) when the choice needs no workspace."""
    if choice.workspace <= 0:
        return 0, None
    stream = args.stream
    if getattr(choice, "keeps_workspace", True):
        return kept_pointer(choice, stream), None
    if capturing(stream):
        return kept_pointer(choice, thread_stream_key(stream)), None
    mem = allocate(choice.workspace)
    return mem.ptr, mem


def capturing(stream):
    """Whether ``stream`` (a cudaStream_t as an int) is capturing a CUDA graph."""
    import cupy
    return cupy.cuda.runtime.streamIsCapturing(stream) != 0


def current_stream_capturing():
    """Whether CuPy's current stream is capturing a CUDA graph; True where that cannot be told
    (another stream capturing in global mode makes the query itself fail)."""
    import cupy
    try:
        return capturing(cupy.cuda.get_current_stream().ptr)
    except cupy.cuda.runtime.CUDARuntimeError:
        return True


PER_THREAD_DEFAULT_STREAM = 2     # cudaStreamPerThread: one handle value, another stream in each thread


def thread_stream_key(stream):
    """What kept_pointer keys a shared choice's block by: the stream, except the per-thread default
    stream, which is a different stream in every thread under one handle value."""
    return (stream, threading.get_ident()) if stream == PER_THREAD_DEFAULT_STREAM else stream


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
