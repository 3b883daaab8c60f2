"""What PSAD holds about a youth, for the vault's erasure and export (raccrochage_platform.privacy)."""

from __future__ import annotations

from raccrochage_platform.privacy import Erasure, YouthRecords, delete_rows, rows_of
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import case


async def erase(connection: AsyncConnection, youth_id: str, erasure: Erasure) -> None:
    # A case's history holds the counsellors' notes on the youth: the case goes whole. The
    # funnel's counts live in ops, which anonymises its own rows.
    erasure.count("case_file", await delete_rows(connection, case, case.c.youth_id == youth_id))


async def export(connection: AsyncConnection, youth_id: str) -> dict:
    return {"case_file": await rows_of(connection, case, case.c.youth_id == youth_id)}


RECORDS = YouthRecords(erase=erase, export=export)
