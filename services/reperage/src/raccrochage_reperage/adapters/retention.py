"""Repérage's retention (raccrochage_platform.retention).

- An identity leaves the vault, with what the vault holds under it (campaign outcomes, handover,
  partner enrolments; the contact-card audit rows stay, naming no youth), as an erasure does
  (SqlVaultRepository.erase_held), once either:
  - the youth is past the age limit (the 25th birthday + 2 years), or
  - nothing has kept them for the period: no handover open or ended within it (case closed,
    youth found), no campaign started within it that listed them, no change to the identity.
- A rejected SIEI line (line, field, reason: never a value) goes once its campaign started
  longer ago than its period.
"""

from __future__ import annotations

from datetime import datetime

from raccrochage_platform.retention import RetentionRule, RetentionSettings, before, years_before
from sqlalchemy import and_, delete, exists, func, or_, select, tuple_

from .repositories import SqlVaultRepository
from .tables import campaign, campaign_youth, handover, rejection, youth


def rules(settings: RetentionSettings) -> list[RetentionRule]:
    def identity_due(now: datetime):
        since = before(now, settings.vault_identity_days)
        kept_by_handover = exists().where(
            handover.c.youth_id == youth.c.youth_id,
            or_(
                handover.c.open,
                func.coalesce(handover.c.closed_at, handover.c.found_at, handover.c.handed_at) >= since,
            ),
        )
        listed_lately = exists().where(
            campaign_youth.c.youth_id == youth.c.youth_id,
            campaign.c.campaign_id == campaign_youth.c.campaign_id,
            campaign.c.started_at >= since,
        )
        return or_(
            youth.c.date_naissance < years_before(now, settings.vault_age_limit_years),
            and_(youth.c.updated_at < since, ~kept_by_handover, ~listed_lately),
        )

    async def erase_identities(connection, youth_ids) -> None:
        vault = SqlVaultRepository(connection)
        for youth_id in youth_ids:
            await vault.erase_held(youth_id, await vault.get(youth_id))

    def rejection_due(now: datetime):
        old = select(campaign.c.campaign_id).where(
            campaign.c.started_at < before(now, settings.siei_rejection_days)
        )
        return rejection.c.campaign_id.in_(old)

    async def delete_rejections(connection, lines) -> None:
        await connection.execute(
            delete(rejection).where(tuple_(rejection.c.campaign_id, rejection.c.line).in_(lines))
        )

    return [
        RetentionRule("identity", "deleted", youth, ("youth_id",), identity_due, erase_identities),
        RetentionRule(
            "rejection", "deleted", rejection, ("campaign_id", "line"), rejection_due, delete_rejections
        ),
    ]
