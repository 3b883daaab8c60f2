"""What an académie configures about a case's clocks, and calendar arithmetic for them."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Policy:
    """The configurable clocks of a case; the defaults are the guide's (15 days) or the issue's."""

    # "Unreachable after reminders" needs both: this many failed attempts, over at least this long
    # since the first attempt. Either alone is too quick (3 calls in an afternoon) or too blind.
    max_attempts: int = 3
    unreachable_after_days: int = 21
    # Droit au retour en formation: interview within 15 days of the first successful contact.
    interview_deadline_days: int = 15
    # An interview deadline this close and no interview booked on or before it: priority.
    due_soon_days: int = 3
    review_months: int = 3
    escalation_months: int = 2

    def __post_init__(self) -> None:
        for name in (
            "max_attempts",
            "unreachable_after_days",
            "interview_deadline_days",
            "review_months",
            "escalation_months",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"policy {name} must be at least 1, got {getattr(self, name)}")
        if self.due_soon_days < 0:
            raise ValueError(f"policy due_soon_days must not be negative, got {self.due_soon_days}")


DEFAULT_POLICY = Policy()


def add_months(day: date, months: int) -> date:
    """The same day `months` later; a day the target month lacks becomes its last (31 Jan + 1 -> 28/29 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def age_on(age_at_opening: int, opened_on: date, today: date) -> int:
    """The youth's age as far as the case can tell: no birth date is kept (minimisation), so this
    is the age at opening plus the whole years since; it may lag the true age by up to a year."""
    years = today.year - opened_on.year - ((today.month, today.day) < (opened_on.month, opened_on.day))
    return age_at_opening + max(years, 0)
