"""SqlAlchemyUnitOfWork against real PostgreSQL and JetStream: state, outbox and inbox commit
together or not at all, and what a commit leased is published right after it."""

from __future__ import annotations

import uuid

import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig
from raccrochage_contracts import new_event
from raccrochage_platform.outbox import OutboxRelay
from raccrochage_rig.testing.sample import CounterIncremented, CounterReset
from raccrochage_rig.testing.sample_service import SampleUnitOfWork
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.asyncio(loop_scope="session")
SOURCE = "raccrochage/sample"
INCREMENTED = CounterIncremented.event_type


def unit_of_work(
    engine: AsyncEngine, stream: str | None = None, relay: OutboxRelay | None = None
) -> SampleUnitOfWork:
    return SampleUnitOfWork(engine, source=SOURCE, stream=stream, relay=relay)


async def outbox_rows(engine: AsyncEngine) -> list:
    async with engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT event_id, aggregate_key, stream, published_at, leased_until, attempts, last_error "
                "FROM outbox ORDER BY id"
            )
        )
        return list(found)


async def count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()


async def counter(engine: AsyncEngine, name: str) -> int:
    async with unit_of_work(engine) as uow:
        return await uow.counters.value(name)


async def test_a_commit_writes_state_and_events_together_and_publishes_its_leased_events_at_once(
    nc: Client, counters: AsyncEngine, sample_stream: str, stored
) -> None:
    relay = OutboxRelay(counters, nc.jetstream())  # not started: no NOTIFY, no sweep, no claim
    async with unit_of_work(counters, sample_stream, relay) as uow:
        await uow.counters.add("a", 2)
        event = uow.add_event(CounterIncremented(counter="a", by=2), subject="a")
        assert uow.pending_events == [event]
        # nothing is visible outside the transaction before its commit
        assert await counter(counters, "a") == 0 and await outbox_rows(counters) == []
        await uow.commit()
    assert uow.committed_events == [event] and uow.pending_events == []
    assert await counter(counters, "a") == 2
    [row] = await outbox_rows(counters)
    assert (row.event_id, row.aggregate_key, row.stream) == (event.id, "a", sample_stream)
    assert row.published_at is not None and row.attempts == 1 and row.last_error is None
    [message] = await stored(sample_stream)
    assert message.subject == INCREMENTED
    assert message.headers["Nats-Msg-Id"] == str(event.id)
    assert message.headers["Content-Type"] == "application/cloudevents+json"
    assert message.event["id"] == str(event.id) and message.event["source"] == SOURCE
    assert message.event["data"] == {"counter": "a", "by": 2}
    assert relay.stats.batches == 0 and relay.stats.published == 1  # by the writer, not a claim


async def test_leaving_the_block_without_commit_writes_nothing(
    nc: Client, counters: AsyncEngine, sample_stream: str, stored
) -> None:
    relay = OutboxRelay(counters, nc.jetstream())
    async with unit_of_work(counters, sample_stream, relay) as uow:
        await uow.counters.add("forgotten", 1)
        uow.add_event(CounterIncremented(counter="forgotten"), subject="forgotten")
        assert await uow.claim("sample_counter", [(uuid.uuid4(), INCREMENTED)])
    assert uow.connection is None and uow.pending_events == [] and uow.committed_events == []
    assert await counter(counters, "forgotten") == 0
    assert await count(counters, "outbox") == 0 and await count(counters, "inbox") == 0
    assert await stored(sample_stream) == []


async def test_an_exception_inside_the_block_rolls_back_and_goes_on(
    nc: Client, counters: AsyncEngine, sample_stream: str, stored
) -> None:
    relay = OutboxRelay(counters, nc.jetstream())
    with pytest.raises(RuntimeError, match="the state change failed"):
        async with unit_of_work(counters, sample_stream, relay) as uow:
            await uow.counters.add("failed", 1)
            uow.add_event(CounterIncremented(counter="failed"), subject="failed")
            await uow.claim("sample_counter", [(uuid.uuid4(), INCREMENTED)])
            raise RuntimeError("the state change failed")
    assert uow.connection is None
    assert await counter(counters, "failed") == 0
    assert await count(counters, "outbox") == 0 and await count(counters, "inbox") == 0
    assert await stored(sample_stream) == []


