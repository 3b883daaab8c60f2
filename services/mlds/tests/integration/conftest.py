"""The MLDS against real PostgreSQL: a database migrated by the service's own migrations."""

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
