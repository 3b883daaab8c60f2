"""Ingest a partner base file (cfa, agri, ml, mlds, en); youths handed over and now enrolled are found."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from raccrochage_contracts.events.reperage_v1 import YouthFound

from ..domain.partners import PartnerEnrolment, PartnerSource, identity_key, open_partner_file
from ..domain.siei import Rejection
from .ingest import file_sha256
from .unit_of_work import AbstractReperageUnitOfWork, Enrolment

CHUNK = 5000
FILE_NAMESPACE = uuid.UUID("9b1d0f64-2c7e-4a8b-b3f0-5e6d7c8a9b10")


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
    path: Path,
    *,
    source: PartnerSource,
    unit_of_work: Callable[[], AbstractReperageUnitOfWork],
    today: date,
) -> PartnerFileSummary:
    """Keep the file's enrolments (a unit of work per chunk), then, in one more, close the open
    handovers of the youths it enrols today: each is found (`reperage.youth.found.v1`, its id
    derived from the file and the youth, so that loading the same file again announces nobody
    twice)."""
    summary = PartnerFileSummary(source=source.value)
    sha = file_sha256(path)
    with open(path, "rb") as handle:
        parsed = open_partner_file(handle)
        summary.extra_columns = parsed.extra_columns
        batch: list[Enrolment] = []
        for record in parsed.records:
            summary.rows += 1
            if isinstance(record, Rejection):
                summary.rejected += 1
                summary.rejected_by_reason[record.reason] += 1
                summary.rejections.append(
                    {"line": record.line, "field": record.field, "reason": record.reason}
                )
                continue
            batch.append(_enrolment(record, source))
            if len(batch) >= CHUNK:
                summary.enrolments += await _keep(unit_of_work(), batch)
                batch = []
        summary.enrolments += await _keep(unit_of_work(), batch)
    async with unit_of_work() as uow:
        found = await uow.handovers.close_found_in_base(source.value, today)
        uow.add_events(
            [
                uow.event(
                    YouthFound(
                        youth_id=youth.youth_id,
                        psad_id=youth.psad_id,
                        base=source.value,
                        enrolled_since=youth.enrolled_since,
                    ),
                    subject=youth.youth_id,
                    event_id=uuid.uuid5(FILE_NAMESPACE, f"{sha}|{youth.youth_id}"),
                )
                for youth in found
            ]
        )
        await uow.commit()
    summary.found = len(found)
    return summary


def _enrolment(record: PartnerEnrolment, source: PartnerSource) -> Enrolment:
    return Enrolment(
        base=source.value,
        partner_id=None,
        ine=record.ine,
        identity_key=identity_key(record.nom, record.prenom, record.date_naissance),
        date_debut=record.date_debut,
        date_fin=record.date_fin,
    )


async def _keep(uow: AbstractReperageUnitOfWork, enrolments: list[Enrolment]) -> int:
    if not enrolments:
        return 0
    async with uow:
        added = await uow.enrolments.add(enrolments)
        await uow.commit()
    return added
