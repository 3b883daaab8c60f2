"""In-memory repositories and unit of work for the service layer's unit tests.

Each transaction works on copies of what was committed; `commit` keeps them, leaving without
commit drops them, as a database transaction would.
"""

from __future__ import annotations

import copy
from datetime import date, datetime

from raccrochage_clause_sociale.domain.clause import Clause
from raccrochage_clause_sociale.domain.mission import Mission
from raccrochage_clause_sociale.domain.states import MissionStatus
from raccrochage_clause_sociale.service_layer.unit_of_work import (
    BilanDocumentRepository,
    ClauseNotFound,
    ClauseRepository,
    ClauseUnitOfWork,
    CompanyRepository,
    ConcurrentChange,
    Enrolment,
    EnrolmentRepository,
    MissionNotFound,
    MissionRepository,
)
from raccrochage_platform.fakes import FakeUnitOfWork


def _stored(aggregate):
    stored = copy.deepcopy(aggregate)
    stored.events = []  # a stored aggregate records nothing; its events went to the outbox
    return stored


class FakeClauseRepository(ClauseRepository):
    def __init__(self, rows: dict[str, Clause]) -> None:
        self.rows = rows

    async def add(self, clause: Clause) -> bool:
        if clause.clause_id in self.rows:
            return False
        self.rows[clause.clause_id] = _stored(clause)
        return True

    async def get(self, clause_id: str) -> Clause:
        try:
            return copy.deepcopy(self.rows[clause_id])
        except KeyError:
            raise ClauseNotFound(clause_id) from None

    async def ending_between(self, first: date, last: date) -> list[Clause]:
        found = [c for c in self.rows.values() if first <= c.ends_on <= last]
        return [copy.deepcopy(c) for c in sorted(found, key=lambda c: (c.ends_on, c.clause_id))]

    async def listed(
        self, *, buyer_id: str | None = None, company_id: str | None = None, departement: str | None = None
    ) -> list[Clause]:
        found = [
            c
            for c in self.rows.values()
            if buyer_id in (None, c.buyer.buyer_id)
            and company_id in (None, c.company_id)
            and departement in (None, c.buyer.departement)
        ]
        return [copy.deepcopy(c) for c in sorted(found, key=lambda c: (c.ends_on, c.clause_id))]


class FakeMissionRepository(MissionRepository):
    def __init__(self, rows: dict[str, Mission]) -> None:
        self.rows = rows

    async def add(self, mission: Mission) -> bool:
        if mission.mission_id in self.rows:
            return False
        mission.version = 1
        self.rows[mission.mission_id] = _stored(mission)
        return True

    async def get(self, mission_id: str, *, lock: bool = True) -> Mission:
        try:
            return copy.deepcopy(self.rows[mission_id])
        except KeyError:
            raise MissionNotFound(mission_id) from None

    async def save(self, mission: Mission) -> None:
        if self.rows[mission.mission_id].version != mission.version:
            raise ConcurrentChange(mission.mission_id)
        mission.version += 1
        self.rows[mission.mission_id] = _stored(mission)

    async def save_reservation(self, mission: Mission) -> bool:
        if self.rows[mission.mission_id].status is not MissionStatus.DISPONIBLE:
            return False
        mission.version = self.rows[mission.mission_id].version + 1
        self.rows[mission.mission_id] = _stored(mission)
        return True

    async def of_clause(self, clause_id: str) -> list[Mission]:
        found = [m for m in self.rows.values() if m.clause_id == clause_id]
        return [copy.deepcopy(m) for m in sorted(found, key=lambda m: (m.declared_at, m.mission_id))]

    async def hosted_by(self, company_id: str, company_tutor_id: str, site_key: str) -> list[Mission]:
        return [
            copy.deepcopy(m)
            for m in self.rows.values()
            if m.company_id == company_id and m.hosts(company_tutor_id, site_key)
        ]

    async def listed(
        self,
        *,
        company_id: str | None = None,
        departement: str | None = None,
        status: MissionStatus | None = None,
        reserved_by: str | None = None,
        limit: int = 200,
    ) -> list[Mission]:
        found = [
            m
            for m in self.rows.values()
            if company_id in (None, m.company_id)
            and departement in (None, m.departement)
            and status in (None, m.status)
            and reserved_by in (None, m.reserved_by)
        ]
        ordered = sorted(found, key=lambda m: (m.declared_at, m.mission_id))[:limit]
        return [copy.deepcopy(m) for m in ordered]

    async def awaiting_answer(self, made_before: datetime) -> list[str]:
        return sorted(
            m.mission_id
            for m in self.rows.values()
            if m.pending_proposal is not None and m.pending_proposal.made_at <= made_before
        )


class FakeCompanyRepository(CompanyRepository):
    def __init__(self, slots: dict[str, str | None]) -> None:
        self.slots = slots  # company -> the proposal waiting for its answer
        self.held: list[str] = []

    async def ensure(self, company_id: str) -> None:
        self.slots.setdefault(company_id, None)

    async def hold(self, company_id: str) -> None:
        self.held.append(company_id)

    async def take_proposal_slot(self, company_id: str, proposal_id: str) -> bool:
        if self.slots.get(company_id) is not None:
            return False
        self.slots[company_id] = proposal_id
        return True

    async def free_proposal_slot(self, company_id: str, proposal_id: str) -> None:
        if self.slots.get(company_id) == proposal_id:
            self.slots[company_id] = None


class FakeEnrolmentRepository(EnrolmentRepository):
    def __init__(self, rows: dict[str, Enrolment]) -> None:
        self.rows = rows

    async def record(self, enrolment: Enrolment) -> None:
        self.rows[enrolment.youth_id] = enrolment

    async def get(self, youth_id: str) -> Enrolment | None:
        return self.rows.get(youth_id)


class FakeBilanDocumentRepository(BilanDocumentRepository):
    def __init__(self, rows: dict[str, tuple[str, bytes, datetime]]) -> None:
        self.rows = rows

    async def add(self, mission_id: str, document_sha256: str, pdf: bytes, delivered_at: datetime) -> None:
        self.rows[mission_id] = (document_sha256, pdf, delivered_at)

    async def get(self, mission_id: str) -> bytes | None:
        row = self.rows.get(mission_id)
        return row[1] if row else None


class FakeClauseUnitOfWork(FakeUnitOfWork, ClauseUnitOfWork):
    def __init__(self) -> None:
        super().__init__("raccrochage/clause_sociale")
        self.committed: dict[str, dict] = {
            "clauses": {},
            "missions": {},
            "companies": {},
            "enrolments": {},
            "bilans": {},
        }

    async def _begin(self) -> None:
        await super()._begin()
        state = copy.deepcopy(self.committed)
        self.clauses = FakeClauseRepository(state["clauses"])
        self.missions = FakeMissionRepository(state["missions"])
        self.companies = FakeCompanyRepository(state["companies"])
        self.enrolments = FakeEnrolmentRepository(state["enrolments"])
        self.bilans = FakeBilanDocumentRepository(state["bilans"])

    async def _commit(self, events) -> None:
        await super()._commit(events)
        self.committed = copy.deepcopy(
            {
                "clauses": self.clauses.rows,
                "missions": self.missions.rows,
                "companies": self.companies.slots,
                "enrolments": self.enrolments.rows,
                "bilans": self.bilans.rows,
            }
        )
