"""A mission a company offers under a clause, from its declaration to the bilan croisé.

One mission hosts one youth at a time: reserved by an MLDS tutor, a youth proposed, accepted,
a convention, weekly hours, an outcome, a bilan. A clause's hours are split across youths by
declaring several missions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from . import events
from .bilan import Bilan, BilanSignatoryRole, SkillAssessment
from .clause import Clause
from .convention import Convention, SignatoryRole
from .dates import monday_of, weeks_between
from .errors import Refused, TransitionRefused, require_aware
from .proposal import MAX_HOURS_PER_WEEK, DeclineReason, Proposal, ProposalState, YouthProfile
from .states import Action, ActorRole, MissionStatus, target

PERSON_REF = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
DEPARTEMENT = re.compile(r"^([0-9]{2}|2A|2B|9[78][0-9])$")
MAX_TASKS = 20
MAX_TASK_LENGTH = 200


class ActivityDomain(StrEnum):
    ACCUEIL = "accueil"
    ADMINISTRATION = "administration"
    COMMERCE_VENTE = "commerce_vente"
    COMMUNICATION = "communication"
    COMPTABILITE = "comptabilite"
    ELECTRICITE = "electricite"
    ESTHETIQUE = "esthetique"
    HOTELLERIE = "hotellerie"
    INFORMATIQUE = "informatique"
    LOGISTIQUE = "logistique"
    RESTAURATION = "restauration"
    SECURITE = "securite"
    SERVICE_A_LA_PERSONNE = "service_a_la_personne"
    TRANSPORT = "transport"
    AUTRE = "autre"  # with a comment saying what


ACTIVITY_LABELS = {
    ActivityDomain.ACCUEIL: "Accueil",
    ActivityDomain.ADMINISTRATION: "Administration",
    ActivityDomain.COMMERCE_VENTE: "Commerce-vente",
    ActivityDomain.COMMUNICATION: "Communication",
    ActivityDomain.COMPTABILITE: "Comptabilité",
    ActivityDomain.ELECTRICITE: "Electricité",
    ActivityDomain.ESTHETIQUE: "Esthétique",
    ActivityDomain.HOTELLERIE: "Hôtellerie",
    ActivityDomain.INFORMATIQUE: "Informatique",
    ActivityDomain.LOGISTIQUE: "Logistique",
    ActivityDomain.RESTAURATION: "Restauration",
    ActivityDomain.SECURITE: "Sécurité",
    ActivityDomain.SERVICE_A_LA_PERSONNE: "Service à la personne",
    ActivityDomain.TRANSPORT: "Transport",
    ActivityDomain.AUTRE: "Autre",
}


class MissionOutcome(StrEnum):
    """Where the youth goes after the placement."""

    JOB = "job"
    APPRENTICESHIP = "apprenticeship"
    TRAINING = "training"  # back to school or another training
    MLDS_ACTION = "mlds_action"  # another MLDS action
    NONE = "none"
    INTERRUPTED = "interrupted"  # the placement stopped before its end


@dataclass(frozen=True)
class Site:
    """Where the mission takes place. The street address stays in the service's database;
    only the département travels."""

    address: str
    postcode: str
    city: str
    departement: str

    @property
    def key(self) -> str:
        """The same place however it was typed: case and spaces ignored."""
        return f"{' '.join(self.address.lower().split())}|{self.postcode.strip()}"


@dataclass(eq=False)
class Mission:
    """Build a new one with `Mission.declare`; the constructor is for repositories.

    Every command takes `now`, checks everything first (TransitionRefused for an action the
    status or the actor may not take, Refused for a broken rule), and only then changes the
    mission: a refused command leaves it exactly as it was.
    """

    mission_id: str
    clause_id: str
    buyer_id: str  # the clause's buyer, kept for the events the buyer reads
    company_id: str
    activity_domain: ActivityDomain
    tasks: tuple[str, ...]
    site: Site
    referent_id: str
    hours: int
    declared_at: datetime
    activity_comment: str | None = None
    second_referent_id: str | None = None
    status: MissionStatus = MissionStatus.DISPONIBLE
    status_since: datetime | None = None
    updated_at: datetime | None = None  # commands may not go back before it
    reserved_by: str | None = None  # the MLDS tutor
    proposals: list[Proposal] = field(default_factory=list)
    convention: Convention | None = None
    attendance: dict[date, int] = field(default_factory=dict)  # Monday of the week -> hours
    outcome: MissionOutcome | None = None
    completed_at: datetime | None = None
    bilan: Bilan | None = None
    version: int = 0  # the stored version this copy was loaded at
    events: list[events.DomainEvent] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.status_since is None:
            self.status_since = self.declared_at
        if self.updated_at is None:
            self.updated_at = self.status_since

    @classmethod
    def declare(
        cls,
        mission_id: str,
        clause: Clause,
        company_id: str,
        activity_domain: ActivityDomain,
        tasks: Iterable[str],
        site: Site,
        referent_id: str,
        hours: int,
        now: datetime,
        *,
        activity_comment: str | None = None,
        second_referent_id: str | None = None,
    ) -> Mission:
        """The company that holds the clause's contract declares a mission under it."""
        require_aware(now, "now")
        where = f"mission {mission_id}"
        if company_id != clause.company_id:
            raise Refused(
                f"{where}: clause {clause.clause_id} is held by {clause.company_id}, not {company_id}"
            )
        if not clause.is_open_on(now.date()):
            raise Refused(f"{where}: the contract of clause {clause.clause_id} ended on {clause.ends_on}")
        try:
            activity_domain = ActivityDomain(activity_domain)
        except ValueError:
            known = ", ".join(ActivityDomain)
            raise Refused(f"{where}: activity domain {activity_domain!r} is not one of {known}") from None
        comment = (activity_comment or "").strip() or None
        if activity_domain is ActivityDomain.AUTRE and comment is None:
            raise Refused(f"{where}: the activity domain Autre needs a comment saying what the activity is")
        if comment is not None and len(comment) > 200:
            raise Refused(f"{where}: the activity comment has more than 200 characters")
        tasks = tuple(task.strip() for task in tasks)
        if not 1 <= len(tasks) <= MAX_TASKS:
            raise Refused(f"{where}: a mission lists 1 to {MAX_TASKS} tasks, not {len(tasks)}")
        for number, task in enumerate(tasks, 1):
            if not 1 <= len(task) <= MAX_TASK_LENGTH:
                raise Refused(f"{where}: task {number} must have 1 to {MAX_TASK_LENGTH} characters")
        if not DEPARTEMENT.match(site.departement):
            raise Refused(f"{where}: {site.departement!r} is not a département")
        if not site.address.strip() or not site.postcode.strip() or not site.city.strip():
            raise Refused(f"{where}: the site needs an address, a postcode and a city")
        for label, ref in (("referent", referent_id), ("second referent", second_referent_id)):
            if ref is not None and not PERSON_REF.match(ref):
                raise Refused(f"{where}: the {label} id {ref!r} is not an id (a-z, 0-9, ., - and _)")
        if second_referent_id == referent_id:
            raise Refused(f"{where}: the second referent must be another person than the referent")
        if not 1 <= hours <= clause.hours_required:
            raise Refused(
                f"{where}: {hours} hours; a mission of clause {clause.clause_id} has 1 to "
                f"{clause.hours_required} hours (the clause's)"
            )
        mission = cls(
            mission_id,
            clause.clause_id,
            clause.buyer.buyer_id,
            company_id,
            activity_domain,
            tasks,
            site,
            referent_id,
            hours,
            now,
            activity_comment=comment,
            second_referent_id=second_referent_id,
        )
        mission.events.append(events.MissionDeclared(mission_id, now))
        return mission

    # -- what the mission knows ------------------------------------------------------------

    @property
    def departement(self) -> str:
        return self.site.departement

    @property
    def pending_proposal(self) -> Proposal | None:
        if self.proposals and self.proposals[-1].pending:
            return self.proposals[-1]
        return None

    @property
    def youth_id(self) -> str | None:
        """The youth accepted for the placement, from the acceptance on."""
        if self.status in (MissionStatus.DISPONIBLE, MissionStatus.RESERVEE):
            return None
        accepted = [p for p in self.proposals if p.state is ProposalState.ACCEPTED]
        return accepted[-1].youth_id if accepted else None

    @property
    def tutor_id(self) -> str | None:
        """The MLDS pedagogical tutor of the mission's youth (or of its reservation)."""
        return self.reserved_by

    @property
    def company_tutors(self) -> tuple[str, ...]:
        return tuple(r for r in (self.referent_id, self.second_referent_id) if r)

    @property
    def hours_done(self) -> int:
        return sum(self.attendance.values())

    @property
    def hours_planned(self) -> int:
        """Hours a youth is on: the mission's while it is prepared or under way, the hours done
        once it is over (an interrupted mission leaves the rest unplanned)."""
        if self.status in (MissionStatus.EN_PREPARATION, MissionStatus.EN_REALISATION):
            return self.hours
        if self.status is MissionStatus.REALISEE:
            return self.hours_done
        return 0

    def hours_by_youth(self) -> dict[str, int]:
        if self.convention is None or not self.attendance:
            return {}
        return {self.convention.youth_id: self.hours_done}

    def hosts(self, company_tutor_id: str, site_key: str) -> bool:
        """Whether this mission's placement is tutored by this company referent at this place."""
        return (
            self.convention is not None
            and self.status
            in (MissionStatus.EN_PREPARATION, MissionStatus.EN_REALISATION, MissionStatus.REALISEE)
            and self.convention.company_tutor_id == company_tutor_id
            and self.site.key == site_key
        )

    # -- reservation and proposal ----------------------------------------------------------

    def reserve(self, tutor_id: str, now: datetime) -> None:
        """An MLDS tutor holds the mission to propose a youth (the database decides between
        tutors racing for it: the repository saves a reservation only on a mission still free)."""
        new_status = self._target(Action.RESERVE)
        self._check_time(now)
        if not PERSON_REF.match(tutor_id):
            raise Refused(f"mission {self.mission_id}: tutor id {tutor_id!r} is not an id")
        self.reserved_by = tutor_id
        self._move(new_status, Action.RESERVE, ActorRole.MLDS_TUTOR, now)

    def release(self, tutor_id: str, now: datetime) -> None:
        """The tutor gives the mission back, before proposing anyone or once the answer came."""
        new_status = self._target(Action.RELEASE)
        self._check_tutor(Action.RELEASE, tutor_id)
        if self.pending_proposal is not None:
            raise TransitionRefused(
                self.mission_id,
                self.status.value,
                Action.RELEASE.value,
                f"proposal {self.pending_proposal.proposal_id} waits for the company's answer",
            )
        self._check_time(now)
        self._move(new_status, Action.RELEASE, ActorRole.MLDS_TUTOR, now)
        self.reserved_by = None

    def propose(
        self, proposal_id: str, youth_id: str, profile: YouthProfile, tutor_id: str, now: datetime
    ) -> Proposal:
        """The tutor who reserved the mission proposes one youth. The company's other missions
        are the service layer's to check (one youth per company at a time)."""
        new_status = self._target(Action.PROPOSE_YOUTH)
        self._check_tutor(Action.PROPOSE_YOUTH, tutor_id)
        pending = self.pending_proposal
        if pending is not None:
            raise TransitionRefused(
                self.mission_id,
                self.status.value,
                Action.PROPOSE_YOUTH.value,
                f"proposal {pending.proposal_id} waits for the company's answer",
            )
        profile.check(f"mission {self.mission_id}")
        self._check_time(now)
        proposal = Proposal(proposal_id, youth_id, tutor_id, profile, now)
        self.proposals.append(proposal)
        self.events.append(events.ProposalMade(self.mission_id, proposal, now))
        self._move(new_status, Action.PROPOSE_YOUTH, ActorRole.MLDS_TUTOR, now)
        return proposal

    def answer(
        self, proposal_id: str, accepted: bool, now: datetime, decline_reason: DeclineReason | None = None
    ) -> Proposal:
        """The company accepts the youth (on to the presentation meeting and the convention) or
        declines (the mission is free again); within 15 days of the proposal."""
        action = Action.ACCEPT_YOUTH if accepted else Action.DECLINE_YOUTH
        new_status = self._target(action)
        proposal = self._pending(action, proposal_id)
        self._check_time(now)
        if now > proposal.answer_due_at:
            raise Refused(
                f"mission {self.mission_id}: proposal {proposal_id} was to be answered by "
                f"{proposal.answer_due_at.isoformat()}; it has lapsed"
            )
        if accepted:
            if decline_reason is not None:
                raise Refused(f"mission {self.mission_id}: an acceptance has no decline reason")
            closed = proposal.closed(ProposalState.ACCEPTED, now)
        else:
            try:
                reason = DeclineReason(decline_reason or DeclineReason.OTHER)
            except ValueError:
                known = ", ".join(DeclineReason)
                raise Refused(
                    f"mission {self.mission_id}: decline reason {decline_reason!r} is not one of {known}"
                ) from None
            closed = proposal.closed(ProposalState.DECLINED, now, reason)
        self.proposals[-1] = closed
        self.events.append(events.ProposalAnswered(self.mission_id, closed, now))
        self._move(new_status, action, ActorRole.COMPANY, now)
        if not accepted:
            self.reserved_by = None
        return closed

    # -- rules a timer applies -------------------------------------------------------------

    def remind_if_due(self, now: datetime) -> bool:
        """Day 10 of a proposal without answer: remind the buyer and the tutor, once. True when
        it did; never refuses (a timer calls it)."""
        proposal = self.pending_proposal
        if proposal is None or not proposal.reminder_due(now) or now < self.updated_at:
            return False
        self.proposals[-1] = reminded = proposal.reminded(now)
        self.updated_at = now
        self.events.append(events.AnswerReminded(self.mission_id, reminded, now))
        return True

    def lapse_if_due(self, now: datetime) -> bool:
        """Past day 15 without answer: the proposal lapses and the mission is free again."""
        proposal = self.pending_proposal
        if proposal is None or not proposal.lapse_due(now) or now < self.updated_at:
            return False
        new_status = self._target(Action.LAPSE)
        self.proposals[-1] = lapsed = proposal.closed(ProposalState.LAPSED, now)
        self.events.append(events.ProposalLapsed(self.mission_id, lapsed, now))
        self._move(new_status, Action.LAPSE, ActorRole.SYSTEM, now)
        self.reserved_by = None
        return True

    # -- convention ------------------------------------------------------------------------

    def draft_convention(
        self,
        convention_id: str,
        starts_on: date,
        ends_on: date,
        mlds_structure_uai: str,
        company_tutor_id: str,
        youth_birth_date: date,
        parties: dict[SignatoryRole, str],
        now: datetime,
        *,
        hosted_elsewhere: Iterable[Mission] = (),
    ) -> Convention:
        """After the presentation meeting: the convention de stage, to be signed by every party.
        `hosted_elsewhere`: the company's other placements (the service layer loads them); hours
        are split across youths, never at the same time and place with the same company tutor."""
        self._target(Action.DRAFT_CONVENTION)
        where = f"mission {self.mission_id}"
        if self.convention is not None and self.convention.signatures:
            raise TransitionRefused(
                self.mission_id,
                self.status.value,
                Action.DRAFT_CONVENTION.value,
                f"convention {self.convention.convention_id} is being signed",
            )
        if company_tutor_id not in self.company_tutors:
            raise Refused(
                f"{where}: the company tutor must be one of the mission's referents "
                f"({', '.join(self.company_tutors)}), not {company_tutor_id}"
            )
        self._check_time(now)
        convention = Convention.draft(
            convention_id,
            self.youth_id,
            starts_on,
            ends_on,
            mlds_structure_uai,
            company_tutor_id,
            youth_birth_date,
            parties,
            now,
        )
        for other in hosted_elsewhere:
            if (
                other.mission_id != self.mission_id
                and other.hosts(company_tutor_id, self.site.key)
                and other.convention.overlaps(convention)
            ):
                raise Refused(
                    f"{where}: {company_tutor_id} already tutors a youth at this site from "
                    f"{other.convention.starts_on} to {other.convention.ends_on} (mission "
                    f"{other.mission_id}); a clause's hours are split across youths, not at the "
                    "same time and place with the same tutor"
                )
        self.convention = convention
        self.updated_at = now
        self.events.append(events.ConventionDrafted(self.mission_id, convention_id, now))
        return convention

    def sign_convention(self, role: SignatoryRole, now: datetime) -> Convention:
        """One party signs; the last signature completes the convention and starts the placement."""
        self._target(Action.SIGN_CONVENTION)
        if self.convention is None:
            raise TransitionRefused(
                self.mission_id, self.status.value, Action.SIGN_CONVENTION.value, "no convention drafted"
            )
        self._check_time(now)
        convention = self.convention.signed(role, now)
        self.convention = convention
        self.updated_at = now
        self.events.append(
            events.ConventionSignedBy(
                self.mission_id, convention.convention_id, convention.signed_roles[-1], now
            )
        )
        if convention.complete:
            self.events.append(events.ConventionCompleted(self.mission_id, convention, now))
            self._move(self._target(Action.START), Action.START, ActorRole.SYSTEM, now)
        return convention

    def abandon(self, by_role: ActorRole, now: datetime) -> None:
        """Before the convention is complete, the company or the tutor gives up: free again."""
        new_status = self._target(Action.ABANDON)
        by_role = ActorRole(by_role)
        if by_role not in (ActorRole.COMPANY, ActorRole.MLDS_TUTOR):
            raise Refused(
                f"mission {self.mission_id}: only the company or the MLDS tutor abandons a placement"
            )
        self._check_time(now)
        self._move(new_status, Action.ABANDON, by_role, now)
        self.convention = None
        self.reserved_by = None

    # -- the placement ---------------------------------------------------------------------

    def record_hours(self, week_of: date, hours: int, now: datetime) -> int | None:
        """The youth's hours in the week of `week_of` (any day of it): a week counts once it has
        started and touches the convention's period. Recording a week again corrects it.
        Returns the hours it replaced, if any."""
        self._target(Action.RECORD_HOURS)
        where = f"mission {self.mission_id}"
        monday = monday_of(week_of)
        convention = self.convention
        if monday not in weeks_between(convention.starts_on, convention.ends_on):
            raise Refused(
                f"{where}: the week of {monday} is outside the convention "
                f"({convention.starts_on} to {convention.ends_on})"
            )
        if monday > now.date():
            raise Refused(f"{where}: the week of {monday} has not started yet")
        if not 0 <= hours <= MAX_HOURS_PER_WEEK:
            raise Refused(
                f"{where}: {hours} hours in the week of {monday}; a youth under school status "
                f"spends 0 to {MAX_HOURS_PER_WEEK} hours a week in the company"
            )
        self._check_time(now)
        previous = self.attendance.get(monday)
        self.attendance[monday] = hours
        self.updated_at = now
        self.events.append(
            events.HoursRecorded(
                self.mission_id, convention.youth_id, monday, hours, previous, self.hours_done, now
            )
        )
        return previous

    def complete(self, outcome: MissionOutcome, now: datetime) -> None:
        """The placement is over, with where the youth goes next."""
        new_status = self._target(Action.COMPLETE)
        try:
            outcome = MissionOutcome(outcome)
        except ValueError:
            known = ", ".join(MissionOutcome)
            raise Refused(f"mission {self.mission_id}: outcome {outcome!r} is not one of {known}") from None
        if now.date() < self.convention.starts_on:
            raise Refused(
                f"mission {self.mission_id}: the placement starts on {self.convention.starts_on}; "
                "it cannot be over before"
            )
        self._check_time(now)
        self.outcome = outcome
        self.completed_at = now
        self.events.append(
            events.MissionCompleted(
                self.mission_id,
                self.convention.youth_id,
                self.reserved_by,
                outcome.value,
                self.hours_done,
                now,
            )
        )
        self._move(new_status, Action.COMPLETE, ActorRole.MLDS_TUTOR, now)

    # -- bilan croisé ----------------------------------------------------------------------

    def write_bilan(
        self,
        skills: Iterable[SkillAssessment],
        savoir_etre: str,
        savoir_faire: str,
        next_steps: str,
        now: datetime,
    ) -> Bilan:
        """The tutors write (or rewrite, until someone signs) the bilan croisé."""
        self._target(Action.WRITE_BILAN)
        if self.bilan is not None and self.bilan.signatures:
            raise TransitionRefused(
                self.mission_id, self.status.value, Action.WRITE_BILAN.value, "the bilan is being signed"
            )
        self._check_time(now)
        bilan = Bilan.write(
            tuple(skills), savoir_etre, savoir_faire, next_steps, now, f"mission {self.mission_id}"
        )
        self.bilan = bilan
        self.updated_at = now
        self.events.append(events.BilanWritten(self.mission_id, now))
        return bilan

    def sign_bilan(self, role: BilanSignatoryRole, now: datetime) -> Bilan:
        """The MLDS tutor and the company referent sign with the youth."""
        self._target(Action.SIGN_BILAN)
        if self.bilan is None:
            raise TransitionRefused(
                self.mission_id, self.status.value, Action.SIGN_BILAN.value, "no bilan written"
            )
        self._check_time(now)
        bilan = self.bilan.signed(role, now, f"mission {self.mission_id}")
        self.bilan = bilan
        self.updated_at = now
        self.events.append(events.BilanSigned(self.mission_id, bilan.signed_roles[-1], now))
        return bilan

    def check_bilan_deliverable(self) -> Bilan:
        """The bilan, if it may go to the buyer: the mission is over, the bilan is signed by all
        three and not delivered yet. TransitionRefused or Refused otherwise."""
        self._target(Action.DELIVER_BILAN)
        if self.bilan is None:
            raise TransitionRefused(
                self.mission_id, self.status.value, Action.DELIVER_BILAN.value, "no bilan written"
            )
        if self.bilan.delivered_at is not None:
            raise TransitionRefused(
                self.mission_id,
                self.status.value,
                Action.DELIVER_BILAN.value,
                f"delivered on {self.bilan.delivered_at.isoformat()}",
            )
        if not self.bilan.fully_signed:
            missing = sorted(set(BilanSignatoryRole) - set(self.bilan.signed_roles))
            raise Refused(
                f"mission {self.mission_id}: the bilan still waits for the signature of {', '.join(missing)}"
            )
        return self.bilan

    def deliver_bilan(self, document_sha256: str, now: datetime) -> Bilan:
        """The signed bilan, rendered as a document whose hash is given, goes to the buyer."""
        self.check_bilan_deliverable()
        where = f"mission {self.mission_id}"
        if not re.fullmatch(r"[0-9a-f]{64}", document_sha256):
            raise Refused(f"{where}: {document_sha256!r} is not a SHA-256 in hexadecimal")
        self._check_time(now)
        bilan = self.bilan.delivered(document_sha256, now)
        self.bilan = bilan
        self.updated_at = now
        self.events.append(
            events.BilanDelivered(self.mission_id, self.convention.youth_id, bilan, self.hours_done, now)
        )
        return bilan

    # -- the machinery ---------------------------------------------------------------------

    def _target(self, action: Action) -> MissionStatus:
        return target(self.mission_id, self.status, action)

    def _check_tutor(self, action: Action, tutor_id: str) -> None:
        if tutor_id != self.reserved_by:
            raise TransitionRefused(
                self.mission_id,
                self.status.value,
                action.value,
                f"reserved by {self.reserved_by}, not {tutor_id}",
            )

    def _pending(self, action: Action, proposal_id: str) -> Proposal:
        pending = self.pending_proposal
        if pending is None or pending.proposal_id != proposal_id:
            detail = "no proposal waits" if pending is None else f"proposal {pending.proposal_id} waits"
            raise TransitionRefused(
                self.mission_id, self.status.value, action.value, f"{detail}, not {proposal_id}"
            )
        return pending

    def _check_time(self, now: datetime) -> None:
        require_aware(now, "now")
        if now < self.updated_at:
            raise Refused(
                f"mission {self.mission_id}: {now.isoformat()} is before the mission's last change "
                f"at {self.updated_at.isoformat()}"
            )

    def _move(self, new_status: MissionStatus, action: Action, by_role: ActorRole, now: datetime) -> None:
        self.updated_at = now
        if new_status is self.status:
            return
        self.events.append(
            events.StatusChanged(
                self.mission_id, self.status, new_status, action, by_role, self.reserved_by, now
            )
        )
        self.status = new_status
        self.status_since = now
