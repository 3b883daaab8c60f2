"""Reading campaigns: their status and summary, their rejection report."""

from __future__ import annotations

from .unit_of_work import AbstractReperageUnitOfWork, CampaignRecord, RejectedLine


async def status(uow: AbstractReperageUnitOfWork, campaign_id: str) -> CampaignRecord | None:
    async with uow:
        return await uow.campaigns.get(campaign_id)


async def rejections(
    uow: AbstractReperageUnitOfWork, campaign_id: str, *, after_line: int = 0, limit: int = 1000
) -> list[RejectedLine]:
    """Rejected lines after `after_line`, in line order: line, field and reason, never the value."""
    async with uow:
        return await uow.campaigns.rejections(campaign_id, after_line, limit)
