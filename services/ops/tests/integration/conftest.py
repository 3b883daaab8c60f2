"""Ops against real PostgreSQL and NATS: a migrated database, empty service streams with fresh
ops consumers, the service as its own process, and helpers to publish and wait."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from raccrochage_contracts import Payload, nats_subject, new_event
from raccrochage_ops.service_layer.projecting import CONSUMERS
from raccrochage_ops.synthetic import stream_of
from raccrochage_platform import deadletter as dl
from raccrochage_platform.auth import mint
from raccrochage_platform.migrations import upgrade
from raccrochage_platform.topology import declare, declare_consumer, load_topology
from raccrochage_rig.testing.processes import ServiceProcess, service_process
from raccrochage_rig.testing.servers import Servers

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
TOKEN_KEY = "o" * 64
STREAMS = ("REPERAGE", "PSAD", "FOQUALE", "MLDS", "CLAUSE")


@pytest_asyncio.fixture(loop_scope="session")
async def ops_db(servers: Servers) -> str:
    url = await servers.create_database("ops")
    await asyncio.to_thread(upgrade, MIGRATIONS, url)
    return url


async def reset_consumers(nc: Client) -> None:
    """Ops' durable consumers from the start of their streams (delete, declare again)."""
    js = nc.jetstream()
    topology = load_topology()
    for durable in CONSUMERS:
        definition = topology.consumers[durable]
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(definition.stream, durable)
        await declare_consumer(js, definition)


@pytest_asyncio.fixture(loop_scope="session")
async def ops_topology(nc: Client, deadletter_stream: str) -> None:
    """Empty streams and fresh ops consumers: what earlier tests published does not leak in."""
    js = nc.jetstream()
    await declare(js, load_topology(), services={"ops"})
    for stream in (*STREAMS, "DEADLETTER"):
        await js.purge_stream(stream)
    await reset_consumers(nc)


@pytest.fixture
def ops_env(servers: Servers, ops_db: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RACCROCHAGE_RIG_DIR"}
    env.update(
        RACCROCHAGE_SERVICE="ops",
        NATS_URL=servers.nats_url,
        DATABASE_URL=ops_db,
        RACCROCHAGE_TOKEN_KEY=TOKEN_KEY,
        RACCROCHAGE_RIG_DIR=str(tmp_path / "rig"),
        OPS_SERVICE_URLS="psad=http://127.0.0.1:9",  # nothing listens: the relay shows down
        OPS_HEALTH_SECONDS="1",
    )
    return env


@pytest.fixture
def start_ops(
    ops_env: dict[str, str], ops_topology: None, tmp_path: Path
) -> Iterator[Callable[..., ServiceProcess]]:
    with contextlib.ExitStack() as stack:
        started: list[ServiceProcess] = []

        def start(tag: str = "", **extra_env: str) -> ServiceProcess:
            process = stack.enter_context(service_process("ops", {**ops_env, **extra_env}, tmp_path, tag=tag))
            started.append(process)
            return process

        try:
            yield start
        except BaseException:
            raise
        finally:
            for process in started:  # shown by pytest when the test fails
                print(f"--- {process.log.name}\n{process.log_text()[-6000:]}")


def token(role: str = "ops", territory: str | None = None, sub: str = "astreinte-1") -> str:
    return mint(TOKEN_KEY, role=role, territory=territory, sub=sub)


def client(url: str, role: str = "ops", territory: str | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token(role, territory)}"}, timeout=30
    )


async def publish_all(nc: Client, events: list[tuple[str, Payload]]) -> list[Any]:
    """Publish (type, payload) pairs on their streams, as their producers' relays would."""
    js = nc.jetstream()
    envelopes = []
    for event_type, data in events:
        envelope = new_event(data, source=f"raccrochage/{event_type.split('.')[0]}", subject="synthetic")
        await js.publish(
            nats_subject(envelope.type),
            envelope.to_json(),
            headers={"Nats-Msg-Id": str(envelope.id)},
            stream=stream_of(event_type),
        )
        envelopes.append(envelope)
    return envelopes


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 60, what: str = "condition"
) -> Any:
    """Poll `check` until it returns something truthy (a deadline for hangs, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {result!r}")
        await asyncio.sleep(0.2)


async def caught_up(nc: Client) -> bool:
    """Every ops consumer has acked everything of its stream."""
    js = nc.jetstream()
    topology = load_topology()
    for durable in CONSUMERS:
        info = await js.consumer_info(topology.consumers[durable].stream, durable)
        if info.num_pending or info.num_ack_pending:
            return False
    return True


async def put_dead_letter(nc, envelope, *, consumer: str, reason: str) -> int:
    """A dead letter as a consumer writes it (the platform's header names), for an event the
    consumer never handled."""
    headers = {
        dl.H_REASON: reason,
        dl.H_SUBJECT: nats_subject(envelope.type),
        dl.H_STREAM: "PSAD" if envelope.type.startswith("psad.") else "REPERAGE",
        dl.H_SEQ: "1",
        dl.H_CONSUMER: consumer,
        dl.H_DELIVERED: "7",
        dl.H_AT: "2026-11-20T10:00:00+00:00",
        dl.H_ORIGINAL_HEADERS: json.dumps({"Nats-Msg-Id": str(envelope.id)}),
    }
    ack = await nc.jetstream().publish(
        f"deadletter.{consumer}", envelope.to_json(), headers=headers, stream="DEADLETTER"
    )
    return ack.seq
