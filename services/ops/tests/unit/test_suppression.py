"""Small cells: under 5 youths shown as "< 5", and never derivable from a total."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from raccrochage_ops.domain.suppression import HIDDEN, breakdown, cell, table


def test_a_count_under_five_is_hidden_and_zero_is_shown():
    assert [cell(n) for n in (0, 1, 4, 5, 120)] == [0, HIDDEN, HIDDEN, 5, 120]


def test_one_hidden_part_takes_the_smallest_other_with_it():
    shown = breakdown(60, {"moved": 3, "refuses_support": 7, "reached_solution": 50})
    assert shown.total == 60
    assert shown.parts == {"moved": HIDDEN, "refuses_support": HIDDEN, "reached_solution": 50}


def test_two_hidden_parts_need_nothing_more():
    shown = breakdown(58, {"a": 3, "b": 2, "c": 53})
    assert shown.parts == {"a": HIDDEN, "b": HIDDEN, "c": 53}


def test_a_hidden_part_alone_beside_zeros_hides_the_total():
    shown = breakdown(8, {"a": 0, "b": 8}), breakdown(3, {"a": 3, "b": 0})
    assert shown[0].total == 8 and shown[0].parts == {"a": 0, "b": 8}
    assert shown[1].total == HIDDEN and shown[1].parts == {"a": HIDDEN, "b": 0}


def test_a_small_total_is_hidden_with_its_parts():
    shown = breakdown(4, {"a": 2, "b": 2})
    assert shown.total == HIDDEN and set(shown.parts.values()) == {HIDDEN}


def test_parts_that_do_not_add_up_say_so():
    with pytest.raises(ValueError, match="not to the total 10"):
        breakdown(10, {"a": 4, "b": 5})


def test_a_table_hides_cell_by_cell():
    assert table({"33": {"reserved": 2, "placed": 9}}) == {"33": {"reserved": HIDDEN, "placed": 9}}


@given(st.lists(st.integers(0, 40), min_size=1, max_size=8))
def test_no_hidden_part_can_be_computed_back(counts):
    parts = {f"p{i}": n for i, n in enumerate(counts)}
    shown = breakdown(sum(counts), parts)
    hidden = [name for name, value in shown.parts.items() if value == HIDDEN]
    # Known total: the hidden parts' sum is known, so one hidden part alone would be derived.
    if shown.total != HIDDEN:
        assert len(hidden) != 1
    for value in shown.parts.values():
        assert value == HIDDEN or not (0 < value < 5)
