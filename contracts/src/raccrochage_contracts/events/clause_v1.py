"""Events produced by clause_sociale, version 1: clauses of public contracts, the companies'
missions under them, the youths the MLDS proposes, conventions, hours and the bilan croisé.

Types are `clause.<entity>.<verb>.v1` (the stream CLAUSE carries `clause.>`); the clause itself is
the entity `clause`, hence `clause.clause.published.v1`. A youth is `youth_id` only: no name, INE,
contact detail or birth date; the convention's identities stay in the service's database. People
of companies and of the MLDS appear by role and by an opaque id of their organisation's choosing.
Free text about a youth (the bilan's remarks) never travels: the bilan event carries counts and the
document's hash.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ..payload import Payload
from ..registry import event_type

# repérage's rules for these two (reperage_v1), each with a length bound as well: every string of
# these events is bounded.
YOUTH_ID = Field(
    pattern=r"^[0-9a-f]{64}$",
    max_length=64,
    description="pseudonymous id of the youth (keyed hash of the INE)",
)
DEPARTEMENT = Field(pattern=r"^([0-9]{2}|2A|2B|9[78][0-9])$", max_length=3)

ORG_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{1,62}$"
PERSON_REF_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
ACTION_PATTERN = r"^[a-z][a-z_]{0,39}$"
UAI_PATTERN = r"^[0-9]{7}[A-Z]$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"

OrgId = Annotated[str, StringConstraints(pattern=ORG_ID_PATTERN, max_length=63)]
PersonRef = Annotated[str, StringConstraints(pattern=PERSON_REF_PATTERN, max_length=63)]
Task = Annotated[str, StringConstraints(min_length=1, max_length=200)]

CLAUSE_ID = Field(description="the clause (one per public contract)")
MISSION_ID = Field(description="a mission a company offers under a clause")
PROPOSAL_ID = Field(description="one youth proposed for one mission")
BUYER_ID = Field(pattern=ORG_ID_PATTERN, max_length=63, description="the public buyer (an organisation)")
COMPANY_ID = Field(pattern=ORG_ID_PATTERN, max_length=63, description="the company that holds the contract")
TUTOR_ID = Field(
    pattern=PERSON_REF_PATTERN, max_length=63, description="the MLDS pedagogical tutor (a staff id)"
)
HOURS = Field(ge=0, le=10_000, description="whole hours")

BuyerType = Literal[
    "etat",
    "collectivite_territoriale",
    "etablissement_public",
    "hopital",
    "bailleur_social",
    "autre",
]
ActivityDomain = Literal[
    "accueil",
    "administration",
    "commerce_vente",
    "communication",
    "comptabilite",
    "electricite",
    "esthetique",
    "hotellerie",
    "informatique",
    "logistique",
    "restauration",
    "securite",
    "service_a_la_personne",
    "transport",
    "autre",
]
MissionStatus = Literal["disponible", "reservee", "en_preparation", "en_realisation", "realisee"]
ActorRole = Literal["buyer", "company", "mlds_tutor", "system"]
SchoolLevel = Literal["college", "3e", "cap", "2nde", "1re", "terminale", "post_bac"]
Answer = Literal["accepted", "declined"]
DeclineReason = Literal["profile_not_matching", "no_tutor_available", "schedule", "other"]
SignatoryRole = Literal["company", "mlds_structure", "youth", "legal_guardian"]
BilanSignatoryRole = Literal["mlds_tutor", "company_referent", "youth"]
MissionOutcome = Literal["job", "apprenticeship", "training", "mlds_action", "none", "interrupted"]


class _MissionEvent(Payload):
    mission_id: uuid.UUID = MISSION_ID
    clause_id: uuid.UUID = CLAUSE_ID
    company_id: str = COMPANY_ID


@event_type("clause.clause.published.v1")
class ClausePublished(Payload):
    """A buyer published a clause sociale de formation: the hours follow the firm amount."""

    clause_id: uuid.UUID = CLAUSE_ID
    buyer_id: str = BUYER_ID
    buyer_type: BuyerType
    buyer_contact_role: str = Field(
        pattern=ACTION_PATTERN, max_length=40, description="the buyer's contact, by role (acheteur, ...)"
    )
    company_id: str = COMPANY_ID
    contract_object: str = Field(min_length=1, max_length=300, description="what the contract buys")
    departement: str = DEPARTEMENT
    notification_date: date
    firm_period_ends_on: date
    firm_amount_eur: int = Field(ge=0, le=10_000_000_000, description="estimated amount of the firm period")
    ends_on: date = Field(description="end of the contract, renewals included")
    hours_required: int = Field(ge=0, le=10_000)
    published_at: datetime


@event_type("clause.mission.declared.v1")
class MissionDeclared(_MissionEvent):
    """The company declared a mission under the clause. The site's address stays in the service."""

    activity_domain: ActivityDomain
    activity_comment: str | None = Field(None, max_length=200, description="required for autre")
    tasks: list[Task] = Field(min_length=1, max_length=20)
    departement: str = DEPARTEMENT
    referent_id: str = Field(pattern=PERSON_REF_PATTERN, max_length=63, description="company referent")
    second_referent_id: str | None = Field(None, pattern=PERSON_REF_PATTERN, max_length=63)
    hours: int = Field(ge=1, le=10_000)
    declared_at: datetime


