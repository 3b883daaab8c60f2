"""HTTP: upload a SIEI campaign file, read a campaign's status and its rejection report."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

from fastapi import APIRouter, File, HTTPException, Query, UploadFile

from ..config import ReperageSettings
from ..domain.siei import FileFormatError
from ..service_layer import campaigns
from ..service_layer.ingest import CampaignConflict, ingest_campaign
from ..service_layer.unit_of_work import AbstractReperageUnitOfWork


def campaign_router(
    unit_of_work: Callable[[], AbstractReperageUnitOfWork], settings: ReperageSettings
) -> APIRouter:
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
            try:
                summary = await ingest_campaign(
                    path,
                    campaign_id=campaign_id,
                    as_of=as_of,
                    unit_of_work=unit_of_work,
                    key=settings.key,
                    policy=settings.policy(),
                )
            except FileFormatError as error:
                raise HTTPException(422, detail=f"{file.filename}: {error}") from None
            except CampaignConflict as error:
                raise HTTPException(409, detail=str(error)) from None
        return summary.as_dict()

    @router.get("/{campaign_id}")
    async def campaign_status(campaign_id: str) -> dict:
        """Status (ingesting, done) and summary of a campaign."""
        found = await campaigns.status(unit_of_work(), campaign_id)
        if found is None:
            raise HTTPException(404, detail=f"no campaign {campaign_id}")
        return {
            "campaign_id": found.campaign_id,
            "as_of": found.as_of.isoformat(),
            "status": found.status,
            "started_at": found.started_at.isoformat() if found.started_at else None,
            "finished_at": found.finished_at.isoformat() if found.finished_at else None,
            "summary": found.summary,
        }

    @router.get("/{campaign_id}/rejections")
    async def rejection_report(
        campaign_id: str, limit: int = Query(1000, le=100_000), after_line: int = 0
    ) -> dict:
        """Rejected lines: line number, field and reason, never the value."""
        rejected = await campaigns.rejections(unit_of_work(), campaign_id, after_line=after_line, limit=limit)
        return {
            "campaign_id": campaign_id,
            "rejections": [{"line": r.line, "field": r.field, "reason": r.reason} for r in rejected],
        }

    return router
