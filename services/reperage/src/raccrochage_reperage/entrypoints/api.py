"""HTTP: upload a SIEI campaign file, read a campaign's status and its rejection report.

Every route takes a bearer token (raccrochage_platform.auth). A campaign spans every territory of
the académie, so its routes are for a campaign manager (no territory); an ops token reads a
campaign's counts; a counsellor's token, bound to one territory, reaches none of them (403).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, Query, UploadFile
from fastapi import Path as PathParam
from raccrochage_platform.auth import Principal, Role, caller, error_responses

from ..config import ReperageSettings
from ..domain.siei import FileFormatError
from ..service_layer import campaigns
from ..service_layer.ingest import CampaignConflict, ingest_campaign
from ..service_layer.unit_of_work import AbstractReperageUnitOfWork

CampaignId = Annotated[
    str,
    PathParam(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="the campaign's id (letters, digits, '.', '_', '-'), e.g. 2026-11",
    ),
]
# PostgreSQL's integer: a line number beyond it names no line of any file.
MAX_LINE = 2**31 - 1


def campaign_router(
    unit_of_work: Callable[[], AbstractReperageUnitOfWork], settings: ReperageSettings
) -> APIRouter:
    router = APIRouter(prefix="/campaigns", tags=["campaigns"])
    manager = Depends(caller(settings.token_key, Role.CAMPAIGN_MANAGER))
    manager_or_ops = Depends(caller(settings.token_key, Role.CAMPAIGN_MANAGER, Role.OPS))

    @router.post(
        "/{campaign_id}/siei",
        summary="Ingest a campaign file (campaign manager)",
        responses=error_responses(400, 401, 403, 409, 422),
    )
    async def upload_siei(
        campaign_id: CampaignId,
        as_of: date = Query(description="the campaign's reference date (YYYY-MM-DD)"),
        file: UploadFile = File(description="the SIEI campaign file (CSV, ; or ,)"),
        principal: Principal = manager,
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

    @router.get(
        "/{campaign_id}",
        summary="A campaign's status and counts (campaign manager, ops)",
        responses=error_responses(401, 403, 404, 422),
    )
    async def campaign_status(campaign_id: CampaignId, principal: Principal = manager_or_ops) -> dict:
        """Status (ingesting, done), whether an ingest stalled (died: no chunk committed for
        REPERAGE_INGEST_STALL_SECONDS), and summary of a campaign: counts, nothing personal."""
        found = await campaigns.status(unit_of_work(), campaign_id)
        if found is None:
            raise HTTPException(404, detail=f"no campaign {campaign_id}")
        stalled = found.stalled(datetime.now(UTC), settings.ingest_stall_seconds)
        return {
            "campaign_id": found.campaign_id,
            "as_of": found.as_of.isoformat(),
            "status": found.status,
            "started_at": found.started_at.isoformat() if found.started_at else None,
            "finished_at": found.finished_at.isoformat() if found.finished_at else None,
            "progressed_at": found.progressed_at.isoformat() if found.progressed_at else None,
            "stalled": stalled,
            # what to do: the same file under the same id resumes where the dead ingest stopped
            "retry": campaigns.RETRY_STALLED if stalled else None,
            "summary": found.summary,
        }

    @router.get(
        "/{campaign_id}/rejections",
        summary="A campaign's rejected lines (campaign manager)",
        responses=error_responses(401, 403, 422),
    )
    async def rejection_report(
        campaign_id: CampaignId,
        limit: Annotated[int, Query(ge=1, le=100_000, description="lines per page")] = 1000,
        after_line: Annotated[
            int, Query(ge=0, le=MAX_LINE, description="the last line of the previous page")
        ] = 0,
        principal: Principal = manager,
    ) -> dict:
        """Rejected lines: line number, field and reason, never the value."""
        rejected = await campaigns.rejections(unit_of_work(), campaign_id, after_line=after_line, limit=limit)
        return {
            "campaign_id": campaign_id,
            "rejections": [{"line": r.line, "field": r.field, "reason": r.reason} for r in rejected],
        }

    return router
