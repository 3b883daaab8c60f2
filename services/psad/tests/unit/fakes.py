"""A fake unit of work and case repository for PSAD's service-layer tests (no database).

The repository keeps each case as the row `CaseRepository` would store (`row_of`), and loads it
back with `case_of`: a case changed but not saved stays as it was. The unit of work rolls the
repository back with its transaction: what a unit of work left without committing is gone.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from raccrochage_platform.fakes import FakeUnitOfWork
from raccrochage_psad.adapters.repository import (
    AbstractCaseRepository,
    CaseFilter,
    CaseNotFound,
    LatestCase,
    case_of,
    is_fresh,
    row_of,
)
from raccrochage_psad.domain.case import Case
from raccrochage_psad.domain.contact import ContactOutcome
from raccrochage_psad.domain.deadlines import DEFAULT_POLICY, Policy
from raccrochage_psad.domain.states import CaseStatus
from raccrochage_psad.service_layer.unit_of_work import PsadUnitOfWork

CLOSED = CaseStatus.CLOSED.value


class FakeCaseRepository(AbstractCaseRepository):
    def __init__(self, policy: Policy = DEFAULT_POLICY) -> None:
        self.policy = policy
        self.rows: dict[str, dict[str, Any]] = {}  # case id -> stored row (with version)
        self.snapshots = 0  # read_in_one_snapshot calls

    # --- helpers for tests ---------------------------------------------------------------------
    def add(self, *cases: Case) -> None:
        """Store cases as they are (their events dropped), as if committed earlier."""
        for case in cases:
            case.events.clear()
            self._store(case, version=1)

    def stored(self, case_id: str) -> Case:
        return case_of(self.rows[case_id])

    def cases_of(self, youth_id: str) -> list[Case]:
        return [case_of(row) for row in self.rows.values() if row["youth_id"] == youth_id]

    def _store(self, case: Case, version: int) -> None:
        previous = self.rows.get(case.case_id, {})
        self.rows[case.case_id] = {
            **row_of(case, self.policy),
            "version": version,
            "last_reported_on": previous.get("last_reported_on"),
        }

    def _open_row(self, youth_id: str) -> dict[str, Any] | None:
        return next(
            (row for row in self.rows.values() if row["youth_id"] == youth_id and row["status"] != CLOSED),
            None,
        )

    # --- the repository ------------------------------------------------------------------------
    async def get(self, case_id: str | uuid.UUID, *, lock: bool = True) -> Case:
        row = self.rows.get(str(case_id))
        if row is None:
            raise CaseNotFound(f"no case {case_id}")
        return case_of(row)

    async def open_case_of(self, youth_id: str, *, lock: bool = True) -> Case | None:
        row = self._open_row(youth_id)
        return case_of(row) if row else None

    async def open_cases_of(self, youth_ids: Sequence[str]) -> list[Case]:
        return [case_of(row) for youth_id in youth_ids if (row := self._open_row(youth_id))]

    async def latest_cases(self, youth_ids: Sequence[str]) -> dict[str, LatestCase]:
        latest: dict[str, LatestCase] = {}
        for youth_id in youth_ids:
            rows = [row for row in self.rows.values() if row["youth_id"] == youth_id]
            if rows:
                row = max(rows, key=lambda r: (r["status"] != CLOSED, r["updated_at"]))
                latest[youth_id] = LatestCase(
                    row["case_id"], youth_id, row["psad_id"], CaseStatus(row["status"]), row["transferred_to"]
                )
        return latest

    async def insert_new(self, cases: Sequence[Case]) -> set[str]:
        inserted = set()
        for case in cases:
            if self._open_row(case.youth_id) is None:
                self._store(case, version=1)
                inserted.add(case.case_id)
        return inserted

    async def open_new(self, cases: Sequence[Case]) -> tuple[set[str], dict[str, LatestCase]]:
        if not all(is_fresh(c) and c.opened_at == cases[0].opened_at for c in cases):
            raise ValueError("open_new takes cases just opened, all at the same time")
        known = await self.latest_cases([case.youth_id for case in cases])
        inserted = set()
        for case in cases:
            latest = known.get(case.youth_id)
            if latest is not None and (
                latest.is_open or (latest.psad_id == case.psad_id and latest.transferred_to is None)
            ):
                continue
            inserted |= await self.insert_new([case])
        return inserted, known

    async def save_many(self, cases: Sequence[Case]) -> None:
        for case in cases:
            self._store(case, version=self.rows[case.case_id]["version"] + 1)

    async def touch_reported(self, case_id: str, on: date) -> None:
        row = self.rows[case_id]
        row["last_reported_on"] = max(row["last_reported_on"] or on, on)

    async def due_for_timers(self, today: date, now: datetime, limit: int = 500) -> list[Case]:
        def due(row: dict[str, Any]) -> bool:
            attempts = row["history"]["attempts"]
            unreachable = (
                row["status"] == CaseStatus.CONTACT_IN_PROGRESS.value
                and row["failed_attempts"] >= self.policy.max_attempts
                and row["first_attempt_at"] <= now - timedelta(days=self.policy.unreachable_after_days)
                and (not attempts or attempts[-1]["outcome"] != ContactOutcome.MOVED.value)
            )
            escalation = (
                row["escalation_due_on"] is not None
                and row["escalation_due_on"] <= today
                and row["escalation_raised_on"] is None
                and row["status"] not in (CaseStatus.IN_SOLUTION.value, CLOSED)
                and row["age_at_opening"] < 18
                and row["opened_at"].replace(year=row["opened_at"].year + 18 - row["age_at_opening"]) > now
            )
            return unreachable or escalation

        rows = sorted(filter(due, self.rows.values()), key=lambda row: row["updated_at"])
        return [case_of(row) for row in rows[:limit]]

    async def read_in_one_snapshot(self) -> None:
        self.snapshots += 1

    def _matching(self, filters: CaseFilter) -> list[dict[str, Any]]:
        def keeps(row: dict[str, Any]) -> bool:
            deadline = row["interview_deadline"]
            return (
                row["departement"] == filters.departement
                and filters.status in (None, row["status"])
                and filters.psad_id in (None, row["psad_id"])
                and filters.owner in (None, row["owner"])
                and (filters.deadline != "overdue" or (deadline is not None and deadline < filters.today))
                and (filters.deadline != "due" or deadline is not None)
            )

        return list(filter(keeps, self.rows.values()))

    async def open_cases_in(self, filters: CaseFilter) -> list[Case]:
        return [case_of(row) for row in self._matching(filters) if row["status"] != CLOSED]

    async def count_closed_in(self, filters: CaseFilter) -> int:
        return sum(row["status"] == CLOSED for row in self._matching(filters))

    async def closed_cases_in(self, filters: CaseFilter, offset: int, limit: int) -> list[Case]:
        closed = sorted(
            (row for row in self._matching(filters) if row["status"] == CLOSED),
            key=lambda row: (row["status_since"], row["case_id"]),
        )
        return [case_of(row) for row in closed[offset : offset + limit]]

    async def counts_by_status(self, departement: str | None) -> list[tuple[str, str, int]]:
        counts: dict[tuple[str, str], int] = {}
        for row in self.rows.values():
            if departement in (None, row["departement"]):
                key = (row["departement"], row["status"])
                counts[key] = counts.get(key, 0) + 1
        return [(dep, status, count) for (dep, status), count in sorted(counts.items())]

    async def interview_overdue_counts(self, departement: str | None, today: date) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows.values():
            deadline = row["interview_deadline"]
            if (
                departement in (None, row["departement"])
                and row["status"] != CLOSED
                and deadline is not None
                and deadline < today
            ):
                counts[row["departement"]] = counts.get(row["departement"], 0) + 1
        return counts


class FakePsadUnitOfWork(FakeUnitOfWork, PsadUnitOfWork):
    """The platform's fake unit of work with a fake case repository that rolls back with it."""

    def __init__(self, policy: Policy = DEFAULT_POLICY) -> None:
        super().__init__(source="raccrochage/psad")
        self.policy = policy
        self.cases = FakeCaseRepository(policy)
        self.rollbacks = 0
        self._committed_rows: dict[str, dict[str, Any]] | None = None

    async def _begin(self) -> None:
        await super()._begin()
        self._committed_rows = copy.deepcopy(self.cases.rows)

    async def _commit(self, events: list) -> None:
        await super()._commit(events)
        self._committed_rows = copy.deepcopy(self.cases.rows)

    async def _rollback(self) -> None:
        await super()._rollback()
        if self._committed_rows is not None and self._committed_rows != self.cases.rows:
            self.cases.rows = self._committed_rows
            self.rollbacks += 1
        self._committed_rows = copy.deepcopy(self.cases.rows)

    def published_of(self, event_type: str) -> list:
        return [event for event in self.published if event.type == event_type]
