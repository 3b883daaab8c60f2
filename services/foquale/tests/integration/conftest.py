"""FOQUALE against real PostgreSQL: a freshly migrated database per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from raccrochage_platform.db import make_engine
from raccrochage_platform.migrations import upgrade
from raccrochage_rig.testing.servers import Servers
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
# Enough connections for the concurrency tests to contend for real (the rig allows 300).
POOL = 60


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
