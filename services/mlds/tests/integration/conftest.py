"""The MLDS against real PostgreSQL and NATS: a database migrated by the service's own
migrations, the streams it reads and writes, the service as its own process."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
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


@pytest_asyncio.fixture(loop_scope="session")
async def mlds_db(servers: Servers) -> str:
    url = await servers.create_database("mlds")
    await asyncio.to_thread(upgrade, MIGRATIONS, url)
    return url


@pytest_asyncio.fixture(loop_scope="session")
async def engine(mlds_db: str) -> AsyncIterator[AsyncEngine]:
    # Room for the concurrent-admission test's 50 transactions at once.
    engine = make_engine(mlds_db, pool_size=30, application_name="mlds-tests")
    yield engine
    await engine.dispose()


TOKEN_KEY = "m" * 64
# The streams the service reads (PSAD) and writes (MLDS): emptied so that earlier tests' events
# do not leak in.
STREAMS = ("PSAD", "MLDS")


@pytest_asyncio.fixture(loop_scope="session")
async def mlds_topology(nc: Client, deadletter_stream: str) -> None:
    """Fresh MLDS consumers on empty streams."""
    js = nc.jetstream()
    topology = load_topology()
    for consumer in topology.consumers_of("mlds"):
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(consumer.stream, consumer.durable)
    await declare(js, topology, services={"mlds"})
    for stream in STREAMS:
        await js.purge_stream(stream)


@pytest.fixture
def mlds_env(servers: Servers, mlds_db: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RACCROCHAGE_RIG_DIR"}
    env.update(
        RACCROCHAGE_SERVICE="mlds",
        NATS_URL=servers.nats_url,
        DATABASE_URL=mlds_db,
        RACCROCHAGE_TOKEN_KEY=TOKEN_KEY,
        RACCROCHAGE_RIG_DIR=str(tmp_path / "rig"),
        RACCROCHAGE_RELAY_SWEEP_SECONDS="0.2",
    )
    return env


@pytest.fixture
def mlds_service(mlds_env: dict[str, str], mlds_topology: None, tmp_path: Path) -> Iterator[ServiceProcess]:
    with service_process("mlds", mlds_env, tmp_path) as process:
        yield process
