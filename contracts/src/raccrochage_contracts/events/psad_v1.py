"""Events produced by the PSAD service, version 1.

A case is named by `case_id`; a youth by the pseudonymous `youth_id`. No event carries a name, a
contact detail or a birth date: counsellors read those from the repérage vault, which audits it.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field

from ..payload import Payload
from ..psads import PsadId
from ..registry import event_type
from .reperage_v1 import YOUTH_ID, Departement, Zap

CASE_ID = Field(description="the PSAD case (one per youth and territory; a reopen keeps it)")
PSAD_ID = Field(description="the PSAD (territory) that holds the case")

CaseStatus = Literal[
    "to_contact",
    "contact_in_progress",
    "reached",
    "interview_scheduled",
    "interview_held",
    "solution_proposed",
    "in_solution",
    "unreachable",
    "closed",
]
CloseReason = Literal[
    "reached_solution",
    "found_in_partner_base",
    "wrong_contact_details",
    "unreachable_after_reminders",
    "refuses_support",
    "already_supported",
    "moved",
    "exempt",
    "out_of_age",
]
Channel = Literal["phone", "sms", "email", "letter", "home_visit", "via_school_of_origin"]
ContactOutcome = Literal[
    "reached",
    "no_answer",
    "wrong_details",
    "refused",
    "already_supported",
    "new_contract_or_training",
    "moved",
    "other",
]
InterviewerRole = Literal["psy_en", "counsellor"]
InterviewOutcome = Literal["seen", "no_show", "excused", "cancelled"]
SolutionKind = Literal[
    "foquale_seat",
    "mlds_paps",
    "mlds_dipa",
    "mlds_micro_lycee",
    "apprenticeship",
    "job",
    "service_civique",
    "clause_sociale_via_mlds",
    "other",
]
Provider = Literal["foquale", "mlds"]


class _CaseEvent(Payload):
    case_id: uuid.UUID = CASE_ID
    youth_id: str = YOUTH_ID
    psad_id: PsadId = PSAD_ID


@event_type("psad.case.opened.v1")
class CaseOpened(_CaseEvent):
    """A PSAD opened (or reopened, `episode` > 1) a case for a youth repérage handed over."""

    departement: str = Departement
    zap: Zap | None = None
    age: int = Field(ge=0, le=120, description="age in whole years at opening")
    episode: int = Field(1, ge=1, description="1 at opening; a reopen starts the next episode")
    cause_event_id: uuid.UUID | None = Field(None, description="the repérage event that opened it")
    opened_at: datetime


@event_type("psad.case.status_changed.v1")
class CaseStatusChanged(_CaseEvent):
    """Every move of the case's state machine, with the action that caused it."""

    from_status: CaseStatus
    to_status: CaseStatus
    action: str = Field(
        pattern=r"^[a-z_]+$", max_length=60, description="the action, e.g. record_contact_attempt"
    )
    at: datetime


@event_type("psad.case.closed.v1")
class CaseClosed(_CaseEvent):
    """The case is closed with a coded reason; repérage ends its handover."""

    reason: CloseReason
    found_base: Literal["cfa", "agri", "ml", "mlds", "en"] | None = Field(
        None, description="for found_in_partner_base: the kind of base"
    )
    closed_at: datetime


@event_type("psad.case.transferred.v1")
class CaseTransferred(_CaseEvent):
    """The youth moved: this case closes (reason moved) and the destination PSAD opens its own."""

    to_psad_id: PsadId = PSAD_ID
    departement: str = Departement
    age: int = Field(ge=0, le=120)
    transferred_at: datetime


@event_type("psad.contact.recorded.v1")
class ContactRecorded(_CaseEvent):
    """A contact attempt: its channel and coded outcome, never the number or address used."""

    attempt_number: int = Field(ge=1)
    channel: Channel
    outcome: ContactOutcome
    at: datetime


@event_type("psad.interview.scheduled.v1")
class InterviewScheduled(_CaseEvent):
    """The entretien de situation is booked, with a Psy-EN or a counsellor."""

    interview_number: int = Field(ge=1)
    scheduled_for: datetime
    with_role: InterviewerRole
    deadline: date | None = Field(
        None, description="droit au retour en formation: 15 days after first contact"
    )
    at: datetime


@event_type("psad.interview.recorded.v1")
class InterviewRecorded(_CaseEvent):
    interview_number: int = Field(ge=1)
    outcome: InterviewOutcome
    at: datetime


@event_type("psad.solution.requested.v1")
class SolutionRequested(_CaseEvent):
    """A PSAD proposes a solution another service provides: what that service needs, no identity.

    The provider answers with `foquale.placement.confirmed|refused.v1` or
    `mlds.enrolment.accepted|refused.v1`, quoting `request_id`.
    """

    request_id: uuid.UUID = Field(description="quoted by the provider's answer")
    solution_number: int = Field(ge=1)
    kind: SolutionKind
    provider: Provider
    age: int = Field(ge=0, le=120)
    last_training: str | None = Field(None, max_length=120, description="formation d'origine (a label)")
    last_diploma: Literal["AUCUN", "DNB"] | None = None
    months_since_leaving: int | None = Field(None, ge=0)
    departement: str = Departement
    zap: Zap | None = None
    wishes: list[Annotated[str, Field(max_length=80)]] = Field(
        default_factory=list,
        max_length=10,
        description="coded wishes (fields, trades, places); no free text about the youth",
    )
    requested_at: datetime


@event_type("psad.escalation.raised.v1")
class EscalationRaised(_CaseEvent):
    """Obligation de formation: a 16- or 17-year-old still without solution two months after the
    first contact attempt; for the département's services."""

    departement: str = Departement
    age: int = Field(ge=16, le=17)
    first_contact_on: date
    raised_on: date