async def test_claim_returns_the_new_ids_only_and_a_rolled_back_claim_leaves_them_new(
    counters: AsyncEngine,
) -> None:
    a, b, c, d = (uuid.uuid4() for _ in range(4))
    async with unit_of_work(counters) as uow:
        assert await uow.claim("first", [(a, INCREMENTED), (b, INCREMENTED), (a, INCREMENTED)]) == {a, b}
        assert await uow.claim("first", [(a, INCREMENTED), (c, INCREMENTED)]) == {c}  # same transaction
        assert await uow.claim("first", []) == set()
        await uow.commit()
    async with unit_of_work(counters) as uow:
        assert await uow.claim("first", [(a, INCREMENTED), (b, INCREMENTED), (d, INCREMENTED)]) == {d}
        # not committed: d stays new
    async with unit_of_work(counters) as uow:
        assert await uow.claim("first", [(d, INCREMENTED)]) == {d}
        assert await uow.claim("second", [(a, INCREMENTED)]) == {a}  # an inbox per consumer
        await uow.commit()
    async with counters.connect() as conn:
        rows = await conn.execute(text("SELECT consumer, event_id, event_type FROM inbox"))
        assert sorted((r.consumer, r.event_id, r.event_type) for r in rows) == sorted(
            [("first", x, INCREMENTED) for x in (a, b, c, d)] + [("second", a, INCREMENTED)]
        )


async def test_an_event_already_in_the_outbox_is_written_and_published_once(
    nc: Client, counters: AsyncEngine, sample_stream: str, stored
) -> None:
    relay = OutboxRelay(counters, nc.jetstream())
    async with unit_of_work(counters, sample_stream) as uow:  # no relay: left pending for it
        first = uow.event(CounterIncremented(counter="again"), subject="again")
        uow.add_events([first])
        await uow.commit()
    async with unit_of_work(counters, sample_stream) as uow:  # a re-run of the same cause
        second = uow.event(CounterIncremented(counter="again", by=2), subject="again")
        uow.add_events([first, second, second])
        await uow.commit()
    assert [row.event_id for row in await outbox_rows(counters)] == [first.id, second.id]
    assert await relay.drain() == 2
    async with unit_of_work(counters, sample_stream, relay) as uow:  # once more, after publication
        uow.add_events([first])
        await uow.commit()
    assert [row.event_id for row in await outbox_rows(counters)] == [first.id, second.id]
    assert [m.event["id"] for m in await stored(sample_stream)] == [str(first.id), str(second.id)]


async def test_a_unit_of_work_without_stream_refuses_to_commit_events(counters: AsyncEngine) -> None:
    async with unit_of_work(counters, stream=None) as uow:
        await uow.counters.add("nowhere", 1)
        uow.add_event(CounterIncremented(counter="nowhere"), subject="nowhere")
        with pytest.raises(RuntimeError, match=f"{SOURCE} has no stream to publish {INCREMENTED} to"):
            await uow.commit()
    assert await counter(counters, "nowhere") == 0 and await count(counters, "outbox") == 0
    async with unit_of_work(counters, stream=None) as uow:  # state alone commits
        await uow.counters.add("nowhere", 1)
        await uow.commit()
    assert await counter(counters, "nowhere") == 1


async def test_an_event_carries_its_causes_correlation_and_a_derived_id(counters: AsyncEngine) -> None:
    cause = new_event(CounterIncremented(counter="c"), source="raccrochage/other", subject="c")
    derived = uuid.uuid5(cause.id, "reset")
    uow = unit_of_work(counters, "SAMPLE")
    event = uow.event(CounterReset(counter="c"), subject="c", cause=cause, event_id=derived)
    assert (event.id, event.source, event.type, event.subject) == (
        derived,
        SOURCE,
        CounterReset.event_type,
        "c",
    )
    assert (event.correlationid, event.causationid) == (cause.correlationid, cause.id)
    assert uow.pending_events == []  # built, not added
    fresh = uow.event(CounterReset(counter="c"), subject="c")
    assert fresh.correlationid == fresh.id and fresh.causationid is None


