"""The state machine of a PSAD case: its statuses, the actions on it, and the table of transitions."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from .contact import ContactOutcome
from .interview import InterviewOutcome


class CaseStatus(StrEnum):
    TO_CONTACT = "to_contact"  # opened (or reopened), nobody has tried yet
    CONTACT_IN_PROGRESS = "contact_in_progress"  # tried, not reached yet
    REACHED = "reached"  # reached; the interview is to be booked
    INTERVIEW_SCHEDULED = "interview_scheduled"
    INTERVIEW_HELD = "interview_held"  # seen; a solution is to be proposed
    SOLUTION_PROPOSED = "solution_proposed"  # waiting for the provider or the youth
    IN_SOLUTION = "in_solution"  # until the review date
    UNREACHABLE = "unreachable"  # not reached after reminders
    CLOSED = "closed"


class Action(StrEnum):
    """What can be done to a case; the value is the name a refusal message shows."""

    RECORD_CONTACT_ATTEMPT = "record_contact_attempt"
    SCHEDULE_INTERVIEW = "schedule_interview"
    RECORD_INTERVIEW = "record_interview"
    PROPOSE_SOLUTION = "propose_solution"
    CONFIRM_SOLUTION = "confirm_solution"
    REFUSE_SOLUTION = "refuse_solution"
    REVIEW_SOLUTION = "review_solution"
    CLOSE = "close"
    REOPEN = "reopen"
    TRANSFER = "transfer"
    MARK_FOUND = "mark_found"
    MARK_UNREACHABLE = "mark_unreachable"
    ASSIGN = "assign"
    RECORD_SOLUTION_FOUND = "record_solution_found"


class CloseReason(StrEnum):
    REACHED_SOLUTION = "reached_solution"
    FOUND_IN_PARTNER_BASE = "found_in_partner_base"
    WRONG_CONTACT_DETAILS = "wrong_contact_details"
    UNREACHABLE_AFTER_REMINDERS = "unreachable_after_reminders"
    REFUSES_SUPPORT = "refuses_support"
    ALREADY_SUPPORTED = "already_supported"
    MOVED = "moved"  # transferred to another territory's PSAD
    EXEMPT = "exempt"  # no detail stored, by design
    OUT_OF_AGE = "out_of_age"


class ReviewOutcome(StrEnum):
    STILL_IN_SOLUTION = "still_in_solution"
    SOLUTION_ENDED = "solution_ended"


Outcome = ContactOutcome | InterviewOutcome | ReviewOutcome

# The contact outcomes that close the case, and with which reason. A youth who found a contract or
# a training alone has reached the PSAD's goal: REACHED_SOLUTION (the attempt keeps the outcome,
# so statistics can tell it from a solution the PSAD arranged).
CLOSING_CONTACT_OUTCOMES: Mapping[ContactOutcome, CloseReason] = {
    ContactOutcome.REFUSED: CloseReason.REFUSES_SUPPORT,
    ContactOutcome.ALREADY_SUPPORTED: CloseReason.ALREADY_SUPPORTED,
    ContactOutcome.NEW_CONTRACT_OR_TRAINING: CloseReason.REACHED_SOLUTION,
}

OPEN_STATUSES: frozenset[CaseStatus] = frozenset(CaseStatus) - {CaseStatus.CLOSED}
BEFORE_CONTACT: tuple[CaseStatus, ...] = (
    CaseStatus.TO_CONTACT,
    CaseStatus.CONTACT_IN_PROGRESS,
    CaseStatus.UNREACHABLE,
)
AFTER_CONTACT: tuple[CaseStatus, ...] = (
    CaseStatus.REACHED,
    CaseStatus.INTERVIEW_SCHEDULED,
    CaseStatus.INTERVIEW_HELD,
    CaseStatus.SOLUTION_PROPOSED,
    CaseStatus.IN_SOLUTION,
)


def _contact_attempts() -> dict[tuple[CaseStatus, Action, Outcome | None], CaseStatus]:
    """Attempts are allowed on every open case: before contact they try to reach the youth;
    after it they are follow-ups, which change the status only when their outcome closes the case.
    MOVED keeps the case open, flagged for a transfer (`Case.transfer_needed`)."""
    table = {}
    for status in OPEN_STATUSES:
        for outcome in ContactOutcome:
            if outcome in CLOSING_CONTACT_OUTCOMES:
                target = CaseStatus.CLOSED
            elif status in AFTER_CONTACT:
                target = status
            elif outcome is ContactOutcome.REACHED:
                target = CaseStatus.REACHED
            elif status is CaseStatus.TO_CONTACT:
                target = CaseStatus.CONTACT_IN_PROGRESS
            else:
                target = status
            table[(status, Action.RECORD_CONTACT_ATTEMPT, outcome)] = target
    return table


# (status, action, outcome) -> status after the action. The outcome is None for actions that
# have none. An action is allowed in a status iff the table has a row for that pair.
TRANSITIONS: Mapping[tuple[CaseStatus, Action, Outcome | None], CaseStatus] = {
    **_contact_attempts(),
    (CaseStatus.CONTACT_IN_PROGRESS, Action.MARK_UNREACHABLE, None): CaseStatus.UNREACHABLE,
    (CaseStatus.REACHED, Action.SCHEDULE_INTERVIEW, None): CaseStatus.INTERVIEW_SCHEDULED,
    (
        CaseStatus.INTERVIEW_SCHEDULED,
        Action.RECORD_INTERVIEW,
        InterviewOutcome.SEEN,
    ): CaseStatus.INTERVIEW_HELD,
    # Not seen: the youth is still reached, and a new interview is to be booked.
    (CaseStatus.INTERVIEW_SCHEDULED, Action.RECORD_INTERVIEW, InterviewOutcome.NO_SHOW): CaseStatus.REACHED,
    (CaseStatus.INTERVIEW_SCHEDULED, Action.RECORD_INTERVIEW, InterviewOutcome.EXCUSED): CaseStatus.REACHED,
    (CaseStatus.INTERVIEW_SCHEDULED, Action.RECORD_INTERVIEW, InterviewOutcome.CANCELLED): CaseStatus.REACHED,
    (CaseStatus.INTERVIEW_HELD, Action.PROPOSE_SOLUTION, None): CaseStatus.SOLUTION_PROPOSED,
    (CaseStatus.SOLUTION_PROPOSED, Action.CONFIRM_SOLUTION, None): CaseStatus.IN_SOLUTION,
    # A refusal (no seat, the youth declines) goes back to the solution stage: the interview
    # stays valid, another solution is proposed.
    (CaseStatus.SOLUTION_PROPOSED, Action.REFUSE_SOLUTION, None): CaseStatus.INTERVIEW_HELD,
    (CaseStatus.IN_SOLUTION, Action.REVIEW_SOLUTION, ReviewOutcome.STILL_IN_SOLUTION): CaseStatus.IN_SOLUTION,
    (CaseStatus.IN_SOLUTION, Action.REVIEW_SOLUTION, ReviewOutcome.SOLUTION_ENDED): CaseStatus.INTERVIEW_HELD,
    **{(status, Action.CLOSE, None): CaseStatus.CLOSED for status in OPEN_STATUSES},
    **{(status, Action.TRANSFER, None): CaseStatus.CLOSED for status in OPEN_STATUSES},
    **{(status, Action.MARK_FOUND, None): CaseStatus.CLOSED for status in OPEN_STATUSES},
    **{(status, Action.ASSIGN, None): status for status in OPEN_STATUSES},
    # The youth found a job or an apprenticeship outside the PSAD's proposals (at the end of a
    # clause sociale mission): at the solution stage or in solution it becomes the case's
    # solution; before that, or while a proposal waits for its provider, the goal is reached.
    **{
        (status, Action.RECORD_SOLUTION_FOUND, None): (
            CaseStatus.IN_SOLUTION
            if status in (CaseStatus.INTERVIEW_HELD, CaseStatus.IN_SOLUTION)
            else CaseStatus.CLOSED
        )
        for status in OPEN_STATUSES
    },
    # A new episode: contact starts again (the old attempts stay in the history).
    (CaseStatus.CLOSED, Action.REOPEN, None): CaseStatus.TO_CONTACT,
}

ALLOWED: frozenset[tuple[CaseStatus, Action]] = frozenset((s, a) for s, a, _ in TRANSITIONS)


class CaseError(Exception):
    """A command a case cannot take; the case is left exactly as it was."""


class TransitionRefused(CaseError):
    """The action is not allowed in the case's status (or a guard of the action refuses it)."""

    def __init__(self, case_id: str, status: CaseStatus, action: Action, detail: str | None = None):
        self.case_id = case_id
        self.status = status
        self.action = action
        self.detail = detail
        message = f"case {case_id} is {status.value}: cannot {action.value}"
        super().__init__(f"{message} ({detail})" if detail else message)


class InvalidCommand(CaseError, ValueError):
    """The action is allowed but its arguments are not (a time before the case's last change, ...)."""


def is_allowed(status: CaseStatus, action: Action) -> bool:
    return (status, action) in ALLOWED


def target(case_id: str, status: CaseStatus, action: Action, outcome: Outcome | None = None) -> CaseStatus:
    """The status after `action` (with its outcome); TransitionRefused when the table has no row."""
    if (status, action) not in ALLOWED:
        raise TransitionRefused(case_id, status, action)
    try:
        return TRANSITIONS[(status, action, outcome)]
    except KeyError:
        raise InvalidCommand(f"case {case_id}: {action.value} has no outcome {outcome!r}") from None
