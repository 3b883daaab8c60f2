"""Shared plumbing for the benchmarks in bench/: servers, database, timing, the JSON line."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from typing import Self

import nats
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from raccrochage_platform.db import make_engine
from raccrochage_platform.tables import create_platform_tables
from raccrochage_platform.testing.servers import Servers, start_servers


@dataclass(frozen=True)
class BenchServers:
    servers: Servers
    nats: str  # "embedded" | "external": what the JSON line reports
    postgres: str


@contextlib.contextmanager
def bench_servers() -> Iterator[BenchServers]:
    """start_servers in a throw-away folder; NATS_URL / RACCROCHAGE_PG_ADMIN_URL are honoured
    by start_servers itself, and reported here so that figures from different setups are not
    compared unknowingly."""
    with tempfile.TemporaryDirectory(prefix="raccrochage-bench-") as folder, \
            start_servers(Path(folder)) as servers:
        def kind(variable: str) -> str:
            if servers.backend == "docker":
                return "docker"
            return "external" if os.environ.get(variable) else "embedded"

        yield BenchServers(servers=servers, nats=kind("NATS_URL"),
                           postgres=kind("RACCROCHAGE_PG_ADMIN_URL"))


@contextlib.asynccontextmanager
async def platform_database(servers: Servers, prefix: str = "bench", *, pool_size: int = 10,
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
