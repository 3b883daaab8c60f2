"""Cross-service tests on the test servers: migrated databases, the services as processes, and a
search of a database for personal data (tests/flows/)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
from nats.js.errors import NotFoundError
from raccrochage_platform.db import libpq_dsn
from raccrochage_platform.migrations import upgrade
from raccrochage_platform.settings import nats_servers

from .processes import ServiceProcess, listening, spawn_service
from .servers import Servers

ROOT = Path(__file__).resolve().parents[5]


async def migrated_databases(servers: Servers, services: tuple[str, ...]) -> dict[str, str]:
    """A new database per service, migrated: service -> its URL."""
    urls = {}
    for service in services:
        urls[service] = await servers.create_database(service)
        await asyncio.to_thread(upgrade, ROOT / "services" / service / "migrations", urls[service])
    return urls


@contextlib.contextmanager
def service_processes(
    nats_url: str, databases: dict[str, str], folder: Path, **settings: str
) -> Iterator[dict[str, ServiceProcess]]:
    """Each service of `databases` as its own processes, with its DATABASE_URL, NATS_URL, a quick
    outbox relay sweep and `settings` (RACCROCHAGE_TOKEN_KEY, ...), all started at once and
    yielded once each listens; all stopped together after. Their logs are in `folder`.
    `$RACCROCHAGE_REPLICAS` processes of each (1 unset), as `raccrochage up --replicas N`: the
    first of each is yielded, the others share its consumers and outbox."""
    replicas = int(os.environ.get("RACCROCHAGE_REPLICAS", "1"))
    env = {k: v for k, v in os.environ.items() if k != "RACCROCHAGE_RIG_DIR"}
    env.update(
        NATS_URL=nats_url,
        RACCROCHAGE_RIG_DIR=str(folder / "rig"),
        RACCROCHAGE_RELAY_SWEEP_SECONDS="0.2",
        **settings,
    )
    spawned: dict[tuple[str, int], ServiceProcess] = {}
    try:
        for service, url in databases.items():
            for replica in range(1, replicas + 1):
                tag = f"r{replica}" if replica > 1 else ""
                (folder / f"{service}{'-' + tag if tag else ''}.log").unlink(missing_ok=True)
                service_env = {**env, "RACCROCHAGE_SERVICE": service, "DATABASE_URL": url}
                spawned[service, replica] = spawn_service(service, service_env, folder, tag=tag)
        # Several start side by side on a loaded machine: a longer bound than one alone.
        for (_, replica), running in spawned.items():
            listening(running, folder, tag=f"r{replica}" if replica > 1 else "", timeout=180)
        yield {service: spawned[service, 1] for service in databases}
    finally:
        stop_all(list(spawned.values()))


def stop_all(processes: list[ServiceProcess]) -> None:
    """Every process told to stop first, then each waited for: they shut down side by side."""
    for running in processes:
        if running.process.poll() is None:
            running.process.terminate()
    for running in processes:
        running.stop()


async def database_traces(url: str, needles: list[str]) -> list[str]:
    """Every `table.column holds needle` of a database whose text, JSON or bytes columns hold
    one of `needles`."""
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema "
            "= 'public' AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea')"
        )
        found = []
        for table, column, kind in columns:
            where = (
                f"position(convert_to($1, 'UTF8') in \"{column}\") > 0"
                if kind == "bytea"
                else f'strpos(CAST("{column}" AS text), $1) > 0'
            )
            for needle in needles:
                if await conn.fetchval(f'SELECT count(*) FROM "{table}" WHERE {where}', needle):
                    found.append(f"{table}.{column} holds {needle}")
        return found
    finally:
        await conn.close()


async def stream_traces(nats_url: str, needles: list[str]) -> list[str]:
    """Every `STREAM #seq holds needle` of the messages of every stream (dead letters and
    PRIVACY included) whose payload or headers hold one of `needles`."""
    nc = await nats.connect(nats_servers(nats_url))
    try:
        js = nc.jetstream()
        found = []
        for stream in await js.streams_info():
            if stream.state.messages == 0:
                continue
            for seq in range(stream.state.first_seq, stream.state.last_seq + 1):
                try:
                    message = await js.get_msg(stream.config.name, seq)
                except NotFoundError:  # deleted
                    continue
                text = (message.data or b"").decode("utf-8", errors="replace") + repr(message.headers or {})
                found += [
                    f"{stream.config.name} #{seq} holds {needle}" for needle in needles if needle in text
                ]
        return found
    finally:
        await nc.close()
