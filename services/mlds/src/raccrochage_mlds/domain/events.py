"""What happened to a candidacy, as the aggregate records it. The service layer maps these to
the integration events of contracts/ (mlds_v1) at the boundary."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from .admission import StepRecord
from .eligibility import Decision
from .states import RefusalReason, WithdrawalReason


@dataclass(frozen=True)
class CandidacyReceived:
    candidacy_id: uuid.UUID
    at: datetime


@dataclass(frozen=True)
class CandidacyDecided:
    candidacy_id: uuid.UUID
    decision: Decision


@dataclass(frozen=True)
class AdmissionStepRecorded:
    candidacy_id: uuid.UUID
    step: StepRecord


@dataclass(frozen=True)
class CandidacyAdmitted:
    candidacy_id: uuid.UUID
    dispositif_id: str
    starts_on: date
    at: datetime


@dataclass(frozen=True)
class CandidacyRefused:
    candidacy_id: uuid.UUID
    reason: RefusalReason
    at: datetime


@dataclass(frozen=True)
class CandidacyWithdrawn:
    candidacy_id: uuid.UUID
    reason: WithdrawalReason
    place_released: bool  # it held a place (admitted): the site has one more
    at: datetime


@dataclass(frozen=True)
class EnrolmentStarted:
    candidacy_id: uuid.UUID
    at: datetime


@dataclass(frozen=True)
class EnrolmentExited:
    candidacy_id: uuid.UUID
    at: datetime


@dataclass(frozen=True)
class RequestAnswered:
    """The PSAD that asked gets its one answer: accepted (a place is held) or refused, coded."""

    candidacy_id: uuid.UUID
    accepted: bool
    refusal: str | None  # not_eligible, no_place, youth_declined, other (the contract's codes)
    at: datetime


DomainEvent = (
    CandidacyReceived
    | CandidacyDecided
    | AdmissionStepRecorded
    | CandidacyAdmitted
    | CandidacyRefused
    | CandidacyWithdrawn
    | EnrolmentStarted
    | EnrolmentExited
    | RequestAnswered
)
