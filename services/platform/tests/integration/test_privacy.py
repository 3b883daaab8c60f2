"""A service's side of erasure and export (raccrochage_platform.privacy) on real PostgreSQL, with
the sample service's counters standing for the rows a service keeps about a youth."""

from __future__ import annotations

import functools
import json
import uuid

import pytest
from raccrochage_contracts import new_event
from raccrochage_contracts.events.privacy_v1 import ErasureRequested
from raccrochage_platform.consumer import Event
from raccrochage_platform.privacy import Erasure, YouthRecords, erase_youth, export_youth, rows_of
from raccrochage_rig.testing.sample import CounterIncremented
from raccrochage_rig.testing.sample_service import SampleUnitOfWork
from raccrochage_rig.testing.sample_service import counters as counter_table
from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def erase(connection: AsyncConnection, youth_id: str, erasure: Erasure) -> None:
    gone = await connection.execute(delete(counter_table).where(counter_table.c.name == youth_id))
    erasure.count("counters", gone.rowcount)


async def export(connection: AsyncConnection, youth_id: str) -> dict:
    return {"counters": await rows_of(connection, counter_table, counter_table.c.name == youth_id)}


RECORDS = YouthRecords(erase=erase, export=export)


def request(youth_id: str) -> Event[ErasureRequested]:
    data = ErasureRequested(request_id=uuid.uuid4(), youth_id=youth_id)
    envelope = new_event(data, source="raccrochage/reperage", subject=str(data.request_id))
    return Event(envelope, data, None, 1)


async def test_a_service_without_a_stream_erases_and_answers_once_on_the_privacy_stream(
    counters: AsyncEngine,
) -> None:
    youth_id, other = uuid.uuid4().hex * 2, uuid.uuid4().hex * 2
    # ops' case: no stream of its own (stream=None), it answers all the same.
    unit_of_work = functools.partial(SampleUnitOfWork, counters, source="raccrochage/sample", stream=None)
    async with counters.begin() as conn:
        await conn.execute(
            counter_table.insert(), [{"name": youth_id, "value": 3}, {"name": other, "value": 1}]
        )
        # Earlier events about the youth: one published, one pending.
        for by, published in ((1, "now()"), (2, "NULL")):
            envelope = new_event(
                CounterIncremented(counter=youth_id, by=by), source="raccrochage/sample", subject=youth_id
            )
            await conn.execute(
                text(
                    "INSERT INTO outbox (event_id, event_type, nats_subject, stream, aggregate_key, envelope, published_at) "
                    f"VALUES (:id, :type, :type, 'SAMPLE', :key, :envelope, {published})"
                ),
                {"id": envelope.id, "type": envelope.type, "key": youth_id, "envelope": envelope.to_json()},
            )

    asked = request(youth_id)
    exported = await export_youth(unit_of_work, "sample", RECORDS, {"youth_id": youth_id})
    for _ in range(2):  # a redelivery: the same answer, written once
        async with unit_of_work() as uow:
            erasure = await erase_youth(uow, asked, "sample", RECORDS)
            await uow.commit()

    assert exported == {
        "status": "ok",
        "service": "sample",
        "records": {"counters": [{"name": youth_id, "value": 3}]},
    }
    async with counters.connect() as conn:
        answers = (
            await conn.execute(
                text(
                    "SELECT stream, envelope FROM outbox WHERE event_type = 'privacy.erasure.done.v1' AND aggregate_key = :r"
                ),
                {"r": str(asked.data.request_id)},
            )
        ).all()
        left = (
            await conn.execute(text("SELECT count(*) FROM outbox WHERE aggregate_key = :y"), {"y": youth_id})
        ).scalar_one()
        names = set((await conn.execute(text("SELECT name FROM counters"))).scalars())
    [(stream, envelope)] = answers
    assert stream == "PRIVACY"
    assert json.loads(envelope)["data"] == {
        "request_id": str(asked.data.request_id),
        "service": "sample",
        "erased": {"counters": 1, "outbox": 1},
        "anonymised": {},
    }
    assert erasure.erased == {}  # the second pass found nothing left
    assert left == 1  # the pending event stays: its consumers must still get it
    assert youth_id not in names and other in names
    assert (await export_youth(unit_of_work, "sample", RECORDS, {"youth_id": "Martin"}))[
        "status"
    ] == "refused"
