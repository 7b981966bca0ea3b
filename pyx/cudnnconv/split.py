"""Batch splitting for 32-bit indexing: pure planning functions (policy tier).

cuDNN's legacy API indexes tensors with 32-bit integers.  When the input or
the output of a call has more elements than the index limit, the batch is
split into chunks, PyTorch's Conv_v7 heuristic: a chunk holds about ``max_worksize``
elements of the larger tensor (we also cap that at the limit itself, so that
a small-limit test build still gets chunks under its limit).  When a single
sample is already over the limit, splitting the batch cannot help and we
raise ValueError naming the sizes.
"""
import numpy

FORWARD_MAX_WORKSIZE = 256 * 1024 * 1024          # elements
BACKWARD_INPUT_MAX_WORKSIZE = 128 * 1024 * 1024
BACKWARD_WEIGHT_MAX_WORKSIZE = 512 * 1024 * 1024
# More chunks than this is no real problem (65,536 chunks of 256 Mi elements
# are 2**44 elements, tens of terabytes): shapes from an array interface or a
# shape argument that claim it are refused rather than planned for hours.
MAX_CHUNKS = 1 << 16


def plan_batch_split(n, in_numel, out_numel, max_worksize, index_limit):
    """Chunks [(start, size), ...] covering the batch [0, n).

    ``in_numel`` and ``out_numel`` are the element counts of the whole input
    and output.  One chunk [(0, n)] when both are within ``index_limit``.
    """
    if n < 0 or in_numel < 0 or out_numel < 0 or max_worksize < 1 or index_limit < 1:
        raise ValueError("invalid split request: n=%d in=%d out=%d max_worksize=%d limit=%d"
                         % (n, in_numel, out_numel, max_worksize, index_limit))
    if in_numel <= index_limit and out_numel <= index_limit:
        return [(0, n)]
    per_sample = max(in_numel, out_numel) // n
    budget = min(max_worksize, index_limit)
    chunk = max(budget // per_sample, 1)
    if chunk * per_sample > index_limit:
        raise ValueError(
            "one sample has %d input and %d output elements; the larger, %d, is over the index "
            "limit of %d elements, so splitting the batch cannot bring a call under it "
            "(cuDNN's legacy API indexes with 32 bits)"
            % (in_numel // n, out_numel // n, per_sample, index_limit))
    count = -(-n // chunk)
    if count > MAX_CHUNKS:
        raise ValueError("the input's batch of %d samples of %d elements would need %d chunks under the index "
                         "limit of %d elements (at most %d are planned): no GPU holds such arrays"
                         % (n, per_sample, count, index_limit, MAX_CHUNKS))
    return [(s, min(chunk, n - s)) for s in range(0, n, chunk)]


def accumulation_dtype(dtype):
    """The dtype in which split weight gradients are summed: float32 for the
    16-bit types (their sums lose too much), the dtype itself otherwise."""
    name = numpy.dtype(dtype).name
    if name in ("float16", "bfloat16"):
        return numpy.dtype("float32")
    return numpy.dtype(dtype)
