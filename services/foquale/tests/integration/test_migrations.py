"""FOQUALE's migrations go up and down on a fresh database."""

from __future__ import annotations

import asyncio

import asyncpg
from alembic import command
from raccrochage_platform.db import libpq_dsn
from raccrochage_platform.migrations import alembic_config, upgrade
from raccrochage_rig.testing.servers import Servers

from .conftest import MIGRATIONS


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {row["tablename"] for row in rows}


async def test_upgrade_downgrade_upgrade(servers: Servers) -> None:
    url = await servers.create_database("foquale_mig")
    await asyncio.to_thread(upgrade, MIGRATIONS, url)
    assert {"offer", "reservation", "api_key", "partner_feedback", "outbox", "inbox"} <= await tables(url)
    await asyncio.to_thread(command.downgrade, alembic_config(MIGRATIONS, url), "base")
    assert await tables(url) <= {"alembic_version"}
    await asyncio.to_thread(upgrade, MIGRATIONS, url)
    assert {"offer", "reservation", "api_key", "partner_feedback", "outbox", "inbox"} <= await tables(url)
