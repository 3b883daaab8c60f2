"""In-memory read models and unit of work for ops' service-layer tests."""

from __future__ import annotations

import copy

from raccrochage_ops.adapters.repository import AbstractProjectionRepository
from raccrochage_ops.domain.projection import ROW_KINDS, Row, Store
from raccrochage_ops.service_layer.unit_of_work import OpsUnitOfWork
from raccrochage_platform.fakes import FakeUnitOfWork


class FakeProjectionRepository(AbstractProjectionRepository):
    def __init__(self) -> None:
        self.tables: dict[type[Row], dict[str, Row]] = {kind: {} for kind in ROW_KINDS}
        self.loads = 0

    async def load(self, keys: dict[type[Row], set[str]]) -> Store:
        self.loads += 1
        store = Store()
        for kind, wanted in keys.items():
            for key in wanted:
                if key in self.tables[kind]:
                    store.put(copy.deepcopy(self.tables[kind][key]))
        return store

    async def erase(self) -> None:
        for rows in self.tables.values():
            rows.clear()

    async def forget_handled(self, consumers: list[str]) -> None:
        self.forgotten = list(consumers)

    async def save(self, store: Store) -> None:
        for kind in ROW_KINDS:
            for row in store.changed_rows(kind):
                self.tables[kind][getattr(row, kind.KEY)] = copy.deepcopy(row)


class FakeOpsUnitOfWork(OpsUnitOfWork, FakeUnitOfWork):
    def __init__(self, projections: FakeProjectionRepository | None = None) -> None:
        super().__init__(source="raccrochage/ops")
        self.projections = projections or FakeProjectionRepository()
