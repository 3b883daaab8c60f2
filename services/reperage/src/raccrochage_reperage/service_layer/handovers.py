"""What repérage learns from the PSADs about the youths it handed over.

- `psad.case.closed.v1`: the handover ends, so that a later campaign still listing the youth
  hands them over again (`identified`, which reopens the case) instead of `reported_again`.
  A case closed as moved is not the end: the youth's case goes on at another PSAD.
- `psad.case.transferred.v1`: the handover follows the youth to the destination PSAD.
"""

from __future__ import annotations

from raccrochage_contracts.events.psad_v1 import CaseClosed, CaseTransferred
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_CLOSE = text(
    "UPDATE handover SET open = false, closed_at = :at, close_reason = :reason "
    "WHERE youth_id = :youth_id AND psad_id = :psad_id AND open"
)
_MOVE = text("UPDATE handover SET psad_id = :to_psad_id WHERE youth_id = :youth_id AND open")


async def case_closed(session: AsyncSession, event: CaseClosed) -> bool:
    """True when it ended an open handover (found ones are closed already by the partner path)."""
    if event.reason == "moved":
        return False
    done = await session.execute(
        _CLOSE,
        {"at": event.closed_at, "reason": event.reason, "youth_id": event.youth_id, "psad_id": event.psad_id},
    )
    return done.rowcount == 1


async def case_transferred(session: AsyncSession, event: CaseTransferred) -> None:
    await session.execute(_MOVE, {"to_psad_id": event.to_psad_id, "youth_id": event.youth_id})
