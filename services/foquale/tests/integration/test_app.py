"""FOQUALE as the rig runs it: its own process on real NATS and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

from nats.aio.client import Client
from raccrochage_rig.testing.processes import ServiceProcess
from sqlalchemy.ext.asyncio import AsyncEngine

from .helpers import eventually, publish, publish_school_offer, seat_requested, stream_events


async def test_a_psad_request_becomes_a_reservation_on_the_foquale_stream(
    start_foquale: Callable[..., ServiceProcess], nc: Client, engine: AsyncEngine
) -> None:
    published = await publish_school_offer(engine, "app-bac-pro-accueil", capacity=2)
    start_foquale()
    request = seat_requested("app-1", wishes=("metiers-relation-client",))
    cause = await publish(nc, request, subject=str(request.case_id))

    async def made() -> list[dict]:
        return [
            e
            for e in await stream_events(nc, "FOQUALE", "foquale.reservation.made.v1")
            if e["data"]["request_id"] == str(request.request_id)
        ]

    [event] = await eventually(made, what="foquale.reservation.made.v1")
    assert event["data"]["offer_id"] == str(published.offer_id)
    assert event["data"]["seats_left"] == 1
    assert event["causationid"] == str(cause.id)
    assert event["correlationid"] == str(cause.correlationid)
    # The offer the school published went out too, through the same outbox.
    seats = await stream_events(nc, "FOQUALE", "foquale.seat.published.v1")
    assert [e["subject"] for e in seats] == [str(published.offer_id)]


async def test_a_request_for_an_unknown_departement_is_refused_no_seat(
    start_foquale: Callable[..., ServiceProcess], nc: Client, engine: AsyncEngine
) -> None:
    start_foquale()
    request = seat_requested("app-2", departement="64")
    await publish(nc, request, subject=str(request.case_id))

    async def refused() -> list[dict]:
        return [
            e
            for e in await stream_events(nc, "FOQUALE", "foquale.placement.refused.v1")
            if e["data"]["request_id"] == str(request.request_id)
        ]

    [event] = await eventually(refused, what="foquale.placement.refused.v1")
    assert event["data"]["refusal_code"] == "no_seat"
