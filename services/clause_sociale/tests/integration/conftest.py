"""clause_sociale against real PostgreSQL and NATS: a fresh database migrated by the service's own
migrations, the streams it reads and writes, the service as its own process."""

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
TOKEN_KEY = "c" * 64
STREAMS = ("MLDS", "CLAUSE")


@pytest_asyncio.fixture(loop_scope="session")
async def clause_db(servers: Servers) -> str:
    url = await servers.create_database("clause_sociale")
    await asyncio.to_thread(upgrade, MIGRATIONS, url)
    return url


@pytest_asyncio.fixture(loop_scope="session")
async def engine(clause_db: str) -> AsyncIterator[AsyncEngine]:
    # Room for the 50 concurrent reservations of the race test, each in its own transaction.
    engine = make_engine(clause_db, pool_size=30, application_name="clause-sociale-tests")
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def clause_topology(nc: Client, deadletter_stream: str) -> None:
    """Empty streams and a fresh consumer: what earlier tests published does not leak in."""
    js = nc.jetstream()
    topology = load_topology()
    for consumer in topology.consumers_of("clause_sociale"):
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(consumer.stream, consumer.durable)
    await declare(js, topology, services={"clause_sociale"})
    for stream in STREAMS:
        await js.purge_stream(stream)


@pytest.fixture
def clause_env(servers: Servers, clause_db: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RACCROCHAGE_RIG_DIR"}
    env.update(
        RACCROCHAGE_SERVICE="clause_sociale",
        NATS_URL=servers.nats_url,
        DATABASE_URL=clause_db,
        RACCROCHAGE_TOKEN_KEY=TOKEN_KEY,
        RACCROCHAGE_RIG_DIR=str(tmp_path / "rig"),
        RACCROCHAGE_RELAY_SWEEP_SECONDS="0.2",
    )
    return env


@pytest.fixture
def start_clause(
    clause_env: dict[str, str], clause_topology: None, tmp_path: Path
) -> Iterator[Callable[..., ServiceProcess]]:
    """Start clause_sociale processes (`start_clause(CLAUSE_DEADLINES_TIMER_SECONDS="0.2")`);
    all stop after the test."""
    with contextlib.ExitStack() as stack:

        def start(tag: str = "", **extra_env: str) -> ServiceProcess:
            env = {**clause_env, **extra_env}
            return stack.enter_context(service_process("clause_sociale", env, tmp_path, tag=tag))

        yield start
