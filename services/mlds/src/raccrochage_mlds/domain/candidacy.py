"""A candidacy: one youth's path through one MLDS dispositif, from candidacy to exit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import TypeVar

from . import events
from .admission import Role, Step, StepOutcome, StepRecord, steps_of
from .catalogue import Dispositif, DispositifKind
from .dates import SchoolYear
from .eligibility import RULEBOOK, Decision, DecisionOutcome, Right, Rulebook, decide, rights
from .facts import Facts, SchoolLevel, under_obligation_de_formation
from .states import (
    ALLOWED,
    Action,
    CandidacyStatus,
    DiplomaObtained,
    ExitDestination,
    InvalidCommand,
    RefusalReason,
    TransitionRefused,
    WithdrawalReason,
)


class Channel(StrEnum):
    PSAD_REQUEST = "psad_request"
    COORDINATOR = "coordinator"


@dataclass(frozen=True)
class PsadRequest:
    """The psad.solution.requested.v1 a candidacy answers."""

    request_id: uuid.UUID
    case_id: uuid.UUID
    psad_id: str
    correlation_id: uuid.UUID | None = None  # the PSAD's causal chain, carried on to its answer


@dataclass(frozen=True)
class Refusal:
    reason: RefusalReason
    at: datetime
    failed_rules: tuple[str, ...] = ()  # not_eligible: every failing rule's code
    failed_step: str | None = None  # step_unfavourable: which step


@dataclass(frozen=True)
class Withdrawal:
    reason: WithdrawalReason
    at: datetime


@dataclass(frozen=True)
class Admission:
    dispositif_id: str
    starts_on: date
    at: datetime


@dataclass(frozen=True)
class Enrolment:
    started_on: date
    age: int  # whole years on the first day, as far as the facts tell (the lower bound)
    under_obligation_de_formation: bool | None
    at: datetime


@dataclass(frozen=True)
class Exit:
    destination: ExitDestination
    exited_on: date
    at: datetime
    school_level: SchoolLevel | None = None  # back to school: the level returned to
    droit_au_maintien: bool = False  # back to the school of origin, under the droit au maintien
    diploma_obtained: DiplomaObtained | None = None


@dataclass(frozen=True)
class Pafi:
    """A parcours aménagé de la formation initiale, "validation par le DASEN" on `validated_on`."""

    validated_on: date
    at: datetime


# How an end of the candidacy answers the PSAD that asked (mlds.enrolment.refused.v1's reasons).
_REFUSAL_ANSWERS = {
    RefusalReason.NOT_ELIGIBLE: "not_eligible",
    RefusalReason.NO_PLACE: "no_place",
    RefusalReason.STEP_UNFAVOURABLE: "other",
}
_WITHDRAWAL_ANSWERS = {
    WithdrawalReason.YOUTH_DECLINED: "youth_declined",
    WithdrawalReason.NO_SHOW: "youth_declined",
    WithdrawalReason.OTHER_SOLUTION: "youth_declined",
    WithdrawalReason.MOVED: "other",
    WithdrawalReason.UNREACHABLE: "other",
    WithdrawalReason.OTHER: "other",
}


@dataclass(eq=False)
class Candidacy:
    """Build a new one with `Candidacy.receive` (which records CandidacyReceived); the constructor
    is for repositories that load a stored one and must record nothing.

    Every command takes the time it happens at (`now`), checks that the action is allowed in the
    status (TransitionRefused) and that its arguments make sense (InvalidCommand) before changing
    anything: a refused command leaves the candidacy exactly as it was.
    """

    candidacy_id: uuid.UUID
    youth_id: str
    kind: DispositifKind
    departement: str  # the youth's
    channel: Channel
    received_at: datetime
    facts: Facts
    entry_year: SchoolYear  # its 1 September is the micro-lycée's age reference
    dispositif_id: str | None = None  # the site, once chosen; admission needs it
    request: PsadRequest | None = None
    status: CandidacyStatus = CandidacyStatus.CANDIDATE
    updated_at: datetime | None = None
    decisions: list[Decision] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    admission: Admission | None = None
    enrolment: Enrolment | None = None
    exit: Exit | None = None
    refusal: Refusal | None = None
    withdrawal: Withdrawal | None = None
    pafi: Pafi | None = None
    answered: bool = False  # the PSAD request has had its one answer
    version: int = 0  # bumped by the repository at each save
    events: list[events.DomainEvent] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        _require_aware(self.received_at, "received_at")
        if self.updated_at is None:
            self.updated_at = self.received_at

    @classmethod
    def receive(
        cls,
        candidacy_id: uuid.UUID,
        youth_id: str,
        kind: DispositifKind,
        departement: str,
        facts: Facts,
        now: datetime,
        *,
        channel: Channel = Channel.COORDINATOR,
        request: PsadRequest | None = None,
        dispositif: Dispositif | None = None,
        entry_year: SchoolYear | None = None,
    ) -> Candidacy:
        _require_aware(now, "now")
        if facts.age is None:
            raise InvalidCommand(f"candidacy {candidacy_id}: the age is needed to receive a candidacy")
        if dispositif is not None and dispositif.kind is not kind:
            raise InvalidCommand(
                f"candidacy {candidacy_id}: {dispositif.dispositif_id} is not a {kind.value}"
            )
        candidacy = cls(
            candidacy_id,
            youth_id,
            kind,
            departement,
            channel,
            now,
            facts,
            entry_year or SchoolYear.containing(now.date()),
            dispositif_id=dispositif.dispositif_id if dispositif else None,
            request=request,
        )
        candidacy.events.append(events.CandidacyReceived(candidacy_id, now))
        return candidacy

    # -- what the candidacy knows -------------------------------------------------------------

    @property
    def decision(self) -> Decision | None:
        return self.decisions[-1] if self.decisions else None

    @property
    def holds_place(self) -> bool:
        return self.status in (CandidacyStatus.ADMITTED, CandidacyStatus.ENROLLED)

    @property
    def pending_steps(self) -> tuple[Step, ...]:
        done = {s.code for s in self.steps if s.outcome is StepOutcome.FAVOURABLE}
        return tuple(step for step in steps_of(self.kind) if step.code not in done)

    @property
    def next_step(self) -> Step | None:
        pending = self.pending_steps
        return pending[0] if pending else None

    def rights(self, day: date) -> tuple[Right, ...]:
        return rights(self.facts, day)

    # -- eligibility ----------------------------------------------------------------------------

    def decide(self, now: datetime, rulebook: Rulebook = RULEBOOK) -> Decision:
        """Apply the rules in force today to the facts known: eligible -> admissible, a rule
        failed -> refused with every failing rule, incomplete -> still a candidate."""
        self._check(Action.DECIDE, now)
        decision = decide(
            self.kind,
            self.facts,
            now,
            entry_year=self.entry_year,
            number=len(self.decisions) + 1,
            rulebook=rulebook,
        )
        self._apply(decision, now)
        return decision

    def record_facts(self, now: datetime, rulebook: Rulebook = RULEBOOK, **changes) -> Decision:
        """A coordinator completes or corrects facts; the candidacy is decided again."""
        self._check(Action.RECORD_FACTS, now)
        try:
            facts = self.facts.with_changes(**changes)
        except ValueError as error:
            raise InvalidCommand(f"candidacy {self.candidacy_id}: {error}") from None
        if facts.age is None:
            raise InvalidCommand(f"candidacy {self.candidacy_id}: the age cannot be erased")
        decision = decide(
            self.kind,
            facts,
            now,
            entry_year=self.entry_year,
            number=len(self.decisions) + 1,
            rulebook=rulebook,
        )
        self.facts = facts
        self._apply(decision, now)
        return decision

    def _apply(self, decision: Decision, now: datetime) -> None:
        self.decisions.append(decision)
        self.events.append(events.CandidacyDecided(self.candidacy_id, decision))
        outcome = decision.outcome
        if outcome is DecisionOutcome.NOT_ELIGIBLE:
            self._refuse(Refusal(RefusalReason.NOT_ELIGIBLE, now, failed_rules=decision.failed_rules), now)
        elif outcome is DecisionOutcome.ELIGIBLE:
            self.status = CandidacyStatus.ADMISSIBLE
        else:
            self.status = CandidacyStatus.CANDIDATE
        self._touch(now)

    # -- admission ------------------------------------------------------------------------------

    def choose_dispositif(self, dispositif: Dispositif, now: datetime) -> None:
        self._check(Action.CHOOSE_DISPOSITIF, now)
        if dispositif.kind is not self.kind:
            raise InvalidCommand(
                f"candidacy {self.candidacy_id}: {dispositif.dispositif_id} is not a {self.kind.value}"
            )
        self.dispositif_id = dispositif.dispositif_id
        self._touch(now)

    def record_step(
        self, code: str, outcome: StepOutcome, held_on: date, by: Role, now: datetime
    ) -> StepRecord:
        """The next admission step's outcome. Steps go in the dispositif's order; an unfavourable
        one refuses the candidacy; an absence leaves the step to hold again."""
        self._check(Action.RECORD_STEP, now)
        step = self.next_step
        if step is None:
            raise TransitionRefused(self.candidacy_id, self.status, Action.RECORD_STEP, "every step is done")
        if code != step.code:
            raise InvalidCommand(f"candidacy {self.candidacy_id}: the next step is {step.code}, not {code}")
        outcome, by = _coded(StepOutcome, outcome), _coded(Role, by)
        if by not in step.deciders:
            allowed = ", ".join(sorted(r.value for r in step.deciders))
            raise InvalidCommand(
                f"candidacy {self.candidacy_id}: {step.code} is decided by {allowed}, not {by.value}"
            )
        if held_on > now.date():
            raise InvalidCommand(f"candidacy {self.candidacy_id}: {step.code} held on {held_on}, after today")
        record = StepRecord(step.code, outcome, held_on, by, now)
        self.steps.append(record)
        self.events.append(events.AdmissionStepRecorded(self.candidacy_id, record))
        if outcome is StepOutcome.UNFAVOURABLE:
            self._refuse(Refusal(RefusalReason.STEP_UNFAVOURABLE, now, failed_step=step.code), now)
        self._touch(now)
        return record

    def check_admissible(self, dispositif_id: str | None = None) -> str:
        """The site the candidacy may be admitted to now (before a place is taken for it)."""
        if self.status not in ALLOWED[Action.ADMIT]:
            raise TransitionRefused(self.candidacy_id, self.status, Action.ADMIT)
        pending = self.pending_steps
        if pending:
            raise TransitionRefused(
                self.candidacy_id,
                self.status,
                Action.ADMIT,
                f"admission step {pending[0].code} is to be held",
            )
        site = dispositif_id or self.dispositif_id
        if site is None:
            raise InvalidCommand(f"candidacy {self.candidacy_id}: no site chosen to admit to")
        if self.dispositif_id is not None and site != self.dispositif_id:
            raise InvalidCommand(
                f"candidacy {self.candidacy_id}: chosen site is {self.dispositif_id}, not {site}"
            )
        return site

    def admit(self, dispositif: Dispositif, starts_on: date, now: datetime) -> None:
        """Admitted to `dispositif`, whose place the caller has just taken for this youth."""
        self._check(Action.ADMIT, now)
        site = self.check_admissible(dispositif.dispositif_id)
        if dispositif.kind is not self.kind:
            raise InvalidCommand(f"candidacy {self.candidacy_id}: {site} is not a {self.kind.value}")
        if starts_on < self.received_at.date():
            raise InvalidCommand(
                f"candidacy {self.candidacy_id}: starts on {starts_on}, before its reception"
            )
        self.dispositif_id = site
        self.admission = Admission(site, starts_on, now)
        self.status = CandidacyStatus.ADMITTED
        self.events.append(events.CandidacyAdmitted(self.candidacy_id, site, starts_on, now))
        self._answer(True, None, now)
        self._touch(now)

    def refuse_for_lack_of_place(self, now: datetime) -> None:
        """Every step passed but the site was full: refused, and the PSAD told no_place."""
        self._check(Action.REFUSE_FOR_LACK_OF_PLACE, now)
        self._refuse(Refusal(RefusalReason.NO_PLACE, now), now)
        self._touch(now)

    # -- enrolment ------------------------------------------------------------------------------

    def enrol(self, started_on: date, now: datetime) -> Enrolment:
        self._check(Action.ENROL, now)
        assert self.admission is not None
        if started_on < self.admission.at.date():
            raise InvalidCommand(
                f"candidacy {self.candidacy_id}: started on {started_on}, before its admission"
            )
        if started_on > now.date():
            raise InvalidCommand(f"candidacy {self.candidacy_id}: a start on {started_on} is not yet")
        span = self.facts.age_on(started_on)
        assert span is not None  # receive requires the age
        enrolment = Enrolment(
            started_on, span.low, under_obligation_de_formation(self.facts, started_on), now
        )
        self.enrolment = enrolment
        self.status = CandidacyStatus.ENROLLED
        self.events.append(events.EnrolmentStarted(self.candidacy_id, now))
        self._touch(now)
        return enrolment

    def exit_to(
        self,
        destination: ExitDestination,
        exited_on: date,
        now: datetime,
        *,
        school_level: SchoolLevel | None = None,
        droit_au_maintien: bool = False,
        diploma_obtained: DiplomaObtained | None = None,
    ) -> Exit:
        """The youth leaves the dispositif for a coded destination; the place is freed."""
        self._check(Action.EXIT, now)
        destination = _coded(ExitDestination, destination)
        assert self.enrolment is not None
        if exited_on < self.enrolment.started_on or exited_on > now.date():
            raise InvalidCommand(
                f"candidacy {self.candidacy_id}: exit on {exited_on} is outside {self.enrolment.started_on}..{now.date()}"
            )
        back_to_school = destination is ExitDestination.BACK_TO_SCHOOL
        if back_to_school and school_level is None:
            raise InvalidCommand(f"candidacy {self.candidacy_id}: back to school needs the level returned to")
        if not back_to_school and (school_level is not None or droit_au_maintien):
            raise InvalidCommand(
                f"candidacy {self.candidacy_id}: a school level or the droit au maintien go with back_to_school only"
            )
        exit_ = Exit(
            destination,
            exited_on,
            now,
            _coded(SchoolLevel, school_level) if school_level else None,
            droit_au_maintien,
            _coded(DiplomaObtained, diploma_obtained) if diploma_obtained else None,
        )
        self.exit = exit_
        self.status = CandidacyStatus.EXITED
        self.events.append(events.EnrolmentExited(self.candidacy_id, now))
        self._touch(now)
        return exit_

    def withdraw(self, reason: WithdrawalReason, now: datetime) -> bool:
        """The youth leaves before starting. True when a place was held (the caller releases it)."""
        self._check(Action.WITHDRAW, now)
        reason = _coded(WithdrawalReason, reason)
        held = self.holds_place
        self.withdrawal = Withdrawal(reason, now)
        self.status = CandidacyStatus.WITHDRAWN
        self.events.append(events.CandidacyWithdrawn(self.candidacy_id, reason, held, now))
        self._answer(False, _WITHDRAWAL_ANSWERS[reason], now)
        self._touch(now)
        return held

    def record_pafi(self, validated_on: date, now: datetime) -> Pafi:
        """The DASEN validated a PAFI for this pupil: only where it applies (at least 15, still
        enrolled, at risk)."""
        self._check(Action.RECORD_PAFI, now)
        if Right.PAFI not in self.rights(validated_on):
            raise InvalidCommand(
                f"candidacy {self.candidacy_id}: a PAFI is for pupils of at least 15 still enrolled"
            )
        if validated_on > now.date():
            raise InvalidCommand(f"candidacy {self.candidacy_id}: validated on {validated_on}, after today")
        self.pafi = Pafi(validated_on, now)
        self._touch(now)
        return self.pafi

    # -- internals ------------------------------------------------------------------------------

    def _refuse(self, refusal: Refusal, now: datetime) -> None:
        self.refusal = refusal
        self.status = CandidacyStatus.REFUSED
        self.events.append(events.CandidacyRefused(self.candidacy_id, refusal.reason, now))
        self._answer(False, _REFUSAL_ANSWERS[refusal.reason], now)

    def _answer(self, accepted: bool, refusal: str | None, now: datetime) -> None:
        if self.request is None or self.answered:
            return
        self.answered = True
        self.events.append(events.RequestAnswered(self.candidacy_id, accepted, refusal, now))

    def _check(self, action: Action, now: datetime) -> None:
        if self.status not in ALLOWED[action]:
            raise TransitionRefused(self.candidacy_id, self.status, action)
        _require_aware(now, "now")
        assert self.updated_at is not None
        if now < self.updated_at:
            raise InvalidCommand(
                f"candidacy {self.candidacy_id}: {action.value} at {now} is before its last change at {self.updated_at}"
            )

    def _touch(self, now: datetime) -> None:
        self.updated_at = now


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidCommand(f"{name} must be timezone-aware, got {moment!r}")


E = TypeVar("E", bound=StrEnum)


def _coded(kind: type[E], value: object) -> E:
    try:
        return kind(value)
    except ValueError:
        codes = ", ".join(member.value for member in kind)
        raise InvalidCommand(f"{value!r} is not a {kind.__name__}: one of {codes}") from None
