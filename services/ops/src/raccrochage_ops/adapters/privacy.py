"""What ops' read models hold about a youth, for the vault's erasure and export
(raccrochage_platform.privacy)."""

from __future__ import annotations

from raccrochage_platform.privacy import ERASED, Erasure, YouthRecords, rows_of
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.projection import Candidacy
from .tables import READ_MODELS, youth

candidacy = READ_MODELS[Candidacy]


def erased_key():
    """A youth row's key once anonymised: `erased-<uuid>`, one of its own per row, naming nobody."""
    return ERASED + "-" + func.gen_random_uuid().cast(youth.c.youth_id.type)


async def erase(connection: AsyncConnection, youth_id: str, erasure: Erasure) -> None:
    # The dashboard's figures add up the count tables and count youth rows: the rows stay, each
    # under a key of its own that names nobody, so that no figure drops.
    moved = await connection.execute(
        update(youth).where(youth.c.youth_id == youth_id).values(youth_id=erased_key())
    )
    erasure.count("youth", moved.rowcount, anonymised=True)
    cleared = await connection.execute(
        update(candidacy).where(candidacy.c.youth_id == youth_id).values(youth_id=None)
    )
    erasure.count("candidacy", cleared.rowcount, anonymised=True)


async def export(connection: AsyncConnection, youth_id: str) -> dict:
    return {
        "youth": await rows_of(connection, youth, youth.c.youth_id == youth_id),
        "candidacy": await rows_of(connection, candidacy, candidacy.c.youth_id == youth_id),
    }


RECORDS = YouthRecords(erase=erase, export=export)
