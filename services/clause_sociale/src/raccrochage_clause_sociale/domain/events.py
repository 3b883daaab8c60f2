"""Domain events clauses and missions record; the service layer maps them to integration events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from .bilan import Bilan, BilanSignatoryRole
from .convention import Convention, SignatoryRole
from .proposal import Proposal
from .states import Action, ActorRole, MissionStatus


@dataclass(frozen=True)
class ClausePublished:
    clause_id: str
    at: datetime


@dataclass(frozen=True)
class MissionDeclared:
    mission_id: str
    at: datetime


@dataclass(frozen=True)
class StatusChanged:
    mission_id: str
    from_status: MissionStatus
    to_status: MissionStatus
    action: Action
    by_role: ActorRole
    tutor_id: str | None
    at: datetime


@dataclass(frozen=True)
class ProposalMade:
    mission_id: str
    proposal: Proposal
    at: datetime


@dataclass(frozen=True)
class AnswerReminded:
    """Day 10 without an answer: the buyer and the tutor are reminded."""

    mission_id: str
    proposal: Proposal
    at: datetime


@dataclass(frozen=True)
class ProposalAnswered:
    mission_id: str
    proposal: Proposal
    at: datetime


@dataclass(frozen=True)
class ProposalLapsed:
    mission_id: str
    proposal: Proposal
    at: datetime


@dataclass(frozen=True)
class ConventionDrafted:
    mission_id: str
    convention_id: str
    at: datetime


@dataclass(frozen=True)
class ConventionSignedBy:
    """One party signed; the convention may still wait for others."""

    mission_id: str
    convention_id: str
    role: SignatoryRole
    at: datetime


@dataclass(frozen=True)
class ConventionCompleted:
    mission_id: str
    convention: Convention
    at: datetime


@dataclass(frozen=True)
class HoursRecorded:
    mission_id: str
    youth_id: str
    week_of: date
    hours: int
    previous_hours: int | None
    mission_hours_done: int
    at: datetime


@dataclass(frozen=True)
class MissionCompleted:
    mission_id: str
    youth_id: str
    tutor_id: str
    outcome: str
    hours_done: int
    at: datetime


@dataclass(frozen=True)
class BilanWritten:
    mission_id: str
    at: datetime


@dataclass(frozen=True)
class BilanSigned:
    mission_id: str
    role: BilanSignatoryRole
    at: datetime


@dataclass(frozen=True)
class BilanDelivered:
    mission_id: str
    youth_id: str
    bilan: Bilan
    hours_done: int
    at: datetime


DomainEvent = (
    ClausePublished
    | MissionDeclared
    | StatusChanged
    | ProposalMade
    | AnswerReminded
    | ProposalAnswered
    | ProposalLapsed
    | ConventionDrafted
    | ConventionSignedBy
    | ConventionCompleted
    | HoursRecorded
    | MissionCompleted
    | BilanWritten
    | BilanSigned
    | BilanDelivered
)
