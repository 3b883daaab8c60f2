"""The PSAD case: one per youth and territory, from the first call to a solution."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from raccrochage_contracts.psads import KNOWN_PSADS_HINT, is_known_psad

from . import events
from .contact import FAILED_OUTCOMES, Channel, ContactAttempt, ContactOutcome
from .deadlines import DEFAULT_POLICY, Policy, add_months, age_on
from .interview import Interview, InterviewerRole, InterviewOutcome
from .solution import PROVIDED_BY, Solution, SolutionKind, SolutionState
from .states import (
    CLOSING_CONTACT_OUTCOMES,
    Action,
    CaseStatus,
    CloseReason,
    InvalidCommand,
    Outcome,
    ReviewOutcome,
    TransitionRefused,
    target,
)

# The obligation de formation runs from 16 to 18.
OBLIGATION_DE_FORMATION_AGES = range(16, 18)


@dataclass(eq=False)
class Case:
    """A case and its history. Build a new one with `Case.open` (which records CaseOpened); the
    constructor itself is for repositories that load a stored case and must record nothing.

    Every command takes the time it happens at (`now`) and checks, before changing anything, that
    the action is allowed (TransitionRefused otherwise) and that its arguments make sense
    (InvalidCommand): a refused command leaves the case exactly as it was.
    """

    case_id: str
    youth_id: str
    psad_id: str
    departement: str
    age_at_opening: int
    opened_at: datetime
    zap: str | None = None
    level: str | None = None  # last training followed, e.g. "2nde GT"
    last_diploma: str | None = None
    months_since_leaving: int | None = None
    status: CaseStatus = CaseStatus.TO_CONTACT
    status_since: datetime | None = None
    updated_at: datetime | None = None  # time of the last command; commands may not go back
    owner: str | None = None  # counsellor id; None: in the PSAD's shared queue
    episode: int = 1  # a reopen starts a new episode; the history stays
    attempts: list[ContactAttempt] = field(default_factory=list)
    interviews: list[Interview] = field(default_factory=list)
    solutions: list[Solution] = field(default_factory=list)
    review_date: date | None = None
    close_reason: CloseReason | None = None
    found_base: str | None = None
    # When repérage last found the youth at a partner (its event's time), the case open or not:
    # a hand-over emitted before it does not reopen the case.
    last_found_at: datetime | None = None
    transferred_to: str | None = None
    escalation_raised_on: date | None = None
    events: list[events.DomainEvent] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        _require_aware(self.opened_at, "opened_at")
        if self.status_since is None:
            self.status_since = self.opened_at
        if self.updated_at is None:
            self.updated_at = self.status_since

    @classmethod
    def open(
        cls,
        case_id: str,
        youth_id: str,
        psad_id: str,
        departement: str,
        age: int,
        now: datetime,
        *,
        zap: str | None = None,
        level: str | None = None,
        last_diploma: str | None = None,
        months_since_leaving: int | None = None,
    ) -> Case:
        if age < 0:
            raise InvalidCommand(f"case {case_id}: age {age} is negative")
        case = cls(
            case_id,
            youth_id,
            psad_id,
            departement,
            age,
            now,
            zap=zap,
            level=level,
            last_diploma=last_diploma,
            months_since_leaving=months_since_leaving,
        )
        case.events.append(events.CaseOpened(case_id, youth_id, psad_id, departement, age, now))
        return case

    # -- what the case knows ---------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.status is not CaseStatus.CLOSED

    @property
    def is_minor(self) -> bool:
        """Minor at opening (the youth may have come of age since: see `age_on`)."""
        return self.age_at_opening < 18

    def age_on(self, today: date) -> int:
        return age_on(self.age_at_opening, self.opened_at.date(), today)

    def under_obligation_de_formation(self, today: date) -> bool:
        return self.age_on(today) in OBLIGATION_DE_FORMATION_AGES

    @property
    def episode_attempts(self) -> list[ContactAttempt]:
        return [a for a in self.attempts if a.episode == self.episode]

    @property
    def first_attempt_at(self) -> datetime | None:
        attempts = self.episode_attempts
        return attempts[0].at if attempts else None

    @property
    def first_contact_at(self) -> datetime | None:
        """The first successful contact of this episode: it starts the 15-day interview clock."""
        return next((a.at for a in self.episode_attempts if a.outcome is ContactOutcome.REACHED), None)

    @property
    def failed_attempts(self) -> int:
        return sum(a.outcome in FAILED_OUTCOMES for a in self.episode_attempts)

    @property
    def transfer_needed(self) -> bool:
        """The last attempt learnt that the youth moved: the case waits for `transfer`."""
        attempts = self.episode_attempts
        return self.is_open and bool(attempts) and attempts[-1].outcome is ContactOutcome.MOVED

    @property
    def pending_interview(self) -> Interview | None:
        if self.interviews and self.interviews[-1].pending and self.interviews[-1].episode == self.episode:
            return self.interviews[-1]
        return None

    @property
    def interview_held_at(self) -> datetime | None:
        """When the first interview of this episode took place (its scheduled time), if one did."""
        return next(
            (
                i.scheduled_for
                for i in self.interviews
                if i.episode == self.episode and i.outcome is InterviewOutcome.SEEN
            ),
            None,
        )

    @property
    def current_solution(self) -> Solution | None:
        """The solution proposed or in progress, if the case is at that stage."""
        if self.status in (CaseStatus.SOLUTION_PROPOSED, CaseStatus.IN_SOLUTION):
            return self.solutions[-1]
        return None

    # -- deadlines --------------------------------------------------------------------------

    def interview_deadline(self, policy: Policy = DEFAULT_POLICY) -> date | None:
        """Droit au retour en formation: last day for the interview, once the youth is reached."""
        first_contact = self.first_contact_at
        if first_contact is None:
            return None
        return first_contact.date() + timedelta(days=policy.interview_deadline_days)

    def interview_still_owed(self, policy: Policy) -> date | None:
        deadline = self.interview_deadline(policy)
        if deadline is None or not self.is_open or self.interview_held_at is not None:
            return None
        return deadline

    def is_overdue(self, today: date, policy: Policy = DEFAULT_POLICY) -> bool:
        """Open, reached, no interview held, and the deadline has passed."""
        deadline = self.interview_still_owed(policy)
        return deadline is not None and today > deadline

    def interview_due_soon(self, today: date, policy: Policy = DEFAULT_POLICY) -> bool:
        """The deadline is at most `due_soon_days` away and no interview is booked on or before it."""
        deadline = self.interview_still_owed(policy)
        if deadline is None or today > deadline or (deadline - today).days > policy.due_soon_days:
            return False
        pending = self.pending_interview
        return pending is None or pending.scheduled_for.date() > deadline

    def due_for_review(self, today: date) -> bool:
        return (
            self.status is CaseStatus.IN_SOLUTION
            and self.review_date is not None
            and today >= self.review_date
        )

    def escalation_due_on(self, policy: Policy = DEFAULT_POLICY) -> date | None:
        """When a minor still without solution must be escalated: `escalation_months` after the
        first contact attempt. The clock starts at the attempt, not at the first success, because
        the minor the PSAD cannot reach is exactly the one the département must hear about."""
        first_attempt = self.first_attempt_at
        return None if first_attempt is None else add_months(first_attempt.date(), policy.escalation_months)

    # -- commands ---------------------------------------------------------------------------

    def assign(self, owner: str | None, now: datetime) -> None:
        self._target(Action.ASSIGN)
        self._check_time(now)
        self.owner = owner
        self.updated_at = now
        self.events.append(events.OwnerAssigned(self.case_id, owner, now))

    def record_contact_attempt(
        self, channel: Channel, outcome: ContactOutcome, now: datetime, by: str | None = None
    ) -> ContactAttempt:
        outcome = ContactOutcome(outcome)
        new_status = self._target(Action.RECORD_CONTACT_ATTEMPT, outcome)
        self._check_time(now)
        attempt = ContactAttempt(len(self.attempts) + 1, self.episode, Channel(channel), outcome, now, by)
        self.attempts.append(attempt)
        self.events.append(
            events.ContactRecorded(self.case_id, attempt.number, attempt.channel, outcome, now)
        )
        self._move(new_status, Action.RECORD_CONTACT_ATTEMPT, now, CLOSING_CONTACT_OUTCOMES.get(outcome))
        return attempt

    def schedule_interview(
        self,
        scheduled_for: datetime,
        with_role: InterviewerRole,
        now: datetime,
        interviewer_id: str | None = None,
    ) -> Interview:
        new_status = self._target(Action.SCHEDULE_INTERVIEW)
        self._check_time(now)
        _require_aware(scheduled_for, "scheduled_for")
        interview = Interview(
            len(self.interviews) + 1,
            self.episode,
            scheduled_for,
            InterviewerRole(with_role),
            interviewer_id,
            now,
        )
        self.interviews.append(interview)
        self.events.append(
            events.InterviewScheduled(self.case_id, interview.number, scheduled_for, interview.with_role, now)
        )
        self._move(new_status, Action.SCHEDULE_INTERVIEW, now)
        return interview

    def record_interview(self, outcome: InterviewOutcome, now: datetime) -> Interview:
        outcome = InterviewOutcome(outcome)
        new_status = self._target(Action.RECORD_INTERVIEW, outcome)
        self._check_time(now)
        interview = self.interviews[-1].recorded(outcome, now)
        self.interviews[-1] = interview
        self.events.append(events.InterviewRecorded(self.case_id, interview.number, interview.outcome, now))
        self._move(new_status, Action.RECORD_INTERVIEW, now)
        return interview

    def propose_solution(self, kind: SolutionKind, now: datetime, wishes: tuple[str, ...] = ()) -> Solution:
        """Propose a solution; one that another service provides is also requested from it."""
        new_status = self._target(Action.PROPOSE_SOLUTION)
        self._check_time(now)
        solution = Solution(len(self.solutions) + 1, self.episode, SolutionKind(kind), now, tuple(wishes))
        self.solutions.append(solution)
        self.events.append(events.SolutionProposed(self.case_id, solution.number, solution.kind, now))
        if solution.provider is not None:
            self.events.append(
                events.SolutionRequested(
                    self.case_id,
                    self.youth_id,
                    solution.number,
                    solution.kind,
                    solution.provider,
                    self.age_on(now.date()),
                    self.level,
                    self.last_diploma,
                    self.months_since_leaving,
                    self.psad_id,
                    self.departement,
                    self.zap,
                    solution.wishes,
                    now,
                )
            )
        self._move(new_status, Action.PROPOSE_SOLUTION, now)
        return solution

    def confirm_solution(
        self, now: datetime, policy: Policy = DEFAULT_POLICY, kind: SolutionKind | None = None
    ) -> Solution:
        """The provider (or, for a solution outside the system, the counsellor) confirms it.
        `kind`, when given, must be the proposed one: a late answer to an older proposal is refused."""
        new_status = self._target(Action.CONFIRM_SOLUTION)
        self._check_solution_kind(Action.CONFIRM_SOLUTION, kind)
        self._check_time(now)
        solution = self.solutions[-1].decided(SolutionState.CONFIRMED, now)
        self.solutions[-1] = solution
        self.review_date = add_months(now.date(), policy.review_months)
        self.events.append(
            events.SolutionConfirmed(self.case_id, solution.number, solution.kind, self.review_date, now)
        )
        self._move(new_status, Action.CONFIRM_SOLUTION, now)
        return solution

    def refuse_solution(self, reason: str, now: datetime, kind: SolutionKind | None = None) -> Solution:
        """No seat, or the youth declines: back to the solution stage to propose another one."""
        new_status = self._target(Action.REFUSE_SOLUTION)
        self._check_solution_kind(Action.REFUSE_SOLUTION, kind)
        if not reason or not reason.strip():
            raise InvalidCommand(f"case {self.case_id}: refuse_solution needs a coded reason")
        self._check_time(now)
        solution = self.solutions[-1].decided(SolutionState.REFUSED, now, reason)
        self.solutions[-1] = solution
        self.events.append(events.SolutionRefused(self.case_id, solution.number, solution.kind, reason, now))
        self._move(new_status, Action.REFUSE_SOLUTION, now)
        return solution

    def review_solution(self, outcome: ReviewOutcome, now: datetime, policy: Policy = DEFAULT_POLICY) -> None:
        """At (or before) the review date: the solution holds (next review set) or it has ended."""
        outcome = ReviewOutcome(outcome)
        new_status = self._target(Action.REVIEW_SOLUTION, outcome)
        self._check_time(now)
        number = self.solutions[-1].number
        if outcome is ReviewOutcome.STILL_IN_SOLUTION:
            self.review_date = add_months(now.date(), policy.review_months)
        else:
            self.solutions[-1] = self.solutions[-1].decided(SolutionState.ENDED, now)
            self.review_date = None
        self.events.append(events.SolutionReviewed(self.case_id, number, outcome, self.review_date, now))
        self._move(new_status, Action.REVIEW_SOLUTION, now)

    def record_solution_found(
        self, kind: SolutionKind, now: datetime, policy: Policy = DEFAULT_POLICY
    ) -> Solution | None:
        """The youth found a solution the PSAD did not propose: a job or an apprenticeship at the
        end of a clause sociale mission. At the solution stage or in solution it becomes the
        case's solution, confirmed (the one in progress ends); before that, or while a proposal
        waits for its provider, the case closes as reached_solution. Returns the new solution,
        None when the case closed. A kind another service provides comes by its answer instead."""
        new_status = self._target(Action.RECORD_SOLUTION_FOUND)
        kind = SolutionKind(kind)
        if kind in PROVIDED_BY:
            raise InvalidCommand(
                f"case {self.case_id}: {kind.value} is confirmed by {PROVIDED_BY[kind].value}, not found"
            )
        self._check_time(now)
        if new_status is CaseStatus.CLOSED:
            self._move(new_status, Action.RECORD_SOLUTION_FOUND, now, CloseReason.REACHED_SOLUTION)
            return None
        if self.status is CaseStatus.IN_SOLUTION:
            self.solutions[-1] = self.solutions[-1].decided(SolutionState.ENDED, now)
        solution = Solution(len(self.solutions) + 1, self.episode, kind, now).decided(
            SolutionState.CONFIRMED, now
        )
        self.solutions.append(solution)
        self.review_date = add_months(now.date(), policy.review_months)
        self.events.append(
            events.SolutionConfirmed(self.case_id, solution.number, kind, self.review_date, now)
        )
        self._move(new_status, Action.RECORD_SOLUTION_FOUND, now)
        return solution

    def close(self, reason: CloseReason, now: datetime) -> None:
        """Close with a coded reason. Found in a partner base goes through `mark_found` (it needs
        the base); MOVED here means moved with no known destination (else use `transfer`)."""
        new_status = self._target(Action.CLOSE)
        reason = CloseReason(reason)
        if reason is CloseReason.FOUND_IN_PARTNER_BASE:
            raise InvalidCommand(
                f"case {self.case_id}: close as found_in_partner_base with mark_found, which records the base"
            )
        self._check_time(now)
        self._move(new_status, Action.CLOSE, now, reason)

    def mark_found(self, base: str, now: datetime, found_at: datetime | None = None) -> None:
        """Repérage found the youth in a partner base (CFA, Agriculture, mission locale, ...),
        at `found_at` (its event's time)."""
        new_status = self._target(Action.MARK_FOUND)
        if not base or not base.strip():
            raise InvalidCommand(f"case {self.case_id}: mark_found needs the partner base")
        self._check_time(now)
        self.found_base = base
        self.note_found(found_at)
        self._move(new_status, Action.MARK_FOUND, now, CloseReason.FOUND_IN_PARTNER_BASE)

    def note_found(self, found_at: datetime | None) -> None:
        """Repérage found the youth at a partner at `found_at`; on a closed case, nothing else
        changes, but an earlier hand-over handled after it no longer reopens the case."""
        if found_at is not None:
            _require_aware(found_at, "found_at")
            self.last_found_at = found_at if self.last_found_at is None else max(self.last_found_at, found_at)

    def transfer(self, to_psad_id: str, now: datetime) -> None:
        """The youth moved: this case closes (reason MOVED); the other PSAD opens its own case."""
        new_status = self._target(Action.TRANSFER)
        if not to_psad_id or not to_psad_id.strip():
            raise InvalidCommand(f"case {self.case_id}: transfer needs the destination PSAD")
        if to_psad_id == self.psad_id:
            raise InvalidCommand(
                f"case {self.case_id}: cannot transfer to {to_psad_id}, the case is there already"
            )
        if not is_known_psad(to_psad_id):
            # a transfer to a territory nobody serves would leave the youth with no case anywhere
            raise InvalidCommand(f"case {self.case_id}: no PSAD {to_psad_id}; {KNOWN_PSADS_HINT}")
        self._check_time(now)
        self.transferred_to = to_psad_id
        self.events.append(events.CaseTransferred(self.case_id, self.youth_id, self.psad_id, to_psad_id, now))
        self._move(new_status, Action.TRANSFER, now, CloseReason.MOVED)

    def reopen(self, now: datetime, handed_over_at: datetime | None = None) -> None:
        """A new episode: contact starts again, the clocks restart, the history stays.
        A transferred case stays closed: the youth's case is now the other territory's. So does
        a case whose youth repérage found at a partner after the hand-over (`handed_over_at`, its
        event's time) that asks to reopen it: the two were handled out of order."""
        new_status = self._target(Action.REOPEN)
        if self.transferred_to is not None:
            raise TransitionRefused(
                self.case_id, self.status, Action.REOPEN, f"transferred to {self.transferred_to}"
            )
        if (
            handed_over_at is not None
            and self.last_found_at is not None
            and self.last_found_at > handed_over_at
        ):
            raise TransitionRefused(
                self.case_id,
                self.status,
                Action.REOPEN,
                f"found at a partner at {self.last_found_at.isoformat()}, after the hand-over of "
                f"{handed_over_at.isoformat()}",
            )
        self._check_time(now)
        self.episode += 1
        self.close_reason = None
        self.found_base = None
        self.review_date = None
        self.escalation_raised_on = None
        self.events.append(events.CaseReopened(self.case_id, self.episode, now))
        self._move(new_status, Action.REOPEN, now)

    # -- rules a timer applies ---------------------------------------------------------------

    def check_unreachable(self, now: datetime, policy: Policy = DEFAULT_POLICY) -> bool:
        """Not reached after `max_attempts` failed attempts over `unreachable_after_days` since the
        first: the case becomes unreachable. True when it did; never refuses (a timer calls it)."""
        first_attempt = self.first_attempt_at
        if (
            self.status is not CaseStatus.CONTACT_IN_PROGRESS
            or self.transfer_needed
            or first_attempt is None
            or self.failed_attempts < policy.max_attempts
            or now - first_attempt < timedelta(days=policy.unreachable_after_days)
        ):
            return False
        new_status = self._target(Action.MARK_UNREACHABLE)
        self._check_time(now)
        self._move(new_status, Action.MARK_UNREACHABLE, now)
        return True

    def check_escalation(self, today: date, policy: Policy = DEFAULT_POLICY) -> bool:
        """Obligation de formation: a 16- or 17-year-old still without solution `escalation_months`
        after the first contact raises EscalationRaised, once per episode. True when it did."""
        due_on = self.escalation_due_on(policy)
        if (
            due_on is None
            or today < due_on
            or self.escalation_raised_on is not None
            or self.status in (CaseStatus.IN_SOLUTION, CaseStatus.CLOSED)
            or not self.under_obligation_de_formation(today)
        ):
            return False
        self.escalation_raised_on = today
        self.events.append(
            events.EscalationRaised(
                self.case_id,
                self.youth_id,
                self.psad_id,
                self.departement,
                self.age_on(today),
                self.first_attempt_at.date(),
                today,
            )
        )
        return True

    # -- the machinery ----------------------------------------------------------------------

    def _target(self, action: Action, outcome: Outcome | None = None) -> CaseStatus:
        return target(self.case_id, self.status, action, outcome)

    def _check_time(self, now: datetime) -> None:
        _require_aware(now, "now")
        if now < self.updated_at:
            raise InvalidCommand(
                f"case {self.case_id}: {now.isoformat()} is before the case's last "
                f"change at {self.updated_at.isoformat()}"
            )

    def _check_solution_kind(self, action: Action, kind: SolutionKind | None) -> None:
        proposed = self.solutions[-1].kind
        if kind is not None and SolutionKind(kind) is not proposed:
            raise TransitionRefused(
                self.case_id,
                self.status,
                action,
                f"{proposed.value} is proposed, not {SolutionKind(kind).value}",
            )

    def _move(
        self, new_status: CaseStatus, action: Action, now: datetime, close_reason: CloseReason | None = None
    ) -> None:
        self.updated_at = now
        if new_status is self.status:
            return
        self.events.append(events.StatusChanged(self.case_id, self.status, new_status, action, now))
        self.status = new_status
        self.status_since = now
        if new_status is CaseStatus.CLOSED:
            assert close_reason is not None, f"{action} closes a case without a reason"
            self.close_reason = close_reason
            self.events.append(
                events.CaseClosed(
                    self.case_id, self.youth_id, self.psad_id, close_reason, now, self.found_base
                )
            )


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidCommand(f"{name} {moment.isoformat()} has no time zone")
