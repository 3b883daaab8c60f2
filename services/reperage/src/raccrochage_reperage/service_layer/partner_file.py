"""Ingest a partner base file (cfa, agri, ml, mlds, en); youths handed over and now enrolled are found."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from raccrochage_contracts.events.reperage_v1 import YouthFound
from raccrochage_platform.outbox import OutboxWriter
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from ..adapters.tables import partner_enrolment
from ..domain.partners import PartnerEnrolment, PartnerSource, identity_key, open_partner_file
from ..domain.siei import Rejection
from .ingest import file_sha256

CHUNK = 5000
FILE_NAMESPACE = uuid.UUID("9b1d0f64-2c7e-4a8b-b3f0-5e6d7c8a9b10")

_FIND_ENROLLED = text(
    """
    SELECT youth_id, psad_id, min(date_debut) AS date_debut FROM (
        SELECT h.youth_id, h.psad_id, e.date_debut
        FROM handover h JOIN youth y USING (youth_id)
        JOIN partner_enrolment e ON e.ine = y.ine
        WHERE h.open AND e.base = :base AND e.partner_id IS NULL
          AND e.date_debut <= :today AND (e.date_fin IS NULL OR e.date_fin >= :today)
        UNION ALL
        SELECT h.youth_id, h.psad_id, e.date_debut
        FROM handover h JOIN youth y USING (youth_id)
        JOIN partner_enrolment e ON e.ine IS NULL AND e.identity_key = y.identity_key
        WHERE h.open AND e.base = :base AND e.partner_id IS NULL
          AND e.date_debut <= :today AND (e.date_fin IS NULL OR e.date_fin >= :today)
    ) matches GROUP BY youth_id, psad_id
    """
)


@dataclass
class PartnerFileSummary:
    source: str
    rows: int = 0
    rejected: int = 0
    rejected_by_reason: Counter = field(default_factory=Counter)
    rejections: list[dict] = field(default_factory=list)
    enrolments: int = 0
    found: int = 0
    extra_columns: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "rows": self.rows,
            "rejected": self.rejected,
            "rejected_by_reason": dict(self.rejected_by_reason),
            "enrolments": self.enrolments,
            "found": self.found,
            "extra_columns": self.extra_columns,
            "rejections": self.rejections[:1000],
        }


async def ingest_partner_file(
    path: Path, *, source: PartnerSource, engine: AsyncEngine, outbox: OutboxWriter, today: date
) -> PartnerFileSummary:
    summary = PartnerFileSummary(source=source.value)
    sha = file_sha256(path)
    with open(path, "rb") as handle:
        parsed = open_partner_file(handle)
        summary.extra_columns = parsed.extra_columns
        batch: list[dict] = []
        for record in parsed.records:
            summary.rows += 1
            if isinstance(record, Rejection):
                summary.rejected += 1
                summary.rejected_by_reason[record.reason] += 1
                summary.rejections.append(
                    {"line": record.line, "field": record.field, "reason": record.reason}
                )
                continue
            batch.append(_row(record, source))
            if len(batch) >= CHUNK:
                summary.enrolments += await _insert(engine, batch)
                batch = []
        summary.enrolments += await _insert(engine, batch)
    async with engine.begin() as conn:
        found = (await conn.execute(_FIND_ENROLLED, {"base": source.value, "today": today})).all()
        for youth_id, _psad_id, _since in found:
            await conn.execute(
                text(
                    "UPDATE handover SET open = false, found_at = now(), found_base = :base "
                    "WHERE youth_id = :youth_id"
                ),
                {"base": source.value, "youth_id": youth_id},
            )
        events = [
            outbox.envelope(
                YouthFound(youth_id=youth_id, psad_id=psad_id, base=source.value, enrolled_since=since),
                subject=youth_id,
                event_id=uuid.uuid5(FILE_NAMESPACE, f"{sha}|{youth_id}"),
            )
            for youth_id, psad_id, since in found
        ]
        await outbox.add_many(conn, events)
    summary.found = len(found)
    return summary


def _row(record: PartnerEnrolment, source: PartnerSource) -> dict:
    return {
        "base": source.value,
        "partner_id": None,
        "ine": record.ine,
        "identity_key": identity_key(record.nom, record.prenom, record.date_naissance),
        "date_debut": record.date_debut,
        "date_fin": record.date_fin,
    }


async def _insert(engine: AsyncEngine, rows: list[dict]) -> int:
    if not rows:
        return 0
    async with engine.begin() as conn:
        statement = insert(partner_enrolment).on_conflict_do_nothing().returning(partner_enrolment.c.id)
        return len((await conn.execute(statement, rows)).all())
