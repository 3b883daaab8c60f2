"""/ready against real PostgreSQL and NATS: a database restart does not make it answer 503."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from nats.aio.client import Client
from raccrochage_platform import db
from raccrochage_platform.db import libpq_dsn, make_engine
from raccrochage_platform.http import health_router
from raccrochage_rig.testing.servers import Servers
from sqlalchemy import text


async def test_ready_answers_200_after_the_database_closed_every_pooled_connection(
    servers: Servers, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PostgreSQL restart closes every pooled connection; those returned less than
    PING_AFTER_IDLE_SECONDS ago are not pinged at checkout (here: none is), so the check's first
    statement meets a dead one. It runs once more on a new connection instead of answering 503."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    url = await servers.create_database("ready")
    engine = make_engine(url, pool_size=3)
    context = SimpleNamespace(
        settings=SimpleNamespace(service_name="sample"),
        broker=SimpleNamespace(connection=nc),
        consumers=[],
        engine=engine,
    )
    app = FastAPI()
    app.include_router(health_router(context, None))  # type: ignore[arg-type]
    try:

        async def use() -> None:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT pg_sleep(0.05)"))

        await asyncio.gather(use(), use(), use())  # three connections in the pool
        admin = await asyncpg.connect(libpq_dsn(url))
        try:  # what a restart does to them
            closed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert closed == 3
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
            answers = [(await client.get("/ready")) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200], [a.json() for a in answers]
    finally:
        await engine.dispose()
