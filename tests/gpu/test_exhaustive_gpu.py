"""The exhaustive search level on the GPU: it tries more configs than a benchmark, picks one at
least as fast, is correct, stores its choice with its knobs, and a warm tuning file makes a fresh
cache search nothing."""
import pytest

import cudnnconv
from cudnnconv import gpu_timing

import reference as ref

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif("graph" not in cudnnconv.build_info()["engines"], reason="the graph engine is not built")]


@pytest.fixture
def clean(fresh_search):
    yield


def _fp16_nhwc(shape, seed):
    import cupy
    return ref.random(shape, "float16", "channels_last", rng=cupy.random.RandomState(seed))


@pytest.mark.parametrize("direction", ["forward", "backward_data", "backward_filter"])
def test_exhaustive_tries_more_and_chooses_at_least_as_well(clean, direction, tmp_path):
    x, w = _fp16_nhwc((32, 64, 28, 28), 1), _fp16_nhwc((64, 64, 3, 3), 2)
    gy = _fp16_nhwc((32, 64, 28, 28), 3)
    kw = dict(padding=1, benchmark=True, engine="graph")

    def call(out):
        if direction == "forward":
            return cudnnconv.conv(x, w, out=out, **kw), ref.conv(x, w, padding=1)
        if direction == "backward_data":
            return (cudnnconv.conv_backward_input(x.shape, w, gy, out=out, **kw),
                    ref.conv_backward_input(x.shape, w, gy, padding=1))
        return cudnnconv.conv_backward_weight(x, w.shape, gy, out=out, **kw), \
            ref.conv_backward_weight(x, w.shape, gy, padding=1)
    shape = w.shape if direction == "backward_filter" else x.shape
    got, _ = call(ref.poisoned(shape, "float16", "channels_last"))
    plain = cudnnconv.last_call()["choices"][0]
    assert plain["how"] == "benchmark"
    listed = len(cudnnconv.explain(x, w, padding=1, engine="graph").candidates) if direction == "forward" else 0
    cudnnconv.benchmark_settings(exhaustive=True, exhaustive_budget_s=20)
    if direction == "forward":           # explain() lists what the exhaustive search tried: more rows
        assert len(cudnnconv.explain(x, w, padding=1, engine="graph").candidates) > listed
    got, expect = call(ref.poisoned(shape, "float16", "channels_last"))   # searches again: the plain choice is not exhaustive
    assert ref.rel_error(got, expect) <= ref.tolerance("float16") * (4 if direction == "backward_filter" else 1)
    chosen = cudnnconv.last_call()["choices"][0]
    assert chosen["how"] == "exhaustive" and chosen["benchmarked"]
    # at least as cheap as the benchmark's choice by the ranking's own cost (max of GPU time and the
    # issue time where one was measured), within the timing noise the ranking allows
    def cost(c):
        return max(c["time_ms"], c["issue_ms"])
    assert cost(chosen) <= cost(plain) * (1 + 2 * gpu_timing.MARGIN) + 0.002, (chosen, plain)
    # stored with its knobs; a fresh cache loaded from the file hits without searching
    path = tmp_path / "t.json"
    assert cudnnconv.save_tuning(path) >= 1
    cudnnconv.clear_cache()
    assert cudnnconv.load_tuning(path) >= 1
    before = cudnnconv.cache_info()["graph"]
    got, expect = call(ref.poisoned(shape, "float16", "channels_last"))
    after = cudnnconv.cache_info()["graph"]
    assert after.misses == before.misses, (before, after)
    again = cudnnconv.last_call()["choices"][0]
    assert again["tag"] == chosen["tag"] and again["knobs"] == chosen["knobs"] and again["how"] == "exhaustive"
    assert ref.rel_error(got, expect) <= ref.tolerance("float16") * (4 if direction == "backward_filter" else 1)


def test_exhaustive_search_stays_within_its_budget_and_counts_its_candidates(clean, caplog):
    import logging
    import time
    x, w = _fp16_nhwc((8, 32, 20, 20), 4), _fp16_nhwc((32, 32, 3, 3), 5)
    cudnnconv.benchmark_settings(exhaustive=True, exhaustive_budget_s=1.5)
    with caplog.at_level(logging.INFO, logger="cudnnconv"):
        t0 = time.perf_counter()
        y = cudnnconv.conv(x, w, padding=1, benchmark=True, engine="graph")
        spent = time.perf_counter() - t0
    assert ref.rel_error(y, ref.conv(x, w, padding=1)) <= ref.tolerance("float16")
    # the budget bounds building and timing beyond the heuristics' own configs (a config that is
    # being timed when it runs out finishes): allow the heuristics' share and one config on top
    assert spent < 1.5 + 3.0, spent
    lines = [r.getMessage() for r in caplog.records if "exhaustive search of" in r.getMessage()]
    final = [m for m in lines if m.endswith("(done)")]
    assert len(final) == 1 and "candidates timed, best eng" in final[0], lines
    assert int(final[0].split(": ")[2].split(" candidates")[0]) >= 1


def test_configs_carry_their_knobs_and_the_exhaustive_search_builds_each_engine_once(clean):
    # a config's tag carries the knob choices cuDNN reads back (eng62_k2=4_k13=0...): some of the
    # heuristics' configs of a 3x3 fp16 forward have knobs.  The exhaustive search adds every
    # engine with its default knobs, each once: no knob settings of its own (cudnnconv.exhaustive_budget
    # says why: one such setting ran a kernel that had not returned 500 s later)
    x, w = _fp16_nhwc((16, 64, 28, 28), 6), _fp16_nhwc((64, 64, 3, 3), 7)
    plain = [str(c.tag) for c in cudnnconv.explain(x, w, padding=1, engine="graph").candidates]
    assert [t for t in plain if "_k" in t], plain
    cudnnconv.benchmark_settings(exhaustive=True, exhaustive_budget_s=10)
    tags = [str(c.tag) for c in cudnnconv.explain(x, w, padding=1, engine="graph").candidates]
    added = [t for t in tags if t not in set(plain)]
    assert added, tags
    engines = [t.split("_")[0] for t in added]
    assert len(engines) == len(set(engines)), added
    # the chosen config, knobs and all, computes the convolution
    y = cudnnconv.conv(x, w, padding=1, benchmark=True, engine="graph",
                       out=ref.poisoned((16, 64, 28, 28), "float16", "channels_last"))
    assert cudnnconv.last_call()["choices"][0]["how"] == "exhaustive"
    assert ref.rel_error(y, ref.conv(x, w, padding=1)) <= ref.tolerance("float16")
