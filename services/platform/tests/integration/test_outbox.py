"""The outbox against real PostgreSQL and JetStream: published once, in order, only if committed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig
from raccrochage_contracts import CloudEvent, new_event
from raccrochage_platform.db import libpq_dsn
from raccrochage_platform.outbox import OutboxRelay, write_events
from raccrochage_platform.tables import OUTBOX_CHANNEL
from raccrochage_platform.uow import SqlAlchemyUnitOfWork
from raccrochage_rig.testing.sample import CounterIncremented
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.asyncio(loop_scope="session")
SOURCE = "raccrochage/sample"


def events(*aggregates: str, by: int = 1) -> list[CloudEvent]:
    return [
        new_event(CounterIncremented(counter=key, by=by), source=SOURCE, subject=key) for key in aggregates
    ]


async def commit(
    engine: AsyncEngine, stream: str, added: Sequence[CloudEvent], relay: OutboxRelay | None = None
) -> list[CloudEvent]:
    """One unit of work that commits `added` (with `relay`: leased to it and published after)."""
    async with SqlAlchemyUnitOfWork(engine, source=SOURCE, stream=stream, relay=relay) as uow:
        uow.add_events(added)
        await uow.commit()
    return list(added)


async def rows(engine: AsyncEngine, where: str = "true") -> list:
    async with engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT id, event_id, aggregate_key, published_at, leased_until > now() AS leased, "
                f"attempts, last_error FROM outbox WHERE {where} ORDER BY id"
            )
        )
        return list(found)


async def execute(engine: AsyncEngine, statement: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(statement))


async def test_the_relay_publishes_committed_rows_with_their_id_and_marks_them(
    nc: Client, service_engine: AsyncEngine, sample_stream: str, stored
) -> None:
    [kept] = await commit(service_engine, sample_stream, events("a"))
    with pytest.raises(RuntimeError):
        async with SqlAlchemyUnitOfWork(service_engine, source=SOURCE, stream=sample_stream) as uow:
            uow.add_events(events("b"))
            raise RuntimeError("the state change failed")
    relay = OutboxRelay(service_engine, nc.jetstream())
    assert await relay.backlog() == 1
    assert await relay.drain() == 1
    assert await relay.drain() == 0
    [message] = await stored(sample_stream)
    assert message.subject == CounterIncremented.event_type
    assert message.headers["Nats-Msg-Id"] == message.event["id"] == str(kept.id)
    assert message.headers["Nats-Expected-Stream"] == sample_stream
    [row] = await rows(service_engine)
    assert row.event_id == kept.id and row.published_at is not None and row.attempts == 1
    assert await relay.backlog() == 0
    assert (relay.stats.published, relay.stats.failed, relay.stats.batches) == (1, 0, 1)


async def test_published_once_across_a_relay_restart(
    nc: Client, service_engine: AsyncEngine, sample_stream: str, stored, eventually
) -> None:
    first = OutboxRelay(service_engine, nc.jetstream(), sweep_seconds=0.05)
    await first.start()
    try:
        await commit(service_engine, sample_stream, events(*(f"c{n}" for n in range(50))))
        await eventually(first.backlog, 0)
    finally:
        await first.stop()
    await commit(service_engine, sample_stream, events(*(f"c{n}" for n in range(50, 80))))
    second = OutboxRelay(service_engine, nc.jetstream(), sweep_seconds=0.05)
    await second.start()
    try:
        await eventually(second.backlog, 0)
    finally:
        await second.stop()
    ids = [m.event["id"] for m in await stored(sample_stream)]
    assert len(ids) == 80 == len(set(ids))


async def test_notify_wakes_the_relay_long_before_its_sweep(
    nc: Client, service_engine: AsyncEngine, sample_stream: str, eventually
) -> None:
    relay = OutboxRelay(service_engine, nc.jetstream(), sweep_seconds=3600)
    await relay.start()
    try:
        await eventually(lambda: asyncio.sleep(0, relay.stats.empty_claims), 1)  # its first drain is over
        await commit(service_engine, sample_stream, events("wake"))
        await eventually(relay.backlog, 0)
    finally:
        await relay.stop()


async def test_several_relays_publish_each_row_once_in_each_aggregates_order(
    nc: Client, service_engine: AsyncEngine, sample_stream: str, stored
) -> None:
    """SKIP LOCKED shares the rows out; a row whose aggregate has an older row held by another
    relay waits for it."""
    for start in range(0, 300, 50):  # six transactions; runs of five rows of 13 aggregates in turn
        await commit(
            service_engine,
            sample_stream,
            [events(f"k{n // 5 % 13}", by=n)[0] for n in range(start, start + 50)],
        )
    relays = [OutboxRelay(service_engine, nc.jetstream(), batch_size=16) for _ in range(3)]
    for _ in range(100):
        await asyncio.gather(*(relay.drain() for relay in relays))
        if await relays[0].backlog() == 0:
            break
    assert await relays[0].backlog() == 0
    assert sum(relay.stats.published for relay in relays) == 300
    assert sum(1 for relay in relays if relay.stats.published) > 1  # they did share the work
    published = await stored(sample_stream)
    assert len(published) == 300 == len({m.event["id"] for m in published})
    for key in range(13):
        values = [m.event["data"]["by"] for m in published if m.event["subject"] == f"k{key}"]
        assert values == sorted(values) and len(values) >= 20


class StuckJetStream:
    """A JetStream context whose publishes never come back, or fail with an unexpected error:
    a relay that dies between its claim and its publish."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.publishing = asyncio.Event()

    async def publish_async(self, *args, **kwargs):
        self.publishing.set()
        if self.fail:
            raise RuntimeError("the relay's process dies")
        await asyncio.Event().wait()


