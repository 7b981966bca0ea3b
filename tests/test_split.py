"""split: the batch-split planner and the accumulation dtype (pure functions)."""
import numpy
import pytest

from cudnnconv import split

LIMIT = 2**31 - 1


def check_cover(chunks, n):
    """Chunks are in order, non-empty, and cover [0, n) exactly once."""
    pos = 0
    for start, size in chunks:
        assert start == pos and size >= 1
        pos += size
    assert pos == n


def test_worksize_constants():
    assert split.FORWARD_MAX_WORKSIZE == 256 * 2**20
    assert split.BACKWARD_INPUT_MAX_WORKSIZE == 128 * 2**20
    assert split.BACKWARD_WEIGHT_MAX_WORKSIZE == 512 * 2**20


@pytest.mark.parametrize("n,in_numel,out_numel", [(1, 10, 10), (64, LIMIT, 5), (8, 5, LIMIT), (0, 0, 0)])
def test_single_chunk_under_the_limit(n, in_numel, out_numel):
    assert split.plan_batch_split(n, in_numel, out_numel, split.FORWARD_MAX_WORKSIZE, LIMIT) == [(0, n)]


def test_seed_heuristic_forward():
    # 64 samples of 2^26 elements (4 Gi total): 256 Mi / 64 Mi = 4 samples a chunk.
    n, per = 64, 2**26
    chunks = split.plan_batch_split(n, n * per, n * per // 2, split.FORWARD_MAX_WORKSIZE, LIMIT)
    assert chunks == [(s, 4) for s in range(0, 64, 4)]


def test_remainder_chunk():
    n, per = 42, 2**26         # 2.6 Gi elements: over the limit
    chunks = split.plan_batch_split(n, n * per, 1, split.FORWARD_MAX_WORKSIZE, LIMIT)
    assert chunks == [(s, 4) for s in range(0, 40, 4)] + [(40, 2)]
    check_cover(chunks, n)


def test_the_larger_tensor_decides():
    n = 40
    a = split.plan_batch_split(n, n * 2**25, n * 2**27, split.FORWARD_MAX_WORKSIZE, LIMIT)
    b = split.plan_batch_split(n, n * 2**27, n * 2**25, split.FORWARD_MAX_WORKSIZE, LIMIT)
    assert a == b == [(s, min(2, n - s)) for s in range(0, n, 2)]


@pytest.mark.parametrize("worksize,expect_chunk", [
    (split.BACKWARD_INPUT_MAX_WORKSIZE, 2), (split.FORWARD_MAX_WORKSIZE, 4), (split.BACKWARD_WEIGHT_MAX_WORKSIZE, 8),
])
def test_each_direction_worksize(worksize, expect_chunk):
    n, per = 33, 2**26
    chunks = split.plan_batch_split(n, n * per, n * per, worksize, LIMIT)
    assert all(size == expect_chunk for _, size in chunks[:-1])
    assert chunks[-1][1] == n - expect_chunk * (len(chunks) - 1)
    check_cover(chunks, n)


def test_sample_larger_than_worksize_but_under_limit_gets_one_per_chunk():
    n, per = 5, 2**29          # 512 Mi per sample: over 256 Mi work size, under 2^31
    chunks = split.plan_batch_split(n, n * per, 1, split.FORWARD_MAX_WORKSIZE, LIMIT)
    assert chunks == [(i, 1) for i in range(5)]


def test_one_sample_over_the_limit_names_the_sizes():
    n, per = 3, 2**31
    with pytest.raises(ValueError) as info:
        split.plan_batch_split(n, n * per, 7, split.FORWARD_MAX_WORKSIZE, LIMIT)
    msg = str(info.value)
    assert str(per) in msg and str(LIMIT) in msg and "splitting the batch cannot" in msg
    with pytest.raises(ValueError, match="output elements"):
        split.plan_batch_split(2, 4, 2 * 3000, 100, 1000)


@pytest.mark.parametrize("limit", [1, 7, 100, 1000])
@pytest.mark.parametrize("n,per_in,per_out", [(1, 1, 1), (10, 7, 3), (13, 1, 5), (100, 9, 9), (37, 4, 11)])
def test_small_custom_limits(limit, n, per_in, per_out):
    per = max(per_in, per_out)
    args = (n, n * per_in, n * per_out, split.FORWARD_MAX_WORKSIZE, limit)
    if per > limit:
        with pytest.raises(ValueError, match="over the index limit of %d" % limit):
            split.plan_batch_split(*args)
        return
    chunks = split.plan_batch_split(*args)
    check_cover(chunks, n)
    if n * per <= limit:
        assert chunks == [(0, n)]
    else:
        for _, size in chunks:
            assert size * per <= limit               # every chunk fits the limit
        assert chunks[0][1] == max(limit // per, 1)  # and uses as much of it as it can


def test_worksize_smaller_than_limit_decides_chunks():
    chunks = split.plan_batch_split(20, 20 * 10, 20 * 10, 30, 100)
    assert chunks[0] == (0, 3)
    check_cover(chunks, 20)


@pytest.mark.parametrize("bad", [(-1, 1, 1, 1, 1), (1, -1, 1, 1, 1), (1, 1, 1, 0, 1), (1, 1, 1, 1, 0)])
def test_invalid_requests(bad):
    with pytest.raises(ValueError, match="invalid split request"):
        split.plan_batch_split(*bad)


def test_accumulation_dtype():
    assert split.accumulation_dtype(numpy.float16) == numpy.float32
    assert split.accumulation_dtype("float16") == numpy.float32
    assert split.accumulation_dtype(numpy.float32) == numpy.float32
    assert split.accumulation_dtype(numpy.float64) == numpy.float64
    ml_dtypes = pytest.importorskip("ml_dtypes")
    assert split.accumulation_dtype(ml_dtypes.bfloat16) == numpy.float32
    assert isinstance(split.accumulation_dtype(numpy.float64), numpy.dtype)


def test_a_batch_needing_absurdly_many_chunks_is_refused_not_planned():
    """A claimed batch of 2**62 small samples would otherwise be planned as
    ~2**40 chunks (hours and terabytes of Python tuples); it is refused."""
    import time
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="would need .* chunks"):
        split.plan_batch_split(2 ** 62, 2 ** 62 * 256, 2 ** 62 * 256, split.FORWARD_MAX_WORKSIZE, 2 ** 31 - 1)
    assert time.perf_counter() - t0 < 1.0
    n = split.MAX_CHUNKS * 1024                 # exactly MAX_CHUNKS chunks of 1024 samples is still planned
    chunks = split.plan_batch_split(n, n * 256 * 1024, n * 256 * 1024, 256 * 1024 * 1024, 2 ** 31 - 1)
    assert len(chunks) == split.MAX_CHUNKS and sum(c for _, c in chunks) == n
