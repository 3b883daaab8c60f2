"""School years, and what a coarse fact (an age in years, a number of months) says on another day.

No birth date leaves the identity vault: the MLDS knows "17 on 2026-06-15", not the day of birth.
On another day that age is a range (17 or 18 three months later), and a rule that needs "at least
17 on 1 September" must say "unknown" when the range straddles 17, never guess.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True, order=True)
class SchoolYear:
    """An Education nationale school year, 1 September to 31 August, written "2025-2026"."""

    first: int  # the calendar year of its rentrée

    @classmethod
    def parse(cls, text: str) -> SchoolYear:
        parts = text.strip().split("-")
        if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) == 4 for p in parts):
            raise ValueError(f"school year {text!r}: expected YYYY-YYYY, e.g. 2025-2026")
        first, second = int(parts[0]), int(parts[1])
        if second != first + 1:
            raise ValueError(f"school year {text!r}: the second year must follow the first")
        return cls(first)

    @classmethod
    def containing(cls, day: date) -> SchoolYear:
        return cls(day.year if day.month >= 9 else day.year - 1)

    @property
    def starts_on(self) -> date:
        return date(self.first, 9, 1)

    @property
    def ends_on(self) -> date:
        return date(self.first + 1, 8, 31)

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.starts_on <= day <= self.ends_on

    def __str__(self) -> str:
        return f"{self.first}-{self.first + 1}"


@dataclass(frozen=True)
class Span:
    """Whole numbers from `low` to `high`, both included: what a coarse fact allows."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"empty span {self.low}..{self.high}")

    @property
    def exact(self) -> bool:
        return self.low == self.high

    def __str__(self) -> str:
        return str(self.low) if self.exact else f"{self.low}-{self.high}"


@dataclass(frozen=True)
class Dated:
    """A count that grows with time (age in years, months out of school), as known on a day."""

    value: int
    on: date

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError(f"a count cannot be negative: {self.value}")


def whole_years(start: date, end: date) -> int:
    """Completed years from `start` to `end` (an age, as the vault computes it)."""
    return end.year - start.year - ((end.month, end.day) < (start.month, start.day))


def whole_months(start: date, end: date) -> int:
    """Completed months from `start` to `end`."""
    return (end.year - start.year) * 12 + end.month - start.month - (end.day < start.day)


def months_before(day: date, months: int) -> date:
    """The same day `months` earlier; the month's last day when it is shorter (31 March -> 28 Feb)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def years_on(fact: Dated, day: date) -> Span:
    """Completed years on `day` of something `fact.value` years old on `fact.on` (an age)."""
    return _span(fact, day, 12, whole_years)


def months_on(fact: Dated, day: date) -> Span:
    """Completed months on `day` of something `fact.value` months old on `fact.on`."""
    return _span(fact, day, 1, whole_months)


def _span(fact: Dated, day: date, months_per_unit: int, completed) -> Span:
    # Every start date that gives `fact.value` on `fact.on` lies between `earliest` and `latest`;
    # the count on `day` only grows as the start moves earlier, so the two ends bound it exactly.
    if day == fact.on:
        return Span(fact.value, fact.value)
    latest = months_before(fact.on, fact.value * months_per_unit)
    earliest = months_before(fact.on, (fact.value + 1) * months_per_unit) + timedelta(days=1)
    low = max(completed(latest, day), 0) if day >= latest else 0
    high = max(completed(earliest, day), 0) if day >= earliest else 0
    return Span(low, high)
