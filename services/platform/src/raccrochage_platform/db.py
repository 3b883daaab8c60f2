"""The async SQLAlchemy engine of one service's own database, and its URL forms."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


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
        # A connection broken by a PostgreSQL restart is found at checkout, not by a request
        # (it costs a round trip per unit of work).
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"server_settings": server_settings(application_name)},
    )
