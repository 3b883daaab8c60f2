"""A relay killed (SIGKILL) between PubAck and marking its rows causes no duplicate effect downstream."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig
from raccrochage_platform.consumer import EventConsumer
from raccrochage_platform.outbox import OutboxRelay
from raccrochage_platform.topology import ConsumerDef, declare_consumer
from raccrochage_rig.testing.sample import SAMPLE_REGISTRY, CounterIncremented
from raccrochage_rig.testing.sample_service import SampleUnitOfWork, apply_increment, metadata, read
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.asyncio(loop_scope="session")
ROWS = 40
LEASE = 1.0  # seconds the victim's claimed rows stay held after it dies


@pytest.mark.parametrize("duplicate_window", [30.0, 0.5], ids=["broker-dedups", "inbox-dedups"])
async def test_relay_killed_after_puback_has_no_duplicate_effect(
    nc: Client,
    service_engine: AsyncEngine,
    unique: str,
    tmp_path: Path,
    duplicate_window: float,
    deadletter_stream: str,
) -> None:
    js = nc.jetstream()
    stream = f"CRASH_{unique}"
    await js.add_stream(StreamConfig(name=stream, subjects=["sample.>"], duplicate_window=duplicate_window))
    async with service_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)

    def unit_of_work() -> SampleUnitOfWork:  # no relay: the rows wait for one to claim them
        return SampleUnitOfWork(service_engine, source="raccrochage/sample", stream=stream)

    async with unit_of_work() as uow:
        for n in range(ROWS):
            uow.add_event(CounterIncremented(counter=unique, by=1), subject=f"agg-{n}")
        await uow.commit()

    marker = tmp_path / "pubacked"
    url = service_engine.url.render_as_string(hide_password=False)
    victim = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).parent / "relay_victim.py"),
            url,
            nc.connected_url.geturl(),
            str(marker),
            str(LEASE),
        ]
    )
    try:
        for _ in range(300):
            if marker.exists() or victim.poll() is not None:
                break
            await asyncio.sleep(0.05)
        assert marker.exists(), "the victim relay never got its PubAcks"
        assert int(marker.read_text()) == ROWS
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()

    relay = OutboxRelay(service_engine, js)
    assert await relay.backlog() == ROWS  # nothing was marked: the kill came before
    assert await relay.drain() == 0  # still leased by the dead relay: nobody takes them yet
    await asyncio.sleep(max(duplicate_window if duplicate_window < 5 else 0, LEASE) + 0.5)
    assert await relay.drain() == ROWS  # the lease ran out: the next relay publishes them all again
    stored = (await js.stream_info(stream)).state.messages
    assert stored == (ROWS if duplicate_window > 5 else 2 * ROWS)

    definition = ConsumerDef(
        f"totals_{unique}", "psad", stream, ("sample.>",), max_deliver=3, backoff_seconds=(0.1,)
    )
    await declare_consumer(js, definition)
    consumer = EventConsumer(definition, SAMPLE_REGISTRY, unit_of_work, js, idle_timeout=0.2)
    consumer.on("sample.counter.incremented.v1")(apply_increment)

    await consumer.start()
    try:
        for _ in range(200):
            info = await js.consumer_info(stream, definition.durable)
            if info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq >= stored:
                break
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
    total = await read(unit_of_work(), unique)
    assert total == ROWS  # each event had its effect once, however often it was published
    await js.delete_stream(stream)
