"""A partner answers the reservations made at its UAIs through its feed, as a school does through
the API: the same placement events, and each record answered on its own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from nats.aio.client import Client
from raccrochage_rig.testing.processes import ServiceProcess
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .helpers import eventually, publish, publish_partner, seat_record, seat_requested, stream_events
from .test_partner_feed import feedback

WISH = "essai-placement"  # only this test's offer meets it: the session's other offers stay out


async def reservations_made(nc: Client, requests: list) -> dict[str, str] | None:
    """request id -> reservation id, once each request has its reservation."""
    made = await stream_events(nc, "FOQUALE", "foquale.reservation.made.v1")
    wanted = {str(r.request_id) for r in requests}
    found = {
        e["data"]["request_id"]: e["data"]["reservation_id"]
        for e in made
        if e["data"]["request_id"] in wanted
    }
    return found if len(found) == len(wanted) else None


async def ask_pending(nc: Client, partner_id: str, body: dict) -> dict:
    """A partner's request for the reservations waiting for its answer, with a reply subject in
    its inbox (the rig's user here; the partners' own users are tested in test_feedback_replay)."""
    reply = f"_INBOX.partner_{partner_id}.{uuid.uuid4().hex}"
    subscription = await nc.subscribe(reply, max_msgs=1)
    await nc.publish(f"partner.{partner_id}.reservations.pending.v1", json.dumps(body).encode(), reply=reply)
    return json.loads((await subscription.next_msg(timeout=10)).data)


async def test_a_partner_confirms_and_refuses_reservations_at_its_uais(
    start_foquale: Callable[..., ServiceProcess], nc: Client, engine: AsyncEngine
) -> None:
    start_foquale()
    offer = await publish_partner(nc, "cfa-gironde", "published", seat_record("PL-1", keywords=[WISH]))

    async def offer_accepted() -> bool:
        answer = (await feedback(nc, "cfa-gironde")).get(offer["id"])
        return answer is not None and answer["data"]["outcome"] == "accepted"

    await eventually(offer_accepted, what="the offer published")
    requests = [seat_requested(f"placement-{n}", wishes=(WISH,)) for n in range(3)]
    for request in requests:
        await publish(nc, request, subject=str(request.case_id))
    made = await eventually(lambda: reservations_made(nc, requests), what="three reservations")
    confirmed, refused, pending = (made[str(r.request_id)] for r in requests)
    waiting = await ask_pending(nc, "cfa-gironde", {"limit": 500})
    assert waiting["status"] == "ok" and waiting["pending"]["type"] == "partner.reservations.pending.v1"
    listed = {r["reservation_id"]: r for r in waiting["pending"]["data"]["reservations"]}
    assert {confirmed, refused, pending} <= set(listed)
    assert set(listed[pending]) == {"reservation_id", "offer_id", "uai", "youth_id", "made_at", "expires_at"}
    landes = (await ask_pending(nc, "agri-landes", {}))["pending"]["data"]["reservations"]
    assert not {confirmed, refused, pending} & {r["reservation_id"] for r in landes}
    assert (await ask_pending(nc, "cfa-gironde", {"limit": 0}))["status"] == "rejected"

    async def answer(verb: str, partner_id: str = "cfa-gironde", **data: str) -> dict:
        return await publish_partner(nc, partner_id, verb, data)

    sent = {
        "confirm": await answer("placement_confirmed", reservation_id=confirmed, starts_on="2027-01-11"),
        "refuse": await answer("placement_refused", reservation_id=refused, reason="youth_declined"),
        "again": await answer("placement_confirmed", reservation_id=confirmed, starts_on="2027-01-11"),
        "other": await answer("placement_refused", reservation_id=pending, reason="other"),
        "unknown": await answer("placement_confirmed", reservation_id=str(uuid.uuid4())),
        "not_a_uuid": await answer("placement_confirmed", reservation_id="RES-42"),
        "foreign": await answer("placement_confirmed", "agri-landes", reservation_id=pending),
    }

    async def answered() -> dict[str, dict] | None:
        answers = {**await feedback(nc, "cfa-gironde"), **await feedback(nc, "agri-landes")}
        wanted = [offer["id"], *(e["id"] for e in sent.values())]
        return answers if set(wanted) <= set(answers) else None

    answers = await eventually(answered, what="an answer to every record")
    data = {name: answers[e["id"]]["data"] for name, e in sent.items()}
    assert [(data[n]["outcome"], data[n]["partner_key"]) for n in ("confirm", "refuse", "again")] == [
        ("accepted", confirmed),
        ("accepted", refused),
        ("unchanged", confirmed),
    ]
    assert data["confirm"]["offer_id"] == answers[offer["id"]]["data"]["offer_id"]
    assert data["confirm"]["record_type"] == "partner.seats.placement_confirmed.v1"
    problems = {name: [(p["field"], data[name]["outcome"]) for p in data[name]["problems"]] for name in data}
    assert problems["other"] == [("reason", "rejected")]  # `other` needs a comment: the API's
    assert problems["unknown"] == [("reservation_id", "rejected")]
    assert problems["not_a_uuid"] == [("reservation_id", "rejected")]
    assert data["not_a_uuid"]["partner_key"] == "RES-42"
    assert problems["foreign"] == [("uai", "rejected")]  # not a UAI agri-landes is registered for

    # The placement events are the ones the establishment API produces, once each.
    placed = await stream_events(nc, "FOQUALE", "foquale.placement.confirmed.v1")
    assert [(e["data"]["reservation_id"], e["data"]["starts_on"]) for e in placed] == [
        (confirmed, "2027-01-11")
    ]
    refusals = [
        e
        for e in await stream_events(nc, "FOQUALE", "foquale.placement.refused.v1")
        if e["data"]["request_id"] == str(requests[1].request_id)
    ]
    assert [e["data"]["refusal_code"] for e in refusals] == ["youth_declined"]
    async with engine.connect() as conn:
        states = dict(
            (
                await conn.execute(
                    text(
                        "SELECT reservation_id::text, state FROM reservation WHERE reservation_id::text = ANY(:ids)"
                    ),
                    {"ids": [confirmed, refused, pending]},
                )
            ).all()
        )
        kept = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM partner_feedback WHERE partner_id = 'cfa-gironde' AND event_id = ANY(:ids)"
                ),
                {
                    "ids": [
                        uuid.UUID(answers[e["id"]]["id"])
                        for e in sent.values()
                        if e["source"].endswith("gironde")
                    ]
                },
            )
        ).scalar_one()
    assert states == {confirmed: "confirmed", refused: "refused", pending: "made"}
    assert kept == len(sent) - 1  # each answer kept for the partner to read again
    still = (await ask_pending(nc, "cfa-gironde", {"limit": 500}))["pending"]["data"]["reservations"]
    assert {r["reservation_id"] for r in still} & {confirmed, refused, pending} == {pending}
