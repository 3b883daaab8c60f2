"""Repérage against real PostgreSQL and NATS: a migrated database, the REPERAGE stream, the service."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from raccrochage_platform.db import libpq_dsn, make_engine
from raccrochage_platform.migrations import upgrade
from raccrochage_platform.topology import declare_consumer, declare_stream, load_topology
from raccrochage_rig.testing.processes import service_process
from raccrochage_rig.testing.servers import Servers

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
KEY = "k" * 64
TOKEN_KEY = "t" * 64


@pytest_asyncio.fixture(loop_scope="session")
async def reperage_db(servers: Servers) -> str:
    """A fresh, migrated repérage database for one test."""
    url = await servers.create_database("reperage")
    await asyncio.to_thread(upgrade, MIGRATIONS, url)
    return url


@pytest_asyncio.fixture(loop_scope="session")
async def conn(reperage_db: str):
    """A plain asyncpg connection to the test's repérage database."""
    connection = await asyncpg.connect(libpq_dsn(reperage_db))
    yield connection
    await connection.close()


@pytest_asyncio.fixture(loop_scope="session")
async def engine(reperage_db: str):
    engine = make_engine(reperage_db)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def reperage_stream(nc: Client, deadletter_stream: str) -> str:
    """The streams, and repérage's durable consumers created afresh (earlier tests' events in
    the PSAD stream are not delivered to this test's service)."""
    js = nc.jetstream()
    topology = load_topology()
    for consumer in topology.consumers_of("reperage"):
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(consumer.stream, consumer.durable)
    for stream in topology.streams.values():
        await declare_stream(js, stream)
    for consumer in topology.consumers_of("reperage"):
        await js.purge_stream(consumer.stream)
        await declare_consumer(js, consumer)
    return "REPERAGE"


@pytest.fixture
def reperage_env(servers: Servers, reperage_db: str, tmp_path: Path) -> dict[str, str]:
    """The environment the rig gives repérage (for the service process and the CLI)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RACCROCHAGE_RIG_DIR", "RACCROCHAGE_EVENT_LOOP")}
    env.update(
        RACCROCHAGE_SERVICE="reperage",
        NATS_URL=servers.nats_url,
        DATABASE_URL=reperage_db,
        RACCROCHAGE_YOUTH_ID_KEY=KEY,
        RACCROCHAGE_TOKEN_KEY=TOKEN_KEY,
        RACCROCHAGE_RIG_DIR=str(tmp_path / "rig"),
    )
    return env


@pytest.fixture
def reperage_service(reperage_env: dict[str, str], reperage_stream: str, tmp_path: Path) -> Iterator[str]:
    """The repérage service as its own process (as the rig runs it); yields its HTTP base URL.
    Its log is `tmp_path / "reperage.log"`."""
    with service_process("reperage", reperage_env, tmp_path) as running:
        yield running.url
