"""Poison messages: a Hypothesis-generated stream of malformed, oversized and wrongly typed
messages, each followed by a valid event. Every message ends exactly once either handled or in
the dead letters with a reason; every valid event is handled; nothing stops.

- On every subject a consumer of deploy/topology.toml reads: the platform's `EventConsumer`
  (the contracts' registry, a handler per type that records what it got), one per durable of
  the topology with its stream and filters, valid events from contracts/examples.
- PSAD and the MLDS as processes, on the subjects they consume: their own handlers meet what the
  platform's checks let through (junk that fits its field is valid, and counted as an effect).

`make test` sends 40 and 30 poison messages; `make test-reliability` 400 and 300.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.js import JetStreamContext
from raccrochage_contracts import nats_subject
from raccrochage_contracts.naming import type_from_subject
from raccrochage_contracts.registry import load_all
from raccrochage_platform.consumer import Event, EventConsumer
from raccrochage_platform.deadletter import H_CONSUMER, H_REASON, H_SEQ, H_STREAM
from raccrochage_platform.fakes import FakeUnitOfWork
from raccrochage_platform.topology import declare, declare_consumer, load_topology
from raccrochage_rig.testing.processes import service_process
from raccrochage_rig.testing.reliability import (
    FED,
    FedService,
    eventually,
    fresh_topology,
    migrated,
    scalar,
    service_env,
    short_ack_wait_topology,
)
from raccrochage_rig.testing.servers import Servers

pytestmark = pytest.mark.asyncio(loop_scope="session")

EXAMPLES = Path(__file__).resolve().parents[2] / "contracts" / "examples"
# A declared partner (deploy/partners.toml): FOQUALE reads each declared partner's subjects only.
PARTNER = "cfa-gironde"
REGISTRY = load_all()


def example(event_type: str) -> dict:
    return json.loads(next((EXAMPLES / event_type).glob("*.json")).read_text(encoding="utf-8"))


def matches(subject: str, pattern: str) -> bool:
    """NATS wildcards: `*` one token, `>` the rest."""
    tokens, wanted = subject.split("."), pattern.split(".")
    if wanted[-1] == ">":
        return len(tokens) >= len(wanted) and all(
            w in ("*", t) for w, t in zip(wanted[:-1], tokens, strict=False)
        )
    return len(tokens) == len(wanted) and all(w in ("*", t) for w, t in zip(wanted, tokens, strict=True))


def subject_of(event_type: str) -> str:
    return nats_subject(event_type, PARTNER if event_type.startswith("partner.") else None)


TOPOLOGY = load_topology()
# Every event type some consumer reads, on its subject (a partner's for partner types).
CONSUMED = sorted(
    {
        event_type
        for definition in TOPOLOGY.consumers.values()
        for event_type in REGISTRY
        if any(matches(subject_of(event_type), f) for f in definition.filter_subjects)
    }
)


def valid(event_type: str) -> dict:
    envelope = copy.deepcopy(example(event_type))
    envelope["id"] = str(uuid.uuid4())
    if event_type.startswith("partner."):
        envelope["source"] = f"partner/{PARTNER}"
    return envelope


@dataclass(frozen=True)
class Message:
    subject: str
    data: bytes
    kind: str  # what is wrong with it
    must_dead_letter: bool  # certainly invalid; the others may happen to be valid


JUNK_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: f if f == f else None),
    st.text(max_size=30),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def largest_message(subject: str) -> int:
    """The largest message the stream taking `subject` stores (PARTNER bounds a partner's
    records to 64 KB; the others take up to NATS's max_payload, 1 MB)."""
    for stream in TOPOLOGY.streams.values():
        if stream.max_msg_size > 0 and any(matches(subject, pattern) for pattern in stream.subjects):
            return stream.max_msg_size
    return 1_048_576


def example_base(event_type: str) -> tuple[str, dict]:
    return subject_of(event_type), valid(event_type)


@st.composite
def poison(draw: st.DrawFn, types: list[str], base: Callable[[str], tuple[str, dict]]) -> Message:
    """A bad message on the subject of one of `types`, made from `base(type)`: (subject, a valid
    envelope, new each time)."""
    event_type = draw(st.sampled_from(types))
    subject, envelope = base(event_type)
    kind = draw(
        st.sampled_from(["bytes", "not-an-object", "envelope-field", "data-field", "oversized", "other-type"])
    )
    if kind == "bytes":
        data = draw(st.binary(max_size=300).filter(lambda b: not b.strip().startswith(b"{")))
        return Message(subject, data, kind, True)
    if kind == "not-an-object":
        value = draw(st.one_of(st.integers(), st.text(max_size=40), st.lists(st.integers(), max_size=4)))
        return Message(subject, json.dumps(value).encode(), kind, True)
    if kind == "envelope-field":  # a required field of the envelope missing or wrongly typed
        field = draw(st.sampled_from(["id", "type", "source", "specversion", "time", "data"]))
        if draw(st.booleans()):
            del envelope[field]
        else:
            envelope[field] = draw(st.one_of(st.integers(), st.lists(st.integers(), max_size=2), st.none()))
        return Message(subject, json.dumps(envelope).encode(), kind, field in ("id", "type", "source"))
    if kind == "data-field":  # a field of the payload given a value of another type (may still fit)
        field = draw(st.sampled_from(sorted(envelope["data"])))
        envelope["data"][field] = draw(JUNK_VALUES)
        return Message(subject, json.dumps(envelope, allow_nan=True).encode(), kind, False)
    if kind == "oversized":  # a field up to the stream's limit (max_payload 1 MB, headers included)
        field = draw(st.sampled_from(sorted(envelope["data"])))
        limit = largest_message(subject)
        envelope["data"][field] = "x" * draw(st.integers(min_value=limit // 10, max_value=limit - 2_600))
        return Message(subject, json.dumps(envelope).encode(), kind, False)
    other = draw(st.sampled_from([t for t in REGISTRY if t != event_type]))
    envelope["type"] = other
    return Message(subject, json.dumps(envelope).encode(), kind, True)


def draw_poison(
    count: int, types: list[str] = CONSUMED, base: Callable[[str], tuple[str, dict]] = example_base
) -> list[Message]:
    drawn: list[Message] = []

    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(poison(types, base))
    def collect(message: Message) -> None:
        drawn.append(message)

    collect()
    return drawn


async def poisoned_stream(nc: Client, deadletter_stream: str, unique: str, count: int) -> None:
    js = nc.jetstream()
    await declare(js, TOPOLOGY, services=set())
    for stream in TOPOLOGY.streams:
        await js.purge_stream(stream)
    handled: dict[str, list[uuid.UUID]] = defaultdict(list)
    consumers: list[EventConsumer] = []
    for definition in TOPOLOGY.consumers.values():
        ours = replace(definition, durable=f"poison_{unique}_{definition.durable}", backoff_seconds=(0.1,))
        await declare_consumer(js, ours)
        uow = FakeUnitOfWork()
        consumer = EventConsumer(ours, REGISTRY, lambda uow=uow: uow, js, idle_timeout=0.5)

        async def record(_uow: FakeUnitOfWork, event: Event[Any], name: str = ours.durable) -> None:
            handled[name].append(event.envelope.id)

        for event_type in REGISTRY:
            if any(matches(subject_of(event_type), f) for f in ours.filter_subjects):
                consumer.on(event_type)(record)
        consumers.append(consumer)

    messages = await asyncio.to_thread(draw_poison, count)
    sent: list[tuple[Message, str, int]] = []  # (message, stream, sequence)
    valid_ids: dict[str, tuple[str, int]] = {}
    for n, message in enumerate(messages):
        ack = await js.publish(message.subject, message.data, headers={"Nats-Msg-Id": f"poison-{unique}-{n}"})
        sent.append((message, ack.stream, ack.seq))
        event_type = CONSUMED[n % len(CONSUMED)]
        good = valid(event_type)
        ack = await js.publish(subject_of(event_type), json.dumps(good).encode())
        sent.append((Message(subject_of(event_type), b"", "valid", False), ack.stream, ack.seq))
        valid_ids[good["id"]] = (ack.stream, ack.seq)
    for message in messages:  # the envelope ids a handler may have seen
        try:
            envelope = json.loads(message.data)
            if isinstance(envelope, dict) and isinstance(envelope.get("id"), str):
                valid_ids.setdefault(envelope["id"], (None, -1))
        except ValueError:
            pass

    for consumer in consumers:
        await consumer.start()
    try:

        async def drained() -> bool:
            for consumer in consumers:
                info = await js.consumer_info(consumer.definition.stream, consumer.name)
                if info.num_pending or info.num_ack_pending:
                    return False
            return True

        await eventually(drained, "every consumer to have read the poisoned stream")
        stopped = [c.name for c in consumers if c._task is None or c._task.done()]
        assert stopped == [], f"consumers that stopped: {stopped}"
    finally:
        for consumer in consumers:
            await consumer.stop()

    dead = await dead_letters(js, unique)
    by_envelope = {envelope_id: where for envelope_id, where in valid_ids.items() if where[0] is not None}
    seen_handled: dict[str, set[tuple[str, int]]] = {}
    for name, ids in handled.items():
        assert len(ids) == len(set(ids)), f"{name} handled an event twice"
        seen_handled[name] = {by_envelope[str(i)] for i in ids if str(i) in by_envelope}
    reasons: dict[str, int] = defaultdict(int)
    for message, stream, seq in sent:
        readers = [
            consumer.name
            for consumer in consumers
            if consumer.definition.stream == stream
            and any(matches(message.subject, f) for f in consumer.definition.filter_subjects)
        ]
        for name in readers:
            in_dead = (name, stream, seq) in dead
            if message.kind == "valid":
                assert (stream, seq) in seen_handled.get(name, set()), f"{name} did not handle a valid event"
                assert not in_dead, f"{name} dead-lettered a valid event: {dead[(name, stream, seq)]}"
            elif message.must_dead_letter:
                assert in_dead, f"{name} let a {message.kind} message through on {message.subject}"
            else:  # handled (the junk fitted its field) or dead-lettered, never both, never neither
                assert in_dead or _handled_poison(message, name, handled), (message.kind, name)
            if in_dead:
                reason = dead[(name, stream, seq)]
                assert reason, f"a dead letter of {name} without a reason"
                reasons[message.kind] += 1
    print(json.dumps({"poison": len(messages), "valid": len(messages), "dead_letters_by_kind": reasons}))


def _handled_poison(message: Message, name: str, handled: dict[str, list[uuid.UUID]]) -> bool:
    envelope_id = json.loads(message.data)["id"]
    return any(str(i) == envelope_id for i in handled.get(name, []))


async def dead_letters(js: JetStreamContext, unique: str) -> dict[tuple[str, str, int], str]:
    """(consumer, stream, sequence) -> reason, for this test's consumers."""
    state = (await js.stream_info("DEADLETTER")).state
    out = {}
    for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
        msg = await js.get_msg("DEADLETTER", seq)
        headers = msg.headers or {}
        if headers.get(H_CONSUMER, "").startswith(f"poison_{unique}_"):
            out[(headers[H_CONSUMER], headers[H_STREAM], int(headers[H_SEQ]))] = headers.get(H_REASON, "")
    return out


# --- PSAD and the MLDS as processes: their own handlers behind the platform's checks ------------------
async def poisoned_services(servers: Servers, nc: Client, folder: Path, count: int) -> None:
    """PSAD and the MLDS fed valid events with poison between them: each message has its effect
    once or is a dead letter with a reason (poison whose junk fits its field is valid), the valid
    ones all have theirs, and both processes run on."""
    js = nc.jetstream()
    topology = short_ack_wait_topology(folder / "topology", 3)
    services = [FED["psad"], FED["mlds"]]
    databases = {service.name: await migrated(servers, service.name) for service in services}
    for service in services:
        await fresh_topology(js, topology, service.name, (service.fed_stream, service.own_stream))
    await js.purge_stream("DEADLETTER")
    with contextlib.ExitStack() as stack:
        running = {
            service.name: stack.enter_context(
                service_process(
                    service.name,
                    service_env(servers, folder, topology, service.name, databases[service.name], 2),
                    folder,
                )
            )
            for service in services
        }
        sent: dict[str, list[tuple[Message, int]]] = {service.name: [] for service in services}
        for service in services:
            fed_type = type_from_subject(service.event()[0])[0]

            def base(_type: str, service: FedService = service) -> tuple[str, dict]:
                subject, data, _ = service.event()
                return subject, json.loads(data)

            messages = await asyncio.to_thread(draw_poison, count, [fed_type], base)
            for message in messages:
                ack = await js.publish(message.subject, message.data)
                sent[service.name].append((message, ack.seq))
                await service.feed(js, 1)
        for service in services:
            dead = await eventually_dead_letters(js, service, sent[service.name])
            poison_handled = count - len(dead)
            await eventually(
                functools.partial(service.settled, js, databases[service.name], count + poison_handled),
                f"{service.name} to handle the valid events",
            )
            assert await scalar(databases[service.name], service.effect) == count + poison_handled
            for message, seq in sent[service.name]:
                if message.must_dead_letter:
                    assert seq in dead, f"{service.name} let a {message.kind} message through"
            assert all(dead.values()), "a dead letter without a reason"
        for name, process in running.items():
            assert process.process.poll() is None, f"{name} stopped:\n{process.log_text()[-3000:]}"


async def eventually_dead_letters(
    js: JetStreamContext, service: FedService, sent: list[tuple[Message, int]]
) -> dict[int, str]:
    """Sequence -> reason of the service's dead letters, once its consumer has read everything."""

    async def drained() -> bool:
        info = await js.consumer_info(service.fed_stream, service.consumer)
        return info.num_pending == 0 and info.num_ack_pending == 0

    await eventually(drained, f"{service.consumer} to read every message")
    state = (await js.stream_info("DEADLETTER")).state
    dead = {}
    for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
        headers = (await js.get_msg("DEADLETTER", seq)).headers or {}
        if headers.get(H_CONSUMER) == service.consumer:
            dead[int(headers[H_SEQ])] = headers.get(H_REASON, "")
    assert set(dead) <= {seq for _, seq in sent}, "a valid event was dead-lettered"
    return dead


async def test_poison_ends_in_dead_letters_and_blocks_nothing(
    nc: Client, deadletter_stream: str, unique: str
) -> None:
    await poisoned_stream(nc, deadletter_stream, unique, count=40)


async def test_services_dead_letter_poison_and_run_on(servers: Servers, nc: Client, tmp_path: Path) -> None:
    await poisoned_services(servers, nc, tmp_path, count=30)


@pytest.mark.reliability
@pytest.mark.timeout(1200)
async def test_services_dead_letter_a_long_poisoned_stream(
    servers: Servers, nc: Client, tmp_path: Path
) -> None:
    await poisoned_services(servers, nc, tmp_path, count=300)


@pytest.mark.reliability
@pytest.mark.timeout(1200)
async def test_a_long_poisoned_stream(nc: Client, deadletter_stream: str, unique: str) -> None:
    await poisoned_stream(nc, deadletter_stream, unique, count=400)