@pytest.mark.parametrize("fail", [False, True], ids=["killed", "failing"])
async def test_a_relay_that_dies_after_its_claim_leaves_its_rows_leased_until_the_lease_runs_out(
    nc: Client, service_engine: AsyncEngine, sample_stream: str, stored, fail: bool
) -> None:
    written = await commit(service_engine, sample_stream, events("d1", "d1", "d2"))
    stuck = StuckJetStream(fail)
    dying = OutboxRelay(service_engine, stuck, lease_seconds=600)  # type: ignore[arg-type]
    draining = asyncio.create_task(dying.drain())
    await asyncio.wait_for(stuck.publishing.wait(), 30)
    if fail:
        with pytest.raises(RuntimeError, match="dies"):
            await draining
    else:
        draining.cancel()
        with pytest.raises(asyncio.CancelledError):
            await draining
    assert [(r.leased, r.published_at, r.attempts) for r in await rows(service_engine)] == [
        (True, None, 0)
    ] * 3
    other = OutboxRelay(service_engine, nc.jetstream())
    assert await other.drain() == 0  # held by the dead relay's lease
    assert await stored(sample_stream) == []
    await execute(service_engine, "UPDATE outbox SET leased_until = now() - interval '1 second'")
    assert await other.drain() == 3  # the lease ran out
    published = [m.event["id"] for m in await stored(sample_stream)]
    assert sorted(published) == sorted(str(e.id) for e in written)
    assert published.index(str(written[0].id)) < published.index(str(written[1].id))  # d1's order
    assert all(r.published_at is not None for r in await rows(service_engine))


class HeldJetStream:
    """nats-py's JetStream context whose publishes wait until `release` is set: a batch that takes
    longer than the relay's lease."""

    def __init__(self, js) -> None:
        self.js = js
        self.publishing = asyncio.Event()
        self.release = asyncio.Event()

    async def publish_async(self, *args, **kwargs):
        self.publishing.set()
        await self.release.wait()
        return await self.js.publish_async(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.js, name)


