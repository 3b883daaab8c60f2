"""Ops' unit of work: the platform's, with the read models, and the events of a batch projected
at commit in one load and one upsert per read model.

Handlers only `project` the events they receive; at `commit` the unit of work loads every row
the batch touches (one query per kind), applies the pure rules of domain/projection.py in
order, and upserts the changed rows, in the same transaction as the batch's inbox rows. A batch
of 500 events is then a few statements, not a thousand.
"""

from __future__ import annotations

from typing import Any

from raccrochage_platform.uow import AbstractUnitOfWork, SqlAlchemyUnitOfWork
from sqlalchemy.ext.asyncio import AsyncConnection

from ..adapters.repository import AbstractProjectionRepository, ProjectionRepository
from ..domain import projection
from ..domain.projection import Row


class OpsUnitOfWork(AbstractUnitOfWork):
    projections: AbstractProjectionRepository

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self._projected: list[tuple[str, Any]] = []

    def project(self, event_type: str, data: Any) -> None:
        """Apply this event to the read models when the unit of work commits."""
        if projection.projects(event_type):
            self._projected.append((event_type, data))

    async def commit(self) -> None:
        events, self._projected = self._projected, []
        if events:
            keys: dict[type[Row], set[str]] = {}
            for event_type, data in events:
                for kind, key in projection.keys_of(event_type, data).items():
                    keys.setdefault(kind, set()).add(key)
            store = await self.projections.load(keys)
            linked = projection.linked_keys(store)
            if linked:
                # Never with FOQUALE's and the clause sociale's events, which name both rows;
                # taken after the rest, out of the usual lock order.
                store.merge(await self.projections.load(linked))
            projection.apply(store, events)
            await self.projections.save(store)
        await super().commit()

    async def rollback(self) -> None:
        self._projected = []
        await super().rollback()


class SqlOpsUnitOfWork(OpsUnitOfWork, SqlAlchemyUnitOfWork):
    """One PostgreSQL transaction of ops (`ServiceContext.unit_of_work(SqlOpsUnitOfWork)`)."""

    projections: ProjectionRepository

    def open_repositories(self, connection: AsyncConnection) -> None:
        self.projections = ProjectionRepository(connection)
