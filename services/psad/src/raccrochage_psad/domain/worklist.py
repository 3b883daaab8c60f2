"""Work lists and next actions: which list a case is on, who acts next on it, and since when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from .case import Case
from .deadlines import DEFAULT_POLICY, Policy
from .states import CaseStatus


class WorkList(StrEnum):
    TO_HANDLE = "to_handle"
    PRIORITY = "priority"
    UNREACHABLE = "unreachable"
    IN_SOLUTION = "in_solution"
    CLOSED = "closed"


class PriorityReason(StrEnum):
    MINOR_UNDER_OBLIGATION = "minor_under_obligation"  # 16-17 and not in a solution
    INTERVIEW_OVERDUE = "interview_overdue"
    INTERVIEW_DUE = "interview_due"  # due soon, no interview booked in time
    REVIEW_DUE = "review_due"


class NextStep(StrEnum):
    CONTACT_YOUTH = "contact_youth"
    TRANSFER = "transfer"
    SCHEDULE_INTERVIEW = "schedule_interview"
    HOLD_INTERVIEW = "hold_interview"
    RECORD_INTERVIEW = "record_interview"
    PROPOSE_SOLUTION = "propose_solution"
    AWAIT_PROVIDER = "await_provider"  # FOQUALE or MLDS is to confirm or refuse
    CONFIRM_SOLUTION = "confirm_solution"  # a solution outside the system: did the youth start?
    REVIEW_SOLUTION = "review_solution"
    CLOSE_OR_RETRY = "close_or_retry"  # unreachable: close, or try another channel
    NOTHING = "nothing"


class Actor(StrEnum):
    COUNSELLOR = "counsellor"
    PSY_EN = "psy_en"
    PROVIDER = "provider"
    NOBODY = "nobody"


@dataclass(frozen=True)
class NextAction:
    """Who acts next and since when. `owner` is the counsellor or interviewer id, the providing
    service's name for AWAIT_PROVIDER, or None when the case waits in the PSAD's shared queue.
    `due` is the date the step is expected by, when there is one."""

    what: NextStep
    actor: Actor
    owner: str | None
    since: datetime
    due: date | None = None


def priority_reasons(case: Case, today: date, policy: Policy = DEFAULT_POLICY) -> tuple[PriorityReason, ...]:
    if not case.is_open:
        return ()
    reasons = []
    if case.status is not CaseStatus.IN_SOLUTION and case.under_obligation_de_formation(today):
        reasons.append(PriorityReason.MINOR_UNDER_OBLIGATION)
    if case.is_overdue(today, policy):
        reasons.append(PriorityReason.INTERVIEW_OVERDUE)
    elif case.interview_due_soon(today, policy):
        reasons.append(PriorityReason.INTERVIEW_DUE)
    if case.due_for_review(today):
        reasons.append(PriorityReason.REVIEW_DUE)
    return tuple(reasons)


def worklist(case: Case, today: date, policy: Policy = DEFAULT_POLICY) -> WorkList:
    """The one list a case is on. Priority wins over unreachable and in-solution: an unreachable
    minor is the PSAD's most urgent case, and a solution past its review date must be confirmed."""
    if not case.is_open:
        return WorkList.CLOSED
    if priority_reasons(case, today, policy):
        return WorkList.PRIORITY
    if case.status is CaseStatus.UNREACHABLE:
        return WorkList.UNREACHABLE
    if case.status is CaseStatus.IN_SOLUTION:
        return WorkList.IN_SOLUTION
    return WorkList.TO_HANDLE


def next_action(case: Case, today: date, policy: Policy = DEFAULT_POLICY) -> NextAction:
    counsellor = (Actor.COUNSELLOR, case.owner)
    status = case.status
    if status is CaseStatus.CLOSED:
        return NextAction(NextStep.NOTHING, Actor.NOBODY, None, case.status_since)
    if case.transfer_needed:
        return NextAction(NextStep.TRANSFER, *counsellor, case.episode_attempts[-1].at)
    if status is CaseStatus.TO_CONTACT:
        return NextAction(NextStep.CONTACT_YOUTH, *counsellor, case.status_since)
    if status is CaseStatus.CONTACT_IN_PROGRESS:
        return NextAction(NextStep.CONTACT_YOUTH, *counsellor, case.episode_attempts[-1].at)
    if status is CaseStatus.UNREACHABLE:
        return NextAction(NextStep.CLOSE_OR_RETRY, *counsellor, case.status_since)
    if status is CaseStatus.REACHED:
        return NextAction(
            NextStep.SCHEDULE_INTERVIEW,
            *counsellor,
            case.status_since,
            case.interview_deadline(policy) if case.interview_held_at is None else None,
        )
    if status is CaseStatus.INTERVIEW_SCHEDULED:
        interview = case.pending_interview
        actor = Actor(interview.with_role.value)
        owner = interview.interviewer_id or case.owner
        if today <= interview.scheduled_for.date():
            return NextAction(
                NextStep.HOLD_INTERVIEW, actor, owner, interview.scheduled_at, interview.scheduled_for.date()
            )
        return NextAction(NextStep.RECORD_INTERVIEW, actor, owner, interview.scheduled_for)
    if status is CaseStatus.INTERVIEW_HELD:
        return NextAction(NextStep.PROPOSE_SOLUTION, *counsellor, case.status_since)
    if status is CaseStatus.SOLUTION_PROPOSED:
        solution = case.current_solution
        if solution.provider is not None:
            return NextAction(
                NextStep.AWAIT_PROVIDER, Actor.PROVIDER, solution.provider.value, solution.proposed_at
            )
        return NextAction(NextStep.CONFIRM_SOLUTION, *counsellor, solution.proposed_at)
    # IN_SOLUTION: the review is the next step; it has been waiting since the review date.
    review = case.review_date
    if review is not None and today >= review:
        since = datetime.combine(review, datetime.min.time(), tzinfo=case.status_since.tzinfo)
        return NextAction(NextStep.REVIEW_SOLUTION, *counsellor, max(since, case.status_since), review)
    return NextAction(NextStep.REVIEW_SOLUTION, *counsellor, case.status_since, review)