@event_type("clause.mission.status_changed.v1")
class MissionStatusChanged(_MissionEvent):
    """Every move of a mission: disponible -> reservee -> en_preparation -> en_realisation ->
    realisee, or back to disponible; with the action and who took it."""

    departement: str = DEPARTEMENT
    from_status: MissionStatus
    to_status: MissionStatus
    action: str = Field(pattern=ACTION_PATTERN, max_length=40, description="e.g. reserve, lapse")
    by_role: ActorRole
    tutor_id: str | None = Field(None, pattern=PERSON_REF_PATTERN, max_length=63)
    at: datetime


@event_type("clause.proposal.made.v1")
class ProposalMade(_MissionEvent):
    """An MLDS tutor proposes one youth to the company: a pseudonymous profile, no identity."""

    proposal_id: uuid.UUID = PROPOSAL_ID
    youth_id: str = YOUTH_ID
    tutor_id: str = TUTOR_ID
    age: int = Field(ge=16, le=25, description="age in whole years")
    level: SchoolLevel
    wishes: list[ActivityDomain] = Field(default_factory=list, max_length=15)
    available_from: date
    hours_per_week: int = Field(ge=1, le=35)
    answer_due_at: datetime
    made_at: datetime


@event_type("clause.answer.reminder.v1")
class AnswerReminder(_MissionEvent):
    """Day 10 of a proposal without an answer: the buyer and the tutor are reminded."""

    proposal_id: uuid.UUID = PROPOSAL_ID
    buyer_id: str = BUYER_ID
    tutor_id: str = TUTOR_ID
    recipients: list[Literal["buyer", "mlds_tutor"]] = Field(min_length=1, max_length=2)
    made_at: datetime
    answer_due_at: datetime
    reminded_at: datetime


@event_type("clause.proposal.answered.v1")
class ProposalAnswered(_MissionEvent):
    """The company accepted the youth (a presentation meeting, then the convention) or declined."""

    proposal_id: uuid.UUID = PROPOSAL_ID
    youth_id: str = YOUTH_ID
    tutor_id: str = TUTOR_ID
    answer: Answer
    decline_reason: DeclineReason | None = None
    answered_at: datetime


@event_type("clause.proposal.lapsed.v1")
class ProposalLapsed(_MissionEvent):
    """No answer within 15 days: the reservation lapses and the mission is free again."""

    proposal_id: uuid.UUID = PROPOSAL_ID
    youth_id: str = YOUTH_ID
    tutor_id: str = TUTOR_ID
    made_at: datetime
    answer_due_at: datetime
    lapsed_at: datetime


class Signature(Payload):
    role: SignatoryRole
    signed_at: datetime


@event_type("clause.convention.signed.v1")
class ConventionSigned(_MissionEvent):
    """The convention de stage is complete: every party signed (the legal guardian for a minor)."""

    convention_id: uuid.UUID
    youth_id: str = YOUTH_ID
    tutor_id: str = TUTOR_ID
    mlds_structure_uai: str = Field(pattern=UAI_PATTERN, max_length=8)
    starts_on: date
    ends_on: date
    youth_minor: bool = Field(description="a minor on the start date: the legal guardian signed too")
    signatures: list[Signature] = Field(min_length=3, max_length=4)
    completed_at: datetime


@event_type("clause.hours.recorded.v1")
class HoursRecorded(_MissionEvent):
    """The hours of one youth in one week (a week counts once started); a second record of the
    same week corrects the first."""

    youth_id: str = YOUTH_ID
    week_of: date = Field(description="the Monday of the ISO week")
    hours: int = Field(ge=0, le=35)
    previous_hours: int | None = Field(None, ge=0, le=35, description="when this corrects a record")
    mission_hours_done: int = HOURS
    recorded_at: datetime


@event_type("clause.mission.completed.v1")
class MissionCompleted(_MissionEvent):
    """The placement is over, with its outcome: PSAD and the MLDS move the youth's case and
    enrolment on a job or an apprenticeship."""

    youth_id: str = YOUTH_ID
    tutor_id: str = TUTOR_ID
    departement: str = DEPARTEMENT
    outcome: MissionOutcome
    hours_done: int = HOURS
    completed_at: datetime


@event_type("clause.bilan.delivered.v1")
class BilanDelivered(_MissionEvent):
    """The signed bilan croisé went to the buyer: the legal proof the clause was executed."""

    buyer_id: str = BUYER_ID
    youth_id: str = YOUTH_ID
    skills_acquired: int = Field(ge=0, le=100)
    skills_in_progress: int = Field(ge=0, le=100)
    skills_not_acquired: int = Field(ge=0, le=100)
    hours_done: int = HOURS
    signed_by: list[BilanSignatoryRole] = Field(min_length=3, max_length=3)
    document_sha256: str = Field(pattern=SHA256_PATTERN, max_length=64)
    delivered_at: datetime
