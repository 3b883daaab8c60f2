"""FOQUALE's retention (adapters/retention.py) on real PostgreSQL with a frozen clock: a refused
reservation and a placement are anonymised the day after their period, not the day before; a
reservation still waiting for its answer is never; the seats' accounting does not move."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from raccrochage_foquale.adapters.repository import SqlReservationRepository
from raccrochage_foquale.adapters.retention import rules
from raccrochage_foquale.domain.refusals import Refusal
from raccrochage_foquale.domain.reservation import Reservation
from raccrochage_platform.retention import RetentionSettings, apply_retention
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .test_repositories import add, make_offer

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Earlier than any other test's reservations: only this test's are ever due.
MADE = datetime(2019, 5, 2, 8, tzinfo=UTC)
DECIDED = MADE + timedelta(days=1)


def reservation(offer, name: str) -> Reservation:
    return Reservation.make(
        uuid.uuid4(), uuid.uuid4(), hashlib.sha256(name.encode()).hexdigest(), offer, 2, MADE
    )


async def test_decided_reservations_are_anonymised_after_their_period_and_keep_their_seats(
    engine: AsyncEngine,
) -> None:
    settings = RetentionSettings()
    offer = make_offer(capacity=5, at=MADE)
    await add(engine, offer)
    refused, placed, waiting = (reservation(offer, f"{name}-{uuid.uuid4()}") for name in "rpw")
    refused.refuse(Refusal("other", "Léa Martin n'a pas le niveau"), DECIDED)
    placed.confirm(DECIDED)
    async with engine.begin() as conn:
        await SqlReservationRepository(conn).add_all([refused, placed, waiting])
        await conn.execute(
            text("UPDATE offer SET reserved = 1, placed = 1 WHERE offer_id = :o"), {"o": offer.offer_id}
        )

    async def held() -> tuple:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT state, youth_id, refusal_reason, refusal_comment FROM reservation "
                    "WHERE offer_id = :o ORDER BY state"
                ),
                {"o": offer.offer_id},
            )
            seats = await conn.execute(
                text("SELECT reserved, placed FROM offer WHERE offer_id = :o"), {"o": offer.offer_id}
            )
            return [tuple(row) for row in rows], tuple(seats.one())

    before = await held()
    period = timedelta(days=settings.foquale_reservation_days)
    counts = await apply_retention(engine, "foquale", rules(settings), DECIDED + period - timedelta(days=1))
    assert counts == {"reservation": 0} and await held() == before

    counts = await apply_retention(engine, "foquale", rules(settings), DECIDED + period + timedelta(days=1))
    assert counts == {"reservation": 2}
    rows, seats = await held()
    assert rows == [
        ("confirmed", "erased", None, None),
        ("made", waiting.youth_id, None, None),
        ("refused", "erased", "other", "erased"),
    ]
    assert seats == before[1] == (1, 1)
