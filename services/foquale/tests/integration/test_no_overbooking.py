"""No overbooking: 1,000 PSAD requests at once on an offer of 100 seats, through NATS, handled by
two FOQUALE processes on one PostgreSQL: exactly 100 reservations and 900 clear refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nats.aio.client import Client
from raccrochage_contracts import nats_subject, new_event
from raccrochage_foquale.domain.uai import Uai
from raccrochage_rig.testing.processes import ServiceProcess
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .helpers import eventually, publish_school_offer, seat_requested, stream_events

REQUESTS = 1_000
SEATS = 100
LOT_ET_GARONNE = Uai("0470012H")  # a département no other test publishes in


async def test_a_thousand_requests_on_a_hundred_seats_make_exactly_a_hundred_reservations(
    start_foquale: Callable[..., ServiceProcess], nc: Client, engine: AsyncEngine
) -> None:
    offer = await publish_school_offer(
        engine, "rush-100", uai=LOT_ET_GARONNE, capacity=SEATS, departement="47", zap=None
    )
    start_foquale(tag="a")
    start_foquale(tag="b")
    js = nc.jetstream()
    requests = [seat_requested(f"rush-{n}", departement="47") for n in range(REQUESTS)]
    acks = []
    for request in requests:  # published at once, acks awaited together: the consumers see a burst
        event = new_event(request, source="raccrochage/psad", subject=str(request.case_id))
        acks.append(
            js.publish(nats_subject(event.type), event.to_json(), headers={"Nats-Msg-Id": str(event.id)})
        )
    await asyncio.gather(*acks)
    wanted = {str(r.request_id) for r in requests}

    async def answers() -> dict[str, list[dict]] | None:
        made = [
            e
            for e in await stream_events(nc, "FOQUALE", "foquale.reservation.made.v1")
            if e["data"]["request_id"] in wanted
        ]
        refused = [
            e
            for e in await stream_events(nc, "FOQUALE", "foquale.placement.refused.v1")
            if e["data"]["request_id"] in wanted
        ]
        return {"made": made, "refused": refused} if len(made) + len(refused) >= REQUESTS else None

    got = await eventually(answers, timeout=240, what=f"{REQUESTS} answers")
    assert len(got["made"]) == SEATS
    assert len(got["refused"]) == REQUESTS - SEATS
    # One answer per request, and every refusal says why, with what was near.
    assert {e["data"]["request_id"] for e in got["made"] + got["refused"]} == wanted
    assert {e["data"]["refusal_code"] for e in got["refused"]} == {"no_seat"}
    # (How many offers looked full depends on when each request searched: counted, not asserted.)
    assert all(e["data"]["alternatives"] is not None for e in got["refused"])
    assert {e["data"]["offer_id"] for e in got["made"]} == {str(offer.offer_id)}
    assert sorted(e["data"]["seats_left"] for e in got["made"]) == list(range(SEATS))
    async with engine.connect() as conn:
        reserved, placed, capacity = (
            await conn.execute(
                text("SELECT reserved, placed, capacity FROM offer WHERE offer_id = :id"),
                {"id": offer.offer_id},
            )
        ).one()
        rows = (
            await conn.execute(
                text("SELECT count(*) FROM reservation WHERE offer_id = :id"), {"id": offer.offer_id}
            )
        ).scalar_one()
    assert (reserved, placed, capacity, rows) == (SEATS, 0, SEATS, SEATS)
