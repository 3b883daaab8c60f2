"""The servers fail under a running flow: NATS restarted, NATS paused (SIGSTOP), PostgreSQL
restarted. PSAD and the MLDS, fed events all along, recover without a hand: their readiness goes
down, then up, and the final counts are exact (every event fed had its effect once, every event
of those effects is in its stream once, nothing went to the dead letters).

These tests run servers of their own (the session's are shared by every other test). `make test`
holds each server down or paused for a few seconds; `make test-reliability` pauses NATS for 20 s
and holds the others down for 10 s under a larger flow. The figures are reported as the crash
matrix's are (`RACCROCHAGE_RELIABILITY_FIGURES`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext
from raccrochage_platform.topology import declare, load_topology
from raccrochage_rig.testing.processes import ServiceProcess, service_process
from raccrochage_rig.testing.reliability import (
    FED,
    FedService,
    Figures,
    OwnServers,
    duplicates,
    eventually,
    fresh_topology,
    migrated,
    own_servers,
    publish_until_stored,
    report,
    resilient_client,
    scalar,
    service_env,
    short_ack_wait_topology,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

ACK_WAIT = 5
LEASE = 5
SERVICES = ("psad", "mlds")
READY_EVERY = 0.25  # seconds between two readiness probes of a service


Rig = OwnServers


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    """A NATS and a PostgreSQL of this module's own, to stop, pause and restart."""
    with own_servers("raccrochage-faults-") as servers:
        yield servers


@pytest_asyncio.fixture(loop_scope="session")
async def client(rig: Rig) -> AsyncIterator[Client]:
    async with resilient_client(rig.servers.nats_url) as nc:
        yield nc


# --- the faults: each returns once the server is back ---------------------------------------------
async def restart_nats(rig: Rig, hold: float) -> None:
    url = rig.nats.url
    await asyncio.to_thread(rig.nats.stop)
    await asyncio.sleep(hold)
    await asyncio.to_thread(rig.nats.start)
    assert rig.nats.url == url  # the services reconnect to the address they know


async def pause_nats(rig: Rig, hold: float) -> None:
    os.kill(rig.nats.process.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(hold)
    finally:
        os.kill(rig.nats.process.pid, signal.SIGCONT)


async def restart_postgres(rig: Rig, hold: float) -> None:
    port = rig.postgres.port
    await asyncio.to_thread(rig.postgres.stop)
    await asyncio.sleep(hold)
    await asyncio.to_thread(rig.postgres.start)
    assert rig.postgres.port == port


FAULTS = {"nats-restart": restart_nats, "nats-pause": pause_nats, "postgres-restart": restart_postgres}


async def feed(js: JetStreamContext, services: list[FedService], count: int, halfway: asyncio.Event) -> None:
    for n in range(count):
        for service in services:
            await publish_until_stored(js, *service.event())
        if n == count // 3:
            halfway.set()
        await asyncio.sleep(0.01)


async def watch_readiness(url: str, seen: list[tuple[float, int]]) -> None:
    """Probe `/ready` until cancelled: (time, status), 0 when the probe itself failed."""
    async with httpx.AsyncClient(base_url=url, timeout=3) as http:
        while True:
            try:
                status = (await http.get("/ready")).status_code
            except httpx.HTTPError:
                status = 0
            seen.append((time.monotonic(), status))
            await asyncio.sleep(READY_EVERY)


async def server_fault(rig: Rig, client: Client, folder: Path, fault: str, hold: float, count: int) -> None:
    js = client.jetstream()
    topology = short_ack_wait_topology(folder / "topology", ACK_WAIT)
    await declare(js, load_topology(topology), services=set())
    services = [FED[name] for name in SERVICES]
    databases = {service.name: await migrated(rig.servers, service.name) for service in services}
    for service in services:
        await fresh_topology(js, topology, service.name, (service.fed_stream, service.own_stream))
    await js.purge_stream("DEADLETTER")
    env = {
        service.name: service_env(rig.servers, folder, topology, service.name, databases[service.name], LEASE)
        for service in services
    }
    for service in services:
        if service.warm_start:
            with service_process(service.name, env[service.name], folder, tag="first"):
                pass
    for service in services:
        await js.purge_stream(service.own_stream)
    before = {
        name: await scalar(url, "SELECT coalesce(max(id), 0) FROM outbox") for name, url in databases.items()
    }
    readiness: dict[str, list[tuple[float, int]]] = {service.name: [] for service in services}
    with contextlib.ExitStack() as stack:
        running: dict[str, ServiceProcess] = {
            service.name: stack.enter_context(service_process(service.name, env[service.name], folder))
            for service in services
        }
        watchers = [
            asyncio.create_task(watch_readiness(running[name].url, readiness[name])) for name in readiness
        ]
        halfway = asyncio.Event()
        feeding = asyncio.create_task(feed(js, services, count, halfway))
        await halfway.wait()
        fault_started = time.monotonic()
        await FAULTS[fault](rig, hold)
        back = time.monotonic()
        await feeding
        for service in services:
            await eventually(
                functools.partial(service.settled, js, databases[service.name], count),
                f"{service.name} to handle {count} events after {fault}",
            )
        recovered = time.monotonic() - back
        await asyncio.sleep(2 * READY_EVERY)  # a probe after the last batch
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for name, process in running.items():
            assert process.process.poll() is None, f"{name} died:\n{process.log_text()[-3000:]}"

    figures = Figures(f"{fault} ({hold:g} s), {count} events to each of {' and '.join(SERVICES)}", runs=1)
    figures.recover_seconds.append(recovered)
    for service in services:
        database = databases[service.name]
        effects = await scalar(database, service.effect)
        published = await scalar(database, service.published, before[service.name])
        events = await service.own_events(js)
        figures.lost += max(0, count - effects) + max(0, published - len(events))
        figures.duplicated += max(0, effects - count) + max(0, len(events) - published) + duplicates(events)
    report(figures)
    for service in services:
        effects = await scalar(databases[service.name], service.effect)
        assert effects == count, service.name
        events = await service.own_events(js)
        assert len(events) == await scalar(databases[service.name], service.published, before[service.name])
        assert duplicates(events) == 0
    assert (await js.stream_info("DEADLETTER")).state.messages == 0
    for name, seen in readiness.items():
        during = [status for at, status in seen if at >= fault_started]
        assert 200 in [status for at, status in seen if at < fault_started], f"{name} was never ready"
        assert any(status != 200 for status in during), f"{name}'s readiness never went down: {during}"
        assert during[-1] == 200, f"{name}'s readiness did not come back: {during[-10:]}"


@pytest.mark.parametrize(("fault", "hold"), [("nats-restart", 2), ("nats-pause", 5), ("postgres-restart", 2)])
async def test_services_ride_out_a_server_fault(
    rig: Rig, client: Client, tmp_path: Path, fault: str, hold: float
) -> None:
    await server_fault(rig, client, tmp_path, fault, hold, count=150)


@pytest.mark.reliability
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("fault", "hold"), [("nats-restart", 10), ("nats-pause", 20), ("postgres-restart", 10)]
)
async def test_services_ride_out_a_long_server_fault(
    rig: Rig, client: Client, tmp_path: Path, fault: str, hold: float
) -> None:
    await server_fault(rig, client, tmp_path, fault, hold, count=600)
