"""The graph engine's variant packs on a GPU (graph_descriptors.VariantPacks).

A finalized variant pack is read-only, so each new set of pointers needs a new pack; a plan keeps the
packs of its last VP_SLOTS (4) pointer sets as raw cuDNN descriptors.  Checked here, with more
pointer sets than slots so that packs are evicted and rebuilt:

- every call is right against the float64 reference, including calls whose pointers had a pack that
  was evicted (a stale pack would run on another set's pointers), and through ``out=`` arrays
  poisoned with NaN first;
- the live descriptor count stays flat once the ring is full (a replaced pack is destroyed), and
  ``clear_cache()`` brings it back to where it was before the plan existed;
- the cost probe reports a positive time once a pack exists.
"""
import gc

import pytest

import cudnnconv
import reference as ref
from cudnnconv import engine_registry
from cudnnconv.core.state import state

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")

if "graph" not in cudnnconv.build_info()["engines"]:
    pytest.skip("built without the graph engine", allow_module_level=True)

SETS = 7                                             # > VP_SLOTS, and not a multiple of it


def _live():
    st = state()
    st.last = st.last_plan = None                    # the last call's record holds its plan and choice
    gc.collect()
    return engine_registry.live_descriptors()["graph"]


@pytest.mark.parametrize("dtype,layout", [("float16", "channels_last"), ("float32", "nchw")])
def test_packs_are_rebuilt_for_evicted_pointers_and_destroyed_when_replaced(dtype, layout):
    cudnnconv.clear_cache()
    base = _live()
    xs = [ref.random((4, 16, 12, 12), dtype, layout) for _ in range(SETS)]
    w = ref.random((16, 16, 3, 3), dtype, layout, scale=0.2)
    want = [ref.conv(x, w, padding=1) for x in xs]
    outs = [ref.poisoned(want[0].shape, dtype, layout) for _ in range(SETS)]
    p = cudnnconv.plan(cudnnconv.conv, xs[0], w, padding=1, engine="graph")
    tol = ref.tolerance(dtype)
    counts = []
    for rnd in range(3):
        for i in range(SETS):
            y = p(xs[i], w) if rnd != 1 else p(xs[i], w, out=outs[i])
            assert ref.rel_error(y, want[i]) < tol, (rnd, i)
            counts.append(_live())
    assert p.engine == "graph"
    full = counts[SETS]                              # the ring is full after the first round
    assert all(c == full for c in counts[SETS:]), counts
    assert full > base
    cost = p.executor.choice.variant_pack_cost_us(50)
    assert cost is not None and 0 < cost < 1e4
    del p, y
    cudnnconv.clear_cache()
    assert _live() == base
