"""What `raccrochage status` reports: servers, services, consumers, backlogs, dead letters."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from nats.js.errors import NotFoundError
from raccrochage_platform.broker import connect_once
from raccrochage_platform.deadletter import DEADLETTER_STREAM
from raccrochage_platform.topology import load_topology

from .postgres import ADMIN_ROLE
from .state import RigState, load_secrets, pid_alive


def admin_url(folder: Path, state: RigState | None = None) -> str | None:
    external = os.environ.get("RACCROCHAGE_PG_ADMIN_URL")
    if external:
        return external
    state = state or RigState.load(folder)
    if not state.pg_port:
        return None
    secrets = load_secrets(folder, load_topology())
    return (
        f"postgresql://{ADMIN_ROLE}:{secrets['pg_admin_password']}@{state.pg_host}:{state.pg_port}/postgres"
    )


def nats_url(folder: Path, state: RigState | None = None) -> str | None:
    return os.environ.get("NATS_URL") or (state or RigState.load(folder)).nats_url


async def collect(folder: Path) -> dict[str, Any]:
    state = RigState.load(folder)
    topology = load_topology()
    report: dict[str, Any] = {
        "rig_dir": str(folder),
        "rig": {"status": state.status, "supervisor_alive": pid_alive(state.supervisor_pid)},
        "nats": {"url": nats_url(folder, state), "healthy": False},
        "postgres": {"healthy": False, "host": state.pg_host, "port": state.pg_port},
        "services": {},
        "consumers": {},
        "streams": {},
        "dead_letters": None,
    }
    await asyncio.gather(
        _nats(report, topology), _postgres(report, folder, state, topology), _services(report, state)
    )
    return report


async def _nats(report: dict, topology) -> None:
    url = report["nats"]["url"]
    if not url:
        return
    try:
        nc = await connect_once(url)
    except Exception as error:
        report["nats"]["error"] = type(error).__name__
        return
    try:
        js = nc.jetstream()
        account = await js.account_info()
        report["nats"]["healthy"] = True
        full = []
        if nearly_full(account.storage, account.limits.max_storage):
            full.append(f"the account's JetStream storage ({account.storage:,} bytes)")
        for name in topology.streams:
            try:
                info = await js.stream_info(name)
                report["streams"][name] = {
                    "messages": info.state.messages,
                    "bytes": info.state.bytes,
                    "max_bytes": info.config.max_bytes,
                }
                if nearly_full(info.state.bytes, info.config.max_bytes):
                    full.append(f"stream {name} ({info.state.bytes:,} of {info.config.max_bytes:,} bytes)")
            except NotFoundError:
                report["streams"][name] = {"missing": True}
        if full:
            # Reachable but refusing publishes: the events wait in the producers' outboxes.
            report["nats"]["healthy"] = False
            report["nats"]["error"] = (
                f"JetStream full: {'; '.join(full)}; publishes are refused and events wait in "
                "the outboxes (raise max_gigabytes in deploy/topology.toml, or free disk)"
            )
        report["dead_letters"] = report["streams"].get(DEADLETTER_STREAM, {}).get("messages")
        for durable, consumer in topology.consumers.items():
            try:
                info = await js.consumer_info(consumer.stream, durable)
                report["consumers"][durable] = {
                    "service": consumer.service,
                    "stream": consumer.stream,
                    "pending": info.num_pending,
                    "ack_pending": info.num_ack_pending,
                    "redelivered": info.num_redelivered,
                }
            except NotFoundError:
                report["consumers"][durable] = {"service": consumer.service, "missing": True}
    finally:
        await nc.close()


def nearly_full(used: int | None, limit: int | None) -> bool:
    """At 95 % of a limit (-1 or 0: none), a publish of one more batch may be refused."""
    return bool(limit and limit > 0 and used is not None and used >= 0.95 * limit)


async def _postgres(report: dict, folder: Path, state: RigState, topology) -> None:
    url = admin_url(folder, state)
    if not url:
        return
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except Exception as error:
        report["postgres"]["error"] = type(error).__name__
        return
    report["postgres"]["healthy"] = True
    await conn.close()
    backlogs = {}
    for service in topology.services.values():
        try:
            db = await asyncpg.connect(url, database=service.database, timeout=3)
        except Exception:
            continue
        try:
            if await db.fetchval("SELECT to_regclass('outbox') IS NOT NULL"):
                backlogs[service.name] = await db.fetchval(
                    "SELECT count(*) FROM outbox WHERE published_at IS NULL"
                )
        finally:
            await db.close()
    report["outbox_backlog"] = backlogs


async def _services(report: dict, state: RigState) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        for name, service in state.services.items():
            entry = {"healthy": False, "http": service.http, "pid": service.pid, "restarts": service.restarts}
            if service.http and pid_alive(service.pid):
                try:
                    response = await client.get(f"{service.http}/ready")
                    entry["healthy"] = response.status_code == 200
                    entry["ready"] = response.json()
                except httpx.HTTPError as error:
                    entry["error"] = type(error).__name__
            report["services"][name] = entry
