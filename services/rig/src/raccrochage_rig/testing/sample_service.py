"""A small real service on the platform, used by the rig and reliability tests.

It counts: `POST /counters/{name}` records `sample.counter.incremented.v1` in its outbox, its own
consumer applies the event to a `counters` table, `GET /counters/{name}` reads it. Enough to
prove that the rig provisions, migrates, declares, supervises and that events flow end to end.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from raccrochage_contracts import CloudEvent
from raccrochage_platform.consumer import Event
from raccrochage_platform.service import ServiceContext, ServiceSpec
from raccrochage_platform.uow import SqlAlchemyUnitOfWork
from sqlalchemy import Column, Integer, MetaData, Table, Text, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .sample import SAMPLE_REGISTRY, CounterIncremented

metadata = MetaData()
counters = Table(
    "counters", metadata, Column("name", Text, primary_key=True), Column("value", Integer, nullable=False)
)


class Counters:
    """The counters repository, on a unit of work's connection."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, name: str, by: int) -> None:
        statement = insert(counters).values(name=name, value=by)
        await self.connection.execute(
            statement.on_conflict_do_update(
                index_elements=["name"], set_={"value": counters.c.value + statement.excluded.value}
            )
        )

    async def value(self, name: str) -> int:
        found = await self.connection.execute(select(counters.c.value).where(counters.c.name == name))
        return found.scalar() or 0


class SampleUnitOfWork(SqlAlchemyUnitOfWork):
    counters: Counters

    def open_repositories(self, connection: AsyncConnection) -> None:
        self.counters = Counters(connection)


async def apply_increment(uow: SampleUnitOfWork, event: Event[CounterIncremented]) -> None:
    await uow.counters.add(event.data.counter, event.data.by)


async def increment(uow: SampleUnitOfWork, name: str, by: int) -> CloudEvent:
    async with uow:
        event = uow.add_event(CounterIncremented(counter=name, by=by), subject=name)
        await uow.commit()
    return event


async def read(uow: SampleUnitOfWork, name: str) -> int:
    async with uow:
        return await uow.counters.value(name)


async def build(context: ServiceContext) -> None:
    unit_of_work = context.unit_of_work(SampleUnitOfWork)
    context.consumer("sample_counter", unit_of_work).on("sample.counter.incremented.v1")(apply_increment)
    router = APIRouter()

    @router.post("/counters/{name}", status_code=202)
    async def post_increment(name: str, by: int = 1) -> dict:
        event = await increment(unit_of_work(), name, by)
        return {"event_id": str(event.id)}

    @router.get("/counters/{name}")
    async def get_counter(name: str) -> dict:
        return {"name": name, "value": await read(unit_of_work(), name)}

    context.app.include_router(router)


spec = ServiceSpec(
    name="sample",
    migrations=Path(__file__).parent / "sample_migrations",
    build=build,
    registry=SAMPLE_REGISTRY,
)
