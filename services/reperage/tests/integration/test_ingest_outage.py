"""The ingest command's last step, waiting for its events to be published, through a NATS
outage: it leaves the relay to its backoff, says the events are safe in the outbox, and ends
once NATS is back with every event published."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from raccrochage_platform.db import make_engine
from raccrochage_platform.outbox import OutboxRelay
from raccrochage_platform.topology import declare_stream, load_topology
from raccrochage_reperage.domain.demo import generate
from raccrochage_reperage.entrypoints.cli import wait_published
from raccrochage_rig.nats import NatsServer

from .test_ingest import AS_OF, ingest, scalar

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_ingest_waits_out_a_nats_outage_and_says_its_events_are_safe(
    reperage_db: str, tmp_path: Path
) -> None:
    server = NatsServer(tmp_path / "nats", partner_users=False)  # ours alone: we stop it
    server.start()
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    engine = make_engine(reperage_db)
    relay = OutboxRelay(engine, nc.jetstream(), sweep_seconds=0.2)
    try:
        await declare_stream(nc.jetstream(), load_topology().streams["REPERAGE"])
        server.stop()
        files = generate(30, 11, tmp_path, campaign="outage", as_of=AS_OF)
        await ingest(reperage_db, files.siei, campaign="outage")
        await relay.start()
        said: list[str] = []
        waiting = asyncio.create_task(wait_published(relay, say=said.append, tell_every=0.5))
        while not said:
            assert not waiting.done(), "returned while NATS was down"
            await asyncio.sleep(0.1)
        assert "safely" in said[0] and "NATS is unreachable" in said[0]

        server.start()  # on its port: the client reconnects by itself
        await asyncio.wait_for(waiting, 120)
        assert said[-1] == "NATS is back: every event is published"
        assert await scalar(reperage_db, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
        info = await nc.jetstream().stream_info("REPERAGE")
        assert info.state.messages > 0
    finally:
        await relay.stop()
        await nc.close()
        await engine.dispose()
        server.stop()
