"""What FOQUALE holds about a youth, for the vault's erasure and export (raccrochage_platform.privacy)."""

from __future__ import annotations

from raccrochage_platform.privacy import ERASED, Erasure, YouthRecords, rows_of
from sqlalchemy import case, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import reservation

# A reservation naming no youth. A refusal's free comment may name the youth: it goes (the
# database wants one for a refusal coded `other`, which then says `erased`).
ANONYMISED = {
    "youth_id": ERASED,
    "refusal_comment": case((reservation.c.refusal_comment.is_(None), None), else_=ERASED),
}


async def erase(connection: AsyncConnection, youth_id: str, erasure: Erasure) -> None:
    # A reservation held or took a seat of an offer: it stays for the seats' accounting, naming
    # no youth.
    anonymised = await connection.execute(
        update(reservation).where(reservation.c.youth_id == youth_id).values(ANONYMISED)
    )
    erasure.count("reservation", anonymised.rowcount, anonymised=True)


async def export(connection: AsyncConnection, youth_id: str) -> dict:
    return {"reservation": await rows_of(connection, reservation, reservation.c.youth_id == youth_id)}


RECORDS = YouthRecords(erase=erase, export=export)
