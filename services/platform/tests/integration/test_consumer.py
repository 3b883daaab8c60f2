"""Durable pull consumers against real NATS and PostgreSQL: effects once, poison to dead letters."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from nats.aio.client import Client
from raccrochage_contracts import new_event
from raccrochage_platform import deadletter
from raccrochage_platform.consumer import Event, EventConsumer, PermanentError
from raccrochage_platform.db import make_engine, make_session_factory
from raccrochage_platform.outbox import LEASES, OutboxRelay, OutboxWriter
from raccrochage_platform.testing.sample import (
    SAMPLE_REGISTRY,
    CounterIncremented,
    CounterReported,
    CounterReset,
)
from raccrochage_platform.topology import ConsumerDef, declare_consumer, declare_stream, load_topology
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

pytestmark = pytest.mark.asyncio(loop_scope="session")
SUBJECT = "sample.counter.incremented.v1"


@pytest.fixture
async def counters(service_engine: AsyncEngine) -> AsyncEngine:
    async with service_engine.begin() as conn:
        await conn.execute(
            text("CREATE TABLE IF NOT EXISTS counters (name text PRIMARY KEY, value int NOT NULL)")
        )
        await conn.execute(text("TRUNCATE counters"))
    return service_engine


async def increment(session: AsyncSession, event: Event[CounterIncremented]) -> None:
    if event.data.counter == "explode":
        raise RuntimeError("the handler's dependency is down")
    if event.data.counter == "refused":
        raise PermanentError("counter refused: it is closed")
    await session.execute(
        text(
            "INSERT INTO counters VALUES (:n, :v) ON CONFLICT (name) DO UPDATE SET value = counters.value + :v"
        ),
        {"n": event.data.counter, "v": event.data.by},
    )


@pytest.fixture
async def started() -> list[EventConsumer]:
    """Consumers a test made; stopped even when the test fails."""
    consumers: list[EventConsumer] = []
    yield consumers
    for consumer in consumers:
        await consumer.stop()


async def make_consumer(
    nc: Client, engine: AsyncEngine, stream: str, unique: str, started: list, **options
) -> EventConsumer:
    definition = ConsumerDef(
        f"sample_{unique}",
        "psad",
        stream,
        ("sample.>",),
        ack_wait_seconds=5,
        max_deliver=3,
        backoff_seconds=(0.1, 0.2),
    )
    await declare_consumer(nc.jetstream(), definition)
    consumer = EventConsumer(
        definition,
        SAMPLE_REGISTRY,
        make_session_factory(engine),
        nc.jetstream(),
        fetch_timeout=0.2,
        **options,
    )
    consumer.on(SUBJECT)(increment)
    started.append(consumer)
    return consumer


def envelope(counter: str, by: int = 1, event_id: uuid.UUID | None = None) -> bytes:
    return new_event(
        CounterIncremented(counter=counter, by=by),
        source="raccrochage/psad",
        subject=counter,
        event_id=event_id,
    ).to_json()


async def publish(nc: Client, payload: bytes, msg_id: str | None = None, subject: str = SUBJECT) -> None:
    await nc.jetstream().publish(subject, payload, headers={"Nats-Msg-Id": msg_id or str(uuid.uuid4())})


async def value(engine: AsyncEngine, name: str) -> int | None:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT value FROM counters WHERE name = :n"), {"n": name})).scalar()


async def eventually(probe, expected, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await probe()
        if got == expected:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"got {got!r}, expected {expected!r} after {timeout}s")
        await asyncio.sleep(0.05)


async def test_a_duplicate_delivery_has_its_effect_once(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list
) -> None:
    consumer = await make_consumer(nc, counters, sample_stream, unique, started)
    await consumer.start()
    event_id = uuid.uuid4()
    # Two copies with distinct Nats-Msg-Id get past the broker's dedup: only the inbox stops them.
    await publish(nc, envelope("dup", 5, event_id))
    await publish(nc, envelope("dup", 5, event_id))
    await publish(nc, envelope("other", 1))
    await eventually(lambda: value(counters, "other"), 1)
    await asyncio.sleep(0.3)
    assert await value(counters, "dup") == 5
    info = await nc.jetstream().consumer_info(sample_stream, consumer.name)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_one_batch_one_transaction_with_duplicates_inside(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list
) -> None:
    consumer = await make_consumer(nc, counters, sample_stream, unique, started, batch_size=100)
    event_id = uuid.uuid4()
    for n in range(60):
        await publish(nc, envelope("batch", 1, event_id if n % 2 else None))
    await consumer.start()  # all 60 wait in the stream: the first fetch takes them in one batch
    await eventually(lambda: value(counters, "batch"), 31)


async def test_poison_messages_reach_dead_letters_while_the_rest_is_handled(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list
) -> None:
    consumer = await make_consumer(nc, counters, sample_stream, unique, started)
    await consumer.start()
    await publish(nc, b"{not json")
    await publish(nc, json.dumps({"specversion": "1.0", "id": str(uuid.uuid4())}).encode())
    unknown = new_event(CounterIncremented(counter="x"), source="raccrochage/psad", subject="x")
    await publish(
        nc,
        unknown.model_copy(update={"type": "sample.counter.incremented.v9"}).to_json(),
        subject="sample.counter.incremented.v9",
    )
    bad_data = json.loads(envelope("bad"))
    bad_data["data"]["by"] = "CANARY-NOT-A-NUMBER"
    await publish(nc, json.dumps(bad_data).encode())
    await publish(nc, envelope("explode"))
    await publish(nc, envelope("refused"))
    await publish(nc, envelope("after", 2))
    await eventually(lambda: value(counters, "after"), 2)

    async def letters() -> list[deadletter.DeadLetter]:
        return await deadletter.list_dead_letters(nc.jetstream(), consumer=consumer.name)

    await eventually(lambda: _count(letters), 6, timeout=15)
    found = {letter.subject + " | " + letter.reason for letter in await letters()}
    text_all = "\n".join(sorted(found))
    assert "invalid envelope" in text_all
    assert "envelope.type: Field required" in text_all
    assert (
        "unknown event type 'sample.counter.incremented.v9'; known versions: sample.counter.incremented.v1"
        in text_all
    )
    assert "data.by: Input should be a valid integer" in text_all
    assert "CANARY" not in text_all  # reasons never copy input values
    assert "handler failed: RuntimeError: the handler's dependency is down (after 3 deliveries)" in text_all
    assert "rejected by handler: counter refused: it is closed" in text_all
    exploded = next(x for x in await letters() if "explode" in x.reason or b"explode" in x.payload)
    assert exploded.delivered == 3 and exploded.stream == sample_stream
    assert json.loads(exploded.payload)["data"]["counter"] == "explode"
    info = await nc.jetstream().consumer_info(sample_stream, consumer.name)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_fields_a_consumer_does_not_know_yet_are_ignored(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list
) -> None:
    """A producer may add an optional field (and an envelope extension) before its consumers
    are upgraded: the event is handled, the known fields still checked."""
    consumer = await make_consumer(nc, counters, sample_stream, unique, started)
    await consumer.start()
    newer = json.loads(envelope("newer", 3))
    newer["data"]["added_later"] = {"any": "thing"}
    newer["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await publish(nc, json.dumps(newer).encode())
    await eventually(lambda: value(counters, "newer"), 3)


async def test_a_replayed_dead_letter_is_handled_once_fixed(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list
) -> None:
    consumer = await make_consumer(nc, counters, sample_stream, unique, started)
    broken = {"on": True}

    async def flaky(session: AsyncSession, event: Event[CounterIncremented]) -> None:
        if broken["on"]:
            raise RuntimeError("still broken")
        await increment(session, event)

    consumer.on(SUBJECT)(flaky)
    await consumer.start()
    await publish(nc, envelope("replayed", 7))
    js = nc.jetstream()

    async def mine() -> list[deadletter.DeadLetter]:
        return await deadletter.list_dead_letters(js, consumer=consumer.name)

    await eventually(lambda: _count(mine), 1, timeout=15)
    broken["on"] = False
    for letter in await mine():
        await deadletter.replay(js, letter)
    await eventually(lambda: value(counters, "replayed"), 7)
    assert await mine() == []


async def test_partner_events_take_their_source_from_the_subject(
    nc: Client, counters: AsyncEngine, unique: str, started: list, deadletter_stream: str
) -> None:
    js = nc.jetstream()
    partner = f"cfa-{unique}"
    await declare_stream(js, load_topology().streams["PARTNER"])
    definition = ConsumerDef(
        f"partners_{unique}",
        "reperage",
        "PARTNER",
        (f"partner.{partner}.>",),
        max_deliver=2,
        backoff_seconds=(0.1,),
    )
    await declare_consumer(js, definition)
    consumer = EventConsumer(
        definition, SAMPLE_REGISTRY, make_session_factory(counters), js, fetch_timeout=0.2
    )
    seen: list[str | None] = []

    @consumer.on("partner.seats.reported.v1")
    async def record(session: AsyncSession, event: Event[CounterReported]) -> None:
        seen.append(event.partner_id)
        await increment(
            session, Event(event.envelope, CounterIncremented(counter=event.data.counter), None, 1)
        )

    started.append(consumer)
    await consumer.start()
    honest = new_event(CounterReported(counter=partner), source=f"partner/{partner}", subject="c")
    forged = new_event(CounterReported(counter=partner), source="partner/someone-else", subject="c")
    subject = f"partner.{partner}.seats.reported.v1"
    await publish(nc, forged.to_json(), subject=subject)
    await publish(nc, honest.to_json(), subject=subject)
    await eventually(lambda: value(counters, partner), 1)
    assert seen == [partner]
    letters = await deadletter.list_dead_letters(js, consumer=consumer.name)
    assert [x.reason for x in letters] == [
        f"source partner/someone-else does not match the partner of subject {subject}"
    ]


async def _count(probe) -> int:
    return len(await probe())


async def test_a_batch_handler_takes_runs_of_its_type_and_order_is_kept(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list
) -> None:
    definition = ConsumerDef(
        f"batch_{unique}",
        "psad",
        sample_stream,
        ("sample.>",),
        ack_wait_seconds=5,
        max_deliver=3,
        backoff_seconds=(0.1,),
    )
    await declare_consumer(nc.jetstream(), definition)
    consumer = EventConsumer(
        definition,
        SAMPLE_REGISTRY,
        make_session_factory(counters),
        nc.jetstream(),
        fetch_timeout=0.2,
        batch_size=100,
    )
    started.append(consumer)
    calls: list[object] = []

    @consumer.on_batch(SUBJECT)
    async def many(session: AsyncSession, events: list[Event[CounterIncremented]]) -> None:
        calls.append(tuple(e.data.counter for e in events))

    @consumer.on("sample.counter.reset.v1")
    async def one(session: AsyncSession, event: Event[CounterReset]) -> None:
        calls.append(f"reset {event.data.counter}")

    repeated = uuid.uuid4()
    for name, event_id in (("a", None), ("b", repeated), ("b", repeated)):
        await publish(nc, envelope(name, event_id=event_id))
    reset = new_event(CounterReset(counter="a"), source="raccrochage/psad", subject="a")
    await publish(nc, reset.to_json(), subject="sample.counter.reset.v1")
    await publish(nc, envelope("c"))
    await consumer.start()  # all wait in the stream: one fetch, one transaction
    await eventually(lambda: asyncio.sleep(0, len(calls)), 3)
    # A run per call, the duplicate dropped by the inbox, the single event in its place.
    assert calls == [("a", "b"), "reset a", ("c",)]


async def test_a_consumer_publishes_the_events_its_handler_leased_right_after_commit(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list
) -> None:
    js = nc.jetstream()
    writer = OutboxWriter("raccrochage/psad", sample_stream)
    relay = OutboxRelay(counters, js)  # not started: no NOTIFY listener, no sweep, no claim
    definition = ConsumerDef(
        f"leases_{unique}",
        "psad",
        sample_stream,
        (SUBJECT,),
        ack_wait_seconds=5,
        max_deliver=3,
        backoff_seconds=(0.1,),
    )
    await declare_consumer(js, definition)
    consumer = EventConsumer(
        definition, SAMPLE_REGISTRY, make_session_factory(counters), js, fetch_timeout=0.2, relay=relay
    )
    counter = f"c{unique}"

    @consumer.on(SUBJECT)
    async def increment_and_reset(session: AsyncSession, event: Event[CounterIncremented]) -> None:
        await increment(session, event)
        conn = (await (await session.connection()).get_raw_connection()).driver_connection
        key = f"{counter}-{event.data.counter}"
        await writer.add_many_raw(
            conn,
            [writer.envelope(CounterReset(counter=event.data.counter), subject=key) for _ in range(2)],
            session.info[LEASES],
        )

    async def resets() -> list[str]:
        info = await js.stream_info(sample_stream)
        messages = [
            json.loads((await js.get_msg(sample_stream, seq)).data)
            for seq in range(1, info.state.last_seq + 1)
        ]
        return [m["subject"] for m in messages if m["type"] == "sample.counter.reset.v1"]

    started.append(consumer)
    async with counters.begin() as conn:  # an older event of "late" waits for the relay
        await writer.add(conn, CounterReset(counter="late"), subject=f"{counter}-late")
    await consumer.start()
    await publish(nc, envelope("soon", 1))
    await eventually(lambda: value(counters, "soon"), 1)
    await eventually(resets, [f"{counter}-soon"] * 2)  # by the consumer itself, right after its commit
    await publish(nc, envelope("late", 1))
    await eventually(lambda: value(counters, "late"), 1)
    await asyncio.sleep(0.3)
    assert await resets() == [f"{counter}-soon"] * 2  # "late" has an older pending event: left to the relay
    assert relay.stats.batches == 0 and await relay.backlog() == 3
    assert await relay.drain() == 3
    assert await resets() == [f"{counter}-soon"] * 2 + [f"{counter}-late"] * 3


async def test_batches_of_other_aggregates_run_at_once_and_an_aggregates_events_keep_their_order(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list
) -> None:
    """concurrency=2, one event a batch: "b" does not wait behind the slow "a1", while "a2" (same
    aggregate as "a1", envelope subject "a") waits until "a1" is committed."""
    definition = ConsumerDef(
        f"concurrent_{unique}",
        "psad",
        sample_stream,
        (SUBJECT,),
        ack_wait_seconds=5,
        max_deliver=3,
        backoff_seconds=(0.1,),
    )
    await declare_consumer(nc.jetstream(), definition)
    consumer = EventConsumer(
        definition,
        SAMPLE_REGISTRY,
        make_session_factory(counters),
        nc.jetstream(),
        batch_size=1,
        fetch_timeout=0.2,
        concurrency=2,
    )
    journal: list[str] = []
    a1_may_end = asyncio.Event()

    @consumer.on(SUBJECT)
    async def record(session: AsyncSession, event: Event[CounterIncremented]) -> None:
        name = event.data.counter
        journal.append(f"start {name}")
        if name == f"{unique}-a1":
            await a1_may_end.wait()
        await increment(session, event)
        journal.append(f"end {name}")

    started.append(consumer)
    await consumer.start()

    def sent(name: str, aggregate: str) -> bytes:
        return new_event(
            CounterIncremented(counter=f"{unique}-{name}"), source="raccrochage/psad", subject=aggregate
        ).to_json()

    await publish(nc, sent("a1", "a"))
    await publish(nc, sent("b", "b"))
    await publish(nc, sent("a2", "a"))
    await eventually(lambda: value(counters, f"{unique}-b"), 1)  # b is done while a1 still waits
    assert f"end {unique}-a1" not in journal and f"start {unique}-a2" not in journal
    a1_may_end.set()
    await eventually(lambda: value(counters, f"{unique}-a2"), 1)
    assert journal.index(f"end {unique}-a1") < journal.index(f"start {unique}-a2")


async def test_a_consumer_never_started_stops_quietly(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list
) -> None:
    consumer = await make_consumer(nc, counters, sample_stream, unique, started)
    await consumer.stop()  # a service stopping after another consumer's start failed


async def _relayed_consumer(
    nc: Client, engine: AsyncEngine, stream: str, durable: str, started: list
) -> EventConsumer:
    """A consumer of SUBJECT that publishes its leased events (a relay of its own, not started)."""
    js = nc.jetstream()
    definition = ConsumerDef(
        durable, "psad", stream, (SUBJECT,), ack_wait_seconds=5, max_deliver=3, backoff_seconds=(0.1,)
    )
    await declare_consumer(js, definition)
    consumer = EventConsumer(
        definition,
        SAMPLE_REGISTRY,
        make_session_factory(engine),
        js,
        fetch_timeout=0.2,
        relay=OutboxRelay(engine, js),
    )
    started.append(consumer)
    return consumer


async def test_a_one_statement_handler_goes_first_and_leaves_what_it_cannot_do_to_the_batch_handler(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list
) -> None:
    js = nc.jetstream()
    consumer = await _relayed_consumer(nc, counters, sample_stream, f"one_statement_{unique}", started)
    definition = consumer.definition
    with pytest.raises(ValueError, match="on_batch handler first"):
        consumer.on_batch_in_one_statement(SUBJECT)
    in_transaction: list[str] = []

    @consumer.on_batch(SUBJECT)
    async def many(session: AsyncSession, events: list[Event[CounterIncremented]]) -> None:
        in_transaction.extend(e.data.counter for e in events)
        for event in events:
            await increment(session, event)

    @consumer.on_batch_in_one_statement(SUBJECT)
    async def at_once(conn, name: str, events: list[Event[CounterIncremented]], leases) -> bool:
        if any(e.data.counter.startswith("slow") for e in events):
            return False
        if any(e.data.counter.startswith("broken") for e in events):
            raise RuntimeError("the statement failed")
        await conn.execute(
            "WITH claimed AS (INSERT INTO inbox (consumer, event_id, event_type) "
            "SELECT $1, unnest($2::uuid[]), $3 RETURNING 1) "
            "INSERT INTO counters SELECT unnest($4::text[]), 1 FROM claimed LIMIT cardinality($4::text[]) "
            "ON CONFLICT (name) DO UPDATE SET value = counters.value + 1",
            name,
            [e.envelope.id for e in events],
            SUBJECT,
            [e.data.counter for e in events],
        )
        return True

    await consumer.start()
    for name in (f"fast{unique}", f"slow{unique}", f"broken{unique}"):
        await publish(nc, envelope(name))
        await eventually(lambda name=name: value(counters, name), 1)
    # the first in one statement, the others by the batch handler (the third after its error)
    assert in_transaction == [f"slow{unique}", f"broken{unique}"]
    deadline = asyncio.get_running_loop().time() + 5
    while (
        info := await js.consumer_info(sample_stream, definition.durable)
    ).num_ack_pending and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_a_one_statement_handler_that_leaves_a_transaction_open_does_not_spoil_the_pool(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list
) -> None:
    """Its connection is thrown away instead of going back to the pool mid-transaction: the
    fallback and the batches after it get a clean one (the pool holds one connection)."""
    engine = make_engine(counters.url.render_as_string(hide_password=False), pool_size=1)
    consumer = await _relayed_consumer(nc, engine, sample_stream, f"left_open_{unique}", started)

    @consumer.on_batch(SUBJECT)
    async def many(session: AsyncSession, events: list[Event[CounterIncremented]]) -> None:
        for event in events:
            await increment(session, event)

    @consumer.on_batch_in_one_statement(SUBJECT)
    async def begins(conn, name: str, events: list[Event[CounterIncremented]], leases) -> bool:
        await conn.execute("BEGIN")
        return False

    try:
        await consumer.start()
        for name in (f"open{unique}", f"after{unique}"):
            await publish(nc, envelope(name))
            await eventually(lambda name=name: value(counters, name), 1)
    finally:
        await consumer.stop()
        await engine.dispose()
