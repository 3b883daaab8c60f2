"""The live enrolment path against real PostgreSQL: one unit of work per request, the inbox
claim, the handover closed and its `found` event in the same transaction."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import date

import asyncpg
import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from raccrochage_contracts import CloudEvent, new_event
from raccrochage_contracts.events.partner_v1 import EnrolmentStarted
from raccrochage_contracts.events.reperage_v1 import YouthReportedAgain
from raccrochage_platform.outbox import OutboxRelay
from raccrochage_reperage.domain.identity import youth_id
from raccrochage_reperage.domain.partners import identity_key
from raccrochage_reperage.entrypoints.cli import unit_of_work_factory
from raccrochage_reperage.service_layer.partners import Duplicate, Partner, enrolment_started

pytestmark = pytest.mark.asyncio(loop_scope="session")
TODAY = date(2026, 11, 28)
WHO = Partner("cfa-gironde", "cfa")
INBOX = "test_live"
BIRTH = date(2009, 2, 28)
KEY = b"k" * 64


async def hand_over(
    conn: asyncpg.Connection, ine: str, psad: str = "psad-33", nom: str = "Martin", prenom: str = "Léa"
) -> str:
    """A youth in the vault, handed over to `psad`; their youth_id."""
    yid = youth_id(ine, KEY)
    await conn.execute(
        "INSERT INTO youth (youth_id, ine, identity_key, nom, prenom, date_naissance, code_postal, date_sortie) "
        "VALUES ($1, $2, $3, $4, $5, $6, '33000', '2026-06-30')",
        yid,
        ine,
        identity_key(nom, prenom, BIRTH),
        nom,
        prenom,
        BIRTH,
    )
    await conn.execute(
        "INSERT INTO handover (youth_id, psad_id, campaign_id) VALUES ($1, $2, 'c1')", yid, psad
    )
    return yid


def enrolment(
    ine: str | None, *, nom: str = "Martin", prenom: str = "Léa", since: date = TODAY
) -> CloudEvent:
    data = EnrolmentStarted(ine=ine, nom=nom, prenom=prenom, date_naissance=BIRTH, date_debut=since)
    return new_event(data, source=f"partner/{WHO.partner_id}", subject=str(uuid.uuid4()))


async def started(engine, event: CloudEvent, relay: OutboxRelay | None = None) -> list[str]:
    uow = unit_of_work_factory(engine, relay)()
    return await enrolment_started(
        uow, WHO, event, EnrolmentStarted.read(event.data), TODAY, key=KEY, inbox=INBOX
    )


async def found_events(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT aggregate_key, envelope FROM outbox WHERE event_type = 'reperage.youth.found.v1'"
    )
    return sorted((r["aggregate_key"], CloudEvent.from_json(r["envelope"]).data["psad_id"]) for r in rows)


async def test_a_handed_over_youth_is_found_once_and_a_redelivery_is_a_duplicate(
    conn: asyncpg.Connection, engine
) -> None:
    y1 = await hand_over(conn, "A1234567890")
    event = enrolment("a1234567890 ")
    assert await started(engine, event) == [y1]
    with pytest.raises(Duplicate):
        await started(engine, event)
    assert await found_events(conn) == [(y1, "psad-33")]
    assert await conn.fetchval("SELECT open FROM handover WHERE youth_id = $1", y1) is False
    assert await conn.fetchval("SELECT count(*) FROM partner_enrolment") == 1
    assert await conn.fetchval("SELECT count(*) FROM inbox WHERE consumer = $1", INBOX) == 1


async def test_an_enrolment_of_nobody_handed_over_is_kept_and_announces_nothing(
    conn: asyncpg.Connection, engine
) -> None:
    event = enrolment("B1234567890")
    assert await started(engine, event) == []
    with pytest.raises(Duplicate):
        await started(engine, event)
    assert await conn.fetchval("SELECT count(*) FROM partner_enrolment") == 1
    assert await found_events(conn) == []


async def test_an_enrolment_starting_later_finds_nobody_yet(conn: asyncpg.Connection, engine) -> None:
    y1 = await hand_over(conn, "C1234567890")
    assert await started(engine, enrolment("C1234567890", since=date(2027, 1, 5))) == []
    assert await conn.fetchval("SELECT open FROM handover WHERE youth_id = $1", y1) is True


async def test_two_youths_sharing_an_identity_are_both_found(conn: asyncpg.Connection, engine) -> None:
    y1 = await hand_over(conn, "D1234567890", nom="D'Arcy", prenom="Jean-Pierre")
    y2 = await hand_over(conn, "E1234567890", nom="D ARCY", prenom="JEAN PIERRE", psad="psad-64")
    assert sorted(await started(engine, enrolment(None, nom="d'arcy", prenom="Jean Pierre"))) == sorted(
        [y1, y2]
    )
    assert await found_events(conn) == sorted([(y1, "psad-33"), (y2, "psad-64")])


async def test_two_enrolments_of_one_youth_at_once_find_them_once(conn: asyncpg.Connection, engine) -> None:
    """The handover's UPDATE locks it: the second request waits, then finds it closed."""
    y1 = await hand_over(conn, "F1234567890")
    first, second = enrolment("F1234567890"), enrolment("F1234567890", since=date(2026, 11, 27))
    results = await asyncio.gather(started(engine, first), started(engine, second))
    assert sorted(results) == [[], [y1]]
    assert await found_events(conn) == [(y1, "psad-33")]
    assert await conn.fetchval("SELECT count(*) FROM partner_enrolment") == 2


