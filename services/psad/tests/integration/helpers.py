"""Publishing other services' events into their streams, reading PSAD's, and calling its API."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import asyncpg
import httpx
from nats.aio.client import Client
from raccrochage_contracts import CloudEvent, Payload, nats_subject, new_event
from raccrochage_contracts.events.reperage_v1 import YouthFound, YouthIdentified
from raccrochage_platform.auth import mint
from raccrochage_platform.db import libpq_dsn

from .conftest import TOKEN_KEY


def youth_id(n: int | str) -> str:
    return hashlib.sha256(f"youth-{n}".encode()).hexdigest()


def identified(
    n: int | str, *, departement: str = "33", age: int = 17, psad_id: str | None = None
) -> YouthIdentified:
    return YouthIdentified(
        youth_id=youth_id(n),
        campaign_id="2026-11",
        psad_id=psad_id or f"psad-{departement.lower()}",
        departement=departement,
        age=age,
        months_since_leaving=4,
        as_of=date(2026, 11, 1),
        last_diploma="DNB",
        last_training="2nde GT",
    )


def found(n: int | str, *, departement: str = "33") -> YouthFound:
    return YouthFound(
        youth_id=youth_id(n),
        psad_id=f"psad-{departement.lower()}",
        base="cfa",
        partner_id="cfa-gironde",
        enrolled_since=date(2026, 11, 20),
    )


async def publish(
    nc: Client,
    payload: Payload,
    *,
    source: str | None = None,
    event_id: uuid.UUID | None = None,
    subject: str | None = None,
) -> CloudEvent:
    service = payload.event_type.split(".")[0]
    event = new_event(
        payload, source=source or f"raccrochage/{service}", subject=subject or "test", event_id=event_id
    )
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


def token(
    role: str = "counsellor", territory: str | None = "33", sub: str = "conseillere-1"
) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(TOKEN_KEY, role=role, territory=territory, sub=sub)}"}


def api(base_url: str, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, headers=token() if headers is None else headers, timeout=10)


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
