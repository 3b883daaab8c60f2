"""PSAD's retention (raccrochage_platform.retention): a closed case is anonymised once its period
is over. It keeps its coded facts (territory, age at opening, attempts, interviews, solutions)
for the counts; its youth_id becomes `erased`."""

from __future__ import annotations

from datetime import datetime

from raccrochage_platform.privacy import ERASED
from raccrochage_platform.retention import RetentionRule, RetentionSettings, before
from sqlalchemy import and_, update

from .tables import case


def rules(settings: RetentionSettings) -> list[RetentionRule]:
    def due(now: datetime):
        return and_(
            case.c.status == "closed",
            case.c.status_since < before(now, settings.psad_closed_case_days),
            case.c.youth_id != ERASED,
        )

    async def anonymise(connection, case_ids) -> None:
        await connection.execute(update(case).where(case.c.case_id.in_(case_ids)).values(youth_id=ERASED))

    return [RetentionRule("case_file", "anonymised", case, ("case_id",), due, anonymise)]
