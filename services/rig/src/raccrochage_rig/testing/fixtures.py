"""pytest plugin (entry point `pytest11`): session-wide real NATS and PostgreSQL, and helpers."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client
from raccrochage_platform.db import make_engine
from raccrochage_platform.tables import create_platform_tables
from sqlalchemy.ext.asyncio import AsyncEngine

from .servers import Servers, start_servers


@contextlib.contextmanager
def _server_folder() -> Iterator[Path]:
    # Not under pytest's tmp_path: every pytest session that starts resets that root to mode 700,
    # which cuts the unprivileged PostgreSQL user of a concurrent session off its own files.
    with tempfile.TemporaryDirectory(prefix="raccrochage-servers-") as folder:
        yield Path(folder)


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    with _server_folder() as folder, start_servers(folder) as running:
        yield running


@pytest.fixture
def server_tmp_path() -> Iterator[Path]:
    """A tmp_path for tests that start their own PostgreSQL (the rig's tests)."""
    with _server_folder() as folder:
        yield folder


@pytest_asyncio.fixture(loop_scope="session")
async def nc(servers: Servers) -> AsyncIterator[Client]:
    client = await nats.connect(servers.nats_url)
    yield client
    await client.drain()


@pytest_asyncio.fixture(loop_scope="session")
async def service_engine(servers: Servers) -> AsyncIterator[AsyncEngine]:
    """A fresh database with the outbox and inbox tables, as a service's first migration makes."""
    engine = make_engine(await servers.create_database("svc"))
    async with engine.begin() as conn:
        await create_platform_tables(conn)
    yield engine
    await engine.dispose()


@pytest.fixture
def unique() -> str:
    """A short unique token for stream, subject and consumer names of one test."""
    return uuid.uuid4().hex[:8]


@pytest_asyncio.fixture(loop_scope="session")
async def deadletter_stream(nc: Client) -> str:
    """The DEADLETTER stream as topology.toml declares it."""
    from raccrochage_platform.topology import declare_stream, load_topology

    await declare_stream(nc.jetstream(), load_topology().streams["DEADLETTER"])
    return "DEADLETTER"


@pytest_asyncio.fixture(loop_scope="session")
async def sample_stream(nc: Client, unique: str, deadletter_stream: str) -> AsyncIterator[str]:
    """A stream of its own for `sample.>` events, deleted after the test."""
    from nats.js.api import StreamConfig

    js = nc.jetstream()
    name = f"SAMPLE_{unique}"
    await js.add_stream(StreamConfig(name=name, subjects=["sample.>"], duplicate_window=120))
    yield name
    await js.delete_stream(name)
