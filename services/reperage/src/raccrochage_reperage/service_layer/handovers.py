"""What repérage learns from the PSADs about the youths it handed over.

- `psad.case.closed.v1`: the handover ends, so that a later campaign still listing the youth
  hands them over again (`identified`, which reopens the case) instead of `reported_again`.
  A case closed as moved is not the end: the youth's case goes on at another PSAD.
- `psad.case.transferred.v1`: the handover follows the youth to the destination PSAD.

Both run inside the consumer's unit of work, which claims the inbox and commits.
"""

from __future__ import annotations

from raccrochage_contracts.events.psad_v1 import CaseClosed, CaseTransferred

from .unit_of_work import AbstractReperageUnitOfWork


async def case_closed(uow: AbstractReperageUnitOfWork, event: CaseClosed) -> bool:
    """True when it ended an open handover (found ones are closed already by the partner path)."""
    if event.reason == "moved":
        return False
    return await uow.handovers.close_by_psad(event.youth_id, event.psad_id, event.closed_at, event.reason)


async def case_transferred(uow: AbstractReperageUnitOfWork, event: CaseTransferred) -> None:
    await uow.handovers.transfer(event.youth_id, event.to_psad_id)
