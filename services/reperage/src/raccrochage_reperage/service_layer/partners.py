"""Partner enrolments, live (request/reply) or from files: a handed-over youth now enrolled is found."""

from __future__ import annotations

import os
import tomllib
import uuid
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from raccrochage_contracts import CloudEvent
from raccrochage_contracts.events.partner_v1 import EnrolmentEnded, EnrolmentStarted
from raccrochage_contracts.events.reperage_v1 import YouthFound
from raccrochage_platform.outbox import OutboxWriter
from raccrochage_platform.topology import REPO_ROOT

from ..adapters.tables import partner_enrolment
from ..domain.partners import identity_key
from ..domain.rules import is_valid_ine, normalise_ine

FOUND_NAMESPACE = uuid.UUID("0c5f3d4a-8e21-4b7e-9a55-2b9d7e1f4c30")


class UnknownPartner(LookupError):
    pass


@dataclass(frozen=True)
class Partner:
    partner_id: str
    base: str


@cache
def partners_registry(path: str | None = None) -> dict[str, Partner]:
    source = Path(path or os.environ.get("RACCROCHAGE_PARTNERS", REPO_ROOT / "deploy" / "partners.toml"))
    raw = tomllib.loads(source.read_text(encoding="utf-8"))
    return {pid: Partner(pid, body["base"]) for pid, body in raw.get("partners", {}).items()}


def partner(partner_id: str) -> Partner:
    try:
        return partners_registry()[partner_id]
    except KeyError:
        raise UnknownPartner(f"partner {partner_id!r} is not registered (deploy/partners.toml)") from None


def _clean_ine(raw: str | None) -> str | None:
    if not raw:
        return None
    ine = normalise_ine(raw)
    if not is_valid_ine(ine):
        raise ValueError("data.ine: not 11 letters or digits")
    return ine


# Handed-over youths, case open, matching an enrolment: by INE, or by identity when the partner
# gave no INE. Closing the handover and emitting `found` happen in the same transaction.
_MATCH_OPEN_HANDOVER = text(
    """
    SELECT h.youth_id, h.psad_id FROM handover h JOIN youth y ON y.youth_id = h.youth_id
    WHERE h.open AND ((CAST(:ine AS text) IS NOT NULL AND y.ine = :ine)
                OR (CAST(:ine AS text) IS NULL AND y.identity_key = :identity))
    FOR UPDATE OF h
    """
)
_CLOSE_HANDOVER = text(
    "UPDATE handover SET open = false, found_at = now(), found_base = :base WHERE youth_id = :youth_id"
)


async def record_enrolment_started(
    session: AsyncSession, outbox: OutboxWriter, who: Partner, envelope: CloudEvent, data: EnrolmentStarted,
    today: date,
) -> list[str]:
    """Keep the enrolment; if it is current and its youth was handed over, the youth is found.
    Returns the youth_ids found."""
    ine = _clean_ine(data.ine)
    identity = identity_key(data.nom, data.prenom, data.date_naissance)
    await session.execute(
        insert(partner_enrolment).values(
            base=who.base, partner_id=who.partner_id, ine=ine, identity_key=identity,
            date_debut=data.date_debut, date_fin=data.date_fin, event_id=envelope.id,
        ).on_conflict_do_nothing()
    )
    current = data.date_debut <= today and (data.date_fin is None or data.date_fin >= today)
    if not current:
        return []
    found = (await session.execute(_MATCH_OPEN_HANDOVER, {"ine": ine, "identity": identity})).all()
    for youth_id, psad_id in found:
        await session.execute(_CLOSE_HANDOVER, {"base": who.base, "youth_id": youth_id})
        await outbox.add(
            session,
            YouthFound(youth_id=youth_id, psad_id=psad_id, base=who.base, partner_id=who.partner_id,
                       enrolled_since=data.date_debut, cause_event_id=envelope.id),
            subject=youth_id, cause=envelope,
            event_id=uuid.uuid5(FOUND_NAMESPACE, f"{envelope.id}|{youth_id}"),
        )
    return [youth_id for youth_id, _ in found]


async def record_enrolment_ended(
    session: AsyncSession, who: Partner, envelope: CloudEvent, data: EnrolmentEnded
) -> int:
    """Set the end date of the partner's matching enrolments. Returns how many were updated."""
    ine = _clean_ine(data.ine)
    identity = identity_key(data.nom, data.prenom, data.date_naissance)
    result = await session.execute(
        text(
            "UPDATE partner_enrolment SET date_fin = :fin WHERE base = :base AND partner_id = :pid "
            "AND ((CAST(:ine AS text) IS NOT NULL AND ine = :ine) "
            "OR (CAST(:ine AS text) IS NULL AND identity_key = :identity)) "
            "AND (CAST(:debut AS date) IS NULL OR date_debut = :debut)"
        ),
        {"fin": data.date_fin, "base": who.base, "pid": who.partner_id, "ine": ine, "identity": identity,
         "debut": data.date_debut},
    )
    return result.rowcount
