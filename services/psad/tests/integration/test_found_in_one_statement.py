"""Partners' enrolments closing cases in one statement, against real PostgreSQL: what it writes
when it wins, and that it writes nothing and says so when it must leave the batch to `found`."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest_asyncio
from raccrochage_contracts import new_event
from raccrochage_platform.consumer import Event
from raccrochage_platform.db import libpq_dsn, make_engine, make_session_factory
from raccrochage_platform.outbox import Leases, OutboxWriter
from raccrochage_psad.adapters.repository import CaseRepository, open_cases_unlocked, save_in_one_statement
from raccrochage_psad.domain.case import Case
from raccrochage_psad.domain.deadlines import DEFAULT_POLICY
from raccrochage_psad.service_layer.handover import found_in_one_statement
from raccrochage_psad.service_layer.messages import envelopes

from .helpers import found, youth_id

OUTBOX = OutboxWriter("raccrochage/psad", "PSAD")
CONSUMER = "psad_reperage"
T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def conn(psad_db: str):
    engine = make_engine(psad_db, pool_size=1)
    async with make_session_factory(engine)() as session, session.begin():
        await CaseRepository(session).insert_new(
            [
                Case.open(str(uuid.uuid4()), youth_id(f"one-{n}"), "psad-33-test", "33", 17, T0)
                for n in range(6)
            ]
        )
    await engine.dispose()
    connection = await asyncpg.connect(libpq_dsn(psad_db))
    yield connection
    await connection.close()


def _found(n: int) -> Event:
    data = found(f"one-{n}")
    envelope = new_event(data, source="raccrochage/reperage", subject=data.youth_id)
    return Event(envelope, data, None, 1)


async def _state(conn: asyncpg.Connection, n: int, event: Event) -> tuple:
    case = await conn.fetchrow(
        "SELECT status, found_base, version FROM case_file WHERE youth_id = $1", youth_id(f"one-{n}")
    )
    inbox = await conn.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1", event.envelope.id)
    outbox = await conn.fetchval(
        "SELECT count(*) FROM outbox WHERE convert_from(envelope, 'UTF8') LIKE $1", f"%{event.envelope.id}%"
    )
    return case["status"], case["found_base"], case["version"], inbox, outbox


async def test_a_batch_closes_its_cases_with_inbox_rows_and_leased_events(conn: asyncpg.Connection) -> None:
    batch = [_found(0), _found(1)]
    leases = Leases(30)
    assert await found_in_one_statement(conn, OUTBOX, DEFAULT_POLICY, CONSUMER, batch, leases)
    for n, event in enumerate(batch):  # status_changed and closed per case, caused by the enrolment
        assert await _state(conn, n, event) == ("closed", "cfa", 2, 1, 2)
    assert len(leases.rows) == 4
    # The same enrolment again: no open case any more, left to `found` (which logs and skips it).
    assert not await found_in_one_statement(conn, OUTBOX, DEFAULT_POLICY, CONSUMER, batch[:1], Leases(30))


async def test_a_case_saved_since_it_was_read_leaves_the_batch_and_writes_nothing(
    conn: asyncpg.Connection,
) -> None:
    event = _found(2)
    read = await open_cases_unlocked(conn, [event.data.youth_id])
    ((case, version),) = read
    await conn.execute(
        "UPDATE case_file SET version = version + 1 WHERE case_id = $1", uuid.UUID(case.case_id)
    )
    case.mark_found("cfa", datetime.now(UTC))
    out = envelopes(OUTBOX, case, event.envelope, DEFAULT_POLICY)
    leases = Leases(30)
    assert not await save_in_one_statement(
        conn, OUTBOX, CONSUMER, [(event.envelope.id, event.envelope.type)], read, out, leases, DEFAULT_POLICY
    )
    assert await _state(conn, 2, event) == ("to_contact", None, version + 1, 0, 0)
    assert leases.rows == []


async def test_an_event_already_in_the_inbox_leaves_the_batch_and_writes_nothing(
    conn: asyncpg.Connection,
) -> None:
    event = _found(3)
    await conn.execute(
        "INSERT INTO inbox (consumer, event_id, event_type) VALUES ($1, $2, $3)",
        CONSUMER,
        event.envelope.id,
        event.envelope.type,
    )
    assert not await found_in_one_statement(conn, OUTBOX, DEFAULT_POLICY, CONSUMER, [event], Leases(30))
    assert await _state(conn, 3, event) == ("to_contact", None, 1, 1, 0)


async def test_a_youth_twice_in_a_batch_is_left_to_found(conn: asyncpg.Connection) -> None:
    assert not await found_in_one_statement(
        conn, OUTBOX, DEFAULT_POLICY, CONSUMER, [_found(3), _found(3)], Leases(30)
    )


async def test_an_event_already_in_the_outbox_leaves_the_batch_and_writes_nothing(
    conn: asyncpg.Connection,
) -> None:
    """All or nothing even when every event is known: not skipped, refused."""
    event = _found(3)
    ((case, version),) = read = await open_cases_unlocked(conn, [event.data.youth_id])
    case.mark_found("cfa", datetime.now(UTC))
    out = envelopes(OUTBOX, case, event.envelope, DEFAULT_POLICY)
    await OUTBOX.add_many_raw(conn, out)  # the same ids, written before
    assert not await save_in_one_statement(
        conn,
        OUTBOX,
        "another_consumer",
        [(event.envelope.id, event.envelope.type)],
        read,
        out,
        Leases(30),
        DEFAULT_POLICY,
    )
    row = await conn.fetchrow(
        "SELECT status, version FROM case_file WHERE case_id = $1", uuid.UUID(case.case_id)
    )
    assert (row["status"], row["version"]) == ("to_contact", version)
    assert await conn.fetchval("SELECT count(*) FROM inbox WHERE consumer = 'another_consumer'") == 0


async def test_a_save_in_flight_elsewhere_is_waited_for_then_leaves_the_batch(
    conn: asyncpg.Connection, psad_db: str
) -> None:
    """Read, then another transaction saves the case and holds its lock: the statement waits for
    it, finds the version moved on, and writes nothing; the other transaction's change stays."""
    event = _found(4)
    ((case, version),) = read = await open_cases_unlocked(conn, [event.data.youth_id])
    case.mark_found("cfa", datetime.now(UTC))
    out = envelopes(OUTBOX, case, event.envelope, DEFAULT_POLICY)
    other = await asyncpg.connect(libpq_dsn(psad_db))
    try:
        holding = other.transaction()
        await holding.start()
        await other.execute(
            "UPDATE case_file SET owner = 'counsellor-7', version = version + 1 WHERE case_id = $1",
            uuid.UUID(case.case_id),
        )
        saving = asyncio.create_task(
            save_in_one_statement(
                conn,
                OUTBOX,
                CONSUMER,
                [(event.envelope.id, event.envelope.type)],
                read,
                out,
                Leases(30),
                DEFAULT_POLICY,
            )
        )
        await asyncio.sleep(0.3)
        assert not saving.done()  # waiting for the row lock
        await holding.commit()
        assert not await saving
    finally:
        await other.close()
    row = await conn.fetchrow(
        "SELECT status, owner, version FROM case_file WHERE case_id = $1", uuid.UUID(case.case_id)
    )
    assert (row["status"], row["owner"], row["version"]) == ("to_contact", "counsellor-7", version + 1)
    assert await _state(conn, 4, event) == ("to_contact", None, version + 1, 0, 0)
