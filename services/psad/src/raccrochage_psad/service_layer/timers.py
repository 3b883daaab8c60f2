"""The rules a clock applies: unreachable after reminders, and the obligation de formation's escalation."""

from __future__ import annotations

from datetime import datetime

from raccrochage_platform.logging import get_logger

from .messages import add_case_events
from .unit_of_work import PsadUnitOfWork

log = get_logger(__name__)


async def apply_timers(uow: PsadUnitOfWork, now: datetime) -> dict[str, int]:
    """One pass over the cases a timer may change, in one unit of work (the cases locked with
    SKIP LOCKED: processes share the work). Returns how many became unreachable, were escalated."""
    counts = {"unreachable": 0, "escalated": 0}
    async with uow:
        for case in await uow.cases.due_for_timers(now.date(), now):
            changed = False
            if case.updated_at <= now and case.check_unreachable(now, uow.policy):
                counts["unreachable"] += 1
                changed = True
            if case.check_escalation(now.date(), uow.policy):
                counts["escalated"] += 1
                changed = True
            if changed:
                await uow.cases.save(case)
                add_case_events(uow, case)
        await uow.commit()
    if any(counts.values()):
        log.info("timers_applied", **counts)
    return counts
