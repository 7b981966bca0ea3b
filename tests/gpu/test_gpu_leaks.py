"""Memory over long runs on a GPU: 20,000 calls over changing shapes, with the choice caches shrunk
to 64 entries so that they evict all along.

- The caches stay within their bound, and each thread's call-plan memo within MEMO_MAX.
- Host RSS grows by less than 64 MiB, and CuPy's pool, once its free blocks are released, holds
  no more than before.
- After ``clear_cache()``, the objects that own cuDNN plans (GraphChoice, which owns its finalized
  plan and variant packs, and the executors bound to them) are back to their count before the run,
  give or take the last call's record.  (Descriptors without Python fields are not visible to the
  garbage collector; their owners are.)
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
    for i in range(300):
        _call(i)
    cudnnconv.clear_cache()
    cupy.cuda.runtime.deviceSynchronize()
    owners = _owners()                                   # (drops the last call's record first)
    pool.free_all_blocks()
    rss, used = _rss_bytes(), pool.used_bytes()
    for i in range(300, 300 + CALLS):
        y = _call(i)
        if i % 2000 == 0:
            x = ref.random((2, 8, 10, 6), "float16", "channels_last")
            w = ref.random((8, 8, 3, 3), "float16", "channels_last", scale=0.3)
            assert ref.rel_error(cudnnconv.conv(x, w, padding=1), ref.conv(x, w, padding=1)) <= \
                ref.tolerance("float16")
        del y
    cupy.cuda.runtime.deviceSynchronize()
    for c in small_caches:
        assert c.info().size <= BOUND, c.name
    assert len(state().memo) <= callplan.MEMO_MAX
    assert _rss_bytes() - rss < 64 << 20, "host RSS grew by %d MiB" % ((_rss_bytes() - rss) >> 20)
    cudnnconv.clear_cache()
    after = _owners()                                    # (drops the last call's record first)
    pool.free_all_blocks()
    # slack: 1 MiB of pool, and the few choices auto's fallback table may hold
    assert pool.used_bytes() <= used + (1 << 20), "CuPy's pool holds %d bytes more" % (pool.used_bytes() - used)
    assert after <= owners + 16, "cuDNN plan owners: %d before, %d after clear_cache()" % (owners, after)
