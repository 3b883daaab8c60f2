"""Solutions a PSAD proposes, and which other service provides each one."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum


class SolutionKind(StrEnum):
    FOQUALE_SEAT = "foquale_seat"
    MLDS_PAPS = "mlds_paps"
    MLDS_DIPA = "mlds_dipa"
    MLDS_MICRO_LYCEE = "mlds_micro_lycee"
    APPRENTICESHIP = "apprenticeship"
    JOB = "job"
    SERVICE_CIVIQUE = "service_civique"
    CLAUSE_SOCIALE_VIA_MLDS = "clause_sociale_via_mlds"
    OTHER = "other"


class Provider(StrEnum):
    """A service of this system that confirms or refuses a solution it provides."""

    FOQUALE = "foquale"
    MLDS = "mlds"


# Kinds absent here (apprenticeship, job, service civique, other) are arranged outside the system:
# the counsellor confirms them once the youth has started.
PROVIDED_BY: dict[SolutionKind, Provider] = {
    SolutionKind.FOQUALE_SEAT: Provider.FOQUALE,
    SolutionKind.MLDS_PAPS: Provider.MLDS,
    SolutionKind.MLDS_DIPA: Provider.MLDS,
    SolutionKind.MLDS_MICRO_LYCEE: Provider.MLDS,
    SolutionKind.CLAUSE_SOCIALE_VIA_MLDS: Provider.MLDS,
}


class SolutionState(StrEnum):
    PROPOSED = "proposed"
    CONFIRMED = "confirmed"
    REFUSED = "refused"
    ENDED = "ended"


@dataclass(frozen=True)
class Solution:
    number: int
    episode: int
    kind: SolutionKind
    proposed_at: datetime
    wishes: tuple[str, ...] = ()
    state: SolutionState = SolutionState.PROPOSED
    decided_at: datetime | None = None
    refusal_reason: str | None = None

    @property
    def provider(self) -> Provider | None:
        return PROVIDED_BY.get(self.kind)

    def decided(self, state: SolutionState, at: datetime, refusal_reason: str | None = None) -> Solution:
        return replace(self, state=state, decided_at=at, refusal_reason=refusal_reason)
