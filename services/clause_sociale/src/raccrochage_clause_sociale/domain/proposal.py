"""A youth proposed to a company: a pseudonymous profile, and the company's 15 days to answer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from .errors import ClauseSocialeError, Refused

# The company answers within 15 days; at day 10 the buyer and the tutor are reminded; past day 15
# the reservation lapses and the mission is free again.
ANSWER_WITHIN = timedelta(days=15)
REMIND_AFTER = timedelta(days=10)
# Youths of the clause sociale de formation: 16 to 25.
AGES = range(16, 26)
MAX_HOURS_PER_WEEK = 35


class SchoolLevel(StrEnum):
    """The last class the youth followed."""

    COLLEGE = "college"
    TROISIEME = "3e"
    CAP = "cap"
    SECONDE = "2nde"
    PREMIERE = "1re"
    TERMINALE = "terminale"
    POST_BAC = "post_bac"


class ProposalState(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    LAPSED = "lapsed"


class DeclineReason(StrEnum):
    PROFILE_NOT_MATCHING = "profile_not_matching"
    NO_TUTOR_AVAILABLE = "no_tutor_available"
    SCHEDULE = "schedule"
    OTHER = "other"


class CompanyBusy(ClauseSocialeError):
    """The company has a proposal waiting for its answer: one youth per company at a time."""


@dataclass(frozen=True)
class YouthProfile:
    """What the company sees of the youth before the presentation meeting: no identity."""

    age: int
    level: SchoolLevel
    wishes: tuple[str, ...]  # activity domains (mission.ActivityDomain values)
    available_from: date
    hours_per_week: int

    def check(self, where: str) -> None:
        if self.age not in AGES:
            raise Refused(f"{where}: the clause sociale is for youths of 16 to 25, not {self.age}")
        if not 1 <= self.hours_per_week <= MAX_HOURS_PER_WEEK:
            raise Refused(
                f"{where}: {self.hours_per_week} hours a week; a youth under school status "
                f"is available 1 to {MAX_HOURS_PER_WEEK} hours a week"
            )
        if len(self.wishes) > 15:
            raise Refused(f"{where}: at most 15 wishes")


@dataclass(frozen=True)
class Proposal:
    proposal_id: str
    youth_id: str
    tutor_id: str
    profile: YouthProfile
    made_at: datetime
    state: ProposalState = ProposalState.PENDING
    reminded_at: datetime | None = None
    answered_at: datetime | None = None  # or lapsed
    decline_reason: DeclineReason | None = None

    @property
    def pending(self) -> bool:
        return self.state is ProposalState.PENDING

    @property
    def answer_due_at(self) -> datetime:
        return self.made_at + ANSWER_WITHIN

    @property
    def remind_at(self) -> datetime:
        return self.made_at + REMIND_AFTER

    def reminder_due(self, now: datetime) -> bool:
        return self.pending and self.reminded_at is None and self.remind_at <= now <= self.answer_due_at

    def lapse_due(self, now: datetime) -> bool:
        return self.pending and now > self.answer_due_at

    def reminded(self, now: datetime) -> Proposal:
        return dataclasses.replace(self, reminded_at=now)

    def closed(self, state: ProposalState, now: datetime, reason: DeclineReason | None = None) -> Proposal:
        return dataclasses.replace(self, state=state, answered_at=now, decline_reason=reason)
