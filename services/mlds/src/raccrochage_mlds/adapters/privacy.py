"""What the MLDS holds about a youth, for the vault's erasure and export (raccrochage_platform.privacy)."""

from __future__ import annotations

from raccrochage_platform.privacy import ERASED, Erasure, YouthRecords, rows_of, scrub_json
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import candidacy


async def erase(connection: AsyncConnection, youth_id: str, erasure: Erasure) -> None:
    # A candidacy counts in a site's places and in the coordinators' lists: it stays, naming no
    # youth. Its facts are coded answers (age, months out of school), never an identity.
    await scrub_json(connection, candidacy, "history", youth_id)
    anonymised = await connection.execute(
        update(candidacy).where(candidacy.c.youth_id == youth_id).values(youth_id=ERASED)
    )
    erasure.count("candidacy", anonymised.rowcount, anonymised=True)


async def export(connection: AsyncConnection, youth_id: str) -> dict:
    return {"candidacy": await rows_of(connection, candidacy, candidacy.c.youth_id == youth_id)}


RECORDS = YouthRecords(erase=erase, export=export)
