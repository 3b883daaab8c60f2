"""FOQUALE against real PostgreSQL and NATS: a freshly migrated database, the streams it reads,
the service as its own process."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from raccrochage_platform.db import make_engine
from raccrochage_platform.migrations import upgrade
from raccrochage_platform.topology import declare, load_topology
from raccrochage_rig.testing.processes import ServiceProcess, service_process
from raccrochage_rig.testing.servers import Servers
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
# Enough connections for the concurrency tests to contend for real (the rig allows 300).
POOL = 60
TOKEN_KEY = "f" * 64
STREAMS = ("PSAD", "FOQUALE", "PARTNER")


@pytest_asyncio.fixture(loop_scope="session")
async def foquale_db(servers: Servers) -> str:
    url = await servers.create_database("foquale")
    await asyncio.to_thread(upgrade, MIGRATIONS, url)
    return url


@pytest_asyncio.fixture(loop_scope="session")
async def engine(foquale_db: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(foquale_db, pool_size=POOL, application_name="foquale-tests")
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def foquale_topology(nc: Client, deadletter_stream: str) -> None:
    """Empty streams and fresh FOQUALE consumers: what earlier tests published does not leak in."""
    js = nc.jetstream()
    topology = load_topology()
    for consumer in topology.consumers_of("foquale"):
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(consumer.stream, consumer.durable)
    await declare(js, topology, services={"foquale"})
    for stream in STREAMS:
        await js.purge_stream(stream)


@pytest.fixture
def foquale_env(servers: Servers, foquale_db: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RACCROCHAGE_RIG_DIR"}
    env.update(
        RACCROCHAGE_SERVICE="foquale",
        NATS_URL=servers.nats_url,
        DATABASE_URL=foquale_db,
        RACCROCHAGE_TOKEN_KEY=TOKEN_KEY,
        RACCROCHAGE_RIG_DIR=str(tmp_path / "rig"),
        RACCROCHAGE_RELAY_SWEEP_SECONDS="0.2",
    )
    return env


@pytest.fixture
def start_foquale(
    foquale_env: dict[str, str], foquale_topology: None, tmp_path: Path
) -> Iterator[Callable[..., ServiceProcess]]:
    """Start FOQUALE processes (`start_foquale(tag="b", FOQUALE_TIMER_SECONDS="0.2")`); all stop
    after the test."""
    with contextlib.ExitStack() as stack:

        def start(tag: str = "", **extra_env: str) -> ServiceProcess:
            return stack.enter_context(
                service_process("foquale", {**foquale_env, **extra_env}, tmp_path, tag=tag)
            )

        yield start
