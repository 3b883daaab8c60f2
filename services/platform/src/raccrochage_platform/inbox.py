"""Inbox: a consumer records `(consumer, event_id)` in the same transaction as its effects.

An event whose row is already there was handled before (a redelivery, a relay that published
twice, a replay): it is acknowledged and skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from .tables import inbox


async def claim(
    session: AsyncSession | AsyncConnection, consumer: str, event_id: uuid.UUID, event_type: str
) -> bool:
    """True when this consumer sees the event for the first time (in this transaction)."""
    return bool(await claim_many(session, consumer, [(event_id, event_type)]))


# One fixed statement whatever the batch size: the arrays are parameters, so SQLAlchemy compiles
# it once and asyncpg prepares it once per connection (a VALUES list of 3 x N parameters was
# compiled and planned again for every batch: the largest cost of a consumer's batch).
_CLAIM_MANY = text(
    """
    INSERT INTO inbox (consumer, event_id, event_type)
    SELECT CAST(:consumer AS text), e.id, e.kind
    FROM unnest(CAST(:ids AS uuid[]), CAST(:kinds AS text[])) AS e(id, kind)
    ON CONFLICT (consumer, event_id) DO NOTHING
    RETURNING event_id
    """
)


async def claim_many(
    session: AsyncSession | AsyncConnection,
    consumer: str,
    events: Iterable[tuple[uuid.UUID, str]],
) -> set[uuid.UUID]:
    """Insert a batch in one statement; returns the ids that were new."""
    events = list(events)
    if not events:
        return set()
    found = await session.execute(
        _CLAIM_MANY, {"consumer": consumer, "ids": [e[0] for e in events], "kinds": [e[1] for e in events]}
    )
    return set(found.scalars().all())


async def handled(session: AsyncSession | AsyncConnection, consumer: str, event_id: uuid.UUID) -> bool:
    found = await session.execute(
        select(inbox.c.event_id).where(inbox.c.consumer == consumer, inbox.c.event_id == event_id)
    )
    return found.first() is not None


# The same claim on a plain asyncpg connection, for hot request paths: asyncpg prepares the
# statement once per connection, and no SQLAlchemy compilation runs per call.
CLAIM_SQL = (
    "INSERT INTO inbox (consumer, event_id, event_type) VALUES ($1, $2, $3) "
    "ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id"
)


async def claim_raw(conn: asyncpg.Connection, consumer: str, event_id: uuid.UUID, event_type: str) -> bool:
    """`claim` on an asyncpg connection, inside the caller's transaction."""
    return await conn.fetchval(CLAIM_SQL, consumer, event_id, event_type) is not None


CLAIM_MANY_SQL = (
    "INSERT INTO inbox (consumer, event_id, event_type) "
    "SELECT $1::text, e.id, e.kind FROM unnest($2::uuid[], $3::text[]) AS e(id, kind) "
    "ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id"
)


async def claim_many_raw(
    conn: asyncpg.Connection, consumer: str, events: Iterable[tuple[uuid.UUID, str]]
) -> set[uuid.UUID]:
    """`claim_many` on an asyncpg connection, inside the caller's transaction (the consumers')."""
    events = list(events)
    if not events:
        return set()
    return {
        row[0]
        for row in await conn.fetch(CLAIM_MANY_SQL, consumer, [e[0] for e in events], [e[1] for e in events])
    }
