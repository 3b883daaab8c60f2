"""What the clause sociale holds about a youth, for the vault's erasure and export
(raccrochage_platform.privacy)."""

from __future__ import annotations

from raccrochage_platform.privacy import Erasure, YouthRecords, delete_rows, rows_of, scrub_json
from sqlalchemy import Text, cast, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import bilan_document, enrolment, mission


def _convention_of(youth_id: str):
    return mission.c.history["convention"]["youth_id"].astext == youth_id


def _naming(youth_id: str):
    """Missions whose proposals or convention name the youth."""
    return cast(mission.c.history, Text).contains(youth_id, autoescape=True)


# The convention keeps the youth's birth date for the age rules of the bilan: the year is enough.
_BIRTH_YEAR_ONLY = text(
    """
    UPDATE mission SET history = jsonb_set(history, '{convention,youth_birth_date}', to_jsonb(
        to_char(date_trunc('year', CAST(history #>> '{convention,youth_birth_date}' AS date)), 'YYYY-MM-DD')))
    WHERE history #>> '{convention,youth_id}' = :youth_id
    """
)


def _party_reference(youth_id: str) -> str:
    """How a convention names the youth among its parties (entrypoints/api.py)."""
    return f"youth/{youth_id[:16]}"


async def erase(connection: AsyncConnection, youth_id: str, erasure: Erasure) -> None:
    # The missions naming the youth are locked first: a bilan being delivered (its mission
    # locked, its PDF not committed yet) is waited for, and its PDF is then seen and deleted.
    await connection.execute(select(mission.c.mission_id).where(_naming(youth_id)).with_for_update())
    # The signed bilan's PDF names the youth: it goes. The mission stays for the clause's hours
    # and its counts, its proposals and convention naming no youth.
    signed = select(mission.c.mission_id).where(_convention_of(youth_id))
    erasure.count(
        "bilan_document",
        await delete_rows(connection, bilan_document, bilan_document.c.mission_id.in_(signed)),
    )
    await connection.execute(_BIRTH_YEAR_ONLY, {"youth_id": youth_id})
    erasure.count("mission", await scrub_json(connection, mission, "history", youth_id), anonymised=True)
    await scrub_json(connection, mission, "history", _party_reference(youth_id))
    erasure.count("enrolment", await delete_rows(connection, enrolment, enrolment.c.youth_id == youth_id))


async def export(connection: AsyncConnection, youth_id: str) -> dict:
    signed = select(mission.c.mission_id).where(_convention_of(youth_id))
    return {
        "enrolment": await rows_of(connection, enrolment, enrolment.c.youth_id == youth_id),
        "mission": await rows_of(connection, mission, _naming(youth_id)),
        "bilan_document": await rows_of(
            connection, bilan_document, bilan_document.c.mission_id.in_(signed), leave=("pdf",)
        ),
    }


RECORDS = YouthRecords(erase=erase, export=export)
