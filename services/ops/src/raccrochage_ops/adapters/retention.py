"""Ops' retention (raccrochage_platform.retention): a youth's funnel row, its case closed, moves
to a key of its own once its period is over, and an exited candidacy loses its youth_id, as an
erasure does (adapters/privacy.py): every figure keeps counting them."""

from __future__ import annotations

from datetime import datetime

from raccrochage_platform.privacy import ERASED
from raccrochage_platform.retention import RetentionRule, RetentionSettings, before
from sqlalchemy import and_, update

from .privacy import candidacy, erased_key
from .tables import youth


def rules(settings: RetentionSettings) -> list[RetentionRule]:
    def youth_due(now: datetime):
        return and_(
            youth.c.closed_at < before(now, settings.ops_youth_days),
            youth.c.youth_id.not_like(ERASED + "-%"),
        )

    async def move_youths(connection, youth_ids) -> None:
        await connection.execute(
            update(youth).where(youth.c.youth_id.in_(youth_ids)).values(youth_id=erased_key())
        )

    def candidacy_due(now: datetime):
        return and_(
            candidacy.c.exited_on < before(now, settings.ops_youth_days).date(),
            candidacy.c.youth_id.is_not(None),
        )

    async def clear_candidacies(connection, candidacy_ids) -> None:
        await connection.execute(
            update(candidacy).where(candidacy.c.candidacy_id.in_(candidacy_ids)).values(youth_id=None)
        )

    return [
        RetentionRule("youth", "anonymised", youth, ("youth_id",), youth_due, move_youths),
        RetentionRule(
            "candidacy", "anonymised", candidacy, ("candidacy_id",), candidacy_due, clear_candidacies
        ),
    ]
