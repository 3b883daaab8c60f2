"""The PSAD case state machine: every allowed and every refused transition, and a case's random life."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from raccrochage_psad.domain import events
from raccrochage_psad.domain.case import Case
from raccrochage_psad.domain.contact import Channel, ContactOutcome
from raccrochage_psad.domain.deadlines import Policy, add_months
from raccrochage_psad.domain.interview import InterviewerRole, InterviewOutcome
from raccrochage_psad.domain.solution import SolutionKind, SolutionState
from raccrochage_psad.domain.states import (
    ALLOWED,
    TRANSITIONS,
    Action,
    CaseError,
    CaseStatus,
    CloseReason,
    InvalidCommand,
    ReviewOutcome,
    TransitionRefused,
    target,
)
from raccrochage_psad.domain.worklist import WorkList, next_action, worklist

S = CaseStatus
A = Action
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

ALWAYS_ON_OPEN = {
    A.RECORD_CONTACT_ATTEMPT,
    A.CLOSE,
    A.TRANSFER,
    A.MARK_FOUND,
    A.ASSIGN,
    A.RECORD_SOLUTION_FOUND,
}

# The spec, written out by hand: which actions each status allows. Everything else is refused.
EXPECTED_ALLOWED: dict[CaseStatus, set[Action]] = {
    S.TO_CONTACT: ALWAYS_ON_OPEN,
    S.CONTACT_IN_PROGRESS: ALWAYS_ON_OPEN | {A.MARK_UNREACHABLE},
    S.UNREACHABLE: ALWAYS_ON_OPEN,
    S.REACHED: ALWAYS_ON_OPEN | {A.SCHEDULE_INTERVIEW},
    S.INTERVIEW_SCHEDULED: ALWAYS_ON_OPEN | {A.RECORD_INTERVIEW},
    S.INTERVIEW_HELD: ALWAYS_ON_OPEN | {A.PROPOSE_SOLUTION},
    S.SOLUTION_PROPOSED: ALWAYS_ON_OPEN | {A.CONFIRM_SOLUTION, A.REFUSE_SOLUTION},
    S.IN_SOLUTION: ALWAYS_ON_OPEN | {A.REVIEW_SOLUTION},
    S.CLOSED: {A.REOPEN},
}


def walk_to(status: CaseStatus) -> Case:
    """A case brought to `status` through public commands only, one day per step from T0."""
    case = Case.open("42", "youth-1", "psad-33", "33", 17, T0)
    day = iter(range(1, 100))

    def at() -> datetime:
        return T0 + timedelta(days=next(day))

    if status is S.CLOSED:
        case.close(CloseReason.EXEMPT, at())
        return case
    if status is S.TO_CONTACT:
        return case
    if status in (S.CONTACT_IN_PROGRESS, S.UNREACHABLE):
        for offset in (1, 10, 22):
            case.record_contact_attempt(Channel.PHONE, ContactOutcome.NO_ANSWER, T0 + timedelta(days=offset))
        if status is S.UNREACHABLE:
            assert case.check_unreachable(T0 + timedelta(days=23), Policy())
        assert case.status is status
        return case
    case.record_contact_attempt(Channel.PHONE, ContactOutcome.REACHED, at())
    steps: list[Callable[[], object]] = [
        lambda: case.schedule_interview(at() + timedelta(days=3), InterviewerRole.PSY_EN, at(), "psy-7"),
        lambda: case.record_interview(InterviewOutcome.SEEN, at()),
        lambda: case.propose_solution(SolutionKind.FOQUALE_SEAT, at(), ("CAP cuisine",)),
        lambda: case.confirm_solution(at()),
    ]
    while case.status is not status:
        steps.pop(0)()
    return case


LATER = T0 + timedelta(days=200)

# One call per (action, outcome): what a user or a partner service would send.
CALLS: list[tuple[Action, object, Callable[[Case, datetime], object]]] = [
    *[
        (A.RECORD_CONTACT_ATTEMPT, o, lambda c, t, o=o: c.record_contact_attempt(Channel.SMS, o, t))
        for o in ContactOutcome
    ],
    (
        A.SCHEDULE_INTERVIEW,
        None,
        lambda c, t: c.schedule_interview(t + timedelta(days=2), InterviewerRole.COUNSELLOR, t),
    ),
    *[(A.RECORD_INTERVIEW, o, lambda c, t, o=o: c.record_interview(o, t)) for o in InterviewOutcome],
    (A.PROPOSE_SOLUTION, None, lambda c, t: c.propose_solution(SolutionKind.MLDS_PAPS, t)),
    (A.CONFIRM_SOLUTION, None, lambda c, t: c.confirm_solution(t)),
    (A.REFUSE_SOLUTION, None, lambda c, t: c.refuse_solution("no_seat", t)),
    *[(A.REVIEW_SOLUTION, o, lambda c, t, o=o: c.review_solution(o, t)) for o in ReviewOutcome],
    (A.CLOSE, None, lambda c, t: c.close(CloseReason.OUT_OF_AGE, t)),
    (A.REOPEN, None, lambda c, t: c.reopen(t)),
    (A.TRANSFER, None, lambda c, t: c.transfer("psad-40", t)),
    (A.MARK_FOUND, None, lambda c, t: c.mark_found("cfa", t)),
    (A.ASSIGN, None, lambda c, t: c.assign("counsellor-9", t)),
    (A.RECORD_SOLUTION_FOUND, None, lambda c, t: c.record_solution_found(SolutionKind.APPRENTICESHIP, t)),
]

PAIRS = [(status, action, outcome, call) for status in CaseStatus for action, outcome, call in CALLS]


def _id(pair) -> str:
    status, action, outcome, _ = pair
    return f"{status.value}-{action.value}" + (f"-{outcome.value}" if outcome else "")


def snapshot(case: Case) -> dict:
    """Every field of the case; a shallow copy of its lists is enough, their items are frozen."""
    return {name: list(value) if isinstance(value, list) else value for name, value in vars(case).items()}


def test_every_action_is_called_and_every_status_reachable():
    assert {action for action, _, _ in CALLS} == set(Action) - {A.MARK_UNREACHABLE}
    for status in CaseStatus:
        assert walk_to(status).status is status


def test_the_table_allows_exactly_what_the_spec_says():
    assert {s: {a for (s2, a) in ALLOWED if s2 is s} for s in CaseStatus} == EXPECTED_ALLOWED


def test_every_allowed_outcome_action_has_a_row_for_each_outcome():
    by_outcome = {
        A.RECORD_CONTACT_ATTEMPT: ContactOutcome,
        A.RECORD_INTERVIEW: InterviewOutcome,
        A.REVIEW_SOLUTION: ReviewOutcome,
    }
    for status, action in ALLOWED:
        outcomes = list(by_outcome.get(action, [None]))
        assert all((status, action, o) in TRANSITIONS for o in outcomes), (status, action)
    assert len(TRANSITIONS) == sum(len(list(by_outcome.get(a, [None]))) for _, a in ALLOWED)


@pytest.mark.parametrize("pair", [p for p in PAIRS if (p[0], p[1]) not in ALLOWED], ids=_id)
def test_refused_transition_names_case_status_action_and_changes_nothing(pair):
    status, action, _, call = pair
    case = walk_to(status)
    before = snapshot(case)
    with pytest.raises(TransitionRefused) as refused:
        call(case, LATER)
    assert str(refused.value) == f"case 42 is {status.value}: cannot {action.value}"
    assert (refused.value.case_id, refused.value.status, refused.value.action) == ("42", status, action)
    assert snapshot(case) == before


@pytest.mark.parametrize("pair", [p for p in PAIRS if (p[0], p[1]) in ALLOWED], ids=_id)
def test_allowed_transition_goes_where_the_table_says(pair):
    status, action, outcome, call = pair
    case = walk_to(status)
    case.events.clear()
    call(case, LATER)
    expected = TRANSITIONS[(status, action, outcome)]
    assert case.status is expected
    changes = [e for e in case.events if isinstance(e, events.StatusChanged)]
    if expected is status:
        assert changes == []
    else:
        assert changes == [events.StatusChanged("42", status, expected, action, LATER)]
        assert case.status_since == LATER
    assert (case.close_reason is not None) == (expected is S.CLOSED)
    assert case.updated_at == LATER


@pytest.mark.parametrize("status", sorted(set(CaseStatus) - {S.CONTACT_IN_PROGRESS}))
def test_mark_unreachable_is_refused_outside_contact_in_progress(status):
    with pytest.raises(TransitionRefused, match=f"case 9 is {status.value}: cannot mark_unreachable"):
        target("9", status, A.MARK_UNREACHABLE)


def test_an_outcome_the_action_does_not_have_is_an_invalid_command():
    with pytest.raises(InvalidCommand):
        target("9", S.INTERVIEW_SCHEDULED, A.RECORD_INTERVIEW, None)


def test_guards_refuse_with_the_reason_and_change_nothing():
    case = walk_to(S.SOLUTION_PROPOSED)  # foquale_seat
    before = snapshot(case)
    with pytest.raises(
        TransitionRefused,
        match=r"case 42 is solution_proposed: cannot confirm_solution "
        r"\(foquale_seat is proposed, not mlds_paps\)",
    ):
        case.confirm_solution(LATER, kind=SolutionKind.MLDS_PAPS)
    with pytest.raises(InvalidCommand, match="before the case's last change"):
        case.confirm_solution(T0)
    with pytest.raises(InvalidCommand, match="no time zone"):
        case.confirm_solution(datetime(2027, 1, 1))
    with pytest.raises(InvalidCommand, match="coded reason"):
        case.refuse_solution(" ", LATER)
    with pytest.raises(InvalidCommand, match="already"):
        case.transfer("psad-33", LATER)
    with pytest.raises(InvalidCommand, match="mark_found"):
        case.close(CloseReason.FOUND_IN_PARTNER_BASE, LATER)
    with pytest.raises(InvalidCommand, match="partner base"):
        case.mark_found("", LATER)
    assert snapshot(case) == before

    case.transfer("psad-40", LATER)
    with pytest.raises(
        TransitionRefused, match=r"case 42 is closed: cannot reopen \(transferred to psad-40\)"
    ):
        case.reopen(LATER)


def test_a_solution_found_replaces_the_one_in_progress_or_closes_the_case_before_the_solution_stage():
    case = walk_to(S.IN_SOLUTION)  # foquale_seat, confirmed
    case.events.clear()
    found = case.record_solution_found(SolutionKind.JOB, LATER)
    assert case.status is S.IN_SOLUTION and found is case.solutions[-1]
    assert [(s.kind, s.state) for s in case.solutions] == [
        (SolutionKind.FOQUALE_SEAT, SolutionState.ENDED),
        (SolutionKind.JOB, SolutionState.CONFIRMED),
    ]
    assert case.review_date == add_months(LATER.date(), Policy().review_months)
    assert case.events == [events.SolutionConfirmed("42", 2, SolutionKind.JOB, case.review_date, LATER)]

    held = walk_to(S.INTERVIEW_HELD)
    held.record_solution_found(SolutionKind.APPRENTICESHIP, LATER)
    assert (held.status, held.solutions[-1].kind) == (S.IN_SOLUTION, SolutionKind.APPRENTICESHIP)

    for status in (S.TO_CONTACT, S.REACHED, S.SOLUTION_PROPOSED):
        early = walk_to(status)
        assert early.record_solution_found(SolutionKind.JOB, LATER) is None
        assert (early.status, early.close_reason) == (S.CLOSED, CloseReason.REACHED_SOLUTION)

    provided = walk_to(S.IN_SOLUTION)
    before = snapshot(provided)
    with pytest.raises(InvalidCommand, match="mlds_paps is confirmed by mlds, not found"):
        provided.record_solution_found(SolutionKind.MLDS_PAPS, LATER)
    assert snapshot(provided) == before


# -- a case's life, at random ---------------------------------------------------------------

POLICY = Policy(max_attempts=2, unreachable_after_days=2, escalation_months=1, review_months=1)
ages = st.sampled_from([15, 16, 17, 17, 18, 24])
# Closing outcomes are rarer in life than failed calls; weighted so that random lives go on.
contact_outcomes = st.sampled_from(
    [
        *[ContactOutcome.NO_ANSWER] * 4,
        *[ContactOutcome.REACHED] * 2,
        ContactOutcome.WRONG_DETAILS,
        ContactOutcome.OTHER,
        ContactOutcome.MOVED,
        ContactOutcome.REFUSED,
        ContactOutcome.ALREADY_SUPPORTED,
        ContactOutcome.NEW_CONTRACT_OR_TRAINING,
    ]
)


class CaseLife(RuleBasedStateMachine):
    """Random commands, allowed or not, with a clock that only moves forward (except when a rule
    tries to go back on purpose). Each success must match the table; each refusal changes nothing."""

    def __init__(self):
        super().__init__()
        self.now = T0
        self.case: Case  # opened by open_case, before any rule
        self.status_changes = 0
        self.last_since = T0
        self.escalations = 0

    @initialize(age=ages)
    def open_case(self, age):
        self.case = Case.open("7", "youth-7", "psad-33", "33", age, self.now)
        assert self.case.events == [events.CaseOpened("7", "youth-7", "psad-33", "33", age, self.now)]

    @rule(hours=st.sampled_from([0, 1, 24, 24 * 3, 24 * 8, 24 * 20, 24 * 45]))
    def time_passes_and_the_timer_fires(self, hours):
        """The service's timer runs both checks; they never refuse, whatever the status."""
        self.now += timedelta(hours=hours)
        status = self.case.status
        if self.case.check_unreachable(self.now, POLICY):
            assert (status, self.case.status) == (S.CONTACT_IN_PROGRESS, S.UNREACHABLE)
            assert self.case.failed_attempts >= POLICY.max_attempts
            self.status_changes += 1
        else:
            assert self.case.status is status
        if self.case.check_escalation(self.now.date(), POLICY):
            self.escalations += 1
            assert self.case.age_on(self.now.date()) in (16, 17)
            assert self.case.status not in (S.IN_SOLUTION, S.CLOSED)

    def attempt(self, action: Action, outcome, command: Callable[[], object]):
        case = self.case
        before = snapshot(case)
        status = case.status
        try:
            command()
        except CaseError as error:
            assert snapshot(case) == before
            if isinstance(error, TransitionRefused) and error.detail is None:
                assert (status, action) not in ALLOWED
            return
        assert (status, action) in ALLOWED
        assert case.status is TRANSITIONS[(status, action, outcome)]
        if case.status is not status:
            self.status_changes += 1

    @rule(channel=st.sampled_from(Channel), outcome=contact_outcomes)
    def record_contact_attempt(self, channel, outcome):
        self.attempt(
            A.RECORD_CONTACT_ATTEMPT,
            outcome,
            lambda: self.case.record_contact_attempt(channel, outcome, self.now, "c-1"),
        )

    @rule(channel=st.sampled_from(Channel))
    def a_call_goes_unanswered(self, channel):
        """The commonest attempt of all, so that random lives meet the unreachable rule."""
        self.attempt(
            A.RECORD_CONTACT_ATTEMPT,
            ContactOutcome.NO_ANSWER,
            lambda: self.case.record_contact_attempt(channel, ContactOutcome.NO_ANSWER, self.now),
        )

    @rule(role=st.sampled_from(InterviewerRole), days=st.integers(-2, 30))
    def schedule_interview(self, role, days):
        self.attempt(
            A.SCHEDULE_INTERVIEW,
            None,
            lambda: self.case.schedule_interview(self.now + timedelta(days=days), role, self.now, "psy-1"),
        )

    @rule(outcome=st.sampled_from(InterviewOutcome))
    def record_interview(self, outcome):
        self.attempt(A.RECORD_INTERVIEW, outcome, lambda: self.case.record_interview(outcome, self.now))

    @rule(kind=st.sampled_from(SolutionKind))
    def propose_solution(self, kind):
        before = len(self.case.events)
        self.attempt(
            A.PROPOSE_SOLUTION, None, lambda: self.case.propose_solution(kind, self.now, ("cuisine",))
        )
        requested = [e for e in self.case.events[before:] if isinstance(e, events.SolutionRequested)]
        assert len(requested) <= 1
        for event in requested:
            assert event.youth_id == "youth-7" and event.kind is kind

    @rule(kind=st.one_of(st.none(), st.sampled_from(SolutionKind)))
    def confirm_solution(self, kind):
        self.attempt(A.CONFIRM_SOLUTION, None, lambda: self.case.confirm_solution(self.now, POLICY, kind))

    @rule(reason=st.sampled_from(["no_seat", "youth_declined", ""]))
    def refuse_solution(self, reason):
        self.attempt(A.REFUSE_SOLUTION, None, lambda: self.case.refuse_solution(reason, self.now))

    @rule(outcome=st.sampled_from(ReviewOutcome))
    def review_solution(self, outcome):
        self.attempt(A.REVIEW_SOLUTION, outcome, lambda: self.case.review_solution(outcome, self.now, POLICY))

    # One rule for the three ways to close, so that closing does not crowd out the rest of a life.
    @rule(
        how=st.sampled_from(["close", "transfer", "mark_found"]),
        reason=st.sampled_from(CloseReason),
        to=st.sampled_from(["psad-40", "psad-33", ""]),
        base=st.sampled_from(["cfa", ""]),
    )
    def close_one_way_or_another(self, how, reason, to, base):
        commands = {
            "close": (A.CLOSE, lambda: self.case.close(reason, self.now)),
            "transfer": (A.TRANSFER, lambda: self.case.transfer(to, self.now)),
            "mark_found": (A.MARK_FOUND, lambda: self.case.mark_found(base, self.now)),
        }
        action, command = commands[how]
        self.attempt(action, None, command)

    @rule(kind=st.sampled_from(SolutionKind))
    def record_solution_found(self, kind):
        self.attempt(
            A.RECORD_SOLUTION_FOUND, None, lambda: self.case.record_solution_found(kind, self.now, POLICY)
        )

    @rule()
    def reopen(self):
        self.attempt(A.REOPEN, None, lambda: self.case.reopen(self.now))

    @rule()
    def step_forward(self):
        """The next step of a good life, so that random lives reach the solution stages."""
        case, now = self.case, self.now
        steps = {
            S.TO_CONTACT: (
                A.RECORD_CONTACT_ATTEMPT,
                ContactOutcome.REACHED,
                lambda: case.record_contact_attempt(Channel.PHONE, ContactOutcome.REACHED, now),
            ),
            S.CONTACT_IN_PROGRESS: (
                A.RECORD_CONTACT_ATTEMPT,
                ContactOutcome.REACHED,
                lambda: case.record_contact_attempt(Channel.SMS, ContactOutcome.REACHED, now),
            ),
            S.UNREACHABLE: (
                A.RECORD_CONTACT_ATTEMPT,
                ContactOutcome.REACHED,
                lambda: case.record_contact_attempt(Channel.HOME_VISIT, ContactOutcome.REACHED, now),
            ),
            S.REACHED: (
                A.SCHEDULE_INTERVIEW,
                None,
                lambda: case.schedule_interview(now + timedelta(days=5), InterviewerRole.PSY_EN, now),
            ),
            S.INTERVIEW_SCHEDULED: (
                A.RECORD_INTERVIEW,
                InterviewOutcome.SEEN,
                lambda: case.record_interview(InterviewOutcome.SEEN, now),
            ),
            S.INTERVIEW_HELD: (
                A.PROPOSE_SOLUTION,
                None,
                lambda: case.propose_solution(SolutionKind.MLDS_MICRO_LYCEE, now),
            ),
            S.SOLUTION_PROPOSED: (A.CONFIRM_SOLUTION, None, lambda: case.confirm_solution(now, POLICY)),
            S.IN_SOLUTION: (
                A.REVIEW_SOLUTION,
                ReviewOutcome.STILL_IN_SOLUTION,
                lambda: case.review_solution(ReviewOutcome.STILL_IN_SOLUTION, now, POLICY),
            ),
            S.CLOSED: (A.REOPEN, None, lambda: case.reopen(now)),
        }
        action, outcome, command = steps[case.status]
        self.attempt(action, outcome, command)

    @rule(owner=st.one_of(st.none(), st.just("c-2")))
    def assign(self, owner):
        self.attempt(A.ASSIGN, None, lambda: self.case.assign(owner, self.now))

    @rule(days_back=st.integers(1, 30), outcome=st.sampled_from(ContactOutcome))
    def command_from_the_past(self, days_back, outcome):
        past = self.case.updated_at - timedelta(days=days_back)
        self.attempt(
            A.RECORD_CONTACT_ATTEMPT,
            outcome,
            lambda: self.case.record_contact_attempt(Channel.PHONE, outcome, past),
        )

    @invariant()
    def a_closed_case_has_a_close_reason_and_an_open_one_none(self):
        assert (self.case.status is S.CLOSED) == (self.case.close_reason is not None)

    @invariant()
    def status_changed_events_retell_the_transitions(self):
        changes = [e for e in self.case.events if isinstance(e, events.StatusChanged)]
        assert len(changes) == self.status_changes
        status = S.TO_CONTACT
        for change in changes:
            assert change.from_status is status and change.to_status is not status
            assert (change.from_status, change.action) in ALLOWED
            status = change.to_status
        assert status is self.case.status
        assert self.case.status_since == (changes[-1].at if changes else self.case.opened_at)
        closings = [e for e in self.case.events if isinstance(e, events.CaseClosed)]
        assert len(closings) == sum(c.to_status is S.CLOSED for c in changes)

    @invariant()
    def status_since_only_moves_forward(self):
        assert self.case.status_since >= self.last_since
        assert self.case.updated_at >= self.case.status_since
        self.last_since = self.case.status_since

    @invariant()
    def escalation_at_most_once_per_episode(self):
        raised = [e for e in self.case.events if isinstance(e, events.EscalationRaised)]
        assert len(raised) == self.escalations <= self.case.episode

    @invariant()
    def work_list_and_next_action_always_answer(self):
        today = self.now.date()
        kind = worklist(self.case, today, POLICY)
        assert (kind is WorkList.CLOSED) == (self.case.status is S.CLOSED)
        assert next_action(self.case, today, POLICY).since <= self.now


TestCaseLife = CaseLife.TestCase
TestCaseLife.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
