"""What a counsellor does to a case, and what they see of it.

Each function runs in the unit of work it is given. A command loads the case locked, checks the
caller's territory, applies the domain command, saves, adds its events and commits.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, Literal

from raccrochage_platform.auth import Principal

from ..adapters.repository import CaseFilter
from ..domain.case import Case
from ..domain.deadlines import Policy
from ..domain.states import CaseStatus
from ..domain.worklist import WorkList, next_action, priority_reasons, worklist
from .messages import add_case_events
from .unit_of_work import PsadUnitOfWork


class NotYourTerritory(PermissionError):
    pass


def check_territory(principal: Principal, case: Case) -> None:
    if not principal.may_see(case.departement):
        raise NotYourTerritory(
            f"case {case.case_id} belongs to territory {case.departement}, "
            f"not to {principal.territory or 'an ops token (counts only)'}"
        )


async def command(
    uow: PsadUnitOfWork, principal: Principal, case_id: str, do: Callable[[Case, datetime], Any]
) -> Case:
    """Run `do(case, now)` on a case of the caller's territory and commit; an error (CaseError,
    NotYourTerritory) leaves it untouched."""
    async with uow:
        case = await uow.cases.get(case_id)
        check_territory(principal, case)
        do(case, datetime.now(UTC))
        await uow.cases.save(case)
        add_case_events(uow, case)
        await uow.commit()
    return case


async def get(uow: PsadUnitOfWork, principal: Principal, case_id: str) -> Case:
    async with uow:
        case = await uow.cases.get(case_id, lock=False)
    check_territory(principal, case)
    return case


async def search(
    uow: PsadUnitOfWork,
    *,
    departement: str,
    today: date,
    status: str | None = None,
    psad_id: str | None = None,
    work_list: WorkList | None = None,
    deadline: Literal["overdue", "due"] | None = None,
    owner: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[Case]]:
    """Cases of one territory matching every filter given, most urgent first: the open ones
    ranked by the work-list rules, then the closed ones, longest closed first.

    Closed cases pile up year after year while a PSAD's open ones stay its workload: only the
    open ones are loaded and ranked here; the closed ones are counted and paged by the
    database."""
    filters = CaseFilter(departement, today, status=status, psad_id=psad_id, owner=owner, deadline=deadline)
    wants_open = work_list is not WorkList.CLOSED and status != CaseStatus.CLOSED
    # a closed case owes no interview: no deadline filter keeps it
    wants_closed = (
        work_list in (None, WorkList.CLOSED) and status in (None, CaseStatus.CLOSED) and deadline is None
    )
    ranked: list[Case] = []
    closed_count = 0
    async with uow:
        # One snapshot for every read: a case closed between two of them would otherwise be
        # counted or shown twice (open, then closed) or not at all on a page boundary.
        await uow.cases.read_in_one_snapshot()
        if wants_open:
            ranked = await uow.cases.open_cases_in(filters)
            if work_list is not None:
                ranked = [case for case in ranked if worklist(case, today, uow.policy) is work_list]
            if deadline == "due":
                ranked = [
                    case
                    for case in ranked
                    if case.is_overdue(today, uow.policy) or case.interview_due_soon(today, uow.policy)
                ]
            ranked.sort(key=lambda case: urgency(case, today, uow.policy))
        page = ranked[offset : offset + limit]
        if wants_closed:
            closed_count = await uow.cases.count_closed_in(filters)
            if len(page) < limit and closed_count:
                page.extend(
                    await uow.cases.closed_cases_in(filters, max(0, offset - len(ranked)), limit - len(page))
                )
    return len(ranked) + closed_count, page


async def stats(uow: PsadUnitOfWork, departement: str | None, today: date) -> dict[str, Any]:
    """Counts by territory and status (and overdue interviews): nothing personal."""
    async with uow:
        await uow.cases.read_in_one_snapshot()
        rows = await uow.cases.counts_by_status(departement)
        late = await uow.cases.interview_overdue_counts(departement, today)
    territories: dict[str, dict[str, Any]] = {}
    for dep, status, count in rows:
        entry = territories.setdefault(
            dep, {"by_status": {}, "open": 0, "interview_overdue": late.get(dep, 0)}
        )
        entry["by_status"][status] = count
        if status != CaseStatus.CLOSED:
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


def urgency(case: Case, today: date, policy: Policy) -> tuple:
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
