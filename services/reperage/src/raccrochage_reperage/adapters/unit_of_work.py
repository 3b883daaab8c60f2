"""Repérage's unit of work on PostgreSQL: its repositories on the transaction's connection."""

from __future__ import annotations

from raccrochage_platform.uow import SqlAlchemyUnitOfWork
from sqlalchemy.ext.asyncio import AsyncConnection

from ..service_layer.unit_of_work import AbstractReperageUnitOfWork
from .repositories import (
    SqlCampaignRepository,
    SqlEnrolmentRepository,
    SqlErasureRepository,
    SqlHandoverRepository,
    SqlVaultRepository,
)


class ReperageUnitOfWork(SqlAlchemyUnitOfWork, AbstractReperageUnitOfWork):
    """One transaction of repérage: campaigns, handovers, partner enrolments, the vault,
    erasure requests; the
    inbox claim and the outbox are the platform's (`SqlAlchemyUnitOfWork`)."""

    def open_repositories(self, connection: AsyncConnection) -> None:
        self.campaigns = SqlCampaignRepository(connection)
        self.handovers = SqlHandoverRepository(connection)
        self.enrolments = SqlEnrolmentRepository(connection)
        self.vault = SqlVaultRepository(connection)
        self.erasures = SqlErasureRepository(connection)
