"""The commands buyers, companies, MLDS tutors and timers send; each carries the time it happens at."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from ..domain.bilan import BilanSignatoryRole, SkillAssessment
from ..domain.clause import Buyer
from ..domain.convention import SignatoryRole
from ..domain.mission import ActivityDomain, MissionOutcome, Site
from ..domain.proposal import DeclineReason, YouthProfile
from ..domain.states import ActorRole


@dataclass(frozen=True)
class PublishClause:
    clause_id: str
    buyer: Buyer
    company_id: str
    contract_object: str
    notification_date: date
    firm_period_ends_on: date
    firm_amount_eur: int
    ends_on: date
    now: datetime


@dataclass(frozen=True)
class DeclareMission:
    mission_id: str
    clause_id: str
    company_id: str
    activity_domain: ActivityDomain
    tasks: tuple[str, ...]
    site: Site
    referent_id: str
    hours: int
    now: datetime
    activity_comment: str | None = None
    second_referent_id: str | None = None


@dataclass(frozen=True)
class ReserveMission:
    mission_id: str
    tutor_id: str
    now: datetime


@dataclass(frozen=True)
class ReleaseMission:
    mission_id: str
    tutor_id: str
    now: datetime


@dataclass(frozen=True)
class ProposeYouth:
    mission_id: str
    proposal_id: str
    youth_id: str
    profile: YouthProfile
    tutor_id: str
    now: datetime


@dataclass(frozen=True)
class AnswerProposal:
    mission_id: str
    proposal_id: str
    accepted: bool
    now: datetime
    decline_reason: DeclineReason | None = None


@dataclass(frozen=True)
class RunProposalDeadlines:
    """Day-10 reminders and day-15 lapses due at `now` (a timer sends it)."""

    now: datetime


@dataclass(frozen=True)
class DraftConvention:
    mission_id: str
    convention_id: str
    starts_on: date
    ends_on: date
    mlds_structure_uai: str
    company_tutor_id: str
    youth_birth_date: date  # from the repérage vault's contact card; stays in this service
    parties: dict[SignatoryRole, str]  # role -> reference of the party's identity here
    now: datetime


@dataclass(frozen=True)
class SignConvention:
    mission_id: str
    role: SignatoryRole
    now: datetime


@dataclass(frozen=True)
class AbandonPlacement:
    mission_id: str
    by_role: ActorRole
    now: datetime


@dataclass(frozen=True)
class RecordHours:
    mission_id: str
    week_of: date
    hours: int
    now: datetime


@dataclass(frozen=True)
class CompleteMission:
    mission_id: str
    outcome: MissionOutcome
    now: datetime


@dataclass(frozen=True)
class WriteBilan:
    mission_id: str
    skills: tuple[SkillAssessment, ...]
    savoir_etre: str
    savoir_faire: str
    next_steps: str
    now: datetime


@dataclass(frozen=True)
class SignBilan:
    mission_id: str
    role: BilanSignatoryRole
    now: datetime


@dataclass(frozen=True)
class DeliverBilan:
    mission_id: str
    now: datetime
    # How the document names the people it is about (from this service's identities); by role
    # when absent.
    names: dict[str, str] = field(default_factory=dict)
    # The youth whose name `names` gives: the mission's must still be that one (not erased since).
    named_youth_id: str | None = None
