"""Soak: PSAD and the MLDS (and their relays) fed 300 events/s between them for 10 minutes, on
servers of the test's own. The resident memory (RSS) of every process (each service, nats-server,
PostgreSQL's server and backends) is sampled all along, the services' must end where it settled
after warm-up; the lag
(messages not yet acknowledged by the consumers) is sampled, and at the end nothing is lost and
nothing was applied twice.

`make test-reliability` only (`reliability` mark); `RACCROCHAGE_SOAK_SECONDS` shortens it by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.client import Client
from raccrochage_platform.topology import declare, load_topology
from raccrochage_rig.testing.processes import service_process
from raccrochage_rig.testing.reliability import (
    FED,
    Figures,
    OwnServers,
    eventually,
    own_servers,
    prepared,
    report,
    resilient_client,
    short_ack_wait_topology,
    tally_all,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.reliability]

SERVICES = ("psad", "mlds")
RATE = 300  # events per second, shared between the services
SAMPLE_EVERY = 5.0  # seconds
# Growth allowed between the first sample after warm-up and the last (allocator and caches
# settle; a leak grows with the events and passes it within minutes).
GROWTH = 1.25
FLOOR_KB = 20_000


@pytest.fixture(scope="module")
def soak_servers() -> Iterator[OwnServers]:
    with own_servers("raccrochage-soak-") as servers:
        yield servers


@pytest_asyncio.fixture(loop_scope="session")
async def client(soak_servers: OwnServers) -> AsyncIterator[Client]:
    async with resilient_client(soak_servers.servers.nats_url) as nc:
        yield nc


def rss_kb(pid: int) -> int:
    """Resident memory of `pid` and of its children (PostgreSQL's backends), in kB."""
    total = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    total += rss_kb(int(child))
    return total


async def soak(soak_servers: OwnServers, client: Client, folder: Path, seconds: float) -> None:
    js = client.jetstream()
    topology = short_ack_wait_topology(folder / "topology", 10)
    await declare(js, load_topology(topology), services=set())
    services = [FED[name] for name in SERVICES]
    ready = {s.name: await prepared(soak_servers.servers, js, folder, topology, s, 10) for s in services}
    per_service = RATE // len(services)
    count = int(per_service * seconds)
    rss: dict[str, list[int]] = {}
    lag: list[int] = []
    with contextlib.ExitStack() as stack:
        pids = {
            s.name: stack.enter_context(service_process(s.name, ready[s.name][0], folder)).process.pid
            for s in services
        }
        pids["nats-server"] = soak_servers.nats.process.pid
        pids["postgres"] = soak_servers.postgres.running_pid()
        rss = {name: [] for name in pids}
        started = time.monotonic()
        next_sample = started
        for second in range(int(seconds)):
            for service in services:
                await service.feed(js, per_service)
            if time.monotonic() >= next_sample:
                for name, pid in pids.items():
                    rss[name].append(rss_kb(pid))
                pending = 0
                for service in services:
                    info = await js.consumer_info(service.fed_stream, service.consumer)
                    pending += info.num_pending + info.num_ack_pending
                lag.append(pending)
                next_sample += SAMPLE_EVERY
            await asyncio.sleep(max(0.0, started + second + 1 - time.monotonic()))
        fed_for = time.monotonic() - started
        for service in services:
            await eventually(
                functools.partial(service.settled, js, ready[service.name][1], count),
                f"{service.name} to handle {count} events",
            )
        drained = time.monotonic() - started - fed_for
        for name, pid in pids.items():
            rss[name].append(rss_kb(pid))
    figures = Figures(f"soak {seconds:g} s at {RATE} events/s to {' and '.join(SERVICES)}", runs=1)
    figures.recover_seconds.append(drained)
    await tally_all(js, services, ready, count, figures)
    report(figures)
    memory = {
        name: {"start_kb": kb[1] if len(kb) > 2 else kb[0], "end_kb": kb[-1], "max_kb": max(kb)}
        for name, kb in rss.items()
    }
    print(
        json.dumps(
            {
                "soak_seconds": seconds,
                "fed_in_s": round(fed_for, 1),
                "events_per_s": round(count * len(services) / fed_for),
                "lag_max": max(lag),
                "lag_last_sample": lag[-1],
                "drained_after_s": round(drained, 1),
                "rss": memory,
                "load": os.getloadavg(),
            }
        )
    )
    assert (figures.lost, figures.duplicated) == (0, 0)
    assert (await js.stream_info("DEADLETTER")).state.messages == 0
    for name in SERVICES:
        # From the sample after warm-up to the end: flat, not growing with the events. Reported
        # only for the servers: PostgreSQL's backends count the shared buffers they touch, which
        # fill up to shared_buffers, and nats-server caches the stream's blocks.
        kb = memory[name]
        assert kb["end_kb"] <= max(kb["start_kb"] * GROWTH, kb["start_kb"] + FLOOR_KB), (name, rss[name])


@pytest.mark.timeout(1800)
async def test_ten_minutes_at_300_events_per_second(
    soak_servers: OwnServers, client: Client, tmp_path: Path
) -> None:
    await soak(soak_servers, client, tmp_path, float(os.environ.get("RACCROCHAGE_SOAK_SECONDS", 600)))
