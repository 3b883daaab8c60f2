"""The migrations go down to nothing and up again on a fresh database."""

from __future__ import annotations

import asyncio

from alembic import command
from raccrochage_platform.db import make_engine
from raccrochage_platform.migrations import alembic_config, upgrade
from raccrochage_rig.testing.servers import Servers
from sqlalchemy import inspect

from .conftest import MIGRATIONS


async def tables(url: str) -> set[str]:
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    return set(names) - {"alembic_version"}


async def test_down_to_nothing_and_up_again(servers: Servers) -> None:
    url = await servers.create_database("clause_migrations")
    await asyncio.to_thread(upgrade, MIGRATIONS, url)
    expected = {"company", "clause", "mission", "enrolment", "bilan_document", "outbox", "inbox"}
    assert await tables(url) == expected
    await asyncio.to_thread(command.downgrade, alembic_config(MIGRATIONS, url), "base")
    assert await tables(url) == set()
    await asyncio.to_thread(upgrade, MIGRATIONS, url)
    assert await tables(url) == expected
