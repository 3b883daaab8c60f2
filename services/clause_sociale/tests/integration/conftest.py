"""clause_sociale against real PostgreSQL: a fresh database migrated by the service's own migrations."""

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