async def test_a_relay_renews_the_lease_of_rows_it_is_still_publishing(
    nc: Client, service_engine: AsyncEngine, sample_stream: str, stored
) -> None:
    """The lease is short, so that a dead relay's rows are published again within seconds; a
    live relay whose batch takes longer keeps them."""
    written = await commit(service_engine, sample_stream, events("r1", "r2"))
    held = HeldJetStream(nc.jetstream())
    slow = OutboxRelay(service_engine, held, lease_seconds=1)  # type: ignore[arg-type]
    draining = asyncio.create_task(slow.drain())
    await asyncio.wait_for(held.publishing.wait(), 30)
    async with service_engine.connect() as conn:
        first_lease = (await conn.execute(text("SELECT max(leased_until) FROM outbox"))).scalar_one()
        while (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one() <= first_lease:
            await asyncio.sleep(0.1)  # the lease taken at the claim has run out
    other = OutboxRelay(service_engine, nc.jetstream(), lease_seconds=1)
    assert await other.drain() == 0  # renewed by the relay still publishing them
    held.release.set()
    assert await draining == 2
    assert sorted(m.event["id"] for m in await stored(sample_stream)) == sorted(str(e.id) for e in written)


async def test_a_writers_rows_behind_an_older_pending_row_are_left_to_the_relay_in_order(
    nc: Client, service_engine: AsyncEngine, sample_stream: str, stored
) -> None:
    relay = OutboxRelay(service_engine, nc.jetstream())  # not started: publishes when told
    [older] = await commit(service_engine, sample_stream, events("late"))  # no relay: pending
    late, soon = await commit(service_engine, sample_stream, events("late", "soon"), relay)
    # "soon" was leased to its writer and published at commit; "late" waits behind its older row
    assert [m.event["id"] for m in await stored(sample_stream)] == [str(soon.id)]
    assert [(r.event_id, r.leased) for r in await rows(service_engine, "published_at IS NULL")] == [
        (older.id, None),
        (late.id, None),
    ]
    assert await relay.drain() == 2
    assert [m.event["id"] for m in await stored(sample_stream)] == [
        str(soon.id),
        str(older.id),
        str(late.id),
    ]


async def test_write_events_returns_the_rows_it_leased_and_wakes_the_relays_for_the_others(
    service_engine: AsyncEngine, sample_stream: str
) -> None:
    """A statement whose rows are all leased to their writer (it publishes them itself) sends no
    NOTIFY; one with a row left to the relays does, once per statement."""
    listener = await asyncpg.connect(libpq_dsn(service_engine.url.render_as_string(hide_password=False)))
    woken: list[str] = []
    await listener.add_listener(OUTBOX_CHANNEL, lambda *args: woken.append(args[2]))

    async def write(added: list[CloudEvent], lease: float | None) -> tuple[list, int]:
        before = len(woken)
        async with service_engine.begin() as conn:
            leased = await write_events(conn, sample_stream, added, lease)
        await listener.execute("SELECT 1")  # notifications sent by then have reached the listener
        return leased, len(woken) - before

    try:
        assert await write([], 60) == ([], 0)
        first = events("n1", "n1", "n2")
        leased, wakes = await write(first, 60)
        assert wakes == 0
        assert [(row.event_id, row.aggregate_key, row.stream) for row in leased] == [
            (str(e.id), e.subject, sample_stream) for e in first
        ]
        assert [row.envelope for row in leased] == [e.to_json() for e in first]
        assert await write(events("n3"), None) == ([], 1)  # no lease asked: the relays publish it
        # n1 still has pending rows: its new row is left to the relays; n4's is leased
        mixed = events("n1", "n4")
        leased, wakes = await write(mixed, 60)
        assert [row.event_id for row in leased] == [str(mixed[1].id)] and wakes == 1
        assert await write(mixed, 60) == ([], 0)  # known ids: nothing written
        twice = events("n5")
        leased, _ = await write(twice + twice, 60)  # the same event twice: one row, leased once
        assert [(row.event_id, row.envelope) for row in leased] == [(str(twice[0].id), twice[0].to_json())]
    finally:
        await listener.close()


async def test_without_retention_published_rows_are_deleted_and_refused_ones_kept(
    nc: Client, service_engine: AsyncEngine, sample_stream: str, unique: str, stored
) -> None:
    """`retention_seconds=0`: a row is deleted once JetStream holds its event, whether the relay
    claimed it or its writer published it leased; a row JetStream refused stays, with its error."""
    relay = OutboxRelay(service_engine, nc.jetstream(), retention_seconds=0, publish_timeout=60)
    [claimed] = await commit(service_engine, sample_stream, events("deleted-claimed"))
    await commit(service_engine, f"OTHER_{unique}", events("kept-refused"))
    [leased] = await commit(service_engine, sample_stream, events("deleted-leased"), relay)
    await relay.drain()
    assert [(r.aggregate_key, r.published_at, r.attempts) for r in await rows(service_engine)] == [
        ("kept-refused", None, 1)
    ]
    assert {m.event["id"] for m in await stored(sample_stream)} == {str(claimed.id), str(leased.id)}


async def test_prune_deletes_the_rows_published_before_the_retention_only(
    nc: Client, service_engine: AsyncEngine, sample_stream: str
) -> None:
    relay = OutboxRelay(service_engine, nc.jetstream(), retention_seconds=3600)
    await commit(service_engine, sample_stream, events("old", "recent"))
    assert await relay.drain() == 2
    await commit(service_engine, sample_stream, events("pending"))
    await execute(service_engine, "UPDATE outbox SET created_at = now() - interval '2 hours'")
    await execute(
        service_engine,
        "UPDATE outbox SET published_at = now() - interval '2 hours' WHERE aggregate_key = 'old'",
    )
    await relay.prune()
    assert [r.aggregate_key for r in await rows(service_engine)] == ["recent", "pending"]


async def test_a_refused_publish_fails_at_once_with_jetstreams_reason_and_stops_its_aggregate(
    nc: Client, service_engine: AsyncEngine, sample_stream: str, unique: str, stored
) -> None:
    """The stream holding `sample.>` is not the one the row expects: JetStream says so at once
    (no wait for the publish timeout). The row is freed with the reason and claimed again by the
    next drain; its aggregate's later rows wait behind it, other aggregates go on."""
    [refused] = await commit(service_engine, f"OTHER_{unique}", events("x"))
    behind, other = await commit(service_engine, sample_stream, events("x", "y"))
    relay = OutboxRelay(service_engine, nc.jetstream(), publish_timeout=60)
    assert await asyncio.wait_for(relay.drain(), 20) == 1  # a guard against waiting out the timeout
    assert [m.event["id"] for m in await stored(sample_stream)] == [str(other.id)]
    pending = await rows(service_engine, "published_at IS NULL")
    assert [(r.event_id, r.leased, r.attempts) for r in pending] == [
        (refused.id, None, 1),
        (behind.id, None, 1),
    ]
    assert pending[0].last_error == (
        "BadRequestError: expected stream does not match (JetStream error 10060)"
    )
    assert relay.stats.failed == 2
    assert await asyncio.wait_for(relay.drain(), 20) == 0  # retried: refused again
    assert [r.attempts for r in await rows(service_engine, "published_at IS NULL")] == [2, 2]


async def test_a_row_without_a_stream_fails_at_once_and_a_running_relay_retries_it(
    nc: Client, service_engine: AsyncEngine, unique: str, stored, eventually
) -> None:
    js = nc.jetstream()
    stream = f"LATE_{unique}"
    [event] = await commit(service_engine, stream, events("later"))
    relay = OutboxRelay(service_engine, js, publish_timeout=60, sweep_seconds=0.1)
    assert await asyncio.wait_for(relay.drain(), 20) == 0
    [row] = await rows(service_engine)
    assert row.attempts == 1 and row.last_error.startswith("NoStreamResponseError")
    await relay.start()
    try:
        await eventually(lambda: asyncio.sleep(0, relay.stats.failed > 1), True)  # retrying, backing off
        await js.add_stream(StreamConfig(name=stream, subjects=["sample.>"], duplicate_window=120))
        await eventually(relay.backlog, 0, timeout=60)
        assert [m.event["id"] for m in await stored(stream)] == [str(event.id)]
    finally:
        await relay.stop()
        await js.delete_stream(stream)


async def test_the_backlog_is_read_on_a_new_connection_when_its_pooled_one_was_killed(
    nc: Client, service_engine: AsyncEngine
) -> None:
    relay = OutboxRelay(service_engine, nc.jetstream())
    assert await relay.backlog() == 0  # leaves its connection in the pool
    killer = await asyncpg.connect(libpq_dsn(service_engine.url.render_as_string(hide_password=False)))
    try:
        await killer.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await killer.close()
    assert await relay.backlog() == 0
    assert await relay.oldest_pending_age() == 0


async def test_the_relay_outlives_its_connections_being_killed(
    nc: Client, service_engine: AsyncEngine, sample_stream: str, eventually
) -> None:
    relay = OutboxRelay(service_engine, nc.jetstream(), sweep_seconds=0.1)

    async def listening() -> int:
        async with service_engine.connect() as conn:
            found = await conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()"
                )
            )
            return found.scalar_one()

    await relay.start()
    try:
        await commit(service_engine, sample_stream, events("k1"))
        await eventually(relay.backlog, 0)
        await eventually(listening, 1)
        async with service_engine.connect() as conn:
            killed = await conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            assert killed.scalar_one() >= 1
        await commit(service_engine, sample_stream, events("k2"))
        await eventually(relay.backlog, 0)  # broken connections dropped, new ones opened
        await eventually(listening, 1)  # and it listens again
    finally:
        await relay.stop()
