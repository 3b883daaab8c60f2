"""School years, and what a coarse count (an age, months) allows on another day."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from raccrochage_mlds.domain.dates import (
    Dated,
    SchoolYear,
    months_before,
    months_on,
    whole_months,
    whole_years,
    years_on,
)

DAYS = st.dates(min_value=date(1990, 1, 1), max_value=date(2040, 12, 31))


def test_a_school_year_runs_from_1_september_to_31_august() -> None:
    year = SchoolYear.parse("2025-2026")
    assert (year.starts_on, year.ends_on, str(year)) == (date(2025, 9, 1), date(2026, 8, 31), "2025-2026")
    assert SchoolYear.containing(date(2026, 8, 31)) == year
    assert SchoolYear.containing(date(2026, 9, 1)) == SchoolYear(2026)
    assert date(2025, 9, 1) in year and date(2026, 9, 1) not in year


@pytest.mark.parametrize("text", ["2025", "2025-2027", "2025/2026", "٢٠٢٥-٢٠٢٦", "25-26"])
def test_a_school_year_is_written_yyyy_yyyy(text: str) -> None:
    with pytest.raises(ValueError, match="school year"):
        SchoolYear.parse(text)


def test_months_before_keeps_the_day_or_the_month_end() -> None:
    assert months_before(date(2026, 3, 31), 1) == date(2026, 2, 28)
    assert months_before(date(2026, 3, 15), 14) == date(2025, 1, 15)
    assert months_before(date(2024, 2, 29), 12) == date(2023, 2, 28)


def test_the_same_day_gives_the_exact_count_another_day_a_range() -> None:
    assert str(years_on(Dated(17, date(2026, 11, 12)), date(2026, 11, 12))) == "17"
    # 17 on 12 November: on the 1st of September before, 16 or 17.
    assert str(years_on(Dated(17, date(2026, 11, 12)), date(2026, 9, 1))) == "16-17"
    assert str(months_on(Dated(5, date(2026, 10, 20)), date(2026, 11, 12))) == "5-6"


@given(start=DAYS, known_on=DAYS, day=DAYS)
def test_the_true_age_is_always_in_the_range_and_both_ends_can_happen(start, known_on, day) -> None:
    if known_on < start:
        start, known_on = known_on, start
    fact = Dated(whole_years(start, known_on), known_on)
    span = years_on(fact, day)
    truth = max(whole_years(start, day), 0) if day >= start else 0
    assert span.low <= truth <= span.high
    assert span.high - span.low <= 1


@given(start=DAYS, known_on=DAYS, day=DAYS)
def test_the_true_months_are_always_in_the_range(start, known_on, day) -> None:
    if known_on < start:
        start, known_on = known_on, start
    fact = Dated(whole_months(start, known_on), known_on)
    span = months_on(fact, day)
    truth = max(whole_months(start, day), 0) if day >= start else 0
    assert span.low <= truth <= span.high


@given(known_on=DAYS, value=st.integers(0, 40), day=DAYS)
def test_the_range_is_tight_every_value_in_it_comes_from_some_start(known_on, value, day) -> None:
    """Every start date consistent with the fact is tried: together they reach both ends."""
    fact = Dated(value, known_on)
    span = months_on(fact, day)
    latest = months_before(known_on, value)
    earliest = months_before(known_on, value + 1) + timedelta(days=1)
    reached = set()
    start = earliest
    while start <= latest:
        assert whole_months(start, known_on) == value
        reached.add(max(whole_months(start, day), 0) if day >= start else 0)
        start += timedelta(days=1)
    assert min(reached) == span.low and max(reached) == span.high
