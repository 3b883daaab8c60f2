"""Inbox: a consumer records `(consumer, event_id)` in the same transaction as its effects.

An event whose row is already there was handled before (a redelivery, a relay that published
twice, a replay): it is acknowledged and skipped. `uow.SqlAlchemyUnitOfWork.claim` calls this.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Text

# The one inbox statement: arrays, so that it is the same whatever the batch size.
_CLAIM = text(
    """
    INSERT INTO inbox (consumer, event_id, event_type)
    SELECT :consumer, e.id, e.kind FROM unnest(:ids, :kinds) AS e(id, kind)
    ON CONFLICT (consumer, event_id) DO NOTHING
    RETURNING event_id
    """
).bindparams(bindparam("ids", type_=ARRAY(UUID(as_uuid=True))), bindparam("kinds", type_=ARRAY(Text)))


async def claim(
    conn: AsyncConnection, consumer: str, events: Sequence[tuple[uuid.UUID, str]]
) -> set[uuid.UUID]:
    """Insert (event id, event type) rows for `consumer` in one statement; returns the ids that
    were new. Inside the caller's transaction: rolled back with it."""
    if not events:
        return set()
    found = await conn.execute(
        _CLAIM, {"consumer": consumer, "ids": [e[0] for e in events], "kinds": [e[1] for e in events]}
    )
    return set(found.scalars())
