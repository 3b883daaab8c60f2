"""A PSAD case's rules: contact outcomes, unreachable after reminders, deadlines, escalation, solutions."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest
from raccrochage_psad.domain import events
from raccrochage_psad.domain.case import Case
from raccrochage_psad.domain.contact import Channel, ContactOutcome
from raccrochage_psad.domain.deadlines import Policy, add_months, age_on
from raccrochage_psad.domain.interview import InterviewerRole, InterviewOutcome
from raccrochage_psad.domain.solution import Provider, SolutionKind, SolutionState
from raccrochage_psad.domain.states import (
    CaseStatus,
    CloseReason,
    InvalidCommand,
    ReviewOutcome,
    TransitionRefused,
)

S = CaseStatus
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday
D0 = T0.date()


def days(n: float) -> datetime:
    return T0 + timedelta(days=n)


def new_case(age: int = 17) -> Case:
    return Case.open(
        "42",
        "youth-1",
        "psad-33-bordeaux-nord",
        "33",
        age,
        T0,
        zap="bordeaux-nord",
        level="2nde GT",
        last_diploma="DNB",
        months_since_leaving=5,
    )


def reached_case(age: int = 17, on: float = 0) -> Case:
    case = new_case(age)
    case.record_contact_attempt(Channel.PHONE, ContactOutcome.REACHED, days(on), "c-1")
    return case


def interviewed_case(age: int = 17) -> Case:
    case = reached_case(age)
    case.schedule_interview(days(7), InterviewerRole.PSY_EN, days(1), "psy-7")
    case.record_interview(InterviewOutcome.SEEN, days(7))
    return case


def fail(case: Case, *offsets: float, outcome: ContactOutcome = ContactOutcome.NO_ANSWER) -> None:
    for offset in offsets:
        case.record_contact_attempt(Channel.PHONE, outcome, days(offset))


def of_type(case: Case, kind: type) -> list:
    return [e for e in case.events if isinstance(e, kind)]


# -- opening ---------------------------------------------------------------------------------


def test_open_records_case_opened_and_starts_to_contact():
    case = new_case()
    assert case.events == [events.CaseOpened("42", "youth-1", "psad-33-bordeaux-nord", "33", 17, T0)]
    assert (case.status, case.status_since, case.owner, case.episode) == (S.TO_CONTACT, T0, None, 1)
    assert case.is_open and case.is_minor and not new_case(18).is_minor


def test_a_stored_case_loaded_by_its_constructor_records_nothing():
    case = Case("42", "youth-1", "psad-33", "33", 19, T0, status=S.REACHED, status_since=days(3))
    assert case.events == [] and case.updated_at == days(3)


@pytest.mark.parametrize(("age", "at"), [(-1, T0), (17, datetime(2026, 11, 2, 9, 0))])
def test_open_refuses_a_negative_age_or_a_time_without_zone(age, at):
    with pytest.raises(InvalidCommand):
        Case.open("42", "youth-1", "psad-33", "33", age, at)


# -- contact outcomes ------------------------------------------------------------------------


def test_reached_starts_the_interview_clock():
    case = new_case()
    fail(case, 0, 1)
    assert case.status is S.CONTACT_IN_PROGRESS and case.first_contact_at is None
    attempt = case.record_contact_attempt(Channel.SMS, ContactOutcome.REACHED, days(2), "c-1")
    assert case.status is S.REACHED and case.first_contact_at == days(2)
    assert (attempt.number, attempt.by) == (3, "c-1")
    assert of_type(case, events.ContactRecorded)[-1] == events.ContactRecorded(
        "42", 3, Channel.SMS, ContactOutcome.REACHED, days(2)
    )


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        (ContactOutcome.REFUSED, CloseReason.REFUSES_SUPPORT),
        (ContactOutcome.ALREADY_SUPPORTED, CloseReason.ALREADY_SUPPORTED),
        (ContactOutcome.NEW_CONTRACT_OR_TRAINING, CloseReason.REACHED_SOLUTION),
    ],
)
@pytest.mark.parametrize("make", [new_case, reached_case, interviewed_case])
def test_closing_outcomes_close_with_their_reason_at_any_open_stage(make, outcome, reason):
    case = make()
    case.record_contact_attempt(Channel.PHONE, outcome, days(9))
    assert (case.status, case.close_reason) == (S.CLOSED, reason)
    assert of_type(case, events.CaseClosed) == [
        events.CaseClosed("42", "youth-1", "psad-33-bordeaux-nord", reason, days(9))
    ]


def test_wrong_details_is_a_failed_attempt_that_leaves_other_channels_open():
    case = new_case()
    fail(case, 0, outcome=ContactOutcome.WRONG_DETAILS)
    assert case.status is S.CONTACT_IN_PROGRESS and case.failed_attempts == 1
    case.record_contact_attempt(Channel.EMAIL, ContactOutcome.REACHED, days(1))
    assert case.status is S.REACHED


def test_follow_up_attempts_after_contact_leave_the_status_alone():
    case = reached_case()
    case.schedule_interview(days(5), InterviewerRole.COUNSELLOR, days(1))
    case.events.clear()
    for outcome in (ContactOutcome.NO_ANSWER, ContactOutcome.REACHED, ContactOutcome.OTHER):
        case.record_contact_attempt(Channel.SMS, outcome, days(2))
    assert case.status is S.INTERVIEW_SCHEDULED and of_type(case, events.StatusChanged) == []
    assert case.first_contact_at == T0


def test_moved_waits_for_a_transfer_which_closes_the_case_here():
    case = new_case()
    fail(case, 0, outcome=ContactOutcome.MOVED)
    assert case.status is S.CONTACT_IN_PROGRESS and case.transfer_needed
    case.transfer("psad-40", days(1))
    assert (case.status, case.close_reason, case.transferred_to) == (S.CLOSED, CloseReason.MOVED, "psad-40")
    assert of_type(case, events.CaseTransferred) == [
        events.CaseTransferred("42", "youth-1", "psad-33-bordeaux-nord", "psad-40", days(1))
    ]
    assert not case.transfer_needed


@pytest.mark.parametrize("nowhere", ["psad-75-nowhere", "psad-0", "psad-33-atlantis", "psad-00"])
def test_a_transfer_to_a_psad_nobody_runs_is_refused_naming_the_known_ones(nowhere: str):
    case = new_case()
    with pytest.raises(InvalidCommand, match=f"no PSAD {nowhere}; the known PSADs are .*psad-40-dax"):
        case.transfer(nowhere, days(1))
    assert case.status is S.TO_CONTACT and not case.events[1:]


def test_a_transfer_outside_the_academie_goes_to_the_departements_psad():
    case = new_case()
    case.transfer("psad-31", days(1))
    assert case.transferred_to == "psad-31"


def test_a_later_attempt_clears_the_move():
    case = new_case()
    fail(case, 0, outcome=ContactOutcome.MOVED)
    case.record_contact_attempt(Channel.PHONE, ContactOutcome.REACHED, days(1))
    assert not case.transfer_needed and case.status is S.REACHED


# -- unreachable after reminders -------------------------------------------------------------


@pytest.mark.parametrize(
    ("offsets", "now", "unreachable"),
    [
        ((0, 7, 14), 21, True),  # 3 attempts, 21 days since the first
        ((0, 7, 14), 20.99, False),  # not yet 21 days
        ((0, 20), 40, False),  # only 2 attempts
        ((0, 1, 2), 21, True),  # attempts close together, but the time has passed
        ((0, 1, 2, 3, 4, 5), 10, False),  # many attempts, too soon
    ],
)
def test_unreachable_needs_both_the_attempts_and_the_time(offsets, now, unreachable):
    case = new_case()
    fail(case, *offsets)
    assert case.check_unreachable(days(now)) is unreachable
    assert case.status is (S.UNREACHABLE if unreachable else S.CONTACT_IN_PROGRESS)
    if unreachable:
        assert case.events[-1] == events.StatusChanged(
            "42", S.CONTACT_IN_PROGRESS, S.UNREACHABLE, "mark_unreachable", days(now)
        )


def test_unreachable_rule_follows_the_policy():
    case = new_case()
    fail(case, 0)
    assert not case.check_unreachable(days(2))
    assert case.check_unreachable(days(2), Policy(max_attempts=1, unreachable_after_days=2))


def test_wrong_details_and_other_count_moved_does_not():
    case = new_case()
    fail(case, 0, outcome=ContactOutcome.WRONG_DETAILS)
    fail(case, 1, outcome=ContactOutcome.OTHER)
    fail(case, 2)
    assert case.failed_attempts == 3
    fail(case, 3, outcome=ContactOutcome.MOVED)
    assert not case.check_unreachable(days(30))  # moved: to transfer, not unreachable


@pytest.mark.parametrize("make", [new_case, reached_case, interviewed_case])
def test_the_timer_never_refuses_and_touches_only_contact_in_progress(make):
    case = make()
    before = (case.status, len(case.events))
    assert not case.check_unreachable(days(100), Policy(max_attempts=1, unreachable_after_days=1))
    assert (case.status, len(case.events)) == before


def test_an_unreachable_youth_can_still_answer_or_be_closed():
    case = new_case()
    fail(case, 0, 7, 14)
    case.check_unreachable(days(21))
    fail(case, 22)
    assert case.status is S.UNREACHABLE and not case.check_unreachable(days(23))
    case.record_contact_attempt(Channel.HOME_VISIT, ContactOutcome.REACHED, days(25))
    assert case.status is S.REACHED and case.first_contact_at == days(25)


def test_a_reopened_case_counts_attempts_afresh():
    case = new_case()
    fail(case, 0, 7, 14)
    case.close(CloseReason.WRONG_CONTACT_DETAILS, days(15))
    case.reopen(days(40))
    fail(case, 41)
    assert case.failed_attempts == 1 and case.first_attempt_at == days(41)
    assert not case.check_unreachable(days(80))


# -- droit au retour en formation: the interview within 15 days of the first contact -----------


def test_interview_deadline_is_15_days_after_the_first_successful_contact():
    assert new_case().interview_deadline() is None
    case = new_case()
    fail(case, 0)
    case.record_contact_attempt(Channel.PHONE, ContactOutcome.REACHED, days(3))
    assert case.interview_deadline() == date(2026, 11, 20)
    assert case.interview_deadline(Policy(interview_deadline_days=10)) == date(2026, 11, 15)


def test_overdue_the_day_after_the_deadline_unless_the_interview_took_place():
    case = reached_case()
    assert not case.is_overdue(date(2026, 11, 17)) and case.is_overdue(date(2026, 11, 18))
    case.schedule_interview(days(10), InterviewerRole.PSY_EN, days(1))
    case.record_interview(InterviewOutcome.SEEN, days(10))
    assert case.interview_held_at == days(10) and not case.is_overdue(date(2027, 6, 1))


def test_a_missed_interview_does_not_stop_the_clock():
    case = reached_case()
    case.schedule_interview(days(5), InterviewerRole.PSY_EN, days(1))
    case.record_interview(InterviewOutcome.NO_SHOW, days(5))
    assert case.status is S.REACHED and case.is_overdue(date(2026, 11, 18))
    case.close(CloseReason.REFUSES_SUPPORT, days(20))
    assert not case.is_overdue(date(2026, 11, 30))


def test_due_soon_means_three_days_or_less_and_nothing_booked_in_time():
    case = reached_case()
    assert not case.interview_due_soon(date(2026, 11, 13))
    assert case.interview_due_soon(date(2026, 11, 14)) and case.interview_due_soon(date(2026, 11, 17))
    assert not case.interview_due_soon(date(2026, 11, 18))  # overdue, not due
    case.schedule_interview(days(14), InterviewerRole.PSY_EN, days(1))  # 16 Nov, in time
    assert not case.interview_due_soon(date(2026, 11, 15))
    late = reached_case()
    late.schedule_interview(days(20), InterviewerRole.PSY_EN, days(1))  # 22 Nov, too late
    assert late.interview_due_soon(date(2026, 11, 15))


# -- solutions and the review date ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "provider"),
    [
        (SolutionKind.FOQUALE_SEAT, Provider.FOQUALE),
        (SolutionKind.MLDS_PAPS, Provider.MLDS),
        (SolutionKind.MLDS_DIPA, Provider.MLDS),
        (SolutionKind.MLDS_MICRO_LYCEE, Provider.MLDS),
        (SolutionKind.CLAUSE_SOCIALE_VIA_MLDS, Provider.MLDS),
    ],
)
def test_a_solution_another_service_provides_is_requested_from_it_without_identity(kind, provider):
    case = interviewed_case()
    case.propose_solution(kind, days(8), ("CAP cuisine", "Bordeaux"))
    assert of_type(case, events.SolutionRequested) == [
        events.SolutionRequested(
            "42",
            "youth-1",
            1,
            kind,
            provider,
            17,
            "2nde GT",
            "DNB",
            5,
            "psad-33-bordeaux-nord",
            "33",
            "bordeaux-nord",
            ("CAP cuisine", "Bordeaux"),
            days(8),
        )
    ]
    names = {f.name for f in dataclasses.fields(events.SolutionRequested)}
    assert not names & {
        "nom",
        "prenom",
        "name",
        "first_name",
        "phone",
        "email",
        "address",
        "ine",
        "birth_date",
    }


@pytest.mark.parametrize(
    "kind", [SolutionKind.APPRENTICESHIP, SolutionKind.JOB, SolutionKind.SERVICE_CIVIQUE, SolutionKind.OTHER]
)
def test_a_solution_outside_the_system_is_proposed_but_requested_from_nobody(kind):
    case = interviewed_case()
    solution = case.propose_solution(kind, days(8))
    assert solution.provider is None and of_type(case, events.SolutionRequested) == []
    assert of_type(case, events.SolutionProposed) == [events.SolutionProposed("42", 1, kind, days(8))]


def test_the_requested_age_counts_the_years_since_opening():
    case = Case.open("42", "youth-1", "psad-33", "33", 17, T0)
    case.record_contact_attempt(Channel.PHONE, ContactOutcome.REACHED, T0)
    case.schedule_interview(days(400), InterviewerRole.PSY_EN, days(1))
    case.record_interview(InterviewOutcome.SEEN, days(400))
    case.propose_solution(SolutionKind.MLDS_MICRO_LYCEE, days(400))
    assert of_type(case, events.SolutionRequested)[0].age == 18


def test_confirmation_sets_the_review_date_and_review_brings_the_case_back():
    case = interviewed_case()
    case.propose_solution(SolutionKind.FOQUALE_SEAT, days(8))
    case.confirm_solution(datetime(2026, 11, 30, 15, tzinfo=UTC), kind=SolutionKind.FOQUALE_SEAT)
    assert case.status is S.IN_SOLUTION and case.review_date == date(2027, 2, 28)
    assert case.current_solution.state is SolutionState.CONFIRMED
    assert not case.due_for_review(date(2027, 2, 27)) and case.due_for_review(date(2027, 2, 28))
    case.review_solution(
        ReviewOutcome.STILL_IN_SOLUTION, datetime(2027, 3, 1, tzinfo=UTC), Policy(review_months=6)
    )
    assert case.status is S.IN_SOLUTION and case.review_date == date(2027, 9, 1)
    case.review_solution(ReviewOutcome.SOLUTION_ENDED, datetime(2027, 9, 2, tzinfo=UTC))
    assert (case.status, case.review_date) == (S.INTERVIEW_HELD, None)
    assert case.solutions[-1].state is SolutionState.ENDED and case.current_solution is None


def test_a_refusal_goes_back_to_the_solution_stage_for_another_proposal():
    case = interviewed_case()
    case.propose_solution(SolutionKind.FOQUALE_SEAT, days(8))
    refused = case.refuse_solution("no_seat", days(9), kind=SolutionKind.FOQUALE_SEAT)
    assert case.status is S.INTERVIEW_HELD
    assert (refused.state, refused.refusal_reason) == (SolutionState.REFUSED, "no_seat")
    second = case.propose_solution(SolutionKind.MLDS_PAPS, days(10))
    assert second.number == 2 and case.current_solution is second


# -- obligation de formation: escalation two months after the first contact --------------------


@pytest.mark.parametrize(("age", "raised"), [(15, False), (16, True), (17, True), (18, False), (24, False)])
def test_escalation_is_for_16_and_17_year_olds(age, raised):
    case = new_case(age)
    fail(case, 0)
    assert case.check_escalation(date(2027, 1, 2)) is raised


def test_escalation_two_months_after_the_first_attempt_once():
    case = new_case(16)
    assert not case.check_escalation(date(2027, 6, 1))  # never tried: no clock yet
    fail(case, 0)
    case.record_contact_attempt(Channel.PHONE, ContactOutcome.REACHED, days(10))
    assert case.escalation_due_on() == date(2027, 1, 2)
    assert not case.check_escalation(date(2027, 1, 1))
    assert case.check_escalation(date(2027, 1, 2))
    assert not case.check_escalation(date(2027, 1, 3))
    assert of_type(case, events.EscalationRaised) == [
        events.EscalationRaised("42", "youth-1", "psad-33-bordeaux-nord", "33", 16, D0, date(2027, 1, 2))
    ]
    assert case.escalation_raised_on == date(2027, 1, 2)


def test_escalation_follows_the_policy():
    case = new_case(17)
    fail(case, 0)
    assert not case.check_escalation(date(2027, 1, 2), Policy(escalation_months=3))
    assert case.check_escalation(date(2027, 2, 2), Policy(escalation_months=3))


def test_no_escalation_in_a_solution_or_closed_but_a_proposal_is_no_solution():
    proposed = interviewed_case(17)
    proposed.propose_solution(SolutionKind.FOQUALE_SEAT, days(8))
    assert proposed.check_escalation(date(2027, 1, 2))
    placed = interviewed_case(17)
    placed.propose_solution(SolutionKind.FOQUALE_SEAT, days(8))
    placed.confirm_solution(days(9))
    assert not placed.check_escalation(date(2027, 1, 2))
    closed = reached_case(17)
    closed.close(CloseReason.EXEMPT, days(1))
    assert not closed.check_escalation(date(2027, 1, 2))


def test_no_escalation_once_the_youth_has_come_of_age():
    case = new_case(17)
    fail(case, 300)  # late August 2027
    assert case.age_on(date(2027, 11, 1)) == 17 and case.age_on(date(2027, 11, 2)) == 18
    assert not case.check_escalation(date(2027, 11, 2))


def test_a_new_episode_may_escalate_again():
    case = new_case(16)
    fail(case, 0)
    assert case.check_escalation(date(2027, 1, 2))
    case.close(CloseReason.REFUSES_SUPPORT, days(70))
    case.reopen(days(80))
    fail(case, 80)
    assert case.escalation_raised_on is None
    assert case.check_escalation(add_months((days(80)).date(), 2))
    assert len(of_type(case, events.EscalationRaised)) == 2


# -- closing, finding, reopening, assigning -----------------------------------------------------


def test_mark_found_closes_with_the_partner_base():
    case = reached_case()
    case.mark_found("cfa", days(2))
    assert (case.status, case.close_reason, case.found_base) == (
        S.CLOSED,
        CloseReason.FOUND_IN_PARTNER_BASE,
        "cfa",
    )
    assert of_type(case, events.CaseClosed)[0].found_base == "cfa"


def test_reopen_starts_a_new_episode_and_keeps_the_history():
    case = reached_case()
    case.mark_found("cfa", days(2))
    case.reopen(days(30))
    assert (case.status, case.episode, case.close_reason, case.found_base) == (S.TO_CONTACT, 2, None, None)
    assert len(case.attempts) == 1 and case.first_contact_at is None and case.interview_deadline() is None
    assert of_type(case, events.CaseReopened) == [events.CaseReopened("42", 2, days(30))]


def test_moved_with_no_known_destination_can_be_closed_and_reopened():
    case = new_case()
    case.close(CloseReason.MOVED, days(1))
    assert case.transferred_to is None
    case.reopen(days(2))
    assert case.status is S.TO_CONTACT


def test_assign_sets_the_owner_on_an_open_case_only():
    case = new_case()
    case.assign("c-9", days(1))
    assert case.owner == "c-9" and case.events[-1] == events.OwnerAssigned("42", "c-9", days(1))
    case.close(CloseReason.OUT_OF_AGE, days(2))
    with pytest.raises(TransitionRefused, match="case 42 is closed: cannot assign"):
        case.assign("c-1", days(3))


# -- calendar ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2026, 11, 2), 2, date(2027, 1, 2)),
        (date(2027, 1, 31), 1, date(2027, 2, 28)),
        (date(2028, 1, 31), 1, date(2028, 2, 29)),
        (date(2026, 11, 30), 3, date(2027, 2, 28)),
        (date(2027, 3, 31), -1, date(2027, 2, 28)),
        (date(2026, 12, 15), 12, date(2027, 12, 15)),
    ],
)
def test_add_months(day, months, expected):
    assert add_months(day, months) == expected


def test_age_on_adds_whole_years_since_opening():
    assert age_on(17, D0, date(2027, 11, 1)) == 17
    assert age_on(17, D0, date(2027, 11, 2)) == 18
    assert age_on(17, D0, date(2026, 1, 1)) == 17  # a day before opening: never younger


@pytest.mark.parametrize(
    "field",
    [
        "max_attempts",
        "unreachable_after_days",
        "interview_deadline_days",
        "review_months",
        "escalation_months",
    ],
)
def test_policy_refuses_a_clock_under_one(field):
    with pytest.raises(ValueError, match=field):
        Policy(**{field: 0})
    with pytest.raises(ValueError, match="due_soon_days"):
        Policy(due_soon_days=-1)
