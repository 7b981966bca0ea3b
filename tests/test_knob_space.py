"""cudnnconv.knob_space: the knob settings the exhaustive search's knob sweep tries, and their order
(no GPU: the sweep's worker builds the configs from these settings)."""
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


def test_neighbours_change_one_knob_at_a_time_in_type_and_value_order():
    infos = [KnobInfo(7, 0, 2, 1), KnobInfo(2, 1, 3, 2)]
    got = knob_space.neighbours(((2, 1), (7, 0)), infos)
    assert got == [((2, 3), (7, 0)), ((2, 1), (7, 1)), ((2, 1), (7, 2))]
    # a knob the setting does not name is varied too; one infos do not describe keeps its value
    assert knob_space.neighbours(((9, 4),), [KnobInfo(2, 0, 1, 1)]) == [((2, 0), (9, 4)), ((2, 1), (9, 4))]
    assert knob_space.neighbours((), []) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 5), st.integers(0, 12), st.integers(1, 3)),
                max_size=5), st.data())
def test_every_neighbour_is_a_setting_of_the_engine_one_knob_away(raw, data):
    infos = [KnobInfo(t, lo, lo + span, step) for t, lo, span, step in raw]
    full = knob_space.settings(infos, math.inf)
    start = data.draw(st.sampled_from(full))
    got = knob_space.neighbours(start, infos)
    assert len(got) == len(set(got)) and start not in got
    assert set(got) <= set(full)
    want = {s for s in full if sum(a != b for a, b in zip(s, start)) == 1}
    assert set(got) == want


def test_round_robin_interleaves_engines_and_keeps_each_ones_order():
    got = list(knob_space.round_robin([(62, ["a", "b", "c"]), (7, []), (65, ["x"]), (3, ["p", "q"])]))
    assert got == [(62, "a"), (65, "x"), (3, "p"), (62, "b"), (3, "q"), (62, "c")]
    assert list(knob_space.round_robin([])) == []

