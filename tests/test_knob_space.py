"""cudnnconv.knob_space: the knob settings an exhaustive search tries, its budget and its progress line
(no GPU: the graph engine builds the configs from these settings)."""
import itertools
import math

import hypothesis.strategies as st
from hypothesis import given, settings

from cudnnconv import knob_space
from cudnnconv.knob_space import KnobInfo


def test_a_knob_takes_every_value_of_its_range_by_its_stride():
    assert knob_space.values(KnobInfo(3, 0, 6, 2)) == [0, 2, 4, 6]
    assert knob_space.values(KnobInfo(3, 1, 7, 3)) == [1, 4, 7]
    assert knob_space.values(KnobInfo(3, 5, 5, 1)) == [5]
    assert knob_space.values(KnobInfo(3, 2, 4, 0)) == [2, 3, 4]        # a stride below 1 counts as 1
    assert knob_space.values(KnobInfo(3, 4, 2, 1)) == []               # no value described


@given(st.integers(-50, 50), st.integers(0, 10 ** 6), st.integers(1, 1000), st.integers(1, 40))
def test_a_wide_knob_keeps_cap_values_evenly_spread_with_both_ends(lo, span, step, cap):
    vals = knob_space.values(KnobInfo(0, lo, lo + span, step), cap)
    full_n = span // step + 1
    assert len(vals) == min(cap, full_n) and vals == sorted(set(vals))
    assert all((v - lo) % step == 0 and lo <= v <= lo + span for v in vals)
    assert vals[0] == lo
    if cap > 1 or full_n == 1:
        assert vals[-1] == lo + (full_n - 1) * step


def test_an_engine_without_knobs_has_one_setting_the_empty_one():
    assert knob_space.settings([]) == [()]
    assert knob_space.settings([KnobInfo(4, 3, 1, 1)]) == [()]       # a knob with no value drops out


def test_settings_are_the_product_in_order_sorted_by_type_when_they_fit():
    infos = [KnobInfo(7, 0, 1, 1), KnobInfo(2, 0, 4, 2), KnobInfo(7, 5, 9, 1)]   # type 7 twice: its first counts
    got = knob_space.settings(infos)
    want = [((2, a), (7, b)) for a, b in itertools.product([0, 2, 4], [0, 1])]
    assert got == want


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 5), st.integers(0, 40), st.integers(1, 4)),
                max_size=6), st.integers(1, 80), st.integers(1, 20))
def test_settings_are_capped_deterministic_distinct_and_drawn_from_the_product(raw, cap, value_cap):
    infos = [KnobInfo(t, lo, lo + span, step) for t, lo, span, step in raw]
    got = knob_space.settings(infos, cap, value_cap)
    assert got == knob_space.settings(infos, cap, value_cap)          # the same in every process
    full = knob_space.settings(infos, math.inf, value_cap)
    assert len(got) == min(cap, len(full)) and len(set(got)) == len(got)
    assert set(got) <= set(full)
    positions = [full.index(s) for s in got]
    assert positions == sorted(positions)                               # in the product's order
    assert got[0] == full[0]
    if cap > 1:
        assert got[-1] == full[-1]
    types = sorted({t for t, *_ in raw})
    for s in got:
        assert [t for t, _ in s] == sorted(t for t, _ in s)
        assert {t for t, _ in s} <= set(types)


def test_round_robin_covers_every_engine_before_any_engine_twice():
    got = list(knob_space.round_robin([(3, ["a", "b", "c"]), (5, []), (7, ["x"]), (9, ["p", "q"])]))
    assert got == [(3, "a"), (7, "x"), (9, "p"), (3, "b"), (9, "q"), (3, "c")]
    assert list(knob_space.round_robin([])) == []


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_the_budget_runs_out_after_its_seconds():
    clock = _Clock()
    b = knob_space.Budget(2.5, clock)
    assert not b.exhausted() and b.spent() == 0
    clock.t += 2.4
    assert not b.exhausted()
    clock.t += 0.1
    assert b.exhausted() and abs(b.spent() - 2.5) < 1e-9


def test_progress_counts_keeps_the_best_and_reports_at_most_once_a_second():
    clock, lines = _Clock(), []
    p = knob_space.Progress("forward x=(1, 2)", lines.append, every_s=1.0, clock=clock)
    p.add("eng1", 0.5)
    p.add("eng2", float("nan"))                 # did not run: counted, never the best
    clock.t += 0.5
    p.add("eng3", 0.25)
    assert lines == []
    clock.t += 0.6
    p.add("eng4", 0.75)
    assert lines == ["cudnnconv: exhaustive search of forward x=(1, 2): 4 candidates timed, best eng3 0.2500 ms"]
    p.add("eng5", 0.1)
    assert len(lines) == 1 and p.count == 5 and (p.best, p.best_ms) == ("eng5", 0.1)
    clock.t += 1.0
    p.add("eng6", float("nan"))
    assert lines[-1].endswith("6 candidates timed, best eng5 0.1000 ms")
    p.done()
    assert len(lines) == 3 and lines[-1].endswith("6 candidates timed, best eng5 0.1000 ms (done)")

