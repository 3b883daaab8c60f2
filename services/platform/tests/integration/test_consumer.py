"""Durable pull consumers against real NATS and PostgreSQL: effects once, poison to dead letters."""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import Callable

import pytest
from nats.aio.client import Client
from prometheus_client import REGISTRY
from raccrochage_contracts import new_event
from raccrochage_platform import deadletter
from raccrochage_platform.consumer import Event, EventConsumer, PermanentError
from raccrochage_platform.outbox import OutboxRelay
from raccrochage_platform.topology import ConsumerDef, declare_consumer, declare_stream, load_topology
from raccrochage_rig.testing.sample import (
    SAMPLE_REGISTRY,
    CounterIncremented,
    CounterReported,
    CounterReset,
)
from raccrochage_rig.testing.sample_service import SampleUnitOfWork
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.asyncio(loop_scope="session")
SUBJECT = CounterIncremented.event_type
RESET = CounterReset.event_type
SOURCE = "raccrochage/sample"


class JournaledUnitOfWork(SampleUnitOfWork):
    """The sample service's unit of work, noting the size of each batch it claims."""

    def __init__(self, *args, journal: list[int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.journal = journal

    async def claim(self, consumer, events):
        self.journal.append(len(events))
        return await super().claim(consumer, events)


def unit_of_work(
    engine: AsyncEngine,
    stream: str | None = None,
    relay: OutboxRelay | None = None,
    journal: list[int] | None = None,
) -> Callable[[], SampleUnitOfWork]:
    return functools.partial(
        JournaledUnitOfWork,
        engine,
        source=SOURCE,
        stream=stream,
        relay=relay,
        journal=[] if journal is None else journal,
    )


async def increment(uow: SampleUnitOfWork, event: Event[CounterIncremented]) -> None:
    counter = event.data.counter
    if counter == "explode":
        raise RuntimeError("the handler's dependency is down")
    if counter == "refused":
        raise PermanentError("counter refused: it is closed")
    if counter.startswith("CANARY"):  # a database error, whose text quotes the parameters
        await uow.connection.execute(text("INSERT INTO counters VALUES (:n, NULL)"), {"n": counter})
    await uow.counters.add(counter, event.data.by)


@pytest.fixture
async def started() -> list[EventConsumer]:
    """Consumers a test made; stopped even when the test fails."""
    consumers: list[EventConsumer] = []
    yield consumers
    for consumer in consumers:
        await consumer.stop()


async def make_consumer(
    nc: Client,
    started: list,
    durable: str,
    stream: str,
    unit_of_work: Callable[[], SampleUnitOfWork],
    *,
    subjects: tuple[str, ...] = ("sample.>",),
    backoff: tuple[float, ...] = (0.1, 0.2),
    handler=increment,
    ack_wait: float = 5,
    **options,
) -> EventConsumer:
    definition = ConsumerDef(
        durable, "sample", stream, subjects, ack_wait_seconds=ack_wait, max_deliver=3, backoff_seconds=backoff
    )
    await declare_consumer(nc.jetstream(), definition)
    options.setdefault("idle_timeout", 1.0)
    consumer = EventConsumer(definition, SAMPLE_REGISTRY, unit_of_work, nc.jetstream(), **options)
    if handler is not None:
        consumer.on(SUBJECT)(handler)
    started.append(consumer)
    return consumer


def envelope(
    counter: str, by: int = 1, event_id: uuid.UUID | None = None, subject: str | None = None
) -> bytes:
    return new_event(
        CounterIncremented(counter=counter, by=by),
        source=SOURCE,
        subject=subject or counter,
        event_id=event_id,
    ).to_json()


async def publish(nc: Client, payload: bytes, subject: str = SUBJECT) -> None:
    await nc.jetstream().publish(subject, payload, headers={"Nats-Msg-Id": str(uuid.uuid4())})


async def value(engine: AsyncEngine, name: str) -> int:
    async with SampleUnitOfWork(engine, source=SOURCE) as uow:
        return await uow.counters.value(name)


def settled(nc: Client, stream: str, durable: str):
    """A probe: every delivered message acked and nothing left to deliver."""

    async def probe() -> bool:
        info = await nc.jetstream().consumer_info(stream, durable)
        return info.num_ack_pending == 0 and info.num_pending == 0

    return probe


def letters_of(nc: Client, consumer: EventConsumer):
    async def letters() -> list[deadletter.DeadLetter]:
        return await deadletter.list_dead_letters(nc.jetstream(), consumer=consumer.name)

    return letters


def counted(probe):
    async def count() -> int:
        return len(await probe())

    return count


async def test_a_duplicate_delivery_is_acked_and_has_its_effect_once(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list, eventually
) -> None:
    consumer = await make_consumer(nc, started, f"dup_{unique}", sample_stream, unit_of_work(counters))
    await consumer.start()
    event_id = uuid.uuid4()
    # Two copies with distinct Nats-Msg-Id get past the broker's dedup: only the inbox stops them.
    await publish(nc, envelope("dup", 5, event_id))
    await eventually(lambda: value(counters, "dup"), 5)
    await publish(nc, envelope("dup", 5, event_id))
    await publish(nc, envelope("other", 1))
    await eventually(lambda: value(counters, "other"), 1)
    await eventually(settled(nc, sample_stream, consumer.name), True)
    assert await value(counters, "dup") == 5
    async with counters.connect() as conn:
        inbox = await conn.execute(
            text("SELECT event_type FROM inbox WHERE consumer = :c"), {"c": consumer.name}
        )
        assert list(inbox.scalars()) == [SUBJECT, SUBJECT]


async def test_a_backlog_is_handled_in_few_batches_with_duplicates_inside_once(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list, eventually
) -> None:
    journal: list[int] = []
    consumer = await make_consumer(
        nc,
        started,
        f"backlog_{unique}",
        sample_stream,
        unit_of_work(counters, journal=journal),
        batch_size=100,
    )
    repeated = uuid.uuid4()
    for n in range(300):
        await publish(nc, envelope("backlog", 1, repeated if n % 2 else None))
    await consumer.start()  # all 300 wait in the stream
    await eventually(lambda: value(counters, "backlog"), 151)
    await eventually(settled(nc, sample_stream, consumer.name), True)
    assert sum(journal) == 300 and max(journal) <= 100
    assert len(journal) <= 15  # batches, not one transaction per message


async def test_at_a_trickle_each_message_is_handled_at_once_without_waiting_for_a_batch(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list, eventually
) -> None:
    journal: list[int] = []
    consumer = await make_consumer(
        nc,
        started,
        f"trickle_{unique}",
        sample_stream,
        unit_of_work(counters, journal=journal),
        batch_size=100,
        idle_timeout=60,
    )
    await consumer.start()
    for n in range(1, 4):
        await publish(nc, envelope("trickle"))
        # far sooner than the 60 s a fetch waits on an idle stream
        await eventually(lambda: value(counters, "trickle"), n, timeout=15)
    assert journal == [1, 1, 1]


async def test_poison_messages_in_a_batch_are_dead_lettered_alone_with_reasons_that_quote_no_input(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list, eventually
) -> None:
    consumer = await make_consumer(nc, started, f"poison_{unique}", sample_stream, unit_of_work(counters))
    await publish(nc, envelope("before", 1))
    await publish(nc, b"{not json CANARY")
    await publish(nc, json.dumps({"specversion": "1.0", "id": str(uuid.uuid4()), "data": "CANARY"}).encode())
    unknown = new_event(CounterIncremented(counter="x"), source=SOURCE, subject="x")
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
    await publish(nc, envelope("CANARY-IN-A-DATABASE-ERROR"))
    await publish(nc, envelope("after", 2))
    await consumer.start()  # all in the stream: they come in one batch
    letters = letters_of(nc, consumer)
    await eventually(counted(letters), 7)
    await eventually(settled(nc, sample_stream, consumer.name), True)
    assert await value(counters, "before") == 1 and await value(counters, "after") == 2  # once each
    reasons = sorted(letter.reason for letter in await letters())
    everything = "\n".join(reasons)
    assert "CANARY" not in everything  # reasons never copy input values
    assert sum(reason.startswith("invalid envelope") for reason in reasons) == 2
    assert "envelope.type: Field required" in everything
    assert (
        "unknown event type 'sample.counter.incremented.v9'; known versions: sample.counter.incremented.v1"
        in reasons
    )
    assert any(reason.startswith("invalid data.by: Input should be a valid integer") for reason in reasons)
    assert "handler failed: RuntimeError: the handler's dependency is down (after 3 deliveries)" in reasons
    assert "rejected by handler: counter refused: it is closed" in reasons
    assert (
        "handler failed: IntegrityError: NotNullViolationError (SQLSTATE 23502) (after 3 deliveries)"
        in reasons
    )
    exploded = next(x for x in await letters() if "dependency is down" in x.reason)
    assert exploded.delivered == 3 and exploded.stream == sample_stream and exploded.subject == SUBJECT
    assert json.loads(exploded.payload)["data"]["counter"] == "explode"
    refused = next(x for x in await letters() if x.reason.startswith("rejected"))
    assert refused.delivered == 1  # not retried


async def test_a_transient_failure_is_retried_with_backoff_and_then_handled_once(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list, eventually
) -> None:
    deliveries: list[tuple[int, float]] = []

    async def flaky(uow: SampleUnitOfWork, event: Event[CounterIncremented]) -> None:
        deliveries.append((event.delivered, time.monotonic()))
        await uow.counters.add(event.data.counter, 1)  # rolled back with the failure
        if event.delivered < 3:
            raise RuntimeError("not yet")

    consumer = await make_consumer(
        nc,
        started,
        f"flaky_{unique}",
        sample_stream,
        unit_of_work(counters),
        handler=flaky,
        backoff=(0.3, 0.6),
    )
    await consumer.start()
    await publish(nc, envelope("flaky"))
    await eventually(lambda: value(counters, "flaky"), 1)
    await eventually(settled(nc, sample_stream, consumer.name), True)
    assert [delivered for delivered, _ in deliveries] == [1, 2, 3]  # once per delivery
    waits = [later - earlier for (_, earlier), (_, later) in zip(deliveries, deliveries[1:], strict=False)]
    assert waits[0] >= 0.3 and waits[1] >= 0.6  # JetStream redelivered after each backoff, not before
    assert await letters_of(nc, consumer)() == []


async def test_fields_a_consumer_does_not_know_yet_are_ignored(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list, eventually
) -> None:
    """A producer may add an optional field (and an envelope extension) before its consumers
    are upgraded: the event is handled, the known fields still checked."""
    consumer = await make_consumer(nc, started, f"newer_{unique}", sample_stream, unit_of_work(counters))
    await consumer.start()
    newer = json.loads(envelope("newer", 3))
    newer["data"]["added_later"] = {"any": "thing"}
    newer["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await publish(nc, json.dumps(newer).encode())
    await eventually(lambda: value(counters, "newer"), 3)


async def test_a_replayed_dead_letter_is_handled_once_fixed(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list, eventually
) -> None:
    broken = {"on": True}

    async def fragile(uow: SampleUnitOfWork, event: Event[CounterIncremented]) -> None:
        if broken["on"]:
            raise RuntimeError("still broken")
        await increment(uow, event)

    consumer = await make_consumer(
        nc, started, f"replayed_{unique}", sample_stream, unit_of_work(counters), handler=fragile
    )
    await consumer.start()
    await publish(nc, envelope("replayed", 7))
    js = nc.jetstream()
    mine = letters_of(nc, consumer)
    await eventually(counted(mine), 1)
    broken["on"] = False
    for letter in await mine():
        await deadletter.replay(js, letter)
    await eventually(lambda: value(counters, "replayed"), 7)
    assert await mine() == []


async def test_partner_events_take_their_source_from_the_subject(
    nc: Client, counters: AsyncEngine, unique: str, started: list, deadletter_stream: str, eventually
) -> None:
    js = nc.jetstream()
    partner = f"cfa-{unique}"
    await declare_stream(js, load_topology().streams["PARTNER"])
    seen: list[str | None] = []

    async def record(uow: SampleUnitOfWork, event: Event[CounterReported]) -> None:
        seen.append(event.partner_id)
        await uow.counters.add(event.data.counter, 1)

    consumer = await make_consumer(
        nc,
        started,
        f"partners_{unique}",
        "PARTNER",
        unit_of_work(counters),
        subjects=(f"partner.{partner}.>",),
        handler=None,
    )
    consumer.on(CounterReported.event_type)(record)
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


async def test_a_batch_handler_takes_runs_of_its_type_and_order_is_kept(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list, eventually
) -> None:
    consumer = await make_consumer(
        nc, started, f"runs_{unique}", sample_stream, unit_of_work(counters), handler=None, batch_size=100
    )
    calls: list[object] = []

    @consumer.on_batch(SUBJECT)
    async def many(uow: SampleUnitOfWork, events: list[Event[CounterIncremented]]) -> None:
        calls.append(tuple(e.data.counter for e in events))

    @consumer.on(RESET)
    async def one(uow: SampleUnitOfWork, event: Event[CounterReset]) -> None:
        calls.append(f"reset {event.data.counter}")

    repeated = uuid.uuid4()
    for name, event_id in (("a", None), ("b", repeated), ("b", repeated)):
        await publish(nc, envelope(name, event_id=event_id))
    reset = new_event(CounterReset(counter="a"), source=SOURCE, subject="a")
    await publish(nc, reset.to_json(), subject=RESET)
    await publish(nc, envelope("c"))
    await consumer.start()  # all wait in the stream: one fetch, one transaction
    await eventually(lambda: asyncio.sleep(0, len(calls)), 3)
    # A run per call, the duplicate dropped by the inbox, the single event in its place.
    assert calls == [("a", "b"), "reset a", ("c",)]


async def test_a_handlers_events_are_published_right_after_its_commit_unless_older_ones_wait(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list, stored, eventually
) -> None:
    relay = OutboxRelay(counters, nc.jetstream())  # not started: no NOTIFY listener, no sweep, no claim

    async def increment_and_reset(uow: SampleUnitOfWork, event: Event[CounterIncremented]) -> None:
        await increment(uow, event)
        for _ in range(2):
            uow.add_event(CounterReset(counter=event.data.counter), subject=f"{unique}-{event.data.counter}")

    consumer = await make_consumer(
        nc,
        started,
        f"leases_{unique}",
        sample_stream,
        unit_of_work(counters, sample_stream, relay),
        subjects=(SUBJECT,),
        handler=increment_and_reset,
    )

    async def resets() -> list[str]:
        return [m.event["subject"] for m in await stored(sample_stream) if m.event["type"] == RESET]

    async with SampleUnitOfWork(counters, source=SOURCE, stream=sample_stream) as uow:  # for the relay
        uow.add_event(CounterReset(counter="late"), subject=f"{unique}-late")
        await uow.commit()
    await consumer.start()
    await publish(nc, envelope("soon"))
    await eventually(resets, [f"{unique}-soon"] * 2)  # by the consumer itself, right after its commit
    await publish(nc, envelope("late"))
    await eventually(lambda: value(counters, "late"), 1)
    await eventually(settled(nc, sample_stream, consumer.name), True)
    assert await resets() == [f"{unique}-soon"] * 2  # "late" has an older pending event: left to the relay
    assert relay.stats.batches == 0 and await relay.backlog() == 3
    assert await relay.drain() == 3
    assert await resets() == [f"{unique}-soon"] * 2 + [f"{unique}-late"] * 3


async def test_a_failed_batch_publishes_nothing_and_its_good_events_go_through_alone_once(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list, stored, eventually
) -> None:
    relay = OutboxRelay(counters, nc.jetstream())

    async def increment_and_reset(uow: SampleUnitOfWork, event: Event[CounterIncremented]) -> None:
        uow.add_event(CounterReset(counter=event.data.counter), subject=f"{unique}-{event.data.counter}")
        await increment(uow, event)  # "refused" raises after its event was added

    consumer = await make_consumer(
        nc,
        started,
        f"failed_batch_{unique}",
        sample_stream,
        unit_of_work(counters, sample_stream, relay),
        subjects=(SUBJECT,),
        handler=increment_and_reset,
    )
    for name in ("a", "refused", "b"):
        await publish(nc, envelope(name))
    await consumer.start()
    await eventually(counted(letters_of(nc, consumer)), 1)
    await eventually(settled(nc, sample_stream, consumer.name), True)
    assert await value(counters, "a") == 1 and await value(counters, "b") == 1
    published = sorted(m.event["subject"] for m in await stored(sample_stream) if m.event["type"] == RESET)
    assert published == [f"{unique}-a", f"{unique}-b"]
    assert await relay.backlog() == 0


async def test_batches_of_other_aggregates_run_at_once_and_an_aggregates_events_keep_their_order(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list, eventually
) -> None:
    """concurrency=2, one event a batch: "b" does not wait behind the slow "a1", while "a2" (same
    aggregate as "a1", envelope subject "a") waits until "a1" is committed."""
    journal: list[str] = []
    a1_may_end = asyncio.Event()

    async def record(uow: SampleUnitOfWork, event: Event[CounterIncremented]) -> None:
        name = event.data.counter
        journal.append(f"start {name}")
        if name == "a1":
            await a1_may_end.wait()
        await increment(uow, event)
        journal.append(f"end {name}")

    consumer = await make_consumer(
        nc,
        started,
        f"concurrent_{unique}",
        sample_stream,
        unit_of_work(counters),
        subjects=(SUBJECT,),
        handler=record,
        batch_size=1,
        concurrency=2,
    )
    await consumer.start()
    await publish(nc, envelope("a1", subject="a"))
    await publish(nc, envelope("b", subject="b"))
    await publish(nc, envelope("a2", subject="a"))
    await eventually(lambda: value(counters, "b"), 1)  # b is done while a1 still waits
    assert "end a1" not in journal and "start a2" not in journal
    a1_may_end.set()
    await eventually(lambda: value(counters, "a2"), 1)
    assert journal.index("end a1") < journal.index("start a2")


async def test_a_consumer_never_started_stops_quietly(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list
) -> None:
    consumer = await make_consumer(nc, started, f"idle_{unique}", sample_stream, unit_of_work(counters))
    await consumer.stop()  # a service stopping after another consumer's start failed


async def test_an_outage_pauses_the_consumer_and_retries_beyond_max_deliver_until_handled_once(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list, eventually
) -> None:
    calls: list[int] = []
    seen_paused: list[bool] = []

    async def during_an_outage(uow: SampleUnitOfWork, event: Event[CounterIncremented]) -> None:
        calls.append(event.delivered)
        await uow.counters.add(event.data.counter, 1)  # rolled back with the failure
        if len(calls) <= 5:  # more failures than max_deliver (3)
            seen_paused.append(consumer.paused)
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")

    consumer = await make_consumer(
        nc, started, f"outage_{unique}", sample_stream, unit_of_work(counters), handler=during_an_outage
    )
    await consumer.start()
    await publish(nc, envelope("outage"))
    await eventually(lambda: value(counters, "outage"), 1, timeout=60)
    await eventually(settled(nc, sample_stream, consumer.name), True)
    assert len(calls) == 6 and seen_paused[1:] == [True] * 4  # paused from the first failure on
    assert set(calls) == {1}  # waited out in place: no delivery used up
    assert not consumer.paused
    assert await letters_of(nc, consumer)() == []


async def test_a_data_error_is_dead_lettered_at_once_naming_the_argument_and_rule_not_the_value(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list, eventually
) -> None:
    async def out_of_range(uow: SampleUnitOfWork, event: Event[CounterIncremented]) -> None:
        await uow.connection.execute(
            text("INSERT INTO counters VALUES (:n, :v)"), {"n": event.data.counter, "v": 98765432101}
        )

    consumer = await make_consumer(
        nc, started, f"data_{unique}", sample_stream, unit_of_work(counters), handler=out_of_range
    )
    await consumer.start()
    await publish(nc, envelope("too-big"))
    letters = letters_of(nc, consumer)
    await eventually(counted(letters), 1)
    (letter,) = await letters()
    assert letter.delivered == 1  # not retried for minutes first
    assert "98765432101" not in letter.reason
    assert "query argument $2" in letter.reason and "int32" in letter.reason, letter.reason


async def test_a_batch_longer_than_ack_wait_keeps_its_messages_and_the_next_batchs(
    nc: Client, counters: AsyncEngine, sample_stream: str, unique: str, started: list, eventually
) -> None:
    """ack_wait is short (a crashed consumer's messages come back within it), so a batch that takes
    longer tells the server its messages, and those fetched behind it, are still in progress."""
    handled: list[tuple[str, int]] = []
    second = asyncio.Event()

    async def slow(uow: SampleUnitOfWork, event: Event[CounterIncremented]) -> None:
        handled.append((event.data.counter, event.delivered))
        if event.data.counter == "slow":
            second.set()
            await asyncio.sleep(4)  # four times ack_wait
        await uow.counters.add(event.data.counter, 1)

    consumer = await make_consumer(
        nc, started, f"slow_{unique}", sample_stream, unit_of_work(counters), handler=slow, ack_wait=1
    )
    await consumer.start()
    await publish(nc, envelope("slow"))
    await second.wait()
    await publish(nc, envelope("behind"))  # fetched while "slow" runs, waits for it
    await eventually(settled(nc, sample_stream, consumer.name), True, timeout=30)
    redelivered = REGISTRY.get_sample_value(
        "raccrochage_events_redelivered_total", {"consumer": consumer.name}
    )
    assert handled == [("slow", 1), ("behind", 1)]
    assert not redelivered
