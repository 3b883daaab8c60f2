"""FOQUALE's retention (raccrochage_platform.retention): a decided or expired reservation (a
refusal, an expiry, a placement) is anonymised once its period is over, as an erasure does
(adapters/privacy.py): it still counts in the seats' accounting."""

from __future__ import annotations

from datetime import datetime

from raccrochage_platform.privacy import ERASED
from raccrochage_platform.retention import RetentionRule, RetentionSettings, before
from sqlalchemy import and_, func, update

from .privacy import ANONYMISED
from .tables import reservation


def rules(settings: RetentionSettings) -> list[RetentionRule]:
    def due(now: datetime):
        ended = func.coalesce(reservation.c.decided_at, reservation.c.expires_at)
        return and_(
            reservation.c.state != "made",
            ended < before(now, settings.foquale_reservation_days),
            reservation.c.youth_id != ERASED,
        )

    async def anonymise(connection, reservation_ids) -> None:
        await connection.execute(
            update(reservation).where(reservation.c.reservation_id.in_(reservation_ids)).values(ANONYMISED)
        )

    return [RetentionRule("reservation", "anonymised", reservation, ("reservation_id",), due, anonymise)]
