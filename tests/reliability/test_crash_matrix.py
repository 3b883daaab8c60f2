"""The crash matrix: a process killed (SIGKILL, `RACCROCHAGE_CRASH_AT`) at each point of the
delivery path, then started again, loses no event and applies no effect twice.

Three victims, each at the points its work passes:
- repérage's ingest command (a SIEI campaign file): in the middle of a chunk, in the middle of a
  transaction, after its PubAcks and before its marks;
- PSAD (opens a case per `reperage.youth.identified.v1`) and the MLDS (a candidacy per
  `psad.solution.requested.v1`), as service processes: after a consumer's commit and before its
  ack, in the middle of a transaction, after the PubAcks and before the marks.

A run feeds new work, starts the victim armed at the point, waits for it to die by SIGKILL, then
starts it again unarmed and waits until everything is handled and published; then counts,
exactly: rows of the effect against the work fed, events in the stream against the effects, and
every event id once. The nine cases run at once, each on a NATS server of its own (streams and
durables are per server), at most `RUNS_AT_ONCE` runs in flight: `make test` runs each case once,
`make test-reliability` 20 times (`reliability` mark). While one run waits for a process to
start, for `ack_wait` or for a lease, another works. The figures of a run are appended to
`$RACCROCHAGE_RELIABILITY_FIGURES` (JSON lines) when it is set: docs/reliability.md's table comes
from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from raccrochage_platform.faults import VARIABLE
from raccrochage_platform.topology import declare, load_topology
from raccrochage_reperage.domain.demo import generate
from raccrochage_rig.nats import NatsServer
from raccrochage_rig.testing.processes import ServiceProcess, spawn_service
from raccrochage_rig.testing.reliability import (
    AS_OF,
    DEADLINE,
    FED,
    FedService,
    Figures,
    duplicates,
    eventually,
    fresh_topology,
    migrated,
    report,
    scalar,
    service_env,
    short_ack_wait_topology,
    stream_events,
)
from raccrochage_rig.testing.servers import Servers

pytestmark = pytest.mark.asyncio(loop_scope="session")

CLI = [sys.executable, "-m", "raccrochage_platform.cli"]
QUICK_RUNS = 1
FULL_RUNS = 20
RUNS_AT_ONCE = 4  # runs of different cases in flight at once (`make test-reliability`)
# A batch killed before its ack comes back after ack_wait, rows a killed relay leased after
# the lease: seconds here (30 and 60 in deploy/topology.toml and the services' settings).
ACK_WAIT = 3
LEASE = 2
FED_PER_RUN = 40  # events fed to a service per run
YOUTHS_PER_FILE = 60  # rows of a run's SIEI file
# Alembic keeps its migration context in module globals: one upgrade at a time in this process.
MIGRATING = asyncio.Lock()

CASES = [
    ("reperage", "ingest.mid_chunk"),
    ("reperage", "uow.mid_transaction"),
    ("reperage", "relay.after_publish"),
    ("psad", "consumer.after_commit"),
    ("psad", "uow.mid_transaction"),
    ("psad", "relay.after_publish"),
    ("mlds", "consumer.after_commit"),
    ("mlds", "uow.mid_transaction"),
    ("mlds", "relay.after_publish"),
]


# --- repérage's ingest command ------------------------------------------------------------------
async def crash_reperage_ingest(
    servers: Servers, nc: Client, topology: Path, folder: Path, point: str, runs: int, slot: asyncio.Semaphore
) -> Figures:
    js = nc.jetstream()
    async with MIGRATING:
        database = await migrated(servers, "reperage")
    await fresh_topology(js, topology, "reperage", ("REPERAGE",))
    env = service_env(servers, folder, topology, "reperage", database, LEASE)
    figures = Figures(f"repérage ingest, {point}")
    identified_so_far = again_so_far = 0
    tag = uuid.uuid4().hex[:8]  # event ids derive from the campaign: new ones to JetStream
    for run in range(runs):
        async with slot:
            campaign = f"crash-{tag}-{run}"
            files = generate(YOUTHS_PER_FILE, run + 1, folder / campaign, campaign=campaign, as_of=AS_OF)
            command = [*CLI, "ingest", "siei", str(files.siei), "--campaign", campaign]
            command += ["--as-of", AS_OF.isoformat(), "--json"]
            # In the middle of a transaction: the chunk's (hit 1) or the campaign's end (hit 2).
            hit = 1 + run % 2 if point in ("uow.mid_transaction", "relay.after_publish") else 1
            killed = await command_run(command, {**env, VARIABLE: f"{point}:{hit}"})
            assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-3000:]
            started = time.monotonic()
            again = await command_run(command, env)
            figures.recover_seconds.append(time.monotonic() - started)
            assert again.returncode == 0, again.stderr.decode()[-3000:]
            summary = json.loads(again.stdout)
            planned = files.planned
            # Partner bases are not loaded here: their youths are identified, not excluded.
            assert (summary["rows"], summary["rejected"], summary["duplicates"]) == (
                planned.rows,
                planned.rejected,
                planned.duplicates,
            )
            assert summary["identified"] + summary["excluded"] == planned.identified + planned.excluded
            # A youth an earlier campaign handed over already is reported again, not identified.
            identified = summary["identified"] - summary["reported_again"]
            again_so_far += summary["reported_again"]
            handed = await scalar(database, "SELECT count(*) FROM handover WHERE campaign_id = $1", campaign)
            outcomes = await scalar(
                database,
                "SELECT count(*) FROM campaign_youth WHERE campaign_id = $1 AND outcome = 'identified'",
                campaign,
            )
            events = await stream_events(js, "REPERAGE")
            kinds = Counter(subject for subject, _ in events)
            identified_so_far += identified
            expected = {
                "reperage.youth.identified.v1": identified_so_far,
                "reperage.youth.reported_again.v1": again_so_far,
                "reperage.campaign.ingested.v1": run + 1,
            }
            figures.runs += 1
            figures.lost += max(0, identified - handed) + sum(
                max(0, count - kinds[kind]) for kind, count in expected.items()
            )
            figures.duplicated += (
                max(0, handed - identified)
                + duplicates(events)
                + sum(max(0, kinds[kind] - count) for kind, count in expected.items())
            )
            assert handed == outcomes == identified, (run, handed, outcomes, summary)
            assert {kind: kinds[kind] for kind in expected} == expected
            assert duplicates(events) == 0
    return figures


@pytest.fixture(scope="module")
def crash_topology(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return short_ack_wait_topology(tmp_path_factory.mktemp("topology"), ACK_WAIT)


async def command_run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """`command` run to its end, its output kept; started from the event loop, not from a
    thread, as every process of this module (the cases run at once)."""
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), DEADLINE)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


async def warm_start(name: str, env: dict[str, str], folder: Path) -> None:
    """A first start, unarmed, that does the service's own work (the MLDS: its catalogue): until
    it listens, then stopped."""
    first = spawn_service(name, env, folder, tag="first")
    port_file = folder / f"{name}-first.port"
    try:

        async def listening() -> bool:
            if first.process.poll() is not None:
                raise AssertionError(f"{name} did not start:\n{first.log_text()[-3000:]}")
            return port_file.exists() and bool(port_file.read_text().strip())

        await eventually(listening, f"{name} to listen")
    finally:
        await asyncio.to_thread(first.stop)
    assert first.process.returncode == 0, first.log_text()[-3000:]


async def crash_service(
    servers: Servers,
    nc: Client,
    topology: Path,
    folder: Path,
    victim: FedService,
    point: str,
    runs: int,
    slot: asyncio.Semaphore,
) -> Figures:
    js = nc.jetstream()
    async with MIGRATING:
        database = await migrated(servers, victim.name)
    await fresh_topology(js, topology, victim.name, (victim.fed_stream, victim.own_stream))
    env = service_env(servers, folder, topology, victim.name, database, LEASE)
    if victim.warm_start:  # unarmed: the runs crash in the work fed, not in the first start's
        await warm_start(victim.name, env, folder)
    await js.purge_stream(victim.own_stream)
    before = await scalar(database, "SELECT coalesce(max(id), 0) FROM outbox")  # purged from the stream
    figures = Figures(f"{victim.name}, {point}")
    fed = 0

    for run in range(runs):
        async with slot:
            await victim.feed(js, FED_PER_RUN)
            fed += FED_PER_RUN
            armed = spawn_service(victim.name, {**env, VARIABLE: f"{point}:1"}, folder, tag=f"victim-{run}")
            try:
                await asyncio.to_thread(armed.process.wait, DEADLINE)
            finally:
                armed.stop()
            assert armed.process.returncode == -signal.SIGKILL, armed.log_text()[-3000:]
            assert f"{point} hit 1: SIGKILL" in armed.log_text()
            started = time.monotonic()
            # Not waited for until it listens: it is done once everything is handled.
            recovered = spawn_service(victim.name, env, folder, tag=f"recovery-{run}")
            try:

                async def settled(recovered: ServiceProcess = recovered, fed: int = fed) -> bool:
                    if recovered.process.poll() is not None:
                        raise AssertionError(f"the recovery died:\n{recovered.log_text()[-3000:]}")
                    return await victim.settled(js, database, fed)

                await eventually(settled, f"{victim.name} to handle {fed} events")
                figures.recover_seconds.append(time.monotonic() - started)
            finally:
                await asyncio.to_thread(recovered.stop)
            assert recovered.process.returncode == 0, recovered.log_text()[-3000:]
            effects = await scalar(database, victim.effect)
            published = await scalar(database, victim.published, before)
            events = await victim.own_events(js)
            figures.runs += 1
            figures.lost += max(0, fed - effects) + max(0, published - len(events))
            figures.duplicated += max(0, effects - fed) + max(0, len(events) - published) + duplicates(events)
            assert effects == fed
            assert len(events) == published  # every event its effect wrote, once
            assert duplicates(events) == 0
    return figures


async def crash_figures(
    servers: Servers,
    nc: Client,
    topology: Path,
    folder: Path,
    case: tuple[str, str],
    runs: int,
    slot: asyncio.Semaphore,
) -> Figures:
    victim, point = case
    folder.mkdir(parents=True, exist_ok=True)
    if victim == "reperage":
        return await crash_reperage_ingest(servers, nc, topology, folder, point, runs, slot)
    return await crash_service(servers, nc, topology, folder, FED[victim], point, runs, slot)


@contextlib.asynccontextmanager
async def own_nats(servers: Servers, folder: Path, topology: Path) -> AsyncIterator[tuple[Servers, Client]]:
    """A NATS server of a case's own, its streams declared: `servers` with it, and a client."""
    server = NatsServer(folder / "nats")
    await asyncio.to_thread(server.start)
    try:
        nc = await nats.connect(server.url)
        try:
            await declare(nc.jetstream(), load_topology(topology), services=set())
            yield dataclasses.replace(servers, nats_url=server.url), nc
        finally:
            await nc.close()
    finally:
        await asyncio.to_thread(server.stop)


