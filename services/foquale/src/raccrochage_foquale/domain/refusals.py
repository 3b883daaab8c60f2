"""Why a placement is refused: a fixed list of codes; `other` needs a comment."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .errors import InvalidCommand

COMMENT_MAX = 500


class RefusalReason(StrEnum):
    # FOQUALE's own answers
    NO_SEAT = "no_seat"
    AGE_OUT_OF_RANGE = "age_out_of_range"
    RESERVATION_EXPIRED = "reservation_expired"
    # an establishment's answers to a reservation
    SEAT_NO_LONGER_AVAILABLE = "seat_no_longer_available"
    LEVEL_NOT_SUITED = "level_not_suited"
    PREREQUISITES_MISSING = "prerequisites_missing"
    YOUTH_DECLINED = "youth_declined"
    YOUTH_NO_SHOW = "youth_no_show"
    OTHER = "other"


# What an establishment may answer (the others are FOQUALE's to give).
ESTABLISHMENT_REASONS = frozenset(
    {
        RefusalReason.SEAT_NO_LONGER_AVAILABLE,
        RefusalReason.LEVEL_NOT_SUITED,
        RefusalReason.PREREQUISITES_MISSING,
        RefusalReason.AGE_OUT_OF_RANGE,
        RefusalReason.YOUTH_DECLINED,
        RefusalReason.YOUTH_NO_SHOW,
        RefusalReason.OTHER,
    }
)

# The coarse reason psad.solution.requested's answer has always carried, for each code.
CONTRACT_REASON: dict[RefusalReason, str] = {
    RefusalReason.NO_SEAT: "no_seat",
    RefusalReason.SEAT_NO_LONGER_AVAILABLE: "no_seat",
    RefusalReason.AGE_OUT_OF_RANGE: "not_eligible",
    RefusalReason.LEVEL_NOT_SUITED: "not_eligible",
    RefusalReason.PREREQUISITES_MISSING: "not_eligible",
    RefusalReason.YOUTH_DECLINED: "youth_declined",
    RefusalReason.YOUTH_NO_SHOW: "youth_declined",
    RefusalReason.RESERVATION_EXPIRED: "other",
    RefusalReason.OTHER: "other",
}


@dataclass(frozen=True)
class Refusal:
    """A coded reason, and a comment (required for `other`). The comment stays in FOQUALE: free
    text may name a person, so no event carries it."""

    reason: RefusalReason
    comment: str | None = None

    def __post_init__(self) -> None:
        try:
            reason = RefusalReason(self.reason)
        except ValueError:
            codes = ", ".join(r.value for r in RefusalReason)
            raise InvalidCommand("reason", f"{self.reason!r} is not a refusal code ({codes})") from None
        object.__setattr__(self, "reason", reason)
        comment = self.comment.strip() if self.comment is not None else None
        object.__setattr__(self, "comment", comment or None)
        if reason is RefusalReason.OTHER and not comment:
            raise InvalidCommand("comment", "a refusal for reason 'other' needs a comment saying why")
        if comment is not None and len(comment) > COMMENT_MAX:
            raise InvalidCommand("comment", f"{len(comment)} characters, at most {COMMENT_MAX}")
