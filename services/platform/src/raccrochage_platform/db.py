"""Async SQLAlchemy engine and session factory for one service's own database."""

from __future__ import annotations

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
        connect_args={"server_settings": {"application_name": application_name}},
    )


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
