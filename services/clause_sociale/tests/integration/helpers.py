"""The MLDS's events published into its stream, clause_sociale's read back, its API called."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any

import asyncpg
import httpx
from nats.aio.client import Client
from raccrochage_contracts import CloudEvent, Payload, nats_subject, new_event
from raccrochage_contracts.events.mlds_v1 import EnrolmentAccepted
from raccrochage_platform.auth import mint
from raccrochage_platform.db import libpq_dsn

from .conftest import TOKEN_KEY


def youth_id(n: int | str) -> str:
    return hashlib.sha256(f"youth-{n}".encode()).hexdigest()


def enrolment_accepted(
    n: int | str, decided_at: datetime, starts_on: date | None = None
) -> EnrolmentAccepted:
    return EnrolmentAccepted(
        request_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        youth_id=youth_id(n),
        decided_at=decided_at,
        dispositif="clause_sociale",
        starts_on=starts_on or decided_at.date(),
    )


async def publish(nc: Client, payload: Payload, *, event_id: uuid.UUID | None = None) -> CloudEvent:
    service = payload.event_type.split(".")[0]
    event = new_event(payload, source=f"raccrochage/{service}", subject="test", event_id=event_id)
    await nc.jetstream().publish(
        nats_subject(event.type), event.to_json(), headers={"Nats-Msg-Id": str(event.id)}
    )
    return event


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 30, what: str = "condition"
) -> Any:
    """Poll `check` until it returns something truthy (no timing assertion: a deadline for hangs)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {result!r}")
        await asyncio.sleep(0.1)


async def fetch(db_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(libpq_dsn(db_url))
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def stream_events(nc: Client, stream: str, subject: str) -> list[dict]:
    """Every event on `subject` in `stream` (an ephemeral ordered read)."""
    js = nc.jetstream()
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True)
    out = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except Exception:
                break
            out.append(json.loads(msg.data))
    finally:
        await sub.unsubscribe()
    return out


def token(role: str, sub: str, *, territory: str | None = None, organisation: str | None = None) -> dict:
    minted = mint(TOKEN_KEY, role=role, sub=sub, territory=territory, organisation=organisation)
    return {"Authorization": f"Bearer {minted}"}


def api(base_url: str, headers: dict[str, str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10)
