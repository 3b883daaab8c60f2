"""PSAD's requests published into its stream, the MLDS stream read back, the database queried."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from nats.aio.client import Client
from raccrochage_contracts import CloudEvent, nats_subject, new_event
from raccrochage_contracts.events.psad_v1 import SolutionRequested
from raccrochage_platform.db import libpq_dsn


def solution_requested(
    kind: str = "mlds_paps",
    *,
    age: int = 17,
    months: int | None = 3,
    departement: str = "33",
    provider: str = "mlds",
    **more: Any,
) -> SolutionRequested:
    return SolutionRequested(
        case_id=uuid.uuid4(),
        youth_id=uuid.uuid4().hex * 2,
        psad_id=f"psad-{departement.lower()}",
        request_id=uuid.uuid4(),
        solution_number=1,
        kind=kind,
        provider=provider,
        age=age,
        last_training=more.pop("last_training", "2nde GT"),
        last_diploma=more.pop("last_diploma", "AUCUN"),
        months_since_leaving=months,
        departement=departement,
        requested_at=more.pop("requested_at", datetime.now(UTC)),
        **more,
    )


async def publish(nc: Client, payload: SolutionRequested) -> CloudEvent:
    event = new_event(payload, source="raccrochage/psad", subject=str(payload.case_id))
    await nc.jetstream().publish(
        nats_subject(event.type), event.to_json(), headers={"Nats-Msg-Id": str(event.id)}
    )
    return event


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 30, what: str = "condition"
) -> Any:
    """Poll `check` until it returns something truthy (a deadline for hangs, not a timing assertion)."""
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


async def stream_events(nc: Client, subject: str, stream: str = "MLDS") -> list[dict]:
    """Every event on `subject` in `stream` (an ephemeral ordered read)."""
    sub = await nc.jetstream().subscribe(subject, stream=stream, ordered_consumer=True)
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


def token(
    role: str = "mlds_coordinator", territory: str | None = "33", sub: str = "coord-33"
) -> dict[str, str]:
    from raccrochage_platform.auth import mint

    from .conftest import TOKEN_KEY

    return {"Authorization": f"Bearer {mint(TOKEN_KEY, role=role, territory=territory, sub=sub)}"}


def api(base_url: str, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, headers=token() if headers is None else headers, timeout=10)
