"""Async SQLAlchemy engine and session factory for one service's own database."""

from __future__ import annotations

import re
from collections.abc import Sequence

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


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
    return create_async_engine(
        asyncpg_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping per checkout: it cost a round trip on every transaction (8% of PSAD's CPU on
        # small batches). A connection broken by a PostgreSQL restart fails its first use, is
        # discarded by the pool, and the consumer's retry or the relay's next wave gets a new one.
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"server_settings": server_settings(application_name)},
    )


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under `session`, inside the session's transaction, for hot paths
    that run prepared statements without SQLAlchemy. SQLAlchemy sends BEGIN lazily with its first
    statement: if none ran yet, BEGIN is sent now through its own adapter (which then commits or
    rolls back with the session), instead of a `SELECT 1` round trip."""
    fairy = await (await session.connection()).get_raw_connection()
    adapted = fairy.dbapi_connection  # SQLAlchemy's AsyncAdapt_asyncpg_connection
    if adapted._transaction is None and adapted.isolation_level != "autocommit":
        await adapted._start_transaction()
    return fairy.driver_connection


async def autocommit_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under `session` with no transaction begun: each statement commits
    on its own (a handler written as one statement, `EventConsumer.on_batch_in_one_statement`).
    Nothing may run through the session itself afterwards: SQLAlchemy would begin one."""
    fairy = await (await session.connection()).get_raw_connection()
    if fairy.dbapi_connection._transaction is not None:
        raise RuntimeError("autocommit_connection: the session's transaction has begun already")
    return fairy.driver_connection


# What an element may hold, and the separator: anything else is left by `bytes.translate`.
_PLAIN_BYTES = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-,"
_NULL_ELEMENT = re.compile(rb"(?:^|,)(?i:null)(?:,|$)").search


def array_literal(values: Sequence[str | int]) -> str:
    """A one-dimensional array parameter as PostgreSQL's text literal, for values that need no
    quoting (uuids and ids written as text, integers): send it as `$n::text::uuid[]` (text[],
    int[]...). For a list parameter, asyncpg checks every element against three ABCs before
    encoding it: 0.8 µs an element on a 2-core VM. The literal is joined and checked in C, on
    bytes: 0.1-0.15 µs an element (a regular expression over the joined text took 1.4-2.2).
    Nothing is quoted here: None, an empty string, "NULL", a comma or any character other than
    an ASCII letter, a digit or "-" raises ValueError, which the caller's transaction turns into
    a failed batch, never a wrong row."""
    if None in values:
        raise ValueError("array_literal: None is not a plain element")
    try:
        text = ",".join(values)  # type: ignore[arg-type]
    except TypeError:  # integers
        text = ",".join(map(str, values))
    raw = text.encode()  # a non-ASCII character leaves bytes that translate does not delete
    if values and (
        not raw
        or raw.translate(None, _PLAIN_BYTES)
        or b",," in raw  # empty: ",," or an end
        or raw.startswith(b",")
        or raw.endswith(b",")
        or raw.count(b",") != len(values) - 1
        or ((b"l" in raw or b"L" in raw) and _NULL_ELEMENT(raw))
    ):  # no l, no NULL: skip the search
        raise ValueError(
            "array_literal: an element needs quoting (empty, NULL, or not letters, digits and '-')"
        )
    return "{" + text + "}"
