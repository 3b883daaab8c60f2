"""Domain events a case records; the unit of work drains them and maps them to integration events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from .contact import Channel, ContactOutcome
from .interview import InterviewerRole, InterviewOutcome
from .solution import Provider, SolutionKind
from .states import Action, CaseStatus, CloseReason, ReviewOutcome


@dataclass(frozen=True)
class CaseOpened:
    case_id: str
    youth_id: str
    psad_id: str
    departement: str
    age: int
    at: datetime


@dataclass(frozen=True)
class CaseReopened:
    case_id: str
    episode: int
    at: datetime


@dataclass(frozen=True)
class StatusChanged:
    case_id: str
    from_status: CaseStatus
    to_status: CaseStatus
    action: Action
    at: datetime


@dataclass(frozen=True)
class CaseClosed:
    case_id: str
    youth_id: str
    psad_id: str
    reason: CloseReason
    at: datetime
    found_base: str | None = None


@dataclass(frozen=True)
class CaseTransferred:
    case_id: str
    youth_id: str
    from_psad_id: str
    to_psad_id: str
    at: datetime


@dataclass(frozen=True)
class OwnerAssigned:
    case_id: str
    owner: str | None
    at: datetime


@dataclass(frozen=True)
class ContactRecorded:
    case_id: str
    attempt_number: int
    channel: Channel
    outcome: ContactOutcome
    at: datetime


@dataclass(frozen=True)
class InterviewScheduled:
    case_id: str
    interview_number: int
    scheduled_for: datetime
    with_role: InterviewerRole
    at: datetime


@dataclass(frozen=True)
class InterviewRecorded:
    case_id: str
    interview_number: int
    outcome: InterviewOutcome
    at: datetime


@dataclass(frozen=True)
class SolutionProposed:
    case_id: str
    solution_number: int
    kind: SolutionKind
    at: datetime


@dataclass(frozen=True)
class SolutionRequested:
    """What the providing service needs to find a seat or a place, and no identity."""

    case_id: str
    youth_id: str
    solution_number: int
    kind: SolutionKind
    provider: Provider
    age: int
    level: str | None
    last_diploma: str | None
    months_since_leaving: int | None
    psad_id: str
    departement: str
    zap: str | None
    wishes: tuple[str, ...]
    at: datetime


@dataclass(frozen=True)
class SolutionConfirmed:
    case_id: str
    solution_number: int
    kind: SolutionKind
    review_on: date
    at: datetime


@dataclass(frozen=True)
class SolutionRefused:
    case_id: str
    solution_number: int
    kind: SolutionKind
    reason: str
    at: datetime


@dataclass(frozen=True)
class SolutionReviewed:
    case_id: str
    solution_number: int
    outcome: ReviewOutcome
    next_review_on: date | None
    at: datetime


@dataclass(frozen=True)
class EscalationRaised:
    """Obligation de formation: a minor still without solution; for the département."""

    case_id: str
    youth_id: str
    psad_id: str
    departement: str
    age: int
    first_contact_on: date
    raised_on: date


DomainEvent = (
    CaseOpened
    | CaseReopened
    | StatusChanged
    | CaseClosed
    | CaseTransferred
    | OwnerAssigned
    | ContactRecorded
    | InterviewScheduled
    | InterviewRecorded
    | SolutionProposed
    | SolutionRequested
    | SolutionConfirmed
    | SolutionRefused
    | SolutionReviewed
    | EscalationRaised
)
