"""The clause_sociale unit of work and the repositories it opens: what handlers may read and write.

The service runs `SqlClauseUnitOfWork`: the platform's SqlAlchemyUnitOfWork with the PostgreSQL
repositories (adapters/repository.py) on the transaction's AsyncConnection. Unit tests use
in-memory fakes (tests/unit/fakes.py).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import date, datetime

from raccrochage_platform.uow import AbstractUnitOfWork, SqlAlchemyUnitOfWork
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.clause import Clause
from ..domain.mission import Mission
from ..domain.states import MissionStatus


class ClauseNotFound(LookupError):
    pass


class MissionNotFound(LookupError):
    pass


class ConcurrentChange(RuntimeError):
    """A mission was saved from a copy older than the stored one (a lost update avoided)."""


@dataclass(frozen=True)
class Enrolment:
    """A youth the MLDS enrolled on one of its actions (mlds.enrolment.accepted.v1): the
    clause sociale is for them only."""

    youth_id: str
    dispositif: str
    starts_on: date
    case_id: str
    request_id: str
    enrolled_at: datetime


class ClauseRepository(abc.ABC):
    @abc.abstractmethod
    async def add(self, clause: Clause) -> bool:
        """Store a new clause; False (nothing stored) when its id is there already."""

    @abc.abstractmethod
    async def get(self, clause_id: str) -> Clause:
        """The clause; ClauseNotFound otherwise."""

    @abc.abstractmethod
    async def ending_between(self, first: date, last: date) -> list[Clause]:
        """Clauses whose contract ends from `first` to `last` included, soonest first."""

    @abc.abstractmethod
    async def listed(
        self, *, buyer_id: str | None = None, company_id: str | None = None, departement: str | None = None
    ) -> list[Clause]:
        """The clauses of a buyer, of a company, or of a département (each filter when given),
        soonest end first."""


class MissionRepository(abc.ABC):
    @abc.abstractmethod
    async def add(self, mission: Mission) -> bool:
        """Store a new mission; False (nothing stored) when its id is there already."""

    @abc.abstractmethod
    async def get(self, mission_id: str, *, lock: bool = True) -> Mission:
        """The mission; with `lock`, held for this transaction (commands on it queue).
        MissionNotFound otherwise."""

    @abc.abstractmethod
    async def save(self, mission: Mission) -> None:
        """Store the changes of a mission got from `get`; ConcurrentChange if it changed since."""

    @abc.abstractmethod
    async def save_reservation(self, mission: Mission) -> bool:
        """Store the reservation `Mission.reserve` made, if and only if the stored mission is
        still free: one atomic conditional update, so that of tutors racing for a mission exactly
        one wins. False (nothing stored) when another tutor got it first."""

    @abc.abstractmethod
    async def of_clause(self, clause_id: str) -> list[Mission]:
        """Every mission of a clause, oldest first."""

    @abc.abstractmethod
    async def hosted_by(self, company_id: str, company_tutor_id: str, site_key: str) -> list[Mission]:
        """The company's placements (a convention drafted or signed) tutored by this company
        referent at this place."""

    @abc.abstractmethod
    async def listed(
        self,
        *,
        company_id: str | None = None,
        departement: str | None = None,
        status: MissionStatus | None = None,
        reserved_by: str | None = None,
        limit: int = 200,
    ) -> list[Mission]:
        """Missions filtered by each criterion given, oldest first, at most `limit`."""

    @abc.abstractmethod
    async def awaiting_answer(self, made_before: datetime) -> list[str]:
        """Ids of the missions whose pending proposal was made at or before `made_before`."""


class CompanyRepository(abc.ABC):
    """The companies that hold clauses. Each has one slot for a proposal waiting for its answer
    (one youth per company at a time), taken and freed by the database in one step each."""

    @abc.abstractmethod
    async def ensure(self, company_id: str) -> None:
        """The company exists (created at its first clause)."""

    @abc.abstractmethod
    async def hold(self, company_id: str) -> None:
        """Hold the company for this transaction: conventions of its tutors are drafted one at a
        time, so that two never overlap."""

    @abc.abstractmethod
    async def take_proposal_slot(self, company_id: str, proposal_id: str) -> bool:
        """The company's slot for this proposal, if free: False when another proposal waits."""

    @abc.abstractmethod
    async def free_proposal_slot(self, company_id: str, proposal_id: str) -> None:
        """The proposal is answered or lapsed: the slot is free (if this proposal held it)."""


class EnrolmentRepository(abc.ABC):
    @abc.abstractmethod
    async def record(self, enrolment: Enrolment) -> None:
        """Remember (or refresh) the youth's MLDS enrolment."""

    @abc.abstractmethod
    async def get(self, youth_id: str) -> Enrolment | None:
        """The youth's MLDS enrolment, if the MLDS enrolled them."""


class BilanDocumentRepository(abc.ABC):
    @abc.abstractmethod
    async def add(self, mission_id: str, document_sha256: str, pdf: bytes, delivered_at: datetime) -> None:
        """Keep the document handed to the buyer (its legal value lies in this very file)."""

    @abc.abstractmethod
    async def get(self, mission_id: str) -> bytes | None:
        """The PDF delivered for a mission, if any."""


class ClauseUnitOfWork(AbstractUnitOfWork):
    """One clause_sociale transaction: its repositories, its inbox claims, the events it publishes."""

    source = "raccrochage/clause_sociale"
    clauses: ClauseRepository
    missions: MissionRepository
    companies: CompanyRepository
    enrolments: EnrolmentRepository
    bilans: BilanDocumentRepository


class SqlClauseUnitOfWork(SqlAlchemyUnitOfWork, ClauseUnitOfWork):
    """One PostgreSQL transaction of clause_sociale (`ServiceContext.unit_of_work(SqlClauseUnitOfWork)`)."""

    def open_repositories(self, connection: AsyncConnection) -> None:
        # Imported here: the adapters import this module for the repositories' interfaces.
        from ..adapters import repository

        self.clauses = repository.SqlClauseRepository(connection)
        self.missions = repository.SqlMissionRepository(connection)
        self.companies = repository.SqlCompanyRepository(connection)
        self.enrolments = repository.SqlEnrolmentRepository(connection)
        self.bilans = repository.SqlBilanDocumentRepository(connection)
