"""The state machine of a mission: its statuses, the actions on it, who takes them, the transitions."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from .errors import TransitionRefused


class MissionStatus(StrEnum):
    DISPONIBLE = "disponible"  # declared, free for any MLDS tutor
    RESERVEE = "reservee"  # an MLDS tutor holds it to propose a youth
    EN_PREPARATION = "en_preparation"  # the company accepted the youth: meeting, convention
    EN_REALISATION = "en_realisation"  # the convention is signed: the youth is in the company
    REALISEE = "realisee"  # over, with its outcome


STATUS_LABELS = {
    MissionStatus.DISPONIBLE: "disponible",
    MissionStatus.RESERVEE: "réservée",
    MissionStatus.EN_PREPARATION: "en préparation",
    MissionStatus.EN_REALISATION: "en réalisation",
    MissionStatus.REALISEE: "réalisée",
}


class ActorRole(StrEnum):
    BUYER = "buyer"
    COMPANY = "company"
    MLDS_TUTOR = "mlds_tutor"
    SYSTEM = "system"  # a timer, or a rule that follows another action


class Action(StrEnum):
    """What can be done to a mission; the value is the name a refusal message shows."""

    RESERVE = "reserve"
    RELEASE = "release"
    PROPOSE_YOUTH = "propose_youth"
    REMIND = "remind"
    ACCEPT_YOUTH = "accept_youth"
    DECLINE_YOUTH = "decline_youth"
    LAPSE = "lapse"
    DRAFT_CONVENTION = "draft_convention"
    SIGN_CONVENTION = "sign_convention"
    START = "start"
    ABANDON = "abandon"
    RECORD_HOURS = "record_hours"
    COMPLETE = "complete"
    WRITE_BILAN = "write_bilan"
    SIGN_BILAN = "sign_bilan"
    DELIVER_BILAN = "deliver_bilan"


S = MissionStatus
# (status, action) -> status after it. An action is allowed in a status iff the table has the pair.
TRANSITIONS: Mapping[tuple[MissionStatus, Action], MissionStatus] = {
    (S.DISPONIBLE, Action.RESERVE): S.RESERVEE,
    (S.RESERVEE, Action.RELEASE): S.DISPONIBLE,
    (S.RESERVEE, Action.PROPOSE_YOUTH): S.RESERVEE,
    (S.RESERVEE, Action.REMIND): S.RESERVEE,
    (S.RESERVEE, Action.ACCEPT_YOUTH): S.EN_PREPARATION,
    # Declined or lapsed: the mission is free again, for any tutor.
    (S.RESERVEE, Action.DECLINE_YOUTH): S.DISPONIBLE,
    (S.RESERVEE, Action.LAPSE): S.DISPONIBLE,
    (S.EN_PREPARATION, Action.DRAFT_CONVENTION): S.EN_PREPARATION,
    (S.EN_PREPARATION, Action.SIGN_CONVENTION): S.EN_PREPARATION,
    # The last signature starts the placement.
    (S.EN_PREPARATION, Action.START): S.EN_REALISATION,
    # The meeting showed it would not work, or the convention is not signed: free again.
    (S.EN_PREPARATION, Action.ABANDON): S.DISPONIBLE,
    (S.EN_REALISATION, Action.RECORD_HOURS): S.EN_REALISATION,
    (S.EN_REALISATION, Action.COMPLETE): S.REALISEE,
    (S.EN_REALISATION, Action.WRITE_BILAN): S.EN_REALISATION,
    (S.REALISEE, Action.WRITE_BILAN): S.REALISEE,
    (S.EN_REALISATION, Action.SIGN_BILAN): S.EN_REALISATION,
    (S.REALISEE, Action.SIGN_BILAN): S.REALISEE,
    (S.REALISEE, Action.DELIVER_BILAN): S.REALISEE,
}


def target(mission_id: str, status: MissionStatus, action: Action) -> MissionStatus:
    """The status after `action`; TransitionRefused when the table has no row for the pair."""
    try:
        return TRANSITIONS[(status, action)]
    except KeyError:
        allowed = sorted(a.value for s, a in TRANSITIONS if s is status)
        raise TransitionRefused(
            mission_id, status.value, action.value, f"allowed: {', '.join(allowed) or 'nothing'}"
        ) from None
