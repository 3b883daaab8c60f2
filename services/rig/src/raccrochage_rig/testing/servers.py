"""Real servers for tests: embedded (default), external (environment) or testcontainers (docker)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from ..nats import NatsServer
from ..postgres import PostgresServer


@dataclass(frozen=True)
class Servers:
    nats_url: str
    pg_admin_url: str
    backend: str

    def database_url(self, database: str) -> str:
        return (
            make_url(self.pg_admin_url)
            .set(database=database, drivername="postgresql")
            .render_as_string(hide_password=False)
        )

    async def create_database(self, prefix: str = "t") -> str:
        """A new, empty database for one test module; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(self.pg_admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.database_url(name)


@contextlib.contextmanager
def start_servers(workdir: Path) -> Iterator[Servers]:
    backend = os.environ.get("RACCROCHAGE_TEST_BACKEND", "")
    if backend == "docker":
        with _docker() as servers:
            yield servers
        return
    external_nats = os.environ.get("NATS_URL")
    external_pg = os.environ.get("RACCROCHAGE_PG_ADMIN_URL")
    nats_server = pg_server = None
    try:
        if not external_nats:
            nats_server = NatsServer(workdir / "nats")
            nats_server.start()
        if not external_pg:
            pg_server = PostgresServer(workdir / "postgres", say=lambda _m: None)
            pg_server.start()
        yield Servers(
            nats_url=external_nats or nats_server.url,
            pg_admin_url=external_pg or pg_server.admin_url,
            backend="external" if external_nats and external_pg else "embedded",
        )
    finally:
        if pg_server is not None:
            pg_server.stop(discard=True)  # its folder is deleted next
        if nats_server is not None:
            nats_server.stop()


@contextlib.contextmanager
def _docker() -> Iterator[Servers]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.postgres import PostgresContainer

    with (
        PostgresContainer("postgres:18-alpine", driver=None) as pg,
        DockerContainer("nats:2.12-alpine").with_command("-js").with_exposed_ports(4222) as nats_container,
    ):
        wait_for_logs(nats_container, "Server is ready")
        nats_url = f"nats://{nats_container.get_container_host_ip()}:{nats_container.get_exposed_port(4222)}"
        yield Servers(nats_url=nats_url, pg_admin_url=pg.get_connection_url(), backend="docker")
