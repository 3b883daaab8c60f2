"""How much of a partner's seat records FOQUALE takes: a rate (records applied per second, the
others wait) and a backlog (records waiting, beyond which the oldest are refused)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PartnerLimits:
    records_per_second: float
    max_backlog: int

    def __post_init__(self) -> None:
        if not self.records_per_second > 0:
            raise ValueError("records_per_second must be more than 0")
        if self.max_backlog < 1:
            raise ValueError("max_backlog must be at least 1")

    def over_backlog(self, waiting_behind: int) -> bool:
        """A record with this many of the partner's records waiting behind it is refused."""
        return waiting_behind > self.max_backlog

    def backlog_refusal(self, partner_id: str, waiting_behind: int) -> str:
        """The reason a partner reads on its feedback: which limit, and where it is set."""
        return (
            f"not applied: {waiting_behind} more of your records wait behind this one, over your "
            f"backlog limit of {self.max_backlog} (deploy/partners.toml: partners.{partner_id}"
            ".max_backlog, else [limits].max_backlog); send it again once they are answered"
        )


@dataclass
class RecordRate:
    """A token bucket of one second's worth of records: `take` says how long the next record
    must wait so that no more than `per_second` are applied per second, after a burst of that many."""

    per_second: float
    _tokens: float = field(init=False)
    _at: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._tokens = self.per_second

    def take(self, now: float) -> float:
        """Take one record's turn at `now` (seconds, monotonic): the seconds to wait before it."""
        if self._at is not None:
            self._tokens = min(self.per_second, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.per_second
