"""Bulk writes of a campaign's results with asyncpg COPY: vault rows, outcomes, handovers, outbox.

The ingest of a million-row file is a bulk job: rows are staged with COPY in temporary tables
and merged with one statement per table and chunk, in one transaction per chunk.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date

import asyncpg

YOUTH_COLUMNS = (
    "youth_id",
    "ine",
    "identity_key",
    "nom",
    "prenom",
    "date_naissance",
    "sexe",
    "code_postal",
    "commune",
    "adresse",
    "telephone",
    "courriel",
    "uai_origine",
    "formation_origine",
    "date_sortie",
    "diplome",
)
OUTCOME_COLUMNS = ("campaign_id", "youth_id", "line", "outcome", "reason", "psad_id")
OUTBOX_COLUMNS = ("event_id", "event_type", "nats_subject", "stream", "aggregate_key", "envelope")
HANDOVER_COLUMNS = ("youth_id", "psad_id", "campaign_id")
REJECTION_COLUMNS = ("campaign_id", "line", "field", "reason")

_STAGE = """
CREATE TEMPORARY TABLE IF NOT EXISTS stage_youth (LIKE youth INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMPORARY TABLE IF NOT EXISTS stage_outcome (LIKE campaign_youth) ON COMMIT DELETE ROWS;
CREATE TEMPORARY TABLE IF NOT EXISTS stage_outbox (LIKE outbox INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
ALTER TABLE stage_outbox ALTER COLUMN id DROP NOT NULL;
CREATE TEMPORARY TABLE IF NOT EXISTS stage_handover (youth_id text, psad_id text, campaign_id text)
    ON COMMIT DELETE ROWS;
CREATE TEMPORARY TABLE IF NOT EXISTS stage_rejection (LIKE rejection) ON COMMIT DELETE ROWS;
"""
_MERGE_YOUTH = f"""
INSERT INTO youth ({", ".join(YOUTH_COLUMNS)}, updated_at)
SELECT {", ".join(YOUTH_COLUMNS)}, now() FROM stage_youth
ON CONFLICT (youth_id) DO UPDATE SET
{", ".join(f"{c} = EXCLUDED.{c}" for c in YOUTH_COLUMNS[2:])}, updated_at = now()
"""
_MERGE_OUTCOME = f"""
INSERT INTO campaign_youth ({", ".join(OUTCOME_COLUMNS)})
SELECT {", ".join(OUTCOME_COLUMNS)} FROM stage_outcome
ON CONFLICT (campaign_id, youth_id) DO NOTHING
"""
_MERGE_OUTBOX = f"""
INSERT INTO outbox ({", ".join(OUTBOX_COLUMNS)})
SELECT {", ".join(OUTBOX_COLUMNS)} FROM stage_outbox ORDER BY event_id
ON CONFLICT (event_id) DO NOTHING
"""

# A youth handed over again only once their earlier case is closed.
_MERGE_HANDOVER = f"""
INSERT INTO handover ({", ".join(HANDOVER_COLUMNS)})
SELECT {", ".join(HANDOVER_COLUMNS)} FROM stage_handover
ON CONFLICT (youth_id) DO UPDATE SET psad_id = EXCLUDED.psad_id, campaign_id = EXCLUDED.campaign_id,
open = true, handed_at = now(), found_at = NULL, found_base = NULL, closed_at = NULL, close_reason = NULL
WHERE NOT handover.open
"""
_MERGE_REJECTION = f"""
INSERT INTO rejection ({", ".join(REJECTION_COLUMNS)})
SELECT {", ".join(REJECTION_COLUMNS)} FROM stage_rejection ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True)
class CampaignRecord:
    campaign_id: str
    as_of: date
    file_sha256: str
    status: str
    summary: dict | None


class CampaignStore:
    """One asyncpg connection for the whole ingest job."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        # A campaign started by this store has nothing written yet: its outcomes, events and
        # rejections go straight in by COPY. A campaign resumed after a killed ingest merges
        # them from staging tables, skipping what the killed run wrote.
        self._fresh = False

    @classmethod
    async def connect(cls, dsn: str) -> CampaignStore:
        conn = await asyncpg.connect(dsn)
        await conn.execute(_STAGE)
        return cls(conn)

    async def close(self) -> None:
        await self.conn.close()

    async def campaign(self, campaign_id: str) -> CampaignRecord | None:
        row = await self.conn.fetchrow("SELECT * FROM campaign WHERE campaign_id = $1", campaign_id)
        if row is None:
            return None
        summary = json.loads(row["summary"]) if row["summary"] else None
        return CampaignRecord(row["campaign_id"], row["as_of"], row["file_sha256"], row["status"], summary)

    async def start_campaign(self, campaign_id: str, as_of: date, sha256: str) -> bool:
        """Start the campaign, or resume it after a killed ingest. True when started now."""
        status = await self.conn.execute(
            "INSERT INTO campaign (campaign_id, as_of, file_sha256, status) VALUES ($1, $2, $3, 'ingesting') "
            "ON CONFLICT (campaign_id) DO NOTHING",
            campaign_id,
            as_of,
            sha256,
        )
        self._fresh = status == "INSERT 0 1"
        return self._fresh

    async def partner_enrolments(self):
        """Every partner enrolment (ine, identity_key, date_debut, date_fin), streamed."""
        async with self.conn.transaction():
            async for row in self.conn.cursor(
                "SELECT ine, identity_key, date_debut, date_fin FROM partner_enrolment", prefetch=10_000
            ):
                yield row["ine"], row["identity_key"], row["date_debut"], row["date_fin"]

    async def first_lines(self, campaign_id: str, youth_ids: list[str]) -> dict[str, int]:
        """youth_id -> line of the row that already stands for this youth in the campaign
        (an earlier chunk, or this same row written by an ingest that was killed)."""
        rows = await self.conn.fetch(
            "SELECT youth_id, line FROM campaign_youth WHERE campaign_id = $1 AND youth_id = ANY($2)",
            campaign_id,
            youth_ids,
        )
        return {row["youth_id"]: row["line"] for row in rows}

    async def open_handovers(self, youth_ids: list[str], campaign_id: str) -> dict[str, str]:
        """youth_id -> psad_id for youths handed over by an earlier campaign, case still open."""
        rows = await self.conn.fetch(
            "SELECT youth_id, psad_id FROM handover WHERE open AND campaign_id <> $2 AND youth_id = ANY($1)",
            youth_ids,
            campaign_id,
        )
        return {row["youth_id"]: row["psad_id"] for row in rows}

    async def write_chunk(
        self,
        youths: list[tuple],
        outcomes: list[tuple],
        handovers: list[tuple[str, str, str]],
        events: list[tuple],
        rejections: list[tuple[str, int, str, str]],
    ) -> None:
        """One transaction: vault rows, outcomes, new handovers, events, rejections."""
        async with self.conn.transaction():
            if youths:
                await self.conn.copy_records_to_table("stage_youth", records=youths, columns=YOUTH_COLUMNS)
                await self.conn.execute(_MERGE_YOUTH)
            if outcomes:
                await self._add("campaign_youth", "stage_outcome", _MERGE_OUTCOME, outcomes, OUTCOME_COLUMNS)
            if handovers:
                await self.conn.copy_records_to_table(
                    "stage_handover", records=handovers, columns=HANDOVER_COLUMNS
                )
                await self.conn.execute(_MERGE_HANDOVER)
            if events:
                await self._add("outbox", "stage_outbox", _MERGE_OUTBOX, events, OUTBOX_COLUMNS)
            if rejections:
                await self._add(
                    "rejection", "stage_rejection", _MERGE_REJECTION, rejections, REJECTION_COLUMNS
                )

    async def _add(
        self, table: str, stage: str, merge: str, records: list[tuple], columns: tuple[str, ...]
    ) -> None:
        """Rows that only this campaign writes (each key once: duplicates are merged before)."""
        if self._fresh:
            await self.conn.copy_records_to_table(table, records=records, columns=columns)
        else:
            await self.conn.copy_records_to_table(stage, records=records, columns=columns)
            await self.conn.execute(merge)

    async def finish_campaign(self, campaign_id: str, summary: dict, final_events: list[tuple]) -> None:
        async with self.conn.transaction():
            if final_events:
                await self.conn.copy_records_to_table(
                    "stage_outbox", records=final_events, columns=OUTBOX_COLUMNS
                )
                await self.conn.execute(_MERGE_OUTBOX)
            await self.conn.execute(
                "UPDATE campaign SET status = 'done', finished_at = now(), summary = $2 WHERE campaign_id = $1",
                campaign_id,
                json.dumps(summary),
            )

    async def unpublished_up_to(self, event_ids: list[uuid.UUID]) -> int:
        return await self.conn.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND event_id = ANY($1)", event_ids
        )

    async def backlog(self) -> int:
        return await self.conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
