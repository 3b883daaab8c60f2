"""What an académie configures about FOQUALE's clocks: offers' freshness and reservations' expiry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Policy:
    # Directories of seats fail when nobody updates them: an offer nobody confirmed for this long
    # is flagged stale (its owner is asked), then unpublished.
    stale_after_days: int = 60
    unpublish_after_days: int = 90
    # A reservation holds a seat this long for the establishment to answer.
    reservation_days: int = 15

    def __post_init__(self) -> None:
        for name in ("stale_after_days", "unpublish_after_days", "reservation_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"policy {name} must be at least 1, got {getattr(self, name)}")
        if self.unpublish_after_days <= self.stale_after_days:
            raise ValueError(
                f"policy unpublish_after_days ({self.unpublish_after_days}) must be after "
                f"stale_after_days ({self.stale_after_days}): the owner is warned before"
            )

    @property
    def stale_after(self) -> timedelta:
        return timedelta(days=self.stale_after_days)

    @property
    def unpublish_after(self) -> timedelta:
        return timedelta(days=self.unpublish_after_days)

    @property
    def reservation_lasts(self) -> timedelta:
        return timedelta(days=self.reservation_days)


DEFAULT_POLICY = Policy()