async def crash_matrix(servers: Servers, topology: Path, folder: Path, runs: int) -> None:
    """The nine cases at once, each on a NATS server of its own, `RUNS_AT_ONCE` runs in flight;
    every case's figures reported, and every failure raised together."""
    slot = asyncio.Semaphore(RUNS_AT_ONCE)
    async with contextlib.AsyncExitStack() as stack:
        own = [  # one after the other, before any case runs
            await stack.enter_async_context(own_nats(servers, folder / f"{v}-{p}", topology))
            for v, p in CASES
        ]
        outcomes = await asyncio.gather(
            *(
                crash_figures(servers_of_case, nc, topology, folder / f"{v}-{p}", (v, p), runs, slot)
                for (v, p), (servers_of_case, nc) in zip(CASES, own, strict=True)
            ),
            return_exceptions=True,
        )
    failed = []
    for (victim, point), outcome in zip(CASES, outcomes, strict=True):
        if isinstance(outcome, Figures):
            report(outcome)
            if (outcome.runs, outcome.lost, outcome.duplicated) != (runs, 0, 0):
                failed.append(AssertionError(f"{victim}, {point}: {outcome.record()}"))
        else:
            outcome.add_note(f"case: {victim}, {point}")
            failed.append(outcome)
    if failed:
        raise ExceptionGroup("crash matrix cases failed", failed)


async def test_a_crash_loses_nothing_and_does_nothing_twice(
    servers: Servers, crash_topology: Path, tmp_path: Path
) -> None:
    await crash_matrix(servers, crash_topology, tmp_path, QUICK_RUNS)


@pytest.mark.reliability
@pytest.mark.timeout(1800)
async def test_twenty_crashes_lose_nothing_and_do_nothing_twice(
    servers: Servers, crash_topology: Path, tmp_path: Path
) -> None:
    await crash_matrix(servers, crash_topology, tmp_path, FULL_RUNS)
