"""Shared plumbing for the benchmarks in bench/: servers, database, timing, the JSON line."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from raccrochage_platform.db import make_engine
from raccrochage_platform.outbox import OutboxRelay
from raccrochage_platform.tables import create_platform_tables
from raccrochage_rig.testing.servers import Servers, start_servers
from sqlalchemy.ext.asyncio import AsyncEngine

# Benches' --statements: the embedded PostgreSQL (rig/postgres.py) started with these options.
STATEMENTS_OPTIONS = "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"


async def reset_statements(conn) -> None:
    """Start pg_stat_statements' counts afresh (--statements), e.g. when the measured window opens."""
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    await conn.execute("SELECT pg_stat_statements_reset()")


async def top_statements(conn, limit: int = 12) -> list[dict]:
    """pg_stat_statements over the whole server (--statements): where PostgreSQL's time went."""
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    rows = await conn.fetch(
        "SELECT calls, round(total_exec_time::numeric, 1)::float8 AS ms, rows, "
        "shared_blks_hit + shared_blks_read AS blocks, wal_bytes::bigint AS wal_bytes, "
        "left(regexp_replace(query, '\\s+', ' ', 'g'), 120) AS query "
        "FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT $1",
        limit,
    )
    return [dict(row) for row in rows]


def say_statements(statements: list[dict]) -> None:
    for statement in statements:
        say(
            f"  pg: {statement['ms']:9.1f} ms {statement['calls']:6d} calls {statement['rows']:7d} rows "
            f"{statement['blocks']:8d} blocks  {statement['query']}"
        )


@dataclass(frozen=True)
class BenchServers:
    servers: Servers
    nats: str  # "embedded" | "external": what the JSON line reports
    postgres: str
    folder: Path | None = None  # the throw-away folder: embedded servers' command lines name it


@contextlib.contextmanager
def bench_servers() -> Iterator[BenchServers]:
    """start_servers in a throw-away folder; NATS_URL / RACCROCHAGE_PG_ADMIN_URL are honoured
    by start_servers itself, and reported here so that figures from different setups are not
    compared unknowingly."""
    with (
        tempfile.TemporaryDirectory(prefix="raccrochage-bench-") as folder,
        start_servers(Path(folder)) as servers,
    ):

        def kind(variable: str) -> str:
            if servers.backend == "docker":
                return "docker"
            return "external" if os.environ.get(variable) else "embedded"

        yield BenchServers(
            servers=servers,
            nats=kind("NATS_URL"),
            postgres=kind("RACCROCHAGE_PG_ADMIN_URL"),
            folder=Path(folder),
        )


@contextlib.asynccontextmanager
async def platform_database(
    servers: Servers,
    prefix: str = "bench",
    *,
    pool_size: int = 10,
) -> AsyncIterator[tuple[AsyncEngine, str]]:
    """A new database with the outbox and inbox tables; yields (engine, url)."""
    url = await servers.create_database(prefix)
    engine = make_engine(url, pool_size=pool_size, application_name=f"bench-{prefix}")
    try:
        async with engine.begin() as conn:
            await create_platform_tables(conn)
        yield engine, url
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def nats_client(url: str) -> AsyncIterator[Client]:
    client = await nats.connect(url, name="bench")
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.drain()


@dataclass
class Stopwatch:
    """`with watch: ...` adds the block's wall time; `watch.seconds` is the running total."""

    seconds: float = 0.0
    _started: float = field(default=0.0, repr=False)

    def __enter__(self) -> Self:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds += time.perf_counter() - self._started


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def say(message: str = "") -> None:
    # Flushed at once: a benchmark that stalls should show where.
    print(message, flush=True)


def emit(result: dict) -> None:
    """The machine-readable result: one JSON object, always the last line of stdout."""
    sys.stdout.flush()
    print(json.dumps(result, separators=(", ", ": ")), flush=True)


# --- shared by relay.py and ingest.py: raw JetStream publishing, the relay timed ---------------------
CONTENT_TYPE = "application/cloudevents+json"
# publish_async futures never time out on their own: a bench must fail rather than hang.
ACK_TIMEOUT = 120.0


async def fresh_stream(js: JetStreamContext, name: str, subjects: list[str]) -> None:
    """Deleted and made again: a purge would keep the Nats-Msg-Id duplicate window, and a rerun
    with the same ids would then be dropped rather than stored."""
    import nats.js.errors
    from nats.js.api import StreamConfig

    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(name)
    await js.add_stream(StreamConfig(name=name, subjects=subjects, duplicate_window=120))


