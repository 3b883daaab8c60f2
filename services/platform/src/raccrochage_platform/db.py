"""The async SQLAlchemy engine of one service's own database, and its URL forms."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .logging import get_logger

# A pooled connection idle for longer than this is pinged at checkout (see `make_engine`).
PING_AFTER_IDLE_SECONDS = 1.0
T = TypeVar("T")
log = get_logger(__name__)


def asyncpg_url(url: str) -> str:
    """The SQLAlchemy URL with the asyncpg driver, whatever form the environment gave."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def libpq_dsn(url: str) -> str:
    """A plain `postgresql://` DSN for asyncpg.connect (LISTEN/NOTIFY, admin work)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def server_settings(application_name: str, **more: str) -> dict[str, str]:
    """Session settings of a service's own connections (transactions of a few ms): JIT off.
    PostgreSQL compiles a statement whose *estimated* cost passes jit_above_cost, at every
    execution; on a table not analyzed since it grew (autovacuum off, or a campaign's first
    hand-overs before autoanalyze comes by), PSAD's case insert of 500 youths was estimated at
    657,000 and spent 252 ms compiling for 4 ms of work (Debian's PostgreSQL 15, which ships
    LLVM; the rig's embedded server has none)."""
    return {"application_name": application_name, "jit": "off", **more}


def make_engine(url: str, *, pool_size: int = 10, application_name: str = "raccrochage") -> AsyncEngine:
    """The engine of a service's own database.

    Stale connections (a PostgreSQL restart): a connection that sat in the pool for more than
    PING_AFTER_IDLE_SECONDS is pinged at checkout and replaced if dead. One taken back within
    that time is not: SQLAlchemy's `pool_pre_ping` would ping every checkout, and asyncpg's ping
    is three round trips (BEGIN, SELECT, ROLLBACK), twice per consumed batch (its transaction,
    then its outbox mark). A connection that died in that second fails its first statement; the
    pool is then invalidated whole (SQLAlchemy's disconnect handling), and the consumer's batches
    and the relay's statements run once more (`again_if_disconnected`), as does `/ready`'s check;
    an HTTP request fails. The pool hands out the most recently
    returned connection first (LIFO), so that under load the same few stay warm and the others
    sit idle long enough to be pinged before their next use."""
    engine = create_async_engine(
        asyncpg_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_use_lifo=True,
        pool_recycle=1800,
        connect_args={"server_settings": server_settings(application_name)},
    )
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    @event.listens_for(pool, "checkin")
    def returned(dbapi_connection, record) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def ping_if_idle(dbapi_connection, record, proxy) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is None or time.monotonic() - returned_at < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:  # the pool discards it and checks out another
            raise DisconnectionError(f"idle connection failed its ping: {type(error).__name__}") from error

    return engine


async def again_if_disconnected(operation: Callable[[], Awaitable[T]]) -> T:
    """Run `operation` (a whole transaction, or one autocommitted statement) once more if it
    failed on a connection PostgreSQL had closed (a restart, a terminated backend) while it sat
    in the pool for less than PING_AFTER_IDLE_SECONDS. SQLAlchemy has dropped the whole pool by
    then, so the second run gets a new connection."""
    try:
        return await operation()
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
    return await operation()


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


async def _try_lock(connection: AsyncConnection, name: str) -> bool:
    held = bool(await connection.scalar(select(func.pg_try_advisory_lock(_lock_key(name)))))
    await connection.commit()  # the lock is the session's: no transaction stays open
    return held


async def _unlock(connection: AsyncConnection, name: str) -> None:
    await connection.scalar(select(func.pg_advisory_unlock(_lock_key(name))))
    await connection.commit()


@contextlib.asynccontextmanager
async def exclusive(engine: AsyncEngine, name: str, *, wait: float = 0.0) -> AsyncIterator[bool]:
    """True when this process alone holds the job `name` (a session advisory lock on a
    connection of its own, held until the block ends); False when another process of the
    service holds it (`--replicas`, several containers): that one does the work. PostgreSQL
    releases the lock if the holder's connection dies. `wait`: seconds to keep trying first
    (a holder that just died takes a moment to release it)."""
    async with engine.connect() as connection:
        held = await _try_lock(connection, name)
        deadline = time.monotonic() + wait
        while not held and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            held = await _try_lock(connection, name)
        try:
            yield held
        finally:
            if held:
                await _unlock(connection, name)


async def while_exclusive(
    engine: AsyncEngine,
    name: str,
    job: Callable[[], Awaitable[None]],
    *,
    retry_seconds: float = 2.0,
    check_seconds: float = 2.0,
) -> None:
    """Run `job` in one process of the service at a time: the one holding `name` (as
    `exclusive`). The others try every `retry_seconds`, and one of them starts the job once the
    holder stops or dies. The holder asks its lock's connection every `check_seconds` and
    cancels the job when it fails to answer: PostgreSQL has released the lock with it, to another
    process. Runs until cancelled; a job that ends or fails is started again."""
    while True:
        try:
            async with engine.connect() as connection:
                if await _try_lock(connection, name):
                    try:
                        await _run_while_answering(connection, job, check_seconds)
                    finally:
                        with contextlib.suppress(Exception):  # a dead connection holds nothing
                            await _unlock(connection, name)
        except Exception as error:  # the lock's connection failed, or the job did
            log.warning("exclusive_job_stopped", job=name, error=type(error).__name__)
        await asyncio.sleep(retry_seconds)


async def _run_while_answering(
    connection: AsyncConnection, job: Callable[[], Awaitable[None]], check_seconds: float
) -> None:
    running = asyncio.create_task(job())
    try:
        while not running.done():
            await asyncio.wait({running}, timeout=check_seconds)
            await connection.scalar(select(1))
            await connection.commit()
        running.result()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
