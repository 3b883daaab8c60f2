"""The live enrolment path against real PostgreSQL: one statement when one youth matches, the
locking transaction otherwise, and the same outcome either way."""

from __future__ import annotations

import uuid
from datetime import date

import asyncpg
import pytest
import pytest_asyncio
from nats.aio.client import Client
from raccrochage_contracts import CloudEvent, new_event
from raccrochage_contracts.events.partner_v1 import EnrolmentStarted
from raccrochage_contracts.events.reperage_v1 import YouthReportedAgain
from raccrochage_platform.db import libpq_dsn, make_engine
from raccrochage_platform.outbox import Leases, OutboxRelay, OutboxWriter
from raccrochage_reperage.domain.partners import identity_key
from raccrochage_reperage.service_layer.partners import Duplicate, Partner, enrolment_started

pytestmark = pytest.mark.asyncio(loop_scope="session")
TODAY = date(2026, 11, 28)
WHO = Partner("cfa-gironde", "cfa")
OUTBOX = OutboxWriter("raccrochage/reperage", "REPERAGE")
INBOX = "test_live"
BIRTH = date(2009, 2, 28)
Y1, Y2 = "1" * 64, "2" * 64  # youth_ids are 64 hex digits


@pytest_asyncio.fixture(loop_scope="session")
async def conn(reperage_db: str):
    connection = await asyncpg.connect(libpq_dsn(reperage_db))
    yield connection
    await connection.close()


async def hand_over(
    conn: asyncpg.Connection,
    youth_id: str,
    ine: str,
    psad: str = "psad-33",
    nom: str = "Martin",
    prenom: str = "Léa",
) -> None:
    await conn.execute(
        "INSERT INTO youth (youth_id, ine, identity_key, nom, prenom, date_naissance, code_postal, date_sortie) "
        "VALUES ($1, $2, $3, $4, $5, $6, '33000', '2026-06-30')",
        youth_id,
        ine,
        identity_key(nom, prenom, BIRTH),
        nom,
        prenom,
        BIRTH,
    )
    await conn.execute(
        "INSERT INTO handover (youth_id, psad_id, campaign_id) VALUES ($1, $2, 'c1')", youth_id, psad
    )


def enrolment(
    ine: str | None, *, nom: str = "Martin", prenom: str = "Léa", since: date = TODAY
) -> CloudEvent:
    data = EnrolmentStarted(ine=ine, nom=nom, prenom=prenom, date_naissance=BIRTH, date_debut=since)
    return new_event(data, source=f"partner/{WHO.partner_id}", subject=str(uuid.uuid4()))


async def started(conn: asyncpg.Connection, event: CloudEvent) -> list[str]:
    return await enrolment_started(conn, OUTBOX, INBOX, WHO, event, EnrolmentStarted.read(event.data), TODAY)


async def found_events(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT aggregate_key, envelope FROM outbox WHERE event_type = 'reperage.youth.found.v1'"
    )
    return sorted((r["aggregate_key"], CloudEvent.from_json(r["envelope"]).data["psad_id"]) for r in rows)


async def test_a_handed_over_youth_is_found_once_and_a_redelivery_is_a_duplicate(
    conn: asyncpg.Connection,
) -> None:
    await hand_over(conn, Y1, "A1234567890")
    event = enrolment("a1234567890 ")
    assert await started(conn, event) == [Y1]
    with pytest.raises(Duplicate):
        await started(conn, event)
    assert await found_events(conn) == [(Y1, "psad-33")]
    assert await conn.fetchval("SELECT open FROM handover WHERE youth_id = $1", Y1) is False
    assert await conn.fetchval("SELECT count(*) FROM partner_enrolment") == 1


async def test_an_enrolment_of_nobody_handed_over_is_kept_and_announces_nothing(
    conn: asyncpg.Connection,
) -> None:
    event = enrolment("B1234567890")
    assert await started(conn, event) == []
    with pytest.raises(Duplicate):
        await started(conn, event)
    assert await conn.fetchval("SELECT count(*) FROM partner_enrolment") == 1
    assert await found_events(conn) == []


async def test_an_enrolment_starting_later_finds_nobody_yet(conn: asyncpg.Connection) -> None:
    await hand_over(conn, Y1, "C1234567890")
    assert await started(conn, enrolment("C1234567890", since=date(2027, 1, 5))) == []
    assert await conn.fetchval("SELECT open FROM handover WHERE youth_id = $1", Y1) is True


