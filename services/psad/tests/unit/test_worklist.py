"""Work lists and next actions: which list a case is on, who acts next, and since when."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from raccrochage_psad.domain.case import Case
from raccrochage_psad.domain.contact import Channel, ContactOutcome
from raccrochage_psad.domain.deadlines import Policy
from raccrochage_psad.domain.interview import InterviewerRole, InterviewOutcome
from raccrochage_psad.domain.solution import SolutionKind
from raccrochage_psad.domain.states import CaseStatus, CloseReason
from raccrochage_psad.domain.worklist import (
    Actor,
    NextAction,
    NextStep,
    PriorityReason,
    WorkList,
    next_action,
    priority_reasons,
    worklist,
)

S = CaseStatus
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def days(n: float) -> datetime:
    return T0 + timedelta(days=n)


def case_in(status: CaseStatus, age: int = 19, kind: SolutionKind = SolutionKind.FOQUALE_SEAT) -> Case:
    """A case brought to `status`: reached on day 0, interview booked on day 1 for day 5 and held,
    solution proposed on day 6 and confirmed on day 7; failed calls on days 0, 7, 14."""
    case = Case.open("42", "youth-1", "psad-33", "33", age, T0)
    if status is S.TO_CONTACT:
        return case
    if status is S.CLOSED:
        case.close(CloseReason.EXEMPT, days(1))
        return case
    if status in (S.CONTACT_IN_PROGRESS, S.UNREACHABLE):
        for day in (0, 7, 14):
            case.record_contact_attempt(Channel.PHONE, ContactOutcome.NO_ANSWER, days(day))
        if status is S.UNREACHABLE:
            case.check_unreachable(days(21))
        return case
    case.record_contact_attempt(Channel.PHONE, ContactOutcome.REACHED, T0)
    steps = [
        lambda: case.schedule_interview(days(5), InterviewerRole.PSY_EN, days(1), "psy-7"),
        lambda: case.record_interview(InterviewOutcome.SEEN, days(5)),
        lambda: case.propose_solution(kind, days(6)),
        lambda: case.confirm_solution(days(7)),
    ]
    while case.status is not status:
        steps.pop(0)()
    return case


QUIET_DAY = date(2026, 11, 4)  # two days in: no deadline near


# An adult (19) with no deadline near: the list follows the status.
@pytest.mark.parametrize(
    ("status", "today", "expected"),
    [
        (S.TO_CONTACT, QUIET_DAY, WorkList.TO_HANDLE),
        (S.CONTACT_IN_PROGRESS, date(2026, 11, 16), WorkList.TO_HANDLE),
        (S.UNREACHABLE, date(2026, 11, 23), WorkList.UNREACHABLE),
        (S.REACHED, QUIET_DAY, WorkList.TO_HANDLE),
        (S.INTERVIEW_SCHEDULED, QUIET_DAY, WorkList.TO_HANDLE),
        (S.INTERVIEW_HELD, date(2026, 11, 30), WorkList.TO_HANDLE),
        (S.SOLUTION_PROPOSED, date(2026, 11, 30), WorkList.TO_HANDLE),
        (S.IN_SOLUTION, date(2026, 11, 30), WorkList.IN_SOLUTION),
        (S.CLOSED, QUIET_DAY, WorkList.CLOSED),
    ],
)
def test_an_adults_list_follows_the_status(status, today, expected):
    case = case_in(status)
    assert worklist(case, today) is expected
    assert priority_reasons(case, today) == ()


@pytest.mark.parametrize("status", [s for s in CaseStatus if s not in (S.IN_SOLUTION, S.CLOSED)])
@pytest.mark.parametrize("age", [16, 17])
def test_a_minor_without_solution_is_priority(status, age):
    case = case_in(status, age)
    assert worklist(case, date(2026, 11, 30)) is WorkList.PRIORITY
    assert PriorityReason.MINOR_UNDER_OBLIGATION in priority_reasons(case, date(2026, 11, 30))


def test_a_minor_in_solution_is_in_solution_and_a_closed_minor_closed():
    assert worklist(case_in(S.IN_SOLUTION, 17), date(2026, 11, 30)) is WorkList.IN_SOLUTION
    assert worklist(case_in(S.CLOSED, 17), date(2026, 11, 30)) is WorkList.CLOSED


@pytest.mark.parametrize(
    ("today", "reasons"),
    [
        (date(2026, 11, 13), ()),
        (date(2026, 11, 14), (PriorityReason.INTERVIEW_DUE,)),  # 3 days before the deadline
        (date(2026, 11, 17), (PriorityReason.INTERVIEW_DUE,)),  # the deadline itself
        (date(2026, 11, 18), (PriorityReason.INTERVIEW_OVERDUE,)),
    ],
)
def test_an_interview_deadline_due_or_overdue_is_priority(today, reasons):
    case = case_in(S.REACHED)
    assert priority_reasons(case, today) == reasons
    assert worklist(case, today) is (WorkList.PRIORITY if reasons else WorkList.TO_HANDLE)


def test_due_soon_follows_the_policy():
    case = case_in(S.REACHED)
    assert priority_reasons(case, date(2026, 11, 10), Policy(due_soon_days=7)) == (
        PriorityReason.INTERVIEW_DUE,
    )


def test_a_solution_past_its_review_date_is_priority():
    case = case_in(S.IN_SOLUTION)  # confirmed on 9 Nov 2026: review on 9 Feb 2027
    assert case.review_date == date(2027, 2, 9)
    assert worklist(case, date(2027, 2, 8)) is WorkList.IN_SOLUTION
    assert priority_reasons(case, date(2027, 2, 9)) == (PriorityReason.REVIEW_DUE,)


def test_next_action_for_each_status():
    def na(status, today=QUIET_DAY, **kw):
        return next_action(case_in(status, **kw), today)

    assert na(S.TO_CONTACT) == NextAction(NextStep.CONTACT_YOUTH, Actor.COUNSELLOR, None, T0)
    assert na(S.CONTACT_IN_PROGRESS, date(2026, 11, 16)) == NextAction(
        NextStep.CONTACT_YOUTH, Actor.COUNSELLOR, None, days(14)
    )
    assert na(S.UNREACHABLE, date(2026, 11, 23)) == NextAction(
        NextStep.CLOSE_OR_RETRY, Actor.COUNSELLOR, None, days(21)
    )
    assert na(S.REACHED) == NextAction(
        NextStep.SCHEDULE_INTERVIEW, Actor.COUNSELLOR, None, T0, date(2026, 11, 17)
    )
    assert na(S.INTERVIEW_SCHEDULED) == NextAction(
        NextStep.HOLD_INTERVIEW, Actor.PSY_EN, "psy-7", days(1), date(2026, 11, 7)
    )
    assert na(S.INTERVIEW_SCHEDULED, date(2026, 11, 8)) == NextAction(
        NextStep.RECORD_INTERVIEW, Actor.PSY_EN, "psy-7", days(5)
    )
    assert na(S.INTERVIEW_HELD, date(2026, 11, 8)) == NextAction(
        NextStep.PROPOSE_SOLUTION, Actor.COUNSELLOR, None, days(5)
    )
    assert na(S.SOLUTION_PROPOSED, date(2026, 11, 8)) == NextAction(
        NextStep.AWAIT_PROVIDER, Actor.PROVIDER, "foquale", days(6)
    )
    assert na(S.SOLUTION_PROPOSED, date(2026, 11, 8), kind=SolutionKind.MLDS_DIPA).owner == "mlds"
    assert na(S.SOLUTION_PROPOSED, date(2026, 11, 8), kind=SolutionKind.JOB) == NextAction(
        NextStep.CONFIRM_SOLUTION, Actor.COUNSELLOR, None, days(6)
    )
    assert na(S.IN_SOLUTION, date(2026, 12, 1)) == NextAction(
        NextStep.REVIEW_SOLUTION, Actor.COUNSELLOR, None, days(7), date(2027, 2, 9)
    )
    assert na(S.IN_SOLUTION, date(2027, 3, 1)) == NextAction(
        NextStep.REVIEW_SOLUTION, Actor.COUNSELLOR, None, datetime(2027, 2, 9, tzinfo=UTC), date(2027, 2, 9)
    )
    assert na(S.CLOSED) == NextAction(NextStep.NOTHING, Actor.NOBODY, None, days(1))


def test_the_owner_is_the_assigned_counsellor_and_a_counsellor_interview_is_theirs():
    case = Case.open("42", "youth-1", "psad-33", "33", 19, T0)
    case.assign("c-9", days(1))
    assert next_action(case, QUIET_DAY).owner == "c-9"
    case.record_contact_attempt(Channel.PHONE, ContactOutcome.REACHED, days(1))
    case.schedule_interview(days(4), InterviewerRole.COUNSELLOR, days(1))
    action = next_action(case, QUIET_DAY)
    assert (action.what, action.actor, action.owner) == (NextStep.HOLD_INTERVIEW, Actor.COUNSELLOR, "c-9")


def test_a_move_makes_the_transfer_the_next_action():
    case = Case.open("42", "youth-1", "psad-33", "33", 19, T0)
    case.record_contact_attempt(Channel.LETTER, ContactOutcome.MOVED, days(2))
    assert next_action(case, QUIET_DAY) == NextAction(NextStep.TRANSFER, Actor.COUNSELLOR, None, days(2))
