"""What the reliability tests (tests/reliability) share: services fed with work, their databases
and streams counted exactly, and the figures each test reports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from raccrochage_contracts import nats_subject, new_event
from raccrochage_contracts.events.psad_v1 import SolutionRequested
from raccrochage_contracts.events.reperage_v1 import YouthIdentified
from raccrochage_platform.db import libpq_dsn
from raccrochage_platform.faults import VARIABLE
from raccrochage_platform.migrations import upgrade
from raccrochage_platform.topology import REPO_ROOT, declare, load_topology

from ..nats import NatsServer
from ..postgres import PostgresServer
from .servers import Servers

AS_OF = date(2026, 11, 2)
DEADLINE = 180  # seconds a victim may take to die, a recovery to converge: a hang, not a timing


def short_ack_wait_topology(folder: Path, ack_wait: float, replicas: int = 1) -> Path:
    """deploy/topology.toml with every consumer's ack_wait at `ack_wait` seconds (a batch a
    killed process never acked comes back within the test) and every stream on `replicas` nodes."""
    text = (REPO_ROOT / "deploy" / "topology.toml").read_text(encoding="utf-8")
    text, settings = re.subn(r"(?m)^ack_wait_seconds = \S+$", f"ack_wait_seconds = {ack_wait}", text)
    text, replicated = re.subn(r"(?m)^replicas = \d+", f"replicas = {replicas}", text)
    if not (settings and replicated):
        raise AssertionError("deploy/topology.toml no longer sets ack_wait_seconds and replicas")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "topology.toml"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Figures:
    """What a reliability test reports for one case: runs, events lost, effects applied twice,
    seconds from the restart (of the process or the server) until everything was handled."""

    case: str
    runs: int = 0
    lost: int = 0
    duplicated: int = 0
    recover_seconds: list[float] = field(default_factory=list)

    def record(self) -> dict:
        return {
            "case": self.case,
            "runs": self.runs,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "recover_median_s": round(statistics.median(self.recover_seconds), 1),
            "recover_max_s": round(max(self.recover_seconds), 1),
        }


def report(figures: Figures) -> None:
    """Print the figures, and append them to `$RACCROCHAGE_RELIABILITY_FIGURES` (JSON lines)
    when it is set: docs/reliability.md's table comes from them."""
    line = json.dumps(figures.record(), ensure_ascii=False)
    print(line)
    target = os.environ.get("RACCROCHAGE_RELIABILITY_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(line + "\n")


async def fresh_topology(js: JetStreamContext, path: Path, service: str, streams: tuple[str, ...]) -> None:
    """The service's durable consumers created afresh on emptied streams."""
    topology = load_topology(path)
    for consumer in topology.consumers_of(service):
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(consumer.stream, consumer.durable)
    await declare(js, topology, services={service})
    for stream in streams:
        await js.purge_stream(stream)


async def query(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def scalar(url: str, sql: str, *args: object) -> int:
    return int((await query(url, sql, *args))[0][0])


async def stream_events(js: JetStreamContext, stream: str) -> list[tuple[str, str]]:
    """(subject, Nats-Msg-Id) of every message the stream holds."""
    state = (await js.stream_info(stream)).state
    out = []
    if state.messages:
        for seq in range(state.first_seq, state.last_seq + 1):
            with contextlib.suppress(NotFoundError):
                msg = await js.get_msg(stream, seq)
                out.append((msg.subject, (msg.headers or {}).get("Nats-Msg-Id", "")))
    return out


def duplicates(events: list[tuple[str, str]]) -> int:
    """Messages whose id another message of the list has."""
    return len(events) - len({event_id for _, event_id in events})


def service_env(
    servers: Servers, folder: Path, topology: Path, service: str, database: str, lease: float
) -> dict[str, str]:
    """The environment the rig gives `service`, on `servers`, with `topology`, unarmed; a relay's
    (or writer's) rows leased `lease` seconds."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RACCROCHAGE_RIG_DIR", "RACCROCHAGE_EXTRA_SERVICES", VARIABLE)
    }
    env.update(
        RACCROCHAGE_SERVICE=service,
        NATS_URL=servers.nats_url,
        DATABASE_URL=database,
        RACCROCHAGE_TOPOLOGY=str(topology),
        RACCROCHAGE_YOUTH_ID_KEY="k" * 64,
        RACCROCHAGE_TOKEN_KEY="t" * 64,
        RACCROCHAGE_RIG_DIR=str(folder / "rig"),
        RACCROCHAGE_RELAY_SWEEP_SECONDS="0.2",
        RACCROCHAGE_RELAY_LEASE_SECONDS=str(lease),
    )
    return env


async def migrated(servers: Servers, service: str) -> str:
    url = await servers.create_database(service)
    await asyncio.to_thread(upgrade, REPO_ROOT / "services" / service / "migrations", url)
    return url


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Until `check()`; a deadline for a hang, not a timing assertion."""
    deadline = time.monotonic() + DEADLINE
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


# What the tests feed (FED): never counted among a service's own events.
FED_SUBJECTS = frozenset({"reperage.youth.identified.v1", "psad.solution.requested.v1"})


@dataclass
class FedService:
    """A service fed events by the test on a stream it consumes, whose effects are counted."""

    name: str
    consumer: str  # the durable fed
    fed_stream: str
    own_stream: str
    effect: str  # SQL counting the effects of the work fed
    # SQL counting the events those effects published ($1: the last outbox row before the runs):
    # PSAD deletes a row once published, one case.opened.v1 per case; the MLDS keeps its rows.
    published: str
    make_event: Callable[[], YouthIdentified | SolutionRequested]  # a payload fed
    warm_start: bool = False  # a first start does work of its own (the MLDS: its catalogue)

    def event(self) -> tuple[str, bytes, str]:
        """A new event to feed: (NATS subject, envelope, id)."""
        payload = self.make_event()
        if isinstance(payload, YouthIdentified):
            event = new_event(payload, source="raccrochage/reperage", subject=payload.youth_id)
        else:
            event = new_event(payload, source="raccrochage/psad", subject=str(payload.case_id))
        return nats_subject(event.type), event.to_json(), str(event.id)

    async def feed(self, js: JetStreamContext, count: int) -> None:
        """`count` new events published at once (nats-py's `publish_async`), returning once all are
        stored: one at a time, each waiting for its PubAck, a second's worth of the soak's took
        longer than a second on a busy machine and the soak fell behind its pace."""
        pending = []
        for _ in range(count):
            subject, data, event_id = self.event()
            pending.append(await js.publish_async(subject, data, headers={"Nats-Msg-Id": event_id}))
        await asyncio.gather(*pending)

    async def own_events(self, js: JetStreamContext) -> list[tuple[str, str]]:
        """(subject, id) of the events this service published (its stream also carries what the
        tests feed another service: PSAD's, the MLDS's requests)."""
        return [event for event in await stream_events(js, self.own_stream) if event[0] not in FED_SUBJECTS]

    async def settled(self, js: JetStreamContext, database: str, fed: int) -> bool:
        """Every event fed handled and acked, and every event published."""
        info = await js.consumer_info(self.fed_stream, self.consumer)
        return (
            info.num_pending == 0
            and info.num_ack_pending == 0
            and await scalar(database, self.effect) >= fed
            and await scalar(database, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
        )


def youth_identified() -> YouthIdentified:
    return YouthIdentified(
        youth_id=uuid.uuid4().hex * 2,
        campaign_id="crash",
        psad_id="psad-33-medoc",
        departement="33",
        age=18,
        months_since_leaving=4,
        as_of=AS_OF,
        last_diploma="DNB",
        last_training="2nde GT",
    )


def solution_requested() -> SolutionRequested:
    return SolutionRequested(
        case_id=uuid.uuid4(),
        youth_id=uuid.uuid4().hex * 2,
        psad_id="psad-33-medoc",
        request_id=uuid.uuid4(),
        solution_number=1,
        kind="mlds_paps",
        provider="mlds",
        age=17,
        last_training="2nde GT",
        last_diploma="AUCUN",
        months_since_leaving=3,
        departement="33",
        requested_at=datetime.now(UTC),
    )


FED = {
    "psad": FedService(
        "psad",
        "psad_reperage",
        "REPERAGE",
        "PSAD",
        "SELECT count(*) FROM case_file",
        "SELECT count(*) FROM case_file WHERE $1 >= 0",
        youth_identified,
    ),
    "mlds": FedService(
        "mlds",
        "mlds_psad",
        "PSAD",
        "MLDS",
        "SELECT count(*) FROM candidacy",
        "SELECT count(*) FROM outbox WHERE id > $1",
        solution_requested,
        warm_start=True,
    ),
}


async def tally(
    js: JetStreamContext, service: FedService, database: str, fed: int, before: int
) -> tuple[int, int]:
    """(lost, duplicated) of `service` after `fed` events: effects against the work fed, events
    in its stream against the effects (`before`: the last outbox row before the work), ids once."""
    effects = await scalar(database, service.effect)
    published = await scalar(database, service.published, before)
    events = await service.own_events(js)
    lost = max(0, fed - effects) + max(0, published - len(events))
    duplicated = max(0, effects - fed) + max(0, len(events) - published) + duplicates(events)
    return lost, duplicated


async def prepared(
    servers: Servers, js: JetStreamContext, folder: Path, topology: Path, service: FedService, lease: float
) -> tuple[dict[str, str], str, int]:
    """`service` migrated on a new database, its consumers afresh on emptied streams and its first
    start's own work done: (its environment, its database, the last outbox row before the work)."""
    database = await migrated(servers, service.name)
    await fresh_topology(js, topology, service.name, (service.fed_stream, service.own_stream))
    env = service_env(servers, folder, topology, service.name, database, lease)
    if service.warm_start:
        from .processes import service_process

        with service_process(service.name, env, folder, tag="first"):
            pass
    await js.purge_stream(service.own_stream)
    return env, database, await scalar(database, "SELECT coalesce(max(id), 0) FROM outbox")


async def publish_until_stored(js: JetStreamContext, subject: str, data: bytes, event_id: str) -> None:
    """Publish until JetStream acknowledges it; the id makes every retry after the first stored
    copy a duplicate JetStream drops."""
    while True:
        try:
            await js.publish(subject, data, headers={"Nats-Msg-Id": event_id}, timeout=2)
            return
        except Exception:  # down, paused, electing or reconnecting: as an outbox relay would, retry
            await asyncio.sleep(0.2)


async def tally_all(
    js: JetStreamContext,
    services: list[FedService],
    ready: dict[str, tuple[dict[str, str], str, int]],
    fed: int,
    figures: Figures,
) -> None:
    """`tally` of each service (`ready`: what `prepared` returned for it) added to `figures`."""
    for service in services:
        _env, database, before = ready[service.name]
        lost, duplicated = await tally(js, service, database, fed, before)
        figures.lost += lost
        figures.duplicated += duplicated


@dataclass
class OwnServers:
    """A NATS and a PostgreSQL of a test module's own, to stop, pause, restart or measure."""

    nats: NatsServer
    postgres: PostgresServer
    servers: Servers
    folder: Path


@contextlib.contextmanager
def own_servers(prefix: str) -> Iterator[OwnServers]:
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        folder = Path(name)
        nats_server = NatsServer(folder / "nats")
        postgres = PostgresServer(folder / "postgres", say=lambda _m: None)
        try:
            nats_server.start()
            postgres.start()
            yield OwnServers(
                nats_server, postgres, Servers(nats_server.url, postgres.admin_url, "embedded"), folder
            )
        finally:
            postgres.stop(discard=True)  # its folder is deleted next
            nats_server.stop()


@contextlib.asynccontextmanager
async def resilient_client(servers: str | list[str]) -> AsyncIterator[Client]:
    """The test's own connection, which outlives the servers' restarts (on purpose: not logged)."""

    async def quiet(_error: Exception) -> None:
        return None

    nc = await nats.connect(servers, max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=quiet)
    try:
        yield nc
    finally:
        await nc.close()


async def drain_backlog(
    servers: Servers, js: JetStreamContext, folder: Path, processes: int, backlog: int, replicas: int = 1
) -> float:
    """Events per second `processes` PSAD processes handle from a backlog of `backlog` events
    (streams on `replicas` nodes), between the 10th and the 90th percent of it (their starts
    are left out)."""
    from .processes import spawn_service

    topology = short_ack_wait_topology(folder / "topology", 30, replicas)
    await declare(js, load_topology(topology), services=set())
    psad = FED["psad"]
    env, database, _before = await prepared(servers, js, folder, topology, psad, 30)
    for start in range(0, backlog, 500):
        events = [psad.event() for _ in range(min(500, backlog - start))]
        await asyncio.gather(*(js.publish(s, d, headers={"Nats-Msg-Id": i}) for s, d, i in events))
    running = [spawn_service("psad", env, folder, tag=f"r{n}") for n in range(processes)]
    samples: list[tuple[float, int]] = []
    try:
        while not samples or samples[-1][1] < backlog:
            samples.append((time.monotonic(), await scalar(database, psad.effect)))
            await asyncio.sleep(0.05)
        await eventually(lambda: psad.settled(js, database, backlog), "PSAD to drain its backlog")
    finally:
        for process in running:
            process.stop()
    first = next(at for at, done in samples if done >= backlog // 10)
    last = next(at for at, done in samples if done >= backlog * 9 // 10)
    return (backlog * 8 // 10) / (last - first)