async def test_events_whose_publication_fails_after_commit_are_left_to_the_relay(
    nc: Client, counters: AsyncEngine, unique: str, stored
) -> None:
    """No stream holds `sample.>` yet: the commit still succeeds, the row is freed (not leased)
    with JetStream's reason, and the relay publishes it once the stream exists."""
    js = nc.jetstream()
    stream = f"LATE_{unique}"
    relay = OutboxRelay(counters, js, publish_timeout=60)
    async with unit_of_work(counters, stream, relay) as uow:
        await uow.counters.add("late", 1)
        event = uow.add_event(CounterIncremented(counter="late"), subject="late")
        await uow.commit()
    assert await counter(counters, "late") == 1
    [row] = await outbox_rows(counters)
    assert row.published_at is None and row.leased_until is None and row.attempts == 1
    assert row.last_error.startswith("NoStreamResponseError")
    await js.add_stream(StreamConfig(name=stream, subjects=["sample.>"], duplicate_window=120))
    try:
        assert await relay.drain() == 1
        assert [m.headers["Nats-Msg-Id"] for m in await stored(stream)] == [str(event.id)]
    finally:
        await js.delete_stream(stream)


async def test_a_commit_that_fails_publishes_nothing_even_when_the_unit_of_work_is_used_again(
    nc: Client, counters: AsyncEngine, sample_stream: str, stored
) -> None:
    """A deferred constraint fails at COMMIT, after the outbox rows were written and leased:
    those rows never existed, and nothing publishes them, not even this unit of work's next commit."""
    async with counters.begin() as conn:
        await conn.execute(
            text("CREATE TABLE deferred_check (n int, UNIQUE (n) DEFERRABLE INITIALLY DEFERRED)")
        )
    relay = OutboxRelay(counters, nc.jetstream())
    uow = unit_of_work(counters, sample_stream, relay)
    async with uow:
        await uow.connection.execute(text("INSERT INTO deferred_check VALUES (1), (1)"))
        uow.add_event(CounterIncremented(counter="never"), subject="never")
        with pytest.raises(IntegrityError):
            await uow.commit()
    async with uow:
        await uow.counters.add("after", 1)
        await uow.commit()
    async with uow:
        kept = uow.add_event(CounterIncremented(counter="kept"), subject="kept")
        await uow.commit()
    assert await counter(counters, "after") == 1
    assert [row.event_id for row in await outbox_rows(counters)] == [kept.id]
    assert [m.event["id"] for m in await stored(sample_stream)] == [str(kept.id)]


async def test_a_unit_of_work_used_outside_its_block_says_so(counters: AsyncEngine) -> None:
    uow = unit_of_work(counters)
    with pytest.raises(RuntimeError, match="outside its `async with` block"):
        await uow.claim("first", [(uuid.uuid4(), INCREMENTED)])
    with pytest.raises(RuntimeError, match="outside its `async with` block"):
        await uow.commit()


async def test_a_unit_of_work_gives_its_connection_back_before_publishing(
    nc: Client, counters: AsyncEngine, sample_stream: str
) -> None:
    """Publishing and marking after commit must not hold the writer's connection as well: under
    concurrent writers a pool would overflow into new connections."""
    checked_out: list[int] = []

    class WatchedRelay(OutboxRelay):
        async def publish_leased(self, rows):
            checked_out.append(counters.pool.checkedout())
            return await super().publish_leased(rows)

    before = counters.pool.checkedout()
    relay = WatchedRelay(counters, nc.jetstream())
    async with unit_of_work(counters, sample_stream, relay) as uow:
        await uow.counters.add("held", 1)
        uow.add_event(CounterIncremented(counter="held", by=1), subject="held")
        await uow.commit()
    assert checked_out == [before]
    assert counters.pool.checkedout() == before
