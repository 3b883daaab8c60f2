"""Reading campaigns: their status and summary, their rejection report."""

from __future__ import annotations

from .unit_of_work import AbstractReperageUnitOfWork, CampaignRecord, RejectedLine

RETRY_STALLED = (
    "its ingest stopped: send the same file again under the same campaign id (POST "
    "/campaigns/{id}/siei or raccrochage ingest siei); lines already stored are kept, and it resumes"
)


async def stalled(uow: AbstractReperageUnitOfWork, after_seconds: float) -> list[str]:
    """Campaigns still ingesting with no chunk committed for `after_seconds` (their ingest died)."""
    async with uow:
        return await uow.campaigns.stalled(after_seconds)


async def status(uow: AbstractReperageUnitOfWork, campaign_id: str) -> CampaignRecord | None:
    async with uow:
        return await uow.campaigns.get(campaign_id)


async def rejections(
    uow: AbstractReperageUnitOfWork, campaign_id: str, *, after_line: int = 0, limit: int = 1000
) -> list[RejectedLine]:
    """Rejected lines after `after_line`, in line order: line, field and reason, never the value."""
    async with uow:
        return await uow.campaigns.rejections(campaign_id, after_line, limit)
