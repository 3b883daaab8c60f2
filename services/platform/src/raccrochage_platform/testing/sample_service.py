"""A small real service on the platform, used by the rig and reliability tests.

It counts: `POST /counters/{name}` records `sample.counter.incremented.v1` in its outbox, its own
consumer applies the event to a `counters` table, `GET /counters/{name}` reads it. Enough to
prove that the rig provisions, migrates, declares, supervises and that events flow end to end.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from sqlalchemy import Column, Integer, MetaData, Table, Text, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..consumer import Event
from ..service import ServiceContext, ServiceSpec
from .sample import SAMPLE_REGISTRY, CounterIncremented

metadata = MetaData()
counters = Table(
    "counters", metadata, Column("name", Text, primary_key=True), Column("value", Integer, nullable=False)
)


async def apply_increment(session: AsyncSession, event: Event[CounterIncremented]) -> None:
    statement = insert(counters).values(name=event.data.counter, value=event.data.by)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["name"], set_={"value": counters.c.value + statement.excluded.value}
        )
    )


async def build(context: ServiceContext) -> None:
    context.consumer("sample_counter").on("sample.counter.incremented.v1")(apply_increment)
    router = APIRouter()

    @router.post("/counters/{name}", status_code=202)
    async def increment(name: str, by: int = 1) -> dict:
        async with context.sessions() as session, session.begin():
            event = await context.outbox.add(session, CounterIncremented(counter=name, by=by), subject=name)
        return {"event_id": str(event.id)}

    @router.get("/counters/{name}")
    async def read(name: str) -> dict:
        async with context.sessions() as session:
            found = (await session.execute(select(counters.c.value).where(counters.c.name == name))).scalar()
        return {"name": name, "value": found or 0}

    context.app.include_router(router)


spec = ServiceSpec(
    name="sample",
    migrations=Path(__file__).parent / "sample_migrations",
    build=build,
    registry=SAMPLE_REGISTRY,
)
