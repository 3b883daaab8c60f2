"""What a counsellor does to a case, and what they see of it.

Each command runs in one transaction: load the case locked, check the caller's territory, apply
the domain command, save, and put its events in the outbox.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from raccrochage_platform.auth import Principal
from raccrochage_platform.outbox import OutboxWriter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..adapters.repository import CaseRepository, case_of
from ..adapters.tables import case as case_table
from ..domain.case import Case
from ..domain.deadlines import Policy
from ..domain.worklist import WorkList, next_action, priority_reasons, worklist
from .messages import envelopes


class NotYourTerritory(PermissionError):
    pass


def check_territory(principal: Principal, case: Case) -> None:
    if not principal.may_see(case.departement):
        raise NotYourTerritory(
            f"case {case.case_id} belongs to territory {case.departement}, "
            f"not to {principal.territory or 'an ops token (counts only)'}"
        )


@dataclass
class Cases:
    sessions: async_sessionmaker[AsyncSession]
    outbox: OutboxWriter
    policy: Policy

    async def command(self, principal: Principal, case_id: str, do: Callable[[Case, datetime], Any]) -> Case:
        """Run `do(case, now)` on a case of the caller's territory; CaseError leaves it untouched."""
        async with self.sessions() as session, session.begin():
            repo = CaseRepository(session, self.policy)
            case = await repo.get(case_id)
            check_territory(principal, case)
            do(case, datetime.now(UTC))
            await repo.save(case)
            await self.outbox.add_many(session, envelopes(self.outbox, case, policy=self.policy))
        return case

    async def get(self, principal: Principal, case_id: str) -> Case:
        async with self.sessions() as session:
            case = await CaseRepository(session, self.policy).get(case_id, lock=False)
        check_territory(principal, case)
        return case

    async def search(
        self,
        *,
        departement: str,
        status: str | None = None,
        psad_id: str | None = None,
        work_list: WorkList | None = None,
        deadline: str | None = None,
        owner: str | None = None,
        today: date,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[Case]]:
        """Cases of one territory matching every filter given, most urgent first: the open ones
        ranked by the work-list rules, then the closed ones, longest closed first.

        Closed cases pile up year after year while a PSAD's open ones stay its workload: only
        the open ones are loaded and ranked here; the closed ones are counted and paged by
        PostgreSQL (a territory of 291,500 cases took 9 s a page when all were loaded)."""
        c = case_table.c
        statement = select(case_table).where(c.departement == departement)
        if status:
            statement = statement.where(c.status == status)
        if psad_id:
            statement = statement.where(c.psad_id == psad_id)
        if owner:
            statement = statement.where(c.owner == owner)
        if deadline == "overdue":
            statement = statement.where(c.interview_deadline < today)
        elif deadline == "due":  # due soon or overdue: every case whose interview clock runs
            statement = statement.where(c.interview_deadline.is_not(None))
        wants_open = work_list is not WorkList.CLOSED and status != "closed"
        # a closed case owes no interview: no deadline filter keeps it
        wants_closed = (
            work_list in (None, WorkList.CLOSED) and status in (None, "closed") and deadline is None
        )
        ranked: list[Case] = []
        closed_count = 0
        async with self.sessions() as session:
            # One snapshot for the three queries: a case closed between them would otherwise be
            # counted or shown twice (open, then closed) or not at all on a page boundary.
            await session.connection(
                execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
            )
            if wants_open:
                ranked = [
                    case_of(row) for row in await session.execute(statement.where(c.status != "closed"))
                ]
                if work_list is not None:
                    ranked = [case for case in ranked if worklist(case, today, self.policy) is work_list]
                if deadline == "due":
                    ranked = [
                        case
                        for case in ranked
                        if case.is_overdue(today, self.policy) or case.interview_due_soon(today, self.policy)
                    ]
                ranked.sort(key=lambda case: _urgency(case, today, self.policy))
            page = ranked[offset : offset + limit]
            if wants_closed:
                closed = statement.where(c.status == "closed")
                closed_count = (
                    await session.execute(select(func.count()).select_from(closed.subquery()))
                ).scalar_one()
                if len(page) < limit and closed_count:
                    rows = await session.execute(
                        closed.order_by(c.status_since, c.case_id)
                        .offset(max(0, offset - len(ranked)))
                        .limit(limit - len(page))
                    )
                    page.extend(case_of(row) for row in rows)
        return len(ranked) + closed_count, page

    async def stats(self, departement: str | None, today: date) -> dict[str, Any]:
        """Counts by territory and status (and overdue interviews): nothing personal."""
        c = case_table.c
        statement = select(c.departement, c.status, func.count()).group_by(c.departement, c.status)
        overdue = (
            select(c.departement, func.count())
            .where(c.status != "closed", c.interview_deadline < today)
            .group_by(c.departement)
        )
        if departement:
            statement = statement.where(c.departement == departement)
            overdue = overdue.where(c.departement == departement)
        async with self.sessions() as session:
            rows = (await session.execute(statement)).all()
            late = dict((await session.execute(overdue)).all())
        territories: dict[str, dict[str, Any]] = {}
        for dep, status, count in rows:
            entry = territories.setdefault(
                dep, {"by_status": {}, "open": 0, "interview_overdue": late.get(dep, 0)}
            )
            entry["by_status"][status] = count
            if status != "closed":
                entry["open"] += count
        by_status: dict[str, int] = {}
        for entry in territories.values():
            for status, count in entry["by_status"].items():
                by_status[status] = by_status.get(status, 0) + count
        return {
            "as_of": today.isoformat(),
            "by_status": by_status,
            "territories": dict(sorted(territories.items())),
        }


def _urgency(case: Case, today: date, policy: Policy) -> tuple:
    """Priority first, then the oldest waiting next action; the case id settles ties, so that
    pages do not overlap."""
    action = next_action(case, today, policy)
    return (
        not priority_reasons(case, today, policy),
        not case.is_open,
        action.due or date.max,
        action.since,
        case.case_id,
    )
