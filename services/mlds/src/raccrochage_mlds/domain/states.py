"""A candidacy's lifecycle: its statuses, the actions on it, in which statuses each is allowed.

candidate -> admissible -> admitted -> enrolled -> exited, and two other ends: refused (not
eligible, an unfavourable admission step, no place) and withdrawn (the youth declined, did not
come, moved...). Each end carries a code, never free text about the youth.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class CandidacyStatus(StrEnum):
    CANDIDATE = "candidate"  # received; eligibility not settled (incomplete facts)
    ADMISSIBLE = "admissible"  # every eligibility rule passed; admission steps under way
    ADMITTED = "admitted"  # every step favourable and a place held
    ENROLLED = "enrolled"  # started in the dispositif, under school status
    EXITED = "exited"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"


class Action(StrEnum):
    DECIDE = "decide"
    RECORD_FACTS = "record_facts"
    CHOOSE_DISPOSITIF = "choose_dispositif"
    RECORD_STEP = "record_admission_step"
    ADMIT = "admit"
    REFUSE_FOR_LACK_OF_PLACE = "refuse_for_lack_of_place"
    ENROL = "enrol"
    EXIT = "exit"
    WITHDRAW = "withdraw"
    RECORD_PAFI = "record_pafi"


class RefusalReason(StrEnum):
    NOT_ELIGIBLE = "not_eligible"  # a rule failed: the decision lists which
    STEP_UNFAVOURABLE = "step_unfavourable"  # an admission step said no: the refusal names it
    NO_PLACE = "no_place"  # admissible, but the site was full when admitting


class WithdrawalReason(StrEnum):
    YOUTH_DECLINED = "youth_declined"
    NO_SHOW = "no_show"  # admitted, never came
    OTHER_SOLUTION = "other_solution"  # found a school, a contract, a training elsewhere
    MOVED = "moved"
    UNREACHABLE = "unreachable"
    OTHER = "other"


class ExitDestination(StrEnum):
    BACK_TO_SCHOOL = "back_to_school"  # with the level returned to
    APPRENTICESHIP = "apprenticeship"
    EMPLOYMENT = "employment"
    TRAINING = "training"  # formation professionnelle
    NEW_MLDS_ACTION = "new_mlds_action"
    HEALTH_OR_RQTH = "health_or_rqth"  # care, or recognised as a disabled worker
    INTERRUPTION = "interruption"  # left without a destination
    UNKNOWN = "unknown"


# "Nombre d'élèves qui poursuivent une formation": the destinations that are a training.
IN_TRAINING = frozenset(
    {
        ExitDestination.BACK_TO_SCHOOL,
        ExitDestination.APPRENTICESHIP,
        ExitDestination.TRAINING,
        ExitDestination.NEW_MLDS_ACTION,
    }
)


class DiplomaObtained(StrEnum):
    NONE = "none"
    DELF = "delf"  # the DIPA's evaluation counts it
    CFG = "cfg"
    DNB = "dnb"
    CAP = "cap"
    BAC = "bac"  # the micro-lycée's evaluation counts it
    OTHER = "other"


S = CandidacyStatus
BEFORE_ADMISSION = frozenset({S.CANDIDATE, S.ADMISSIBLE})
OPEN = frozenset({S.CANDIDATE, S.ADMISSIBLE, S.ADMITTED, S.ENROLLED})
ENDED = frozenset(S) - OPEN

ALLOWED: Mapping[Action, frozenset[CandidacyStatus]] = {
    Action.DECIDE: BEFORE_ADMISSION,
    Action.RECORD_FACTS: BEFORE_ADMISSION,
    Action.CHOOSE_DISPOSITIF: BEFORE_ADMISSION,
    Action.RECORD_STEP: frozenset({S.ADMISSIBLE}),
    Action.ADMIT: frozenset({S.ADMISSIBLE}),
    Action.REFUSE_FOR_LACK_OF_PLACE: frozenset({S.ADMISSIBLE}),
    Action.ENROL: frozenset({S.ADMITTED}),
    Action.EXIT: frozenset({S.ENROLLED}),
    # An enrolled youth who leaves exits (with a destination); before that, they withdraw.
    Action.WITHDRAW: frozenset({S.CANDIDATE, S.ADMISSIBLE, S.ADMITTED}),
    Action.RECORD_PAFI: OPEN,
}


class CandidacyError(Exception):
    """A command a candidacy cannot take; the candidacy is left exactly as it was."""


class TransitionRefused(CandidacyError):
    def __init__(self, candidacy_id: object, status: CandidacyStatus, action: Action, detail: str = ""):
        self.status = status
        self.action = action
        message = f"candidacy {candidacy_id} is {status.value}: cannot {action.value}"
        super().__init__(f"{message} ({detail})" if detail else message)


class InvalidCommand(CandidacyError, ValueError):
    """The action is allowed but not with these arguments."""
