"""How much of a partner's seat records FOQUALE takes: a rate (records applied per second, the
others wait) and a backlog (records waiting, beyond which the oldest are refused)."""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True)
class RecordRate:
    """A partner's token bucket of one second's worth of records, shared by every FOQUALE process
    (its state is a row: `PartnerRateRepository`): at most `per_second` records applied per
    second, after a burst of that many. `tokens` below 0 are turns already promised to records
    that wait for them."""

    per_second: float
    tokens: float

    @classmethod
    def full(cls, per_second: float) -> RecordRate:
        return cls(per_second, per_second)

    def take(self, elapsed: float) -> tuple[RecordRate, float]:
        """One record's turn, `elapsed` seconds after the previous turn was taken: the bucket
        after it, and the seconds the record waits before it is applied."""
        tokens = min(self.per_second, self.tokens + max(0.0, elapsed) * self.per_second) - 1
        return RecordRate(self.per_second, tokens), (0.0 if tokens >= 0 else -tokens / self.per_second)
