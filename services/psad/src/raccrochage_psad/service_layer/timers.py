"""The rules a clock applies: unreachable after reminders, and the obligation de formation's escalation."""

from __future__ import annotations

from datetime import datetime

from raccrochage_platform.logging import get_logger
from raccrochage_platform.outbox import OutboxWriter

from ..adapters.repository import CaseRepository
from .messages import envelopes

log = get_logger(__name__)


async def apply_timers(repo: CaseRepository, outbox: OutboxWriter, now: datetime) -> dict[str, int]:
    """One pass over the cases a timer may change (locked, SKIP LOCKED: processes share the work)."""
    counts = {"unreachable": 0, "escalated": 0}
    for case in await repo.due_for_timers(now.date(), now):
        changed = False
        if case.updated_at <= now and case.check_unreachable(now, repo.policy):
            counts["unreachable"] += 1
            changed = True
        if case.check_escalation(now.date(), repo.policy):
            counts["escalated"] += 1
            changed = True
        if changed:
            await repo.save(case)
            await outbox.add_many(repo.session, envelopes(outbox, case, policy=repo.policy))
    if any(counts.values()):
        log.info("timers_applied", **counts)
    return counts
