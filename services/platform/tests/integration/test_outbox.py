"""The outbox against real PostgreSQL and JetStream: published once, in order, only if committed."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from nats.aio.client import Client
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from raccrochage_platform.db import libpq_dsn
from raccrochage_platform.outbox import OutboxRelay, OutboxWriter

from raccrochage_platform.testing.sample import CounterIncremented

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


async def test_published_once_across_a_relay_restart(nc: Client, service_engine: AsyncEngine, stream: str) -> None:
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


async def test_notify_wakes_the_relay_before_its_sweep(nc: Client, service_engine: AsyncEngine, stream: str) -> None:
    writer = OutboxWriter("raccrochage/psad", stream)
    relay = OutboxRelay(service_engine, nc.jetstream(), sweep_seconds=3600)
    await relay.start()
    await asyncio.sleep(0.2)  # the relay's first drain is over; it now waits for NOTIFY
    async with service_engine.begin() as conn:
        await writer.add(conn, CounterIncremented(counter="wake"), subject="wake")
    await _wait(lambda: relay.backlog(), 0, timeout=5)
    await relay.stop()


async def test_per_aggregate_order_with_two_relays(nc: Client, service_engine: AsyncEngine, stream: str) -> None:
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
    relay = OutboxRelay(service_engine, nc.jetstream(), publish_timeout=1)
    await relay.drain()
    async with service_engine.connect() as conn:
        row = (await conn.execute(text("SELECT attempts, last_error, published_at FROM outbox "
                                       "WHERE aggregate_key = 'lost'"))).one()
    assert row.published_at is None and row.attempts == 1 and row.last_error
    async with service_engine.begin() as conn:
        await conn.execute(text("DELETE FROM outbox WHERE aggregate_key = 'lost'"))


async def _wait(probe, expected, timeout: float = 10.0) -> None:  # noqa: ANN001
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
        await writer.add_many(conn, [writer.envelope(CounterIncremented(counter="s"), subject=f"s{n}")
                                     for n in range(2)])
    relay = CountingRelay(service_engine, nc.jetstream(), batch_size=8, lanes=2)
    assert await relay.drain() == 2
    assert relay.claims == 1 and relay.stats.empty_claims == 0  # not one per lane: the second finds nothing
    async with service_engine.begin() as conn:
        await writer.add_many(conn, [writer.envelope(CounterIncremented(counter="b"), subject=f"b{n}")
                                     for n in range(40)])
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
            killed = (await conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'outbox-relay' AND datname = current_database()"))).scalar_one()
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
