"""What a refused command raises: the aggregate it was sent to is left exactly as it was."""

from __future__ import annotations


class ClauseSocialeError(Exception):
    """A command the clause sociale's rules refuse; the message says which rule and why."""


class Refused(ClauseSocialeError, ValueError):
    """The command breaks a rule of the clause sociale (a contract too short, a minor without a
    legal guardian, a week not started yet, ...)."""


class TransitionRefused(ClauseSocialeError):
    """The action is not allowed in the mission's status (or not by this actor)."""

    def __init__(self, mission_id: str, status: str, action: str, detail: str | None = None) -> None:
        self.mission_id = mission_id
        self.status = status
        self.action = action
        self.detail = detail
        message = f"mission {mission_id} is {status}: cannot {action}"
        super().__init__(f"{message} ({detail})" if detail else message)


def require_aware(moment, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise Refused(f"{name} {moment.isoformat()} has no time zone")