async def publish_windowed(
    js: JetStreamContext, stream: str, messages: Iterable[tuple[str, bytes, str]]
) -> float:
    """The raw limit the benches compare with: `publish_async` of each (subject, payload,
    Nats-Msg-Id) to `stream`, the window being the context's publish_async_max_pending, as the
    relay sends them. Seconds from the first send to the last PubAck; raises if any failed."""
    import asyncio

    failed: list[BaseException] = []

    def check(future: asyncio.Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            failed.append(future.exception())

    watch = Stopwatch()
    with watch:
        for subject, payload, msg_id in messages:
            # A callback, not a list of a million futures: the bench's memory would grow with it,
            # and a child spawned afterwards inherits the peak (ru_maxrss survives exec).
            future = await js.publish_async(
                subject, payload, stream=stream, headers={"Nats-Msg-Id": msg_id, "Content-Type": CONTENT_TYPE}
            )
            future.add_done_callback(check)
        await asyncio.wait_for(js.publish_async_completed(), ACK_TIMEOUT)
        await asyncio.sleep(0)  # the last futures' callbacks
    if failed:
        raise RuntimeError(f"raw publish: {len(failed)} failed, first {failed[0]!r}")
    return watch.seconds


class TimedRelay(OutboxRelay):
    """OutboxRelay with each batch and its publish-and-mark step timed; no logic changed. Timings
    are summed per call, not kept in one Stopwatch: lanes run batches concurrently."""

    batch_seconds = 0.0
    publish_seconds = 0.0
    last_ack = 0.0  # perf_counter when the last batch's rows were all acked and marked

    async def publish_batch(self) -> tuple[int, int, int]:
        started = time.perf_counter()
        try:
            return await super().publish_batch()
        finally:
            self.batch_seconds += time.perf_counter() - started

    async def _publish_and_mark(self, rows):
        started = time.perf_counter()
        try:
            return await super()._publish_and_mark(rows)
        finally:
            self.last_ack = time.perf_counter()
            self.publish_seconds += self.last_ack - started


# --- shared by ingest.py and partner_latency.py ----------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[1]
REPERAGE_MIGRATIONS = REPO_ROOT / "services" / "reperage" / "migrations"


async def migrated_database(servers: Servers, migrations: Path, prefix: str = "bench") -> str:
    """A new database with a service's Alembic migrations applied (as the rig does); its URL."""
    import asyncio

    from raccrochage_platform.migrations import upgrade

    url = await servers.create_database(prefix)
    await asyncio.to_thread(upgrade, migrations, url)
    return url


async def declare_service_stream(client: Client, name: str) -> None:
    """A stream as topology.toml defines it (created, or updated if it exists)."""
    from raccrochage_platform.topology import declare_stream, load_topology

    await declare_stream(client.jetstream(), load_topology().streams[name])


async def stream_messages(client: Client, name: str) -> int:
    return (await client.jetstream().stream_info(name)).state.messages


async def load_partner_files(url: str, files) -> dict:  # files: raccrochage_reperage.domain.demo.DemoFiles
    """The demo's partner base files, loaded as `raccrochage ingest partner` does (repérage's
    units of work); summed counts. No relay here: the found events wait in the outbox for the
    next relay on this database."""
    from raccrochage_reperage.entrypoints.cli import unit_of_work_factory
    from raccrochage_reperage.service_layer.partner_file import ingest_partner_file

    engine = make_engine(url, application_name="bench-partners")
    unit_of_work = unit_of_work_factory(engine)
    totals = {"rows": 0, "enrolments": 0, "found": 0}
    try:
        for source, path in sorted(files.partners.items(), key=lambda item: item[0].value):
            summary = await ingest_partner_file(
                path, source=source, unit_of_work=unit_of_work, today=files.as_of
            )
            for k in totals:
                totals[k] += getattr(summary, k)
    finally:
        await engine.dispose()
    return totals


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list; the max for q=100."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return ordered[int(rank) - 1]


class CpuMeter:
    """CPU seconds spent during a window, by whom: the bench's embedded servers (processes whose
    command line names the bench folder, with their children), and the whole machine. On a
    shared machine, what nobody in the bench used is someone else's load: figures taken while
    it is high are not comparable.

    `start()`, then `stop()` returns {"postgres": s, "nats": s, "machine_busy": s, "cores": n};
    the caller subtracts its own processes' time (getrusage) to get "others"."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = str(folder) if folder else None
        self._start: dict[str, float] = {}

    def _servers(self) -> dict[str, float]:
        import psutil

        totals = {"postgres": 0.0, "nats": 0.0}
        if not self.folder:
            return totals
        for process in psutil.process_iter(["cmdline", "name"]):
            try:
                if self.folder not in " ".join(process.info["cmdline"] or ()):
                    continue
                kind = "nats" if "nats" in (process.info["name"] or "") else "postgres"
                times = process.cpu_times()  # children_*: its reaped children (closed backends)
                totals[kind] += times.user + times.system + times.children_user + times.children_system
                for child in process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        child_times = child.cpu_times()
                        totals[kind] += child_times.user + child_times.system
            except psutil.Error:
                continue
        return totals

    @staticmethod
    def _machine() -> float:
        import psutil

        times = psutil.cpu_times()
        return (
            sum(times)
            - times.idle
            - getattr(times, "iowait", 0.0)
            - getattr(times, "guest", 0.0)
            - getattr(times, "guest_nice", 0.0)
        )

    def start(self) -> None:
        self._start = {**self._servers(), "machine_busy": self._machine()}

    def stop(self) -> dict[str, float]:
        import psutil

        end = {**self._servers(), "machine_busy": self._machine()}
        return {**{k: end[k] - self._start.get(k, 0.0) for k in end}, "cores": psutil.cpu_count() or 1}


def own_cpu_seconds() -> float:
    """This process's CPU seconds so far (user + system)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
