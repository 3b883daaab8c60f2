"""A service's own connections against real PostgreSQL: the session settings they run with."""

from __future__ import annotations

import pytest
from raccrochage_platform.db import libpq_dsn
from raccrochage_platform.outbox import _RelayConnection
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_engine_and_relay_connections_run_without_jit(service_engine: AsyncEngine) -> None:
    """JIT compiles every execution whose estimated cost is high, which a growing table's stale
    statistics make of a 500-row insert: a quarter of a second each (`db.server_settings`)."""
    async with service_engine.connect() as conn:
        assert (await conn.execute(text("SHOW jit"))).scalar_one() == "off"
    relay = await _RelayConnection.open(libpq_dsn(service_engine.url.render_as_string(hide_password=False)))
    try:
        assert await relay.conn.fetchval("SHOW jit") == "off"
        assert await relay.conn.fetchval("SHOW synchronous_commit") == "off"
        assert await relay.conn.fetchval("SHOW application_name") == "outbox-relay"
    finally:
        await relay.conn.close()
