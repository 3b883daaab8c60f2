"""What `raccrochage status` reports: servers (each node of a cluster), services, consumers,
backlogs, dead letters."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError
from raccrochage_platform.broker import connect_once
from raccrochage_platform.deadletter import DEADLETTER_STREAM
from raccrochage_platform.topology import load_topology

from .postgres import ADMIN_ROLE
from .state import NatsNodeState, RigState, load_secrets, pid_alive


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
    if state.nats_nodes:
        report["nats"]["nodes"] = {}
    await asyncio.gather(
        _nats(report, topology, [node.url for node in state.nats_nodes.values()]),
        _postgres(report, folder, state, topology),
        _services(report, state),
        _nats_nodes(report, state),
    )
    for name, node in report["nats"].get("nodes", {}).items():
        node.update(replicas(name, report["streams"]))
    return report


async def _nats(report: dict, topology, node_urls: list[str]) -> None:
    """Through the rig's URL or, for a cluster, any node that answers (the first may be down)."""
    urls = [report["nats"]["url"], *node_urls] if report["nats"]["url"] else []
    error = None
    for url in dict.fromkeys(urls):
        try:
            nc = await connect_once(url)
            break
        except Exception as refused:
            error = refused
    else:
        if error is not None:
            report["nats"]["error"] = type(error).__name__
        return
    try:
        js = nc.jetstream()
        try:
            account = await js.account_info()
        except NatsError as error:  # a cluster electing its meta leader after a node died
            report["nats"]["error"] = f"JetStream did not answer ({type(error).__name__})"
            return
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
                if info.cluster is not None and info.cluster.replicas is not None:
                    report["streams"][name]["leader"] = info.cluster.leader
                    report["streams"][name]["replicas"] = {
                        p.name: bool(p.current) for p in info.cluster.replicas
                    }
                if nearly_full(info.state.bytes, info.config.max_bytes):
                    full.append(f"stream {name} ({info.state.bytes:,} of {info.config.max_bytes:,} bytes)")
            except NotFoundError:
                report["streams"][name] = {"missing": True}
            except NatsError as error:  # no leader yet: a cluster electing one
                report["streams"][name] = {"error": type(error).__name__}
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
            except NatsError as error:
                report["consumers"][durable] = {"service": consumer.service, "error": type(error).__name__}
    finally:
        await nc.close()


def node_state(alive: bool, answering: bool, supervised: bool) -> str:
    """`up` when its process lives and answers; `restarting` when it died under a running
    supervisor, which starts it again; otherwise `down` (no supervisor, or alive but silent)."""
    if alive and answering:
        return "up"
    if not alive and supervised:
        return "restarting"
    return "down"


def replicas(node: str, streams: dict[str, dict]) -> dict:
    """Whether `node`'s copy of every stream it holds is current (it leads it, or the leader
    says its replica is current), and the streams where it is behind. None when it is behind
    nowhere NATS said, but NATS did not say for every stream (unreached, or electing a leader)."""
    behind = [name for name, stream in streams.items() if stream.get("replicas", {}).get(node) is False]
    unknown = not any("replicas" in stream for stream in streams.values()) or any(
        "error" in stream for stream in streams.values()
    )
    current = False if behind else (None if unknown else True)
    return {"replicas_current": current, "replicas_behind": behind}


async def _nats_nodes(report: dict, state: RigState) -> None:
    supervised = state.status == "up" and pid_alive(state.supervisor_pid)
    async with httpx.AsyncClient(timeout=2) as client:
        for name, node in state.nats_nodes.items():
            alive = pid_alive(node.pid)
            report["nats"]["nodes"][name] = {
                "state": node_state(alive, alive and await _answers(client, node), supervised),
                "url": node.url,
                "pid": node.pid,
                "restarts": node.restarts,
            }


async def _answers(client: httpx.AsyncClient, node: NatsNodeState) -> bool:
    try:
        response = await client.get(f"{node.monitor}/healthz", params={"js-enabled-only": "true"})
    except httpx.HTTPError:
        return False
    return response.status_code == 200


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
