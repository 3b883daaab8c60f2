"""One database and one role per service; each role can connect to its own database only."""

from __future__ import annotations

import asyncpg
from raccrochage_platform.topology import Topology
from sqlalchemy.engine import make_url


def role_name(service: str) -> str:
    return f"svc_{service}"


def service_database_url(admin_url: str, database: str, role: str, password: str) -> str:
    url = make_url(admin_url).set(
        database=database, username=role, password=password, drivername="postgresql"
    )
    return url.render_as_string(hide_password=False)


async def provision(admin_url: str, topology: Topology, passwords: dict[str, str]) -> dict[str, str]:
    """Create (or update) roles and databases; returns service -> database URL. Idempotent."""
    urls: dict[str, str] = {}
    conn = await asyncpg.connect(admin_url)
    try:
        for service in topology.services.values():
            role = role_name(service.name)
            password = passwords[service.name]
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            # Identifiers come from topology.toml (checked names), the password is quoted.
            await conn.execute(f"{verb} ROLE {role} LOGIN PASSWORD {_literal(password)}")
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", service.database):
                await conn.execute(f'CREATE DATABASE "{service.database}" OWNER {role}')
            await conn.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{service.database}" FROM PUBLIC')
            await conn.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE "{service.database}" TO {role}')
            urls[service.name] = service_database_url(admin_url, service.database, role, password)
    finally:
        await conn.close()
    return urls


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
