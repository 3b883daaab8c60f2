"""The entretien de situation: who holds it, when, and whether the youth came."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum


class InterviewerRole(StrEnum):
    PSY_EN = "psy_en"
    COUNSELLOR = "counsellor"


class InterviewOutcome(StrEnum):
    """As RDV-Insertion codes a appointment: only SEEN means the interview took place."""

    SEEN = "seen"
    NO_SHOW = "no_show"
    EXCUSED = "excused"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Interview:
    number: int
    episode: int
    scheduled_for: datetime
    with_role: InterviewerRole
    interviewer_id: str | None
    scheduled_at: datetime
    outcome: InterviewOutcome | None = None
    recorded_at: datetime | None = None

    @property
    def pending(self) -> bool:
        return self.outcome is None

    def recorded(self, outcome: InterviewOutcome, at: datetime) -> Interview:
        return replace(self, outcome=outcome, recorded_at=at)
