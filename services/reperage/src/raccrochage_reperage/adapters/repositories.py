"""Repérage's repositories on PostgreSQL: SQLAlchemy Core on a unit of work's connection.

Bulk writes (a campaign chunk of thousands of youths, a partner file) are one statement per
table, the same whatever the number of rows: the rows travel as one JSON array of arrays
(`rows_json`), which `jsonb_array_elements` turns back into rows. Not one array per column:
asyncpg checks every element of an array parameter for nesting, and those checks cost this
process (the ingest's bottleneck) eight times the CPU of serialising the same rows as JSON,
for about the same work in PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime

from pydantic_core import to_json
from raccrochage_platform.privacy import delete_published_events, delete_rows, rows_of
from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Date, Text

from ..service_layer.unit_of_work import (
    CampaignRecord,
    CampaignRepository,
    Enrolment,
    EnrolmentRepository,
    ErasureAnswer,
    ErasureRecord,
    ErasureRepository,
    Found,
    Handover,
    HandoverRepository,
    IdentityRead,
    Outcome,
    RejectedLine,
    VaultIdentity,
    VaultRepository,
)
from . import audit
from .tables import (
    campaign,
    campaign_youth,
    erasure_answer,
    erasure_request,
    erasure_sweep,
    handover,
    identity_audit,
    identity_audit_youth,
    partner_enrolment,
    rejection,
    youth,
)

TEXTS = ARRAY(Text)


def rows_json(rows: Sequence[tuple]) -> str:
    """Rows (tuples) as one JSON array of arrays: dates as ISO strings, UUIDs as text, None as
    null. A statement reads it back with `jsonb_array_elements(CAST(:rows AS jsonb)) AS r`,
    value i of a row being `r->>i` (cast to its column's type)."""
    return to_json(rows).decode()


# --- campaigns ---------------------------------------------------------------------------------
_START_CAMPAIGN = text(
    "INSERT INTO campaign (campaign_id, as_of, file_sha256, status) "
    "VALUES (:campaign_id, :as_of, :sha, 'ingesting') ON CONFLICT (campaign_id) DO NOTHING"
)
_RESTART_EMPTY_CAMPAIGN = text(
    "UPDATE campaign SET as_of = :as_of, file_sha256 = :sha, started_at = now(), progressed_at = now() "
    "WHERE campaign_id = :campaign_id AND status = 'ingesting' "
    "AND NOT EXISTS (SELECT 1 FROM campaign_youth WHERE campaign_id = :campaign_id) "
    "AND NOT EXISTS (SELECT 1 FROM rejection WHERE campaign_id = :campaign_id)"
)
_FIRST_LINES = text(
    "SELECT youth_id, line FROM campaign_youth WHERE campaign_id = :campaign_id AND youth_id = ANY(:youth_ids)"
).bindparams(bindparam("youth_ids", type_=TEXTS))
# A youth already in the campaign (its row written by an ingest that was killed) keeps it.
_ADD_OUTCOMES = text(
    """
    INSERT INTO campaign_youth (campaign_id, youth_id, line, outcome, reason, psad_id)
    SELECT :campaign_id, r->>0, CAST(r->>1 AS integer), r->>2, r->>3, r->>4
    FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS r
    ON CONFLICT (campaign_id, youth_id) DO NOTHING
    """
)
_ADD_REJECTIONS = text(
    """
    INSERT INTO rejection (campaign_id, line, field, reason)
    SELECT :campaign_id, CAST(r->>0 AS integer), r->>1, r->>2
    FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS r
    ON CONFLICT (campaign_id, line) DO NOTHING
    """
)


class SqlCampaignRepository(CampaignRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def get(self, campaign_id: str) -> CampaignRecord | None:
        found = await self.connection.execute(select(campaign).where(campaign.c.campaign_id == campaign_id))
        row = found.first()
        if row is None:
            return None
        return CampaignRecord(
            row.campaign_id,
            row.as_of,
            row.file_sha256,
            row.status,
            row.summary,
            row.started_at,
            row.finished_at,
            row.progressed_at,
        )

    async def start(self, campaign_id: str, as_of: date, file_sha256: str) -> bool:
        done = await self.connection.execute(
            _START_CAMPAIGN, {"campaign_id": campaign_id, "as_of": as_of, "sha": file_sha256}
        )
        return done.rowcount == 1

    async def restart(self, campaign_id: str, as_of: date, file_sha256: str) -> bool:
        done = await self.connection.execute(
            _RESTART_EMPTY_CAMPAIGN, {"campaign_id": campaign_id, "as_of": as_of, "sha": file_sha256}
        )
        return done.rowcount == 1

    async def progressed(self, campaign_id: str) -> None:
        await self.connection.execute(
            update(campaign).where(campaign.c.campaign_id == campaign_id).values(progressed_at=func.now())
        )

    async def stalled(self, after_seconds: float) -> list[str]:
        found = await self.connection.execute(
            select(campaign.c.campaign_id)
            .where(
                campaign.c.status == "ingesting",
                campaign.c.progressed_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, after_seconds),
            )
            .order_by(campaign.c.campaign_id)
        )
        return list(found.scalars())

    async def finish(self, campaign_id: str, summary: dict) -> None:
        await self.connection.execute(
            update(campaign)
            .where(campaign.c.campaign_id == campaign_id)
            .values(status="done", finished_at=func.now(), summary=summary)
        )

    async def first_lines(self, campaign_id: str, youth_ids: Sequence[str]) -> dict[str, int]:
        if not youth_ids:
            return {}
        found = await self.connection.execute(
            _FIRST_LINES, {"campaign_id": campaign_id, "youth_ids": list(youth_ids)}
        )
        return dict(found.all())

    async def add_outcomes(self, campaign_id: str, outcomes: Sequence[Outcome]) -> None:
        if outcomes:
            await self.connection.execute(
                _ADD_OUTCOMES, {"campaign_id": campaign_id, "rows": rows_json(outcomes)}
            )

    async def add_rejections(self, campaign_id: str, rejections: Sequence[RejectedLine]) -> None:
        if rejections:
            await self.connection.execute(
                _ADD_REJECTIONS, {"campaign_id": campaign_id, "rows": rows_json(rejections)}
            )

    async def rejections(self, campaign_id: str, after_line: int, limit: int) -> list[RejectedLine]:
        found = await self.connection.execute(
            select(rejection.c.line, rejection.c.field, rejection.c.reason)
            .where(rejection.c.campaign_id == campaign_id, rejection.c.line > after_line)
            .order_by(rejection.c.line)
            .limit(limit)
        )
        return [RejectedLine(*row) for row in found]


# --- handovers ---------------------------------------------------------------------------------
_OPEN_ELSEWHERE = text(
    "SELECT youth_id, psad_id FROM handover "
    "WHERE open AND campaign_id <> :campaign_id AND youth_id = ANY(:youth_ids)"
).bindparams(bindparam("youth_ids", type_=TEXTS))
# A youth handed over again only once their earlier handover is closed.
_HAND_OVER = text(
    """
    INSERT INTO handover (youth_id, psad_id, campaign_id)
    SELECT r->>0, r->>1, :campaign_id FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS r
    ON CONFLICT (youth_id) DO UPDATE SET psad_id = EXCLUDED.psad_id, campaign_id = EXCLUDED.campaign_id,
        open = true, handed_at = now(), found_at = NULL, found_base = NULL, closed_at = NULL, close_reason = NULL
    WHERE NOT handover.open
    """
)
# The UPDATE closes the youth's open handover and locks it: a concurrent enrolment of the same
# youth waits, then finds it closed. One statement per way of matching (the youth_id of the INE,
# or the identity when the partner gave no INE), each planned on its own index.
_CLOSE_FOUND_BY_YOUTH_ID = text(
    "UPDATE handover SET open = false, found_at = now(), found_base = :base "
    "WHERE youth_id = :youth_id AND open RETURNING youth_id, psad_id"
)
_CLOSE_FOUND_BY_IDENTITY = text(
    """
    UPDATE handover h SET open = false, found_at = now(), found_base = :base
    FROM youth y WHERE y.youth_id = h.youth_id AND h.open AND y.identity_key = :identity_key
    RETURNING h.youth_id, h.psad_id
    """
)
# Open handovers whose youth a file of this base enrols today (by INE, or by identity for the
# enrolments without INE), closed in the same statement.
_CLOSE_FOUND_IN_BASE = text(
    """
    WITH enrolled AS (
        SELECT youth_id, min(date_debut) AS since FROM (
            SELECT h.youth_id, e.date_debut
            FROM handover h JOIN youth y USING (youth_id)
            JOIN partner_enrolment e ON e.ine = y.ine
            WHERE h.open AND e.base = :base AND e.partner_id IS NULL
              AND e.date_debut <= :today AND (e.date_fin IS NULL OR e.date_fin >= :today)
            UNION ALL
            SELECT h.youth_id, e.date_debut
            FROM handover h JOIN youth y USING (youth_id)
            JOIN partner_enrolment e ON e.ine IS NULL AND e.identity_key = y.identity_key
            WHERE h.open AND e.base = :base AND e.partner_id IS NULL
              AND e.date_debut <= :today AND (e.date_fin IS NULL OR e.date_fin >= :today)
        ) matches GROUP BY youth_id
    )
    UPDATE handover h SET open = false, found_at = now(), found_base = :base
    FROM enrolled WHERE h.youth_id = enrolled.youth_id AND h.open
    RETURNING h.youth_id, h.psad_id, enrolled.since
    """
).bindparams(bindparam("today", type_=Date))
_CLOSE_BY_PSAD = text(
    "UPDATE handover SET open = false, closed_at = :at, close_reason = :reason "
    "WHERE youth_id = :youth_id AND psad_id = :psad_id AND open"
)
_TRANSFER = text("UPDATE handover SET psad_id = :to_psad_id WHERE youth_id = :youth_id AND open")


class SqlHandoverRepository(HandoverRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def open_elsewhere(self, youth_ids: Sequence[str], campaign_id: str) -> dict[str, str]:
        if not youth_ids:
            return {}
        found = await self.connection.execute(
            _OPEN_ELSEWHERE, {"youth_ids": list(youth_ids), "campaign_id": campaign_id}
        )
        return dict(found.all())

    async def hand_over(self, campaign_id: str, handovers: Sequence[Handover]) -> None:
        if handovers:
            await self.connection.execute(
                _HAND_OVER, {"campaign_id": campaign_id, "rows": rows_json(handovers)}
            )

    async def close_found(self, *, youth_id: str | None, identity_key: str, base: str) -> list[Found]:
        if youth_id is not None:
            found = await self.connection.execute(
                _CLOSE_FOUND_BY_YOUTH_ID, {"youth_id": youth_id, "base": base}
            )
        else:
            found = await self.connection.execute(
                _CLOSE_FOUND_BY_IDENTITY, {"identity_key": identity_key, "base": base}
            )
        return [Found(youth_id, psad_id) for youth_id, psad_id in found]

    async def close_found_in_base(self, base: str, today: date) -> list[Found]:
        found = await self.connection.execute(_CLOSE_FOUND_IN_BASE, {"base": base, "today": today})
        return sorted(Found(*row) for row in found)

    async def close_by_psad(self, youth_id: str, psad_id: str, at: datetime, reason: str) -> bool:
        done = await self.connection.execute(
            _CLOSE_BY_PSAD, {"at": at, "reason": reason, "youth_id": youth_id, "psad_id": psad_id}
        )
        return done.rowcount == 1

    async def transfer(self, youth_id: str, to_psad_id: str) -> None:
        await self.connection.execute(_TRANSFER, {"to_psad_id": to_psad_id, "youth_id": youth_id})


# --- partner enrolments ------------------------------------------------------------------------
_ADD_ENROLMENTS = text(
    """
    INSERT INTO partner_enrolment (base, partner_id, ine, identity_key, date_debut, date_fin, event_id)
    SELECT r->>0, r->>1, r->>2, r->>3, CAST(r->>4 AS date), CAST(r->>5 AS date), CAST(r->>6 AS uuid)
    FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS r
    ON CONFLICT DO NOTHING
    """
)
_END_ENROLMENT = """
    UPDATE partner_enrolment SET date_fin = :date_fin
    WHERE base = :base AND partner_id = :partner_id AND {match} = :key
      AND (CAST(:date_debut AS date) IS NULL OR date_debut = :date_debut)
"""
_END_ENROLMENT_BY_INE = text(_END_ENROLMENT.format(match="ine"))
_END_ENROLMENT_BY_IDENTITY = text(_END_ENROLMENT.format(match="identity_key"))
_EVERY_ENROLMENT = text("SELECT ine, identity_key, date_debut, date_fin FROM partner_enrolment")
_ENROLMENTS_RECEIVED_SINCE = text(
    "SELECT base, partner_id, ine, identity_key, date_debut, date_fin, event_id FROM partner_enrolment "
    "WHERE received_at >= :since ORDER BY id"
)


class SqlEnrolmentRepository(EnrolmentRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, enrolments: Sequence[Enrolment]) -> int:
        if not enrolments:
            return 0
        done = await self.connection.execute(_ADD_ENROLMENTS, {"rows": rows_json(enrolments)})
        return done.rowcount

    async def end(
        self,
        *,
        base: str,
        partner_id: str,
        ine: str | None,
        identity_key: str,
        date_debut: date | None,
        date_fin: date,
    ) -> int:
        statement, key = (
            (_END_ENROLMENT_BY_INE, ine) if ine is not None else (_END_ENROLMENT_BY_IDENTITY, identity_key)
        )
        done = await self.connection.execute(
            statement,
            {
                "date_fin": date_fin,
                "base": base,
                "partner_id": partner_id,
                "key": key,
                "date_debut": date_debut,
            },
        )
        return done.rowcount

    async def every(self) -> AsyncIterator[tuple[str | None, str, date, date | None]]:
        # A server-side cursor: a partner base of millions of rows is never held whole.
        result = await self.connection.stream(_EVERY_ENROLMENT.execution_options(yield_per=10_000))
        async for partition in result.partitions():  # a row at a time would cross to the driver each
            for ine, identity, date_debut, date_fin in partition:
                yield ine, identity, date_debut, date_fin

    async def received_since(self, since: datetime) -> list[Enrolment]:
        found = await self.connection.execute(_ENROLMENTS_RECEIVED_SINCE, {"since": since})
        return [Enrolment(*row) for row in found]


# --- the identity vault ------------------------------------------------------------------------
VAULT_COLUMNS = VaultIdentity._fields
_REFRESHED = VAULT_COLUMNS[2:]  # youth_id and ine are one another's (the keyed hash)
_DATES = ("date_naissance", "date_sortie")
# A youth already in the vault is rewritten only if a detail changed: a campaign that reports
# again thousands of youths with the same details leaves their rows (and indexes) alone.
_KEEP = text(
    f"""
    INSERT INTO youth ({", ".join(VAULT_COLUMNS)}, updated_at)
    SELECT {", ".join(f"CAST(r->>{i} AS date)" if c in _DATES else f"r->>{i}" for i, c in enumerate(VAULT_COLUMNS))},
           now()
    FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS r
    ON CONFLICT (youth_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _REFRESHED)}, updated_at = now()
    WHERE ({", ".join(f"youth.{c}" for c in _REFRESHED)})
          IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in _REFRESHED)})
    """
)


class SqlVaultRepository(VaultRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def keep(self, identities: Sequence[VaultIdentity]) -> None:
        if identities:
            await self.connection.execute(_KEEP, {"rows": rows_json(identities)})

    async def get(self, youth_id: str) -> VaultIdentity | None:
        found = await self.connection.execute(
            select(*(youth.c[c] for c in VAULT_COLUMNS)).where(youth.c.youth_id == youth_id)
        )
        row = found.first()
        return None if row is None else VaultIdentity(*row)

    async def audit(self, read: IdentityRead) -> None:
        await audit.append(self.connection, read)

    async def erase(
        self, youth_id: str, identity: VaultIdentity | None
    ) -> tuple[dict[str, int], dict[str, int]]:
        erased, anonymised = await self.erase_held(youth_id, identity)
        erased["outbox"] = await delete_published_events(self.connection, youth_id)
        return erased, anonymised

    async def erase_held(
        self, youth_id: str, identity: VaultIdentity | None
    ) -> tuple[dict[str, int], dict[str, int]]:
        """What `erase` does but for the outbox: the vault's own rows of the youth (retention)."""
        erased: dict[str, int] = {}
        for table, where in self._youth_rows(youth_id, identity):
            erased[table.name] = (await self.connection.execute(delete(table).where(where))).rowcount
        # Who read the card, when and why stays, in the chain; for whom no longer does.
        unlinked = await delete_rows(
            self.connection, identity_audit_youth, identity_audit_youth.c.youth_id == youth_id
        )
        return erased, {identity_audit.name: unlinked}

    async def export(self, youth_id: str, identity: VaultIdentity | None) -> dict[str, list[dict]]:
        found = {}
        for table, where in self._youth_rows(youth_id, identity):
            found[table.name] = await rows_of(self.connection, table, where)
        read = select(identity_audit_youth.c.seq).where(identity_audit_youth.c.youth_id == youth_id)
        found[identity_audit.name] = await rows_of(
            self.connection, identity_audit, identity_audit.c.seq.in_(read), leave=("prev_hash", "hash")
        )
        return found

    @staticmethod
    def _youth_rows(youth_id: str, identity: VaultIdentity | None) -> list:
        """(table, condition) of every row repérage keeps under the youth's name."""
        rows = [
            (youth, youth.c.youth_id == youth_id),
            (campaign_youth, campaign_youth.c.youth_id == youth_id),
            (handover, handover.c.youth_id == youth_id),
        ]
        if identity is not None:
            enrolments = partner_enrolment.c
            rows.append(
                (
                    partner_enrolment,
                    or_(
                        enrolments.ine == identity.ine,
                        and_(enrolments.ine.is_(None), enrolments.identity_key == identity.identity_key),
                    ),
                )
            )
        return rows


class SqlErasureRepository(ErasureRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, record: ErasureRecord, youth_id: str) -> None:
        await self.connection.execute(
            insert(erasure_request).values(
                request_id=record.request_id,
                requested_by=record.requested_by,
                requested_at=record.requested_at,
                identity_found=record.identity_found,
                erased=record.erased,
                completed_at=record.completed_at,
            )
        )
        await self.connection.execute(
            insert(erasure_sweep).values(request_id=record.request_id, youth_id=youth_id)
        )
        if record.answers:
            await self.connection.execute(
                insert(erasure_answer),
                [
                    {
                        "request_id": record.request_id,
                        "service": answer.service,
                        "answered_at": answer.answered_at,
                        "erased": answer.erased,
                        "anonymised": answer.anonymised,
                    }
                    for answer in record.answers
                ],
            )

    async def get(self, request_id: uuid.UUID) -> ErasureRecord | None:
        found = (
            (
                await self.connection.execute(
                    select(erasure_request).where(erasure_request.c.request_id == request_id)
                )
            )
            .mappings()
            .first()
        )
        if found is None:
            return None
        answers = await self.connection.execute(
            select(
                erasure_answer.c.service,
                erasure_answer.c.answered_at,
                erasure_answer.c.erased,
                erasure_answer.c.anonymised,
            )
            .where(erasure_answer.c.request_id == request_id)
            .order_by(erasure_answer.c.service)
        )
        return ErasureRecord(**found, answers=tuple(ErasureAnswer(*row) for row in answers))

    async def answer(
        self, request_id: uuid.UUID, service: str, at: datetime, erased: dict, anonymised: dict
    ) -> bool:
        # One request's answers are recorded one at a time (its row locked until the commit), so
        # the transaction of the last one reads all the others: two replicas recording the last
        # two side by side would each see the other's as missing, and neither would complete it.
        await self.connection.execute(
            select(erasure_request.c.request_id)
            .where(erasure_request.c.request_id == request_id)
            .with_for_update()
        )
        answered = await self.connection.execute(
            update(erasure_answer)
            .where(
                erasure_answer.c.request_id == request_id,
                erasure_answer.c.service == service,
                erasure_answer.c.answered_at.is_(None),
            )
            .values(answered_at=at, erased=erased, anonymised=anonymised)
        )
        return answered.rowcount == 1

    async def complete(self, request_id: uuid.UUID, at: datetime) -> None:
        await self.connection.execute(
            update(erasure_request).where(erasure_request.c.request_id == request_id).values(completed_at=at)
        )
        await self.connection.execute(_FORGET_REQUEST, {"request_id": str(request_id)})

    async def due_for_sweep(self) -> dict[uuid.UUID, str]:
        # Every request still to sweep, share-locked: one whose last answer is being recorded
        # is read once that transaction ends, complete. Few rows: erasures are rare.
        rows = await self.connection.execute(
            select(erasure_request.c.request_id, erasure_request.c.completed_at, erasure_sweep.c.youth_id)
            .join(erasure_sweep, erasure_sweep.c.request_id == erasure_request.c.request_id)
            .order_by(erasure_request.c.request_id)
            .with_for_update(read=True, of=erasure_request)
        )
        return {row.request_id: row.youth_id for row in rows if row.completed_at is not None}

    async def swept(self, request_id: uuid.UUID, at: datetime, deleted: dict[str, int]) -> None:
        await self.connection.execute(
            update(erasure_request)
            .where(erasure_request.c.request_id == request_id)
            .values(swept_at=at, swept=deleted)
        )
        await self.connection.execute(delete(erasure_sweep).where(erasure_sweep.c.request_id == request_id))


# The request's event named the youth: once every service has answered it, it has done its work.
_FORGET_REQUEST = text(
    "DELETE FROM outbox WHERE event_type = 'privacy.erasure.requested.v1' AND aggregate_key = :request_id"
)
