"""Partner enrolments, live (request/reply) or from files: a handed-over youth now enrolled is found."""

from __future__ import annotations

import os
import tomllib
import uuid
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

import asyncpg

from raccrochage_contracts import CloudEvent
from raccrochage_contracts.events.partner_v1 import EnrolmentEnded, EnrolmentStarted
from raccrochage_contracts.events.reperage_v1 import YouthFound
from raccrochage_platform.outbox import OutboxWriter
from raccrochage_platform.topology import REPO_ROOT

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


# A handed-over youth, case open, matching an enrolment: by INE, or by identity when the partner
# gave no INE. The UPDATE closes the handover and locks it (a concurrent enrolment of the same
# youth then finds it closed); its `found` event is written in the same transaction. Plain
# asyncpg statements, one per case rather than one with an OR: asyncpg prepares them once per
# connection, and a generic plan of the OR would not use the right index.
_CLOSE_OPEN_HANDOVER_BY_INE = """
    UPDATE handover h SET open = false, found_at = now(), found_base = $2
    FROM youth y WHERE y.youth_id = h.youth_id AND h.open AND y.ine = $1
    RETURNING h.youth_id, h.psad_id
"""
_CLOSE_OPEN_HANDOVER_BY_IDENTITY = """
    UPDATE handover h SET open = false, found_at = now(), found_base = $2
    FROM youth y WHERE y.youth_id = h.youth_id AND h.open AND y.identity_key = $1
    RETURNING h.youth_id, h.psad_id
"""
_RECORD_ENROLMENT = """
    INSERT INTO partner_enrolment (base, partner_id, ine, identity_key, date_debut, date_fin, event_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING
"""
_END_ENROLMENT = """
    UPDATE partner_enrolment SET date_fin = $1 WHERE base = $2 AND partner_id = $3
    AND {match} AND ($5::date IS NULL OR date_debut = $5)
"""
_END_ENROLMENT_BY_INE = _END_ENROLMENT.format(match="ine = $4")
_END_ENROLMENT_BY_IDENTITY = _END_ENROLMENT.format(match="identity_key = $4")


async def record_enrolment_started(
    conn: asyncpg.Connection, outbox: OutboxWriter, who: Partner, envelope: CloudEvent, data: EnrolmentStarted,
    today: date,
) -> list[str]:
    """Keep the enrolment; if it is current and its youth was handed over, the youth is found.
    Runs in the caller's transaction. Returns the youth_ids found."""
    ine = _clean_ine(data.ine)
    identity = identity_key(data.nom, data.prenom, data.date_naissance)
    await conn.execute(_RECORD_ENROLMENT, who.base, who.partner_id, ine, identity, data.date_debut, data.date_fin,
                       envelope.id)
    current = data.date_debut <= today and (data.date_fin is None or data.date_fin >= today)
    if not current:
        return []
    if ine is not None:
        found = await conn.fetch(_CLOSE_OPEN_HANDOVER_BY_INE, ine, who.base)
    else:
        found = await conn.fetch(_CLOSE_OPEN_HANDOVER_BY_IDENTITY, identity, who.base)
    for youth_id, psad_id in found:
        await outbox.add_raw(
            conn,
            YouthFound(youth_id=youth_id, psad_id=psad_id, base=who.base, partner_id=who.partner_id,
                       enrolled_since=data.date_debut, cause_event_id=envelope.id),
            subject=youth_id, cause=envelope,
            event_id=uuid.uuid5(FOUND_NAMESPACE, f"{envelope.id}|{youth_id}"),
        )
    return [youth_id for youth_id, _ in found]


async def record_enrolment_ended(
    conn: asyncpg.Connection, who: Partner, envelope: CloudEvent, data: EnrolmentEnded
) -> int:
    """Set the end date of the partner's matching enrolments. Returns how many were updated."""
    ine = _clean_ine(data.ine)
    statement, match = ((_END_ENROLMENT_BY_INE, ine) if ine is not None
                        else (_END_ENROLMENT_BY_IDENTITY, identity_key(data.nom, data.prenom, data.date_naissance)))
    status = await conn.execute(statement, data.date_fin, who.base, who.partner_id, match, data.date_debut)
    return int(status.rsplit(" ", 1)[-1])  # "UPDATE n"
