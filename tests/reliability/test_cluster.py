"""A 3-node JetStream cluster on loopback, as `raccrochage up --cluster 3` runs it: every stream
kept on the three nodes, each write synced to disk (`sync_interval: always`, as in production).
The node leading the stream PSAD consumes is killed (SIGKILL) in the middle of a flow to PSAD and
the MLDS: another node takes the lead, nothing is lost, nothing is applied twice; the killed node,
started again on its store, catches up (every replica of every stream current again).

Its own servers: the cluster and a PostgreSQL. Marked `reliability` (`make test-reliability`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext
from raccrochage_platform.topology import declare, load_topology
from raccrochage_rig.nats import NatsCluster
from raccrochage_rig.postgres import PostgresServer
from raccrochage_rig.testing.processes import service_process
from raccrochage_rig.testing.reliability import (
    FED,
    FedService,
    Figures,
    drain_backlog,
    eventually,
    prepared,
    publish_until_stored,
    report,
    short_ack_wait_topology,
    tally_all,
)
from raccrochage_rig.testing.servers import Servers

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.reliability]

ACK_WAIT = 5
LEASE = 5
SERVICES = ("psad", "mlds")


@dataclass
class Cluster:
    nats: NatsCluster
    servers: Servers


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with tempfile.TemporaryDirectory(prefix="raccrochage-cluster-") as name:
        folder = Path(name)
        nodes = NatsCluster(folder / "nats", size=3)
        postgres = PostgresServer(folder / "postgres", say=lambda _m: None)
        try:
            nodes.start()
            postgres.start()
            yield Cluster(nodes, Servers(",".join(nodes.urls), postgres.admin_url, "embedded"))
        finally:
            postgres.stop()
            nodes.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def client(cluster: Cluster) -> AsyncIterator[Client]:
    async def quiet(_error: Exception) -> None:  # a node killed on purpose
        return None

    nc = await nats.connect(
        cluster.nats.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=quiet
    )
    yield nc
    await nc.close()


async def answering(check, *args) -> bool:
    """`check(*args)`, False while the cluster elects a leader or the client reconnects."""
    try:
        return await check(*args)
    except Exception:
        return False


async def replicas_current(js: JetStreamContext, streams: tuple[str, ...], size: int) -> bool:
    for stream in streams:
        info = (await js.stream_info(stream)).cluster
        followers = info.replicas or []
        if info.leader is None or len(followers) != size - 1 or not all(p.current for p in followers):
            return False
    return True


async def leader_killed(cluster: Cluster, client: Client, folder: Path, count: int, figures: Figures) -> None:
    """One run, added to `figures`."""
    js = client.jetstream()
    topology = short_ack_wait_topology(folder / "topology", ACK_WAIT, replicas=3)
    await declare(js, load_topology(topology), services=set())
    services: list[FedService] = [FED[name] for name in SERVICES]
    ready = {s.name: await prepared(cluster.servers, js, folder, topology, s, LEASE) for s in services}
    streams = tuple(sorted({s.fed_stream for s in services} | {s.own_stream for s in services}))
    assert await replicas_current(js, streams, 3)
    figures.runs += 1
    with contextlib.ExitStack() as stack:
        running = [stack.enter_context(service_process(s.name, ready[s.name][0], folder)) for s in services]
        for n in range(count):
            for service in services:
                await publish_until_stored(js, *service.event())
            if n == count // 3:
                leader = (await js.stream_info("REPERAGE")).cluster.leader
                victim = cluster.nats.node_named(leader)
                victim.process.kill()
                victim.process.wait()
                killed = time.monotonic()
            await asyncio.sleep(0.005)
        for service in services:
            await eventually(
                functools.partial(answering, service.settled, js, ready[service.name][1], count),
                f"{service.name} to handle {count} events without the stream's leader",
            )
        figures.recover_seconds.append(time.monotonic() - killed)
        restarted = time.monotonic()
        await asyncio.to_thread(victim.start)  # on its store, its ports
        await eventually(
            functools.partial(answering, replicas_current, js, streams, 3), f"{leader} to catch up"
        )
        print({"node": leader, "current_again_s": round(time.monotonic() - restarted, 1)})
        for process in running:
            assert process.process.poll() is None, process.log_text()[-3000:]
    await tally_all(js, services, ready, count, figures)
    assert (figures.lost, figures.duplicated) == (0, 0)
    assert (await js.stream_info("DEADLETTER")).state.messages == 0


@pytest.mark.timeout(900)
async def test_killing_the_stream_leader_loses_nothing_and_the_node_rejoins(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    count = 400
    figures = Figures(
        f"stream leader killed in a 3-node cluster (R3, fsync always), {count} events to each of "
        + " and ".join(SERVICES)
    )
    for run in range(3):
        await leader_killed(cluster, client, tmp_path / str(run), count, figures)
    report(figures)


@pytest.mark.timeout(900)
async def test_throughput_on_three_replicas_with_fsync(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    """Reported, not asserted: PSAD draining a backlog with its streams on the 3 nodes (R3,
    `sync_interval: always`), as test_replicas.py measures it on the rig's single node."""
    rates = [
        round(
            await drain_backlog(
                cluster.servers, client.jetstream(), tmp_path / str(run), 1, 30_000, replicas=3
            )
        )
        for run in range(2)
    ]
    print({"psad_events_per_s_r3_fsync": rates, "load": os.getloadavg()})
