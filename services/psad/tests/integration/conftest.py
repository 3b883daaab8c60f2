"""PSAD against real PostgreSQL and NATS: a migrated database, the streams it reads, the service."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from raccrochage_platform.migrations import upgrade
from raccrochage_platform.topology import declare, load_topology
from raccrochage_rig.testing.processes import ServiceProcess, service_process
from raccrochage_rig.testing.servers import Servers

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
TOKEN_KEY = "t" * 64
STREAMS = ("REPERAGE", "PSAD", "FOQUALE", "MLDS")


@pytest_asyncio.fixture(loop_scope="session")
async def psad_db(servers: Servers) -> str:
    url = await servers.create_database("psad")
    await asyncio.to_thread(upgrade, MIGRATIONS, url)
    return url


@pytest_asyncio.fixture(loop_scope="session")
async def psad_topology(nc: Client, deadletter_stream: str) -> None:
    """Empty streams and fresh PSAD consumers: what earlier tests published does not leak in."""
    js = nc.jetstream()
    topology = load_topology()
    for consumer in topology.consumers_of("psad"):
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(consumer.stream, consumer.durable)
    await declare(js, topology, services={"psad"})
    for stream in STREAMS:
        await js.purge_stream(stream)


@pytest.fixture
def psad_env(servers: Servers, psad_db: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RACCROCHAGE_RIG_DIR"}
    env.update(
        RACCROCHAGE_SERVICE="psad",
        NATS_URL=servers.nats_url,
        DATABASE_URL=psad_db,
        RACCROCHAGE_TOKEN_KEY=TOKEN_KEY,
        RACCROCHAGE_RIG_DIR=str(tmp_path / "rig"),
        RACCROCHAGE_RELAY_SWEEP_SECONDS="0.2",
    )
    return env


@pytest.fixture
def start_psad(
    psad_env: dict[str, str], psad_topology: None, tmp_path: Path
) -> Iterator[Callable[..., ServiceProcess]]:
    """Start PSAD processes (`start_psad(tag="b", PSAD_TIMER_SECONDS="0.2")`); all stop after the test."""
    with contextlib.ExitStack() as stack:

        def start(tag: str = "", **extra_env: str) -> ServiceProcess:
            return stack.enter_context(service_process("psad", {**psad_env, **extra_env}, tmp_path, tag=tag))

        yield start


@pytest.fixture
def psad_service(start_psad: Callable[..., ServiceProcess]) -> ServiceProcess:
    return start_psad()
