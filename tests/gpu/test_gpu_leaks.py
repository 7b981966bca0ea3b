"""Memory over long runs on a GPU: 20,000 calls over changing shapes, with the choice caches shrunk
to 64 entries so that they evict all along.  The calls run twice, with clear_cache() between: the
first pass loads what a process loads once (cuDNN's kernels), the second is measured.

- The caches stay within their bound, and each thread's call-plan memo within MEMO_MAX.
- Host RSS grows by less than 16 MiB over the second half of the measured pass, and CuPy's pool, once its free blocks are released, holds
  no more than before.
- After ``clear_cache()``, the objects that own cuDNN plans (GraphChoice, which owns its finalized
  plan and variant packs, and the executors bound to them) are back to their count before the run,
  give or take the last call's record.  (Descriptors without Python fields are not visible to the
  garbage collector; their owners are.)
- After ``clear_cache()``, the live cuDNN descriptors each engine counts (created, not yet destroyed:
  ``engine_registry.live_descriptors()``) are back to their count before the run.
"""
import gc
import os

import pytest

import cudnnconv
import reference as ref
from cudnnconv import callplan, engine_registry
from cudnnconv.core.executor import Executor
from cudnnconv.core.state import state

pytestmark = [pytest.mark.gpu, pytest.mark.stress]

cupy = pytest.importorskip("cupy")

CALLS, HOT, COLD_EVERY, BOUND = 20000, 48, 10, 64


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _owners():
    st = state()
    st.last = st.last_plan = None                       # the last call's record holds its choice
    gc.collect()
    graph = engine_registry.graph
    kinds = (Executor,) + ((graph.GraphChoice,) if graph is not None else ())
    return sum(isinstance(o, kinds) for o in gc.get_objects())


def _descriptors():
    """Each engine's live cuDNN descriptors, once the last call's record and the garbage are gone."""
    _owners()
    return engine_registry.live_descriptors()


def _call(i):
    """Call i: one of HOT problems, or every COLD_EVERY-th call a problem of a new shape."""
    h = 6 + (i % HOT if i % COLD_EVERY else HOT + i // COLD_EVERY)
    x = ref.random((2, 8, h, 6), "float16", "channels_last")
    w = ref.random((8, 8, 3, 3), "float16", "channels_last", scale=0.3)
    kind = i % 3
    if kind == 0:
        return cudnnconv.conv(x, w, padding=1)
    gy = ref.random((2, 8, h, 6), "float16", "channels_last")
    if kind == 1:
        return cudnnconv.conv_backward_input(x.shape, w, gy, padding=1)
    return cudnnconv.conv_backward_weight(x, w.shape, gy, padding=1)


@pytest.fixture
def small_caches():
    caches = engine_registry.caches()
    old = [c.info().maxsize for c in caches]
    for c in caches:
        c.set_maxsize(BOUND)
    yield caches
    for c, m in zip(caches, old):
        c.set_maxsize(m)
    cudnnconv.clear_cache()


def test_twenty_thousand_calls_stay_bounded(small_caches):
    pool = cupy.get_default_memory_pool()
    # A first pass over the same calls, then clear_cache(): what a process takes once (hundreds of
    # MiB of host memory in cuDNN and the driver over these shapes) is taken before the baseline.
    rss_first = _rss_bytes()
    for i in range(300 + CALLS):
        _call(i)
    rss_first = _rss_bytes() - rss_first
    cudnnconv.clear_cache()
    cupy.cuda.runtime.deviceSynchronize()
    owners = _owners()                                   # (drops the last call's record first)
    descriptors = _descriptors()
    pool.free_all_blocks()
    rss, used = _rss_bytes(), pool.used_bytes()
    half = 300 + CALLS // 2
    for i in range(300, 300 + CALLS):
        if i == half:
            rss_half = _rss_bytes()
        y = _call(i)
        if i % 2000 == 0:
            x = ref.random((2, 8, 10, 6), "float16", "channels_last")
            w = ref.random((8, 8, 3, 3), "float16", "channels_last", scale=0.3)
            assert ref.rel_error(cudnnconv.conv(x, w, padding=1), ref.conv(x, w, padding=1)) <= \
                ref.tolerance("float16")
        del y
    cupy.cuda.runtime.deviceSynchronize()
    rss_growth, rss_late = _rss_bytes() - rss, _rss_bytes() - rss_half
    sizes = {c.name: c.info().size for c in small_caches}
    memo = len(state().memo)
    live = engine_registry.live_descriptors()            # the cached plans' descriptors: counted while alive
    cudnnconv.clear_cache()
    after = _owners()                                    # (drops the last call's record first)
    descriptors_after = _descriptors()
    pool.free_all_blocks()
    # the figures docs/validation.md quotes (shown by pytest -rA, as tools/gpu_suite.sh's stress phase runs)
    print("leaks: first pass rss growth %d KiB; measured pass: rss growth %d KiB (%d KiB over its last %d calls), "
          "pool growth %d bytes, plan owners %d -> %d, live descriptors %s -> %s (%s before clear_cache()), "
          "cache sizes %s, memo %d"
          % (rss_first >> 10, rss_growth >> 10, rss_late >> 10, CALLS // 2, pool.used_bytes() - used, owners, after,
             descriptors, descriptors_after, live, sizes, memo))
    for name, size in sizes.items():
        assert size <= BOUND, name
    assert memo <= callplan.MEMO_MAX
    # Host memory that cuDNN and the driver take once per process rises over the first pass and the
    # start of the second, then stays flat (H200: +329 MiB, +37 MiB, then +28 KiB over the last
    # 10,000 calls; 20,000 calls on cached problems: +0 KiB).  A leak grows with the calls: 16 MiB over
    # 10,000 calls is 1.6 KiB per call.
    assert rss_late < 16 << 20, "host RSS grew by %d MiB over the last %d calls" % (rss_late >> 20, CALLS // 2)
    # slack: 1 MiB of pool, and the few choices auto's fallback table may hold
    assert pool.used_bytes() <= used + (1 << 20), "CuPy's pool holds %d bytes more" % (pool.used_bytes() - used)
    assert after <= owners + 16, "cuDNN plan owners: %d before, %d after clear_cache()" % (owners, after)
    assert min(descriptors.values(), default=0) >= 0
    if sizes.get("graph"):
        assert live["graph"] > descriptors["graph"], (live, descriptors)
    for engine, n in descriptors.items():
        # the slack: the 16 owners above, each a plan with its graph, tensors and a few variant packs
        assert descriptors_after[engine] <= n + 16 * 24, \
            "%s engine: %d live cuDNN descriptors before, %d after clear_cache()" % (engine, n, descriptors_after[engine])
