"""PSAD's unit of work: the platform's, with the cases repository and the deadlines policy.

The service layer takes a `PsadUnitOfWork`: `SqlPsadUnitOfWork` in the service (the cases on the
transaction's connection), a fake with an in-memory repository in the unit tests.
"""

from __future__ import annotations

from typing import Any

from raccrochage_platform.uow import AbstractUnitOfWork, SqlAlchemyUnitOfWork
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..adapters.repository import AbstractCaseRepository, CaseRepository
from ..domain.deadlines import DEFAULT_POLICY, Policy


class PsadUnitOfWork(AbstractUnitOfWork):
    """What PSAD's service layer uses of a unit of work, beside the platform's events and commit."""

    cases: AbstractCaseRepository
    policy: Policy


class SqlPsadUnitOfWork(SqlAlchemyUnitOfWork, PsadUnitOfWork):
    """One PostgreSQL transaction of PSAD (`ServiceContext.unit_of_work(SqlPsadUnitOfWork, policy=...)`)."""

    def __init__(self, engine: AsyncEngine, *, policy: Policy = DEFAULT_POLICY, **options: Any) -> None:
        super().__init__(engine, **options)
        self.policy = policy

    def open_repositories(self, connection: AsyncConnection) -> None:
        self.cases = CaseRepository(connection, self.policy)
