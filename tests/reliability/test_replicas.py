"""Two replicas of a service, as `raccrochage up --replicas 2` runs them: both pull from the same
durable consumers (JetStream hands each message to one of them) and relay the same outbox (a row
is leased to one relay at a time). One replica killed (SIGKILL) in the middle of a flow loses
nothing and applies nothing twice: what it had fetched and not acked comes back to the other
after ack_wait, the rows it had leased and not published after the lease.

Also reported, not asserted: PSAD's throughput on a backlog with one process and with two.
These tests run servers of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
    drain_backlog,
    eventually,
    own_servers,
    prepared,
    report,
    resilient_client,
    short_ack_wait_topology,
    tally_all,
)
from raccrochage_rig.testing.servers import Servers

pytestmark = pytest.mark.asyncio(loop_scope="session")

ACK_WAIT = 5
LEASE = 5
SERVICES = ("psad", "mlds")


@pytest.fixture(scope="module")
def replica_servers() -> Iterator[Servers]:
    with own_servers("raccrochage-replicas-") as own:
        yield own.servers


@pytest_asyncio.fixture(loop_scope="session")
async def client(replica_servers: Servers) -> AsyncIterator[Client]:
    async with resilient_client(replica_servers.nats_url) as nc:
        yield nc


async def kill_a_replica(servers: Servers, nc: Client, folder: Path, count: int, figures: Figures) -> None:
    """One run, added to `figures`."""
    js = nc.jetstream()
    topology = short_ack_wait_topology(folder / "topology", ACK_WAIT)
    await declare(js, load_topology(topology), services=set())
    services = [FED[name] for name in SERVICES]
    ready = {s.name: await prepared(servers, js, folder, topology, s, LEASE) for s in services}
    figures.runs += 1
    with contextlib.ExitStack() as stack:
        replicas = {
            (s.name, n): stack.enter_context(service_process(s.name, ready[s.name][0], folder, tag=f"r{n}"))
            for s in services
            for n in (1, 2)
        }
        for n in range(count):
            for service in services:
                subject, data, event_id = service.event()
                await js.publish(subject, data, headers={"Nats-Msg-Id": event_id})
            if n == count // 3:
                # Mid-flow: each victim holds fetched, unacked messages and leased rows.
                for service in services:
                    replicas[service.name, 1].process.kill()
                killed = time.monotonic()
            await asyncio.sleep(0.005)
        for service in services:
            _env, database, _before = ready[service.name]
            await eventually(
                functools.partial(service.settled, js, database, count),
                f"the surviving {service.name} replica to handle {count} events",
            )
        figures.recover_seconds.append(time.monotonic() - killed)
        for service in services:
            survivor = replicas[service.name, 2]
            assert survivor.process.poll() is None, survivor.log_text()[-3000:]
    await tally_all(js, services, ready, count, figures)
    assert (figures.lost, figures.duplicated) == (0, 0)
    assert (await js.stream_info("DEADLETTER")).state.messages == 0


async def kill_replicas(servers: Servers, nc: Client, folder: Path, count: int, runs: int) -> None:
    figures = Figures(f"one of 2 replicas killed, {count} events to each of {' and '.join(SERVICES)}")
    for run in range(runs):
        await kill_a_replica(servers, nc, folder / str(run), count, figures)
    report(figures)


async def test_killing_one_of_two_replicas_loses_nothing(
    replica_servers: Servers, client: Client, tmp_path: Path
) -> None:
    await kill_replicas(replica_servers, client, tmp_path, count=200, runs=1)


@pytest.mark.reliability
@pytest.mark.timeout(900)
async def test_killing_one_of_two_replicas_under_a_larger_flow_loses_nothing(
    replica_servers: Servers, client: Client, tmp_path: Path
) -> None:
    await kill_replicas(replica_servers, client, tmp_path, count=1000, runs=5)


@pytest.mark.reliability
@pytest.mark.timeout(900)
async def test_throughput_with_one_and_two_replicas(
    replica_servers: Servers, client: Client, tmp_path: Path
) -> None:
    """Reported, not asserted: the machine's load decides it."""
    rates = [
        (
            n,
            round(
                await drain_backlog(replica_servers, client.jetstream(), tmp_path / f"{run}-{n}", n, 30_000)
            ),
        )
        for run, n in enumerate((1, 2, 1, 2))
    ]
    print({"psad_events_per_s": rates, "load": os.getloadavg()})
