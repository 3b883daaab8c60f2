"""Establishments' API keys in PostgreSQL: created, checked, revoked; the secret kept hashed.

A key reads `fq_<key_id>.<secret>`: the id finds the row, the secret's SHA-256 is compared in
constant time. The clear key is shown once, at creation, and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..domain.owners import Actor
from ..domain.uai import Uai
from .tables import api_key, reservation

PREFIX = "fq_"
_k = api_key.c


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    uais: list[str]
    label: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    last_used_at: datetime | None


async def create_key(
    engine: AsyncEngine, uais: list[Uai], label: str, created_by: str, now: datetime
) -> tuple[str, str]:
    """A new key for these UAIs: (key id, the clear key, to hand over once)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    async with engine.begin() as conn:
        await conn.execute(
            api_key.insert().values(
                key_id=key_id,
                secret_sha256=_sha256(secret),
                uais=sorted({str(uai) for uai in uais}),
                label=label,
                created_at=now,
                created_by=created_by,
            )
        )
    return key_id, f"{PREFIX}{key_id}.{secret}"


async def revoke_key(engine: AsyncEngine, key_id: str, now: datetime) -> KeyInfo | None:
    """Revoke a key (again: nothing changes); None if there is no such key."""
    async with engine.begin() as conn:
        await conn.execute(
            update(api_key).where(_k.key_id == key_id, _k.revoked_at.is_(None)).values(revoked_at=now)
        )
        row = (await conn.execute(select(api_key).where(_k.key_id == key_id))).mappings().first()
    return None if row is None else KeyInfo(**{k: v for k, v in row.items() if k != "secret_sha256"})


async def actor_for(engine: AsyncEngine, presented: str, now: datetime) -> Actor | None:
    """The establishment actor of a valid, unrevoked key, its use recorded; None otherwise."""
    key_id, dot, secret = presented.removeprefix(PREFIX).partition(".")
    if not presented.startswith(PREFIX) or not dot or not key_id or not secret:
        return None
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(_k.secret_sha256, _k.uais).where(_k.key_id == key_id, _k.revoked_at.is_(None))
            )
        ).first()
        if row is None or not hmac.compare_digest(row.secret_sha256, _sha256(secret)):
            return None
        await conn.execute(update(api_key).where(_k.key_id == key_id).values(last_used_at=now))
    return Actor.establishment(key_id, {Uai(uai) for uai in row.uais})


async def pending_reservations(engine: AsyncEngine, uais: list[str], limit: int = 200) -> list[dict]:
    """Reservations waiting for an answer at these UAIs, oldest first (no youth detail: the
    school learns who from the PSAD, not from FOQUALE)."""
    r = reservation.c
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(r.reservation_id, r.offer_id, r.uai, r.training, r.made_at, r.expires_at)
            .where(r.uai.in_(uais), r.state == "made")
            .order_by(r.made_at)
            .limit(limit)
        )
        return [dict(row) for row in rows.mappings()]
