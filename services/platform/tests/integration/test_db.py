"""A service's own connections against real PostgreSQL: the session settings they run with, and
a job one process of a service runs at a time."""

from __future__ import annotations

import asyncio

from raccrochage_platform.db import asyncpg_url, exclusive, libpq_dsn, make_engine, while_exclusive
from raccrochage_rig.testing.servers import Servers
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def test_engine_connections_run_without_jit(service_engine: AsyncEngine) -> None:
    """JIT compiles every execution whose estimated cost is high, which a growing table's stale
    statistics make of a 500-row insert: a quarter of a second each (`db.server_settings`)."""
    async with service_engine.connect() as conn:
        assert (await conn.execute(text("SHOW jit"))).scalar_one() == "off"
        assert (await conn.execute(text("SHOW application_name"))).scalar_one() == "raccrochage"


async def test_an_engine_from_any_url_form_names_its_service(servers: Servers) -> None:
    url = await servers.create_database("db")
    assert url.startswith("postgresql://")
    engine = make_engine(url, application_name="psad")
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW application_name"))).scalar_one() == "psad"
            assert (await conn.execute(text("SHOW jit"))).scalar_one() == "off"
    finally:
        await engine.dispose()


def test_url_forms() -> None:
    url = "postgresql+psycopg://svc:p%40ss@db:5432/psad"
    assert asyncpg_url(url) == "postgresql+asyncpg://svc:p%40ss@db:5432/psad"
    assert libpq_dsn(asyncpg_url(url)) == "postgresql://svc:p%40ss@db:5432/psad"
    assert asyncpg_url("postgresql://svc@db/psad") == "postgresql+asyncpg://svc@db/psad"


async def test_one_process_at_a_time_holds_a_job_and_the_next_gets_it_after(servers: Servers) -> None:
    url = await servers.create_database("exclusive")
    one, other = make_engine(url, application_name="one"), make_engine(url, application_name="other")
    try:
        async with (
            exclusive(one, "reperage.erasure_sweep") as first,
            exclusive(other, "reperage.erasure_sweep") as second,
            exclusive(other, "another") as third,
        ):
            assert (first, second, third) == (True, False, True)
        async with exclusive(other, "reperage.erasure_sweep") as after:
            assert after
        async with one.connect() as conn:  # released: no lock left, no transaction left open
            assert (
                await conn.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"))
            ).scalar_one() == 0
            idle = "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'"
            assert (await conn.execute(text(idle))).scalar_one() == 0
    finally:
        await one.dispose()
        await other.dispose()


async def test_a_job_runs_in_one_process_and_another_takes_it_when_the_holders_connection_dies(
    servers: Servers,
) -> None:
    url = await servers.create_database("while_exclusive")
    engines = {name: make_engine(url, application_name=name) for name in ("one", "other")}
    running: list[str] = []

    def job(name: str):
        async def run() -> None:
            running.append(name)
            try:
                await asyncio.Event().wait()
            finally:
                running.remove(name)

        return run

    async def until(condition, what: str) -> None:
        for _ in range(100):
            if condition():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"not {what}: running {running}")

    tasks = {
        name: asyncio.create_task(
            while_exclusive(
                engine, "foquale.consumers_in_one_process", job(name), retry_seconds=0.2, check_seconds=0.2
            )
        )
        for name, engine in engines.items()
    }
    try:
        await until(lambda: len(running) == 1, "one running")
        [holder] = running
        await asyncio.sleep(0.5)  # the other keeps trying, in vain
        assert running == [holder]

        # The holder's lock connection dies (a terminated backend): its job stops, the other's runs.
        async with engines[holder].connect() as conn:
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND pid <> pg_backend_pid()"
                )
            )
        await until(lambda: running and running != [holder], "taken over")
        assert len(running) == 1

        # The holder stops (cancelled, as at shutdown): the other takes over.
        [now] = running
        tasks[now].cancel()
        await until(lambda: running and running != [now], "taken over again")
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        for engine in engines.values():
            await engine.dispose()