async def test_two_youths_sharing_an_identity_are_both_found(conn: asyncpg.Connection) -> None:
    await hand_over(conn, Y1, "D1234567890", nom="D'Arcy", prenom="Jean-Pierre")
    await hand_over(conn, Y2, "E1234567890", nom="D ARCY", prenom="JEAN PIERRE", psad="psad-64")
    assert sorted(await started(conn, enrolment(None, nom="d'arcy", prenom="Jean Pierre"))) == [Y1, Y2]
    assert await found_events(conn) == [(Y1, "psad-33"), (Y2, "psad-64")]


class MovesAfterLookup:
    """The connection, with the youth's handover moved to another PSAD by another session right
    after the lookup: the one-statement path must not announce the old PSAD."""

    def __init__(self, conn: asyncpg.Connection, other: asyncpg.Connection) -> None:
        self._conn, self._other, self._moved = conn, other, False

    async def fetch(self, *args):
        rows = await self._conn.fetch(*args)
        if not self._moved:
            self._moved = True
            await self._other.execute("UPDATE handover SET psad_id = 'psad-24' WHERE youth_id = $1", Y1)
        return rows

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


async def test_a_handover_moved_after_the_lookup_is_announced_to_its_new_psad(
    conn: asyncpg.Connection, reperage_db: str
) -> None:
    await hand_over(conn, Y1, "F1234567890")
    other = await asyncpg.connect(libpq_dsn(reperage_db))
    try:
        event = enrolment("F1234567890")
        found = await enrolment_started(
            MovesAfterLookup(conn, other), OUTBOX, INBOX, WHO, event, EnrolmentStarted.read(event.data), TODAY
        )
    finally:
        await other.close()
    assert found == [Y1]
    assert await found_events(conn) == [(Y1, "psad-24")]
    assert await conn.fetchval("SELECT count(*) FROM inbox WHERE consumer = $1", INBOX) == 1
    assert await conn.fetchval("SELECT count(*) FROM partner_enrolment") == 1


async def test_a_found_event_comes_back_leased_and_is_published_by_its_writer(
    conn: asyncpg.Connection, reperage_db: str, nc: Client, reperage_stream: str
) -> None:
    await hand_over(conn, Y1, "G1234567890")
    await hand_over(conn, Y2, "H1234567890")
    # Y2 still has an older event waiting for the relay: its found event must not overtake it.
    older = OUTBOX.envelope(
        YouthReportedAgain(
            youth_id=Y2,
            campaign_id="c2",
            psad_id="psad-33",
            departement="33",
            age=17,
            months_since_leaving=5,
            as_of=TODAY,
        ),
        subject=Y2,
    )
    await OUTBOX.add_event_raw(conn, older)
    event = enrolment("G1234567890")
    leases_1, leases_2 = Leases(60), Leases(60)
    found_1 = await enrolment_started(
        conn, OUTBOX, INBOX, WHO, event, EnrolmentStarted.read(event.data), TODAY, leases_1
    )
    event = enrolment("H1234567890")
    found_2 = await enrolment_started(
        conn, OUTBOX, INBOX, WHO, event, EnrolmentStarted.read(event.data), TODAY, leases_2
    )
    assert found_1 == [Y1] and len(leases_1.rows) == 1
    assert found_2 == [Y2] and leases_2.rows == []

    engine = make_engine(reperage_db)
    relay = OutboxRelay(engine, nc.jetstream(), mark_delay=60)  # marks when told (flush_marks)
    try:
        assert await relay.drain() == 2  # Y2's two events; Y1's found is leased to its writer
        assert await relay.publish_leased(leases_1.take()) == 1
        assert await relay.backlog() == 1  # published; marked with the next writers' rows
        await relay.flush_marks()
        assert await relay.backlog() == 0
    finally:
        await relay.stop()
        await engine.dispose()
    js = nc.jetstream()
    info = await js.stream_info(reperage_stream)
    published = [
        CloudEvent.from_json((await js.get_msg(reperage_stream, seq)).data)
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]
    assert [(e.type, e.subject) for e in published if e.subject in (Y1, Y2)] == [
        ("reperage.youth.reported_again.v1", Y2),
        ("reperage.youth.found.v1", Y2),
        ("reperage.youth.found.v1", Y1),
    ]
