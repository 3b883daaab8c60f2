"""PSAD's unit of work against real PostgreSQL, as its consumers use it: claim the batch in the
inbox, run the handler, commit; the cases, the inbox rows and the outbox rows go together or not
at all."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from raccrochage_contracts import new_event
from raccrochage_platform.consumer import Event
from raccrochage_platform.db import make_engine
from raccrochage_psad.domain.case import Case
from raccrochage_psad.service_layer import handover
from raccrochage_psad.service_layer.unit_of_work import SqlPsadUnitOfWork
from sqlalchemy import text

from .helpers import found, youth_id

CONSUMER = "psad_reperage"
T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def unit_of_work(psad_db: str):
    engine = make_engine(psad_db, pool_size=3)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM case_file WHERE youth_id LIKE 'uow-%'"))
    factory = lambda: SqlPsadUnitOfWork(engine, source="raccrochage/psad", stream="PSAD")  # noqa: E731
    async with factory() as uow:
        await uow.cases.insert_new(
            [
                Case.open(str(uuid.uuid4()), youth_id(f"uow-{n}"), "psad-33-medoc", "33", 17, T0)
                for n in range(6)
            ]
        )
        await uow.commit()
    yield factory
    await engine.dispose()


def _found(n: int) -> Event:
    data = found(f"uow-{n}")
    envelope = new_event(data, source="raccrochage/reperage", subject=data.youth_id)
    return Event(envelope, data, None, 1)


async def _consume(unit_of_work, batch: list[Event]) -> int:
    """What EventConsumer does with a batch: claim, handle the new events, commit."""
    async with unit_of_work() as uow:
        new = await uow.claim(CONSUMER, [(e.envelope.id, e.envelope.type) for e in batch])
        closed = await handover.found(uow, [e for e in batch if e.envelope.id in new])
        await uow.commit()
    return closed


async def _state(unit_of_work, n: int, event: Event) -> tuple:
    async with unit_of_work() as uow:
        conn = uow.connection
        case = (
            await conn.execute(
                text("SELECT status, found_base, version FROM case_file WHERE youth_id = :youth"),
                {"youth": youth_id(f"uow-{n}")},
            )
        ).one()
        inbox = (
            await conn.execute(
                text("SELECT count(*) FROM inbox WHERE event_id = :id"), {"id": event.envelope.id}
            )
        ).scalar_one()
        outbox = (
            await conn.execute(
                text("SELECT count(*) FROM outbox WHERE convert_from(envelope, 'UTF8') LIKE :cause"),
                {"cause": f'%"causationid":"{event.envelope.id}"%'},
            )
        ).scalar_one()
    return case.status, case.found_base, case.version, inbox, outbox


async def test_a_batch_closes_its_cases_with_its_inbox_rows_and_its_events(unit_of_work) -> None:
    batch = [_found(0), _found(1)]
    assert await _consume(unit_of_work, batch) == 2
    for n, event in enumerate(batch):  # status_changed and closed per case, caused by the enrolment
        assert await _state(unit_of_work, n, event) == ("closed", "cfa", 2, 1, 2)
    # Delivered again: the inbox knows the events, nothing is handled twice.
    assert await _consume(unit_of_work, batch) == 0
    assert await _state(unit_of_work, 0, batch[0]) == ("closed", "cfa", 2, 1, 2)


async def test_a_failing_batch_writes_nothing(unit_of_work) -> None:
    event, unknown = _found(2), _found("nobody")
    with pytest.raises(handover.CaseNotYetOpened):
        await _consume(unit_of_work, [event, unknown])
    assert await _state(unit_of_work, 2, event) == ("to_contact", None, 1, 0, 0)


async def test_a_case_locked_by_another_unit_of_work_is_waited_for(unit_of_work) -> None:
    """A counsellor's command holds the case: the enrolment waits for its commit, then closes the
    case it changed (version 2 -> 3), its change kept."""
    event = _found(3)
    async with unit_of_work() as counsellor:
        case = await counsellor.cases.open_case_of(youth_id("uow-3"))
        case.assign("counsellor-7", datetime.now(UTC))
        await counsellor.cases.save(case)
        consuming = asyncio.create_task(_consume(unit_of_work, [event]))
        await asyncio.sleep(0.3)
        assert not consuming.done()  # waiting for the row lock
        await counsellor.commit()
    assert await consuming == 1
    assert await _state(unit_of_work, 3, event) == ("closed", "cfa", 3, 1, 2)
    async with unit_of_work() as uow:
        assert (await uow.cases.get(case.case_id, lock=False)).owner == "counsellor-7"