async def test_a_found_event_is_published_by_its_writer_unless_an_older_one_is_pending(
    conn: asyncpg.Connection, engine, nc: Client, reperage_stream: str
) -> None:
    y1 = await hand_over(conn, "G1234567890")
    y2 = await hand_over(conn, "H1234567890")
    # y2 still has an older event waiting for the relay: its found event must not overtake it.
    async with unit_of_work_factory(engine)() as uow:
        uow.add_event(
            YouthReportedAgain(
                youth_id=y2,
                campaign_id="c2",
                psad_id="psad-33",
                departement="33",
                age=17,
                months_since_leaving=5,
                as_of=TODAY,
            ),
            subject=y2,
        )
        await uow.commit()
    relay = OutboxRelay(engine, nc.jetstream())  # not started: publishes when told
    assert await started(engine, enrolment("G1234567890"), relay) == [y1]
    assert await started(engine, enrolment("H1234567890"), relay) == [y2]
    assert relay.stats.published == 1  # y1's found event, by its writer
    assert await relay.backlog() == 2  # y2's two events, left to the relay in order
    assert await relay.drain() == 2
    assert await relay.backlog() == 0

    js = nc.jetstream()
    info = await js.stream_info(reperage_stream)
    published = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(NotFoundError):  # deleted by an earlier test (the stream is shared)
            published.append(CloudEvent.from_json((await js.get_msg(reperage_stream, seq)).data))
    assert [(e.type, e.subject) for e in published if e.subject in (y1, y2)] == [
        ("reperage.youth.found.v1", y1),
        ("reperage.youth.reported_again.v1", y2),
        ("reperage.youth.found.v1", y2),
    ]


async def test_the_enrolments_received_since_a_moment_are_those_kept_from_then_on(
    conn: asyncpg.Connection, engine
) -> None:
    await conn.execute(
        "INSERT INTO partner_enrolment (base, ine, identity_key, date_debut, received_at) VALUES "
        "('cfa', 'A1', 'k1', '2026-09-01', now() - interval '1 hour'), ('ml', NULL, 'k2', '2026-09-01', now())"
    )
    since = await conn.fetchval("SELECT now() - interval '1 minute'")
    async with unit_of_work_factory(engine)() as uow:
        received = await uow.enrolments.received_since(since)
    assert [(e.base, e.ine, e.identity_key) for e in received] == [("ml", None, "k2")]
