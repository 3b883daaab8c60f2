"""The outbox against real PostgreSQL and JetStream: published once, in order, only if committed."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from nats.aio.client import Client
from raccrochage_contracts import nats_subject
from raccrochage_platform.db import libpq_dsn
from raccrochage_platform.outbox import Leases, OutboxRelay, OutboxWriter
from raccrochage_platform.publisher import JetStreamPublisher
from raccrochage_platform.tables import OUTBOX_CHANNEL
from raccrochage_platform.testing.sample import CounterIncremented
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def stream(sample_stream: str) -> str:
    return sample_stream


async def _published(nc: Client, stream: str) -> list[dict]:
    js = nc.jetstream()
    info = await js.stream_info(stream)
    return [json.loads((await js.get_msg(stream, seq)).data) for seq in range(1, info.state.last_seq + 1)]


async def test_committed_row_is_published_once_rolled_back_never(
    nc: Client, service_engine: AsyncEngine, stream: str
) -> None:
    writer = OutboxWriter("raccrochage/psad", stream)
    async with service_engine.begin() as conn:
        kept = await writer.add(conn, CounterIncremented(counter="a"), subject="a")
    with pytest.raises(RuntimeError):
        async with service_engine.begin() as conn:
            await writer.add(conn, CounterIncremented(counter="b"), subject="b")
            raise RuntimeError("the state change failed")
    relay = OutboxRelay(service_engine, nc.jetstream())
    assert await relay.drain() == 1
    assert await relay.drain() == 0
    events = await _published(nc, stream)
    assert [e["id"] for e in events] == [str(kept.id)]
    assert await relay.backlog() == 0


async def test_published_once_across_a_relay_restart(
    nc: Client, service_engine: AsyncEngine, stream: str
) -> None:
    writer = OutboxWriter("raccrochage/psad", stream)
    first = OutboxRelay(service_engine, nc.jetstream(), sweep_seconds=0.05)
    await first.start()
    async with service_engine.begin() as conn:
        for n in range(50):
            await writer.add(conn, CounterIncremented(counter=f"c{n}"), subject=f"c{n}")
    await _wait(lambda: first.backlog(), 0)
    await first.stop()
    async with service_engine.begin() as conn:
        for n in range(50, 80):
            await writer.add(conn, CounterIncremented(counter=f"c{n}"), subject=f"c{n}")
    second = OutboxRelay(service_engine, nc.jetstream(), sweep_seconds=0.05)
    await second.start()
    await _wait(lambda: second.backlog(), 0)
    await second.stop()
    ids = [e["id"] for e in await _published(nc, stream)]
    assert len(ids) == 80 == len(set(ids))


async def test_notify_wakes_the_relay_before_its_sweep(
    nc: Client, service_engine: AsyncEngine, stream: str
) -> None:
    writer = OutboxWriter("raccrochage/psad", stream)
    relay = OutboxRelay(service_engine, nc.jetstream(), sweep_seconds=3600)
    await relay.start()
    await asyncio.sleep(0.2)  # the relay's first drain is over; it now waits for NOTIFY
    async with service_engine.begin() as conn:
        await writer.add(conn, CounterIncremented(counter="wake"), subject="wake")
    await _wait(lambda: relay.backlog(), 0, timeout=5)
    await relay.stop()


async def test_per_aggregate_order_with_two_relays(
    nc: Client, service_engine: AsyncEngine, stream: str
) -> None:
    writer = OutboxWriter("raccrochage/psad", stream)
    async with service_engine.begin() as conn:
        for n in range(300):
            await writer.add(conn, CounterIncremented(counter=f"k{n % 7}", by=n), subject=f"k{n % 7}")
    relays = [OutboxRelay(service_engine, nc.jetstream(), batch_size=16) for _ in range(2)]
    await asyncio.gather(*(r.drain() for r in relays), *(r.drain() for r in relays))
    while await relays[0].drain():
        pass
    events = await _published(nc, stream)
    assert len(events) == 300 == len({e["id"] for e in events})
    for key in range(7):
        values = [e["data"]["by"] for e in events if e["subject"] == f"k{key}"]
        assert values == sorted(values)


async def test_unpublishable_row_stays_pending_with_its_error(
    nc: Client, service_engine: AsyncEngine, unique: str
) -> None:
    writer = OutboxWriter("raccrochage/psad", f"NO_SUCH_STREAM_{unique}")
    async with service_engine.begin() as conn:
        await writer.add(conn, CounterIncremented(counter="lost"), subject="lost")
    relay = OutboxRelay(
        service_engine, nc.jetstream(), publish_timeout=30
    )  # JetStream's refusal comes at once
    await relay.drain()
    await relay.stop()
    async with service_engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT attempts, last_error, published_at FROM outbox WHERE aggregate_key = 'lost'")
            )
        ).one()
    assert row.published_at is None and row.attempts == 1
    assert row.last_error.startswith(("APIError: expected stream does not match", "NoRespondersError"))
    async with service_engine.begin() as conn:
        await conn.execute(text("DELETE FROM outbox WHERE aggregate_key = 'lost'"))


async def _wait(probe, expected, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value == expected:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {value!r} after {timeout}s, expected {expected!r}")
        await asyncio.sleep(0.05)


class CountingRelay(OutboxRelay):
    claims = 0

    async def _claim(self, connection):
        self.claims += 1
        return await super()._claim(connection)


async def test_a_small_drain_claims_once_and_a_backlog_uses_every_lane(
    nc: Client, service_engine: AsyncEngine, stream: str
) -> None:
    writer = OutboxWriter("raccrochage/psad", stream)
    async with service_engine.begin() as conn:
        await writer.add_many(
            conn, [writer.envelope(CounterIncremented(counter="s"), subject=f"s{n}") for n in range(2)]
        )
    relay = CountingRelay(service_engine, nc.jetstream(), batch_size=8, lanes=2)
    assert await relay.drain() == 2
    assert relay.claims == 1 and relay.stats.empty_claims == 0  # not one per lane: the second finds nothing
    async with service_engine.begin() as conn:
        await writer.add_many(
            conn, [writer.envelope(CounterIncremented(counter="b"), subject=f"b{n}") for n in range(40)]
        )
    relay.claims = 0
    assert await relay.drain() == 40
    assert relay.claims >= 1 + 2  # a full first batch: then both lanes claim until one comes back short
    assert await relay.backlog() == 0
    assert relay._idle == []  # a drain without start() leaves no connection open


async def test_relay_survives_its_connection_being_killed(
    nc: Client, service_engine: AsyncEngine, stream: str
) -> None:
    writer = OutboxWriter("raccrochage/psad", stream)
    relay = OutboxRelay(service_engine, nc.jetstream(), sweep_seconds=0.05)
    await relay.start()
    try:
        async with service_engine.begin() as conn:
            await writer.add(conn, CounterIncremented(counter="k1"), subject="k1")
        await _wait(lambda: relay.backlog(), 0)
        async with service_engine.begin() as conn:
            killed = (
                await conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = 'outbox-relay' AND datname = current_database()"
                    )
                )
            ).scalar_one()
        assert killed >= 1
        async with service_engine.begin() as conn:
            await writer.add(conn, CounterIncremented(counter="k2"), subject="k2")
        await _wait(lambda: relay.backlog(), 0)  # the broken connection is dropped, a new one opened
    finally:
        await relay.stop()
    assert relay._idle == []


async def test_add_many_raw_writes_in_the_callers_transaction_and_skips_known_events(
    nc: Client, service_engine: AsyncEngine, stream: str
) -> None:
    writer = OutboxWriter("raccrochage/psad", stream)
    events = [writer.envelope(CounterIncremented(counter="r"), subject=f"r{n}") for n in range(3)]
    conn = await asyncpg.connect(libpq_dsn(service_engine.url.render_as_string(hide_password=False)))
    try:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await writer.add_many_raw(conn, events)
                raise RuntimeError("the state change failed")
        async with conn.transaction():
            await writer.add_many_raw(conn, events[:2])
        async with conn.transaction():
            await writer.add_many_raw(conn, events)  # a re-run: the first two are there already
    finally:
        await conn.close()
    relay = OutboxRelay(service_engine, nc.jetstream())
    assert await relay.drain() == 3
    assert [e["id"] for e in await _published(nc, stream)] == [str(e.id) for e in events]


async def test_add_json_raw_writes_one_types_envelopes_leased_or_not(
    nc: Client, service_engine: AsyncEngine, stream: str
) -> None:
    """Envelopes already JSON, of one type: the type, subject and stream go once; leased rows
    come back for their writer to publish; a re-run skips the events already there."""
    writer = OutboxWriter("raccrochage/psad", stream)
    events = [writer.envelope(CounterIncremented(counter="j"), subject=f"json-{n}") for n in range(4)]
    rows = [(str(e.id), e.subject, e.to_json()) for e in events]
    conn = await asyncpg.connect(libpq_dsn(service_engine.url.render_as_string(hide_password=False)))
    try:
        async with conn.transaction():
            await writer.add_json_raw(conn, CounterIncremented.event_type, rows[:2])
        leases = Leases(60)
        async with conn.transaction():
            await writer.add_json_raw(conn, CounterIncremented.event_type, rows, leases)  # 2 known
        stored = await conn.fetch(
            "SELECT event_id::text, event_type, nats_subject, stream, aggregate_key, "
            "leased_until IS NOT NULL AS leased FROM outbox WHERE aggregate_key LIKE 'json-%' "
            "ORDER BY id"
        )
    finally:
        await conn.close()
    assert [(r["event_id"], r["aggregate_key"], r["leased"]) for r in stored] == [
        (str(e.id), e.subject, n >= 2) for n, e in enumerate(events)
    ]
    assert {(r["event_type"], r["nats_subject"], r["stream"]) for r in stored} == {
        (CounterIncremented.event_type, nats_subject(CounterIncremented.event_type), stream)
    }
    assert [row[1] for row in leases.rows] == [str(e.id) for e in events[2:]]
    relay = OutboxRelay(service_engine, nc.jetstream())
    assert await relay.publish_leased(leases.take()) == 2
    assert await relay.drain() == 2  # the two written without a lease
    assert sorted(e["id"] for e in await _published(nc, stream)) == sorted(str(e.id) for e in events)


async def test_add_json_raw_for_new_aggregates_leases_every_row_and_refuses_a_known_id(
    nc: Client, service_engine: AsyncEngine, stream: str
) -> None:
    """Aggregates the transaction created: a plain INSERT, every row leased to its writer (no
    look for an older pending row, which the caller says cannot exist: one planted here shows
    that none is looked for); an id already in the outbox is an error, not a skip."""
    writer = OutboxWriter("raccrochage/psad", stream)
    events = [writer.envelope(CounterIncremented(counter="n"), subject=f"new-{n}") for n in range(3)]
    rows = [(str(e.id), e.subject, e.to_json()) for e in events]
    conn = await asyncpg.connect(libpq_dsn(service_engine.url.render_as_string(hide_password=False)))
    try:
        older = writer.envelope(CounterIncremented(counter="n"), subject="new-0")
        await writer.add_many_raw(conn, [older])  # pending, no writer holds it
        leases = Leases(60)
        async with conn.transaction():
            await writer.add_json_raw(conn, CounterIncremented.event_type, rows, leases, new_aggregates=True)
        with pytest.raises(asyncpg.UniqueViolationError):
            async with conn.transaction():
                await writer.add_json_raw(
                    conn, CounterIncremented.event_type, rows[:1], Leases(60), new_aggregates=True
                )
        stored = await conn.fetch(
            "SELECT event_id::text, leased_until IS NOT NULL AS leased FROM outbox "
            "WHERE aggregate_key LIKE 'new-%' ORDER BY id"
        )
        await conn.execute("DELETE FROM outbox WHERE event_id = $1", older.id)
    finally:
        await conn.close()
    assert [(r["event_id"], r["leased"]) for r in stored] == [(str(older.id), False)] + [
        (str(e.id), True) for e in events
    ]
    assert [row[1] for row in leases.rows] == [str(e.id) for e in events]
    relay = OutboxRelay(service_engine, nc.jetstream())
    assert await relay.publish_leased(leases.take()) == 3
    assert sorted(e["id"] for e in await _published(nc, stream)) == sorted(str(e.id) for e in events)


async def test_only_rows_no_writer_holds_wake_the_relays(service_engine: AsyncEngine, stream: str) -> None:
    """A statement whose rows are all leased to their writer (it publishes them itself) sends no
    NOTIFY; one with a row left to the relays does, once per statement."""
    writer = OutboxWriter("raccrochage/psad", stream)
    dsn = libpq_dsn(service_engine.url.render_as_string(hide_password=False))
    listener, conn = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    woken: list[str] = []
    await listener.add_listener(OUTBOX_CHANNEL, lambda *args: woken.append(args[2]))
    try:

        async def insert(events: list, leases: Leases | None) -> int:
            before = len(woken)
            async with conn.transaction():
                await writer.add_many_raw(conn, events, leases)
            await listener.execute("SELECT 1")  # notifications sent by then have reached the listener
            return len(woken) - before

        def events(key: str, count: int = 2) -> list:
            return [writer.envelope(CounterIncremented(counter="n"), subject=key) for _ in range(count)]

        leases = Leases(60)
        assert await insert(events("notify-leased"), leases) == 0 and len(leases.rows) == 2
        assert await insert(events("notify-relay"), None) == 1
        # the older rows of "notify-relay" are pending: these are left to the relays, which are woken
        mixed = Leases(60)
        assert await insert(events("notify-relay", 1) + events("notify-other", 1), mixed) == 1
        assert [row[4] for row in mixed.rows] == ["notify-other"]
    finally:
        await listener.close()
        await conn.close()


async def test_writers_published_rows_are_marked_together_a_moment_later(
    nc: Client, service_engine: AsyncEngine, stream: str
) -> None:
    """`publish_leased` marks off the writer's path: rows of several writers in one UPDATE, a
    moment later; until then they stay leased, so no relay publishes them again."""
    writer = OutboxWriter("raccrochage/psad", stream)
    relay = OutboxRelay(service_engine, nc.jetstream(), mark_delay=2.0)
    conn = await asyncpg.connect(libpq_dsn(service_engine.url.render_as_string(hide_password=False)))
    try:
        for key in ("marks-1", "marks-2"):
            leases = Leases(60)
            async with conn.transaction():
                await writer.add_many_raw(
                    conn, [writer.envelope(CounterIncremented(counter="m"), subject=key)], leases
                )
            assert await relay.publish_leased(leases.take()) == 1
        assert await relay.backlog() == 2
        assert await relay.drain() == 0  # leased: not claimed while waiting for their mark
        await _wait(lambda: relay.backlog(), 0, timeout=15)
        published = [e["subject"] for e in await _published(nc, stream)]
        assert published.count("marks-1") == 1 and published.count("marks-2") == 1
    finally:
        await conn.close()
        await relay.stop()


async def test_the_publisher_reads_every_pubacks_outcome(nc: Client, stream: str) -> None:
    publisher = JetStreamPublisher(nc)
    subject = "sample.counter.incremented.v1"
    before = (await nc.jetstream().stream_info(stream)).state.messages
    sent = nc.stats["out_msgs"], nc.stats["out_bytes"]
    try:
        outcomes = await publisher.publish(
            [
                (subject, b"{}", {"Nats-Msg-Id": "pubacks-1"}),
                (subject, b"{}", {"Nats-Msg-Id": "pubacks-1"}),  # a duplicate: stored once, acked both times
                (subject, b"{}", {"Nats-Msg-Id": "pubacks-2", "Nats-Expected-Stream": "ANOTHER"}),
                ("nowhere.at.all", b"{}", {"Nats-Msg-Id": "pubacks-3"}),
            ],
            timeout=30,
        )
    finally:
        await publisher.close()
    assert outcomes[:2] == ["", ""]
    assert outcomes[2].startswith("APIError: expected stream does not match") and "10060" in outcomes[2]
    assert outcomes[3] == "NoRespondersError: no stream for this subject"
    assert (await nc.jetstream().stream_info(stream)).state.messages == before + 1
    # the client's counters count the messages written directly, as nats-py's publish would
    assert nc.stats["out_msgs"] - sent[0] >= 4 and nc.stats["out_bytes"] - sent[1] >= 4 * len(b"{}")


async def test_add_many_raw_runs_the_aggregates_statement_along_in_one_statement(
    service_engine: AsyncEngine, stream: str
) -> None:
    writer = OutboxWriter("raccrochage/psad", stream)
    conn = await asyncpg.connect(libpq_dsn(service_engine.url.render_as_string(hide_password=False)))
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS along_check (key text PRIMARY KEY, n int NOT NULL)")
        along = "INSERT INTO along_check VALUES ($1, $2)"
        leases = Leases(60)
        await writer.add_many_raw(
            conn,
            [writer.envelope(CounterIncremented(counter="a"), subject="along-1")],
            leases,
            along=(along, ["along-1", 1]),
        )
        with pytest.raises(asyncpg.DivisionByZeroError):  # the aggregates' statement fails: no event either
            await writer.add_many_raw(
                conn,
                [writer.envelope(CounterIncremented(counter="a"), subject="along-2")],
                None,
                along=("INSERT INTO along_check VALUES ($1, 1 / $2)", ["along-2", 0]),
            )
        assert await conn.fetchval("SELECT n FROM along_check WHERE key = 'along-1'") == 1
        assert [row[4] for row in leases.rows] == ["along-1"]
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE aggregate_key LIKE 'along-%'") == 1
    finally:
        await conn.close()


async def test_without_retention_published_rows_are_deleted_and_failed_ones_kept(
    nc: Client, service_engine: AsyncEngine, stream: str, unique: str
) -> None:
    """`retention_seconds=0`: a row is deleted once JetStream holds its event, whether the relay
    claimed it or its writer published it leased; a row JetStream refused stays, with its error."""
    writer = OutboxWriter("raccrochage/psad", stream)
    refused = OutboxWriter("raccrochage/psad", f"NO_SUCH_STREAM_{unique}")
    relay = OutboxRelay(
        service_engine, nc.jetstream(), retention_seconds=0, mark_delay=0.01, publish_timeout=30
    )
    conn = await asyncpg.connect(libpq_dsn(service_engine.url.render_as_string(hide_password=False)))
    try:
        async with conn.transaction():
            claimed = writer.envelope(CounterIncremented(counter="d"), subject=f"deleted-claimed-{unique}")
            await writer.add_many_raw(conn, [claimed])
            await refused.add_many_raw(
                conn, [refused.envelope(CounterIncremented(counter="d"), subject=f"deleted-refused-{unique}")]
            )
        leases = Leases(60)
        async with conn.transaction():
            leased = writer.envelope(CounterIncremented(counter="d"), subject=f"deleted-leased-{unique}")
            await writer.add_many_raw(conn, [leased], leases)
        assert await relay.publish_leased(leases.take()) == 1
        await relay.drain()

        async def rows_left() -> int:  # the leased row's mark runs a moment later (mark_delay)
            return await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE aggregate_key LIKE $1", f"deleted-%-{unique}"
            )

        await _wait(rows_left, 1)
        left = await conn.fetch(
            "SELECT aggregate_key, published_at, attempts, last_error FROM outbox "
            "WHERE aggregate_key LIKE $1",
            f"deleted-%-{unique}",
        )
        assert [(r["aggregate_key"], r["published_at"], r["attempts"]) for r in left] == [
            (f"deleted-refused-{unique}", None, 1)
        ]
        assert left[0]["last_error"]
        published = {e["id"] for e in await _published(nc, stream)}
        assert {str(claimed.id), str(leased.id)} <= published
    finally:
        await conn.execute("DELETE FROM outbox WHERE aggregate_key LIKE $1", f"deleted-%-{unique}")
        await conn.close()
        await relay.stop()


async def test_a_guard_without_the_ctes_it_reads_is_refused(service_engine: AsyncEngine, stream: str) -> None:
    writer = OutboxWriter("raccrochage/psad", stream)
    event = writer.envelope(CounterIncremented(counter="g"), subject="guarded")
    conn = await asyncpg.connect(libpq_dsn(service_engine.url.render_as_string(hide_password=False)))
    try:
        with pytest.raises(ValueError, match="guard"):
            await writer.add_many_raw(conn, [event], Leases(60), guard="true")
        with pytest.raises(ValueError, match="guard"):
            await writer.add_many_raw(conn, [], Leases(60), along=("claimed AS (SELECT 1)", []), guard="true")
    finally:
        await conn.close()
