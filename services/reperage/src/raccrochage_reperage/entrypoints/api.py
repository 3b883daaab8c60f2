"""HTTP: upload a SIEI campaign file, read a campaign's status and its rejection report."""

from __future__ import annotations

import shutil
import tempfile
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, File, HTTPException, Query, UploadFile
from raccrochage_platform.db import libpq_dsn
from sqlalchemy import select

from ..adapters.campaign_store import CampaignStore
from ..adapters.tables import campaign, rejection
from ..domain.siei import FileFormatError
from ..service_layer.ingest import CampaignConflict, ingest_campaign

if TYPE_CHECKING:
    from raccrochage_platform.service import ServiceContext

    from ..config import ReperageSettings


def campaign_router(context: ServiceContext, settings: ReperageSettings) -> APIRouter:
    router = APIRouter(prefix="/campaigns", tags=["campaigns"])

    @router.post("/{campaign_id}/siei")
    async def upload_siei(
        campaign_id: str,
        as_of: date = Query(description="the campaign's reference date (YYYY-MM-DD)"),
        file: UploadFile = File(description="the SIEI campaign file (CSV, ; or ,)"),
    ) -> dict:
        """Ingest a campaign file; answers the summary (same as `raccrochage ingest siei --json`)."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "siei.csv"
            with open(path, "wb") as out:
                shutil.copyfileobj(file.file, out, 1 << 20)
            store = await CampaignStore.connect(libpq_dsn(settings.database_url))
            try:
                summary = await ingest_campaign(
                    path,
                    campaign_id=campaign_id,
                    as_of=as_of,
                    store=store,
                    outbox=context.outbox,
                    key=settings.key,
                    policy=settings.policy(),
                )
            except FileFormatError as error:
                raise HTTPException(422, detail=f"{file.filename}: {error}") from None
            except CampaignConflict as error:
                raise HTTPException(409, detail=str(error)) from None
            finally:
                await store.close()
        return summary.as_dict()

    @router.get("/{campaign_id}")
    async def campaign_status(campaign_id: str) -> dict:
        """Status (ingesting, done) and summary of a campaign."""
        async with context.sessions() as session:
            row = (
                await session.execute(select(campaign).where(campaign.c.campaign_id == campaign_id))
            ).first()
        if row is None:
            raise HTTPException(404, detail=f"no campaign {campaign_id}")
        return {
            "campaign_id": row.campaign_id,
            "as_of": row.as_of.isoformat(),
            "status": row.status,
            "started_at": row.started_at.isoformat(),
            "finished_at": row.finished_at.isoformat() if row.finished_at else None,
            "summary": row.summary,
        }

    @router.get("/{campaign_id}/rejections")
    async def rejection_report(
        campaign_id: str, limit: int = Query(1000, le=100_000), after_line: int = 0
    ) -> dict:
        """Rejected lines: line number, field and reason, never the value."""
        async with context.sessions() as session:
            rows = (
                await session.execute(
                    select(rejection.c.line, rejection.c.field, rejection.c.reason)
                    .where(rejection.c.campaign_id == campaign_id, rejection.c.line > after_line)
                    .order_by(rejection.c.line)
                    .limit(limit)
                )
            ).all()
        return {
            "campaign_id": campaign_id,
            "rejections": [{"line": r.line, "field": r.field, "reason": r.reason} for r in rows],
        }

    return router
