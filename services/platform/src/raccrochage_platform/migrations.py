"""Alembic helpers: each service's migrations/env.py calls `run_env`, the rig calls `upgrade`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.ext.asyncio import async_engine_from_config

from .db import asyncpg_url
from .tables import OUTBOX_FILLFACTOR, OUTBOX_NOTIFY_DDL, OUTBOX_NOTIFY_EVERY_INSERT_DDL, inbox, outbox


def alembic_config(script_location: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", asyncpg_url(database_url).replace("%", "%%"))
    return config


def upgrade(script_location: Path, database_url: str, revision: str = "head") -> None:
    """Apply a service's migrations (blocking; call from a thread inside an event loop)."""
    command.upgrade(alembic_config(script_location, database_url), revision)


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's migrations/env.py (online mode, asyncpg)."""
    config = context.config

    def do_run(connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = async_engine_from_config(
            config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
        )
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
        await engine.dispose()

    asyncio.run(run_async())


def create_platform_tables(op) -> None:
    """Call from a service's first migration: the outbox, the inbox and the relay's wake-up."""
    bind = op.get_bind()
    outbox.create(bind)
    inbox.create(bind)
    notify_only_unleased_rows(op)


def notify_only_unleased_rows(op) -> None:
    """A service migration's upgrade: the outbox trigger wakes relays only for rows no writer
    holds (tables.OUTBOX_NOTIFY_DDL)."""
    for statement in OUTBOX_NOTIFY_DDL:
        op.execute(statement)


def notify_every_insert(op) -> None:
    """Its downgrade: a NOTIFY for every inserting statement, as before."""
    for statement in OUTBOX_NOTIFY_EVERY_INSERT_DDL:
        op.execute(statement)


def outbox_pages_half_free(op) -> None:
    """A service migration's upgrade: new outbox pages keep room for in-place lease updates
    (tables.OUTBOX_FILLFACTOR)."""
    op.execute(f"ALTER TABLE outbox SET (fillfactor = {OUTBOX_FILLFACTOR})")


def outbox_pages_full(op) -> None:
    """Its downgrade."""
    op.execute("ALTER TABLE outbox RESET (fillfactor)")


def drop_platform_tables(op) -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS raccrochage_outbox_notify()")
    op.drop_table("inbox")
    op.drop_table("outbox")
