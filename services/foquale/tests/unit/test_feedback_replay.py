"""A partner's request for its last answers: its own, to its own inbox only."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from raccrochage_contracts import new_event
from raccrochage_contracts.events import partner_seats_v1 as partner
from raccrochage_foquale.domain.offer import Offer
from raccrochage_foquale.domain.offer_types import Owner, Source
from raccrochage_foquale.domain.owners import Actor
from raccrochage_foquale.domain.reservation import Reservation
from raccrochage_foquale.entrypoints.feedback_replay import replay
from raccrochage_foquale.entrypoints.pending_reservations import pending
from raccrochage_foquale.service_layer.commands import PruneFeedback
from raccrochage_foquale.service_layer.handlers import prune_feedback

from .builders import T0, UAI_A, UAI_LANDES, days, description, seat_request
from .fakes import FakeFoqualeUnitOfWork


def answer(key: str) -> partner.SeatsFeedback:
    return partner.SeatsFeedback(
        partner_key=key, record_type="partner.seats.published.v1", outcome="accepted"
    )


async def answers_kept() -> FakeFoqualeUnitOfWork:
    """Gironde's three answers and Landes' one, kept in this order."""
    uow = FakeFoqualeUnitOfWork()
    for who, key in [
        ("cfa-gironde", "A1"),
        ("agri-landes", "B1"),
        ("cfa-gironde", "A2"),
        ("cfa-gironde", "A3"),
    ]:
        await uow.feedback.add(
            who, new_event(answer(key), source="raccrochage/foquale", subject=f"partner/{who}")
        )
    return uow


async def test_a_partner_gets_its_last_answers_oldest_first_and_no_one_elses() -> None:
    uow = await answers_kept()

    async def ask(who: str, body: dict | None = None, reply: str | None = None) -> dict | None:
        subject = f"partner.{who}.feedback.replay.v1"
        raw = json.dumps(body).encode() if body is not None else b""
        return await replay(lambda: uow, subject, reply or f"_INBOX.partner_{who}.x1", raw)

    mine = await ask("cfa-gironde")
    assert mine["status"] == "ok" and mine["partner_id"] == "cfa-gironde"
    assert [e["data"]["partner_key"] for e in mine["feedback"]] == ["A1", "A2", "A3"]
    assert [e["data"]["partner_key"] for e in (await ask("cfa-gironde", {"last": 2}))["feedback"]] == [
        "A2",
        "A3",
    ]
    assert [e["data"]["partner_key"] for e in (await ask("agri-landes"))["feedback"]] == ["B1"]
    assert (await ask("ml-bordeaux"))["feedback"] == []
    wrong = await ask("cfa-gironde", {"last": 0, "since": "yesterday"})
    assert wrong["status"] == "rejected" and sorted(e["field"] for e in wrong["errors"]) == ["last", "since"]
    # an answer goes to the asking partner's own inbox, never elsewhere
    assert await ask("cfa-gironde", reply="_INBOX.partner_agri-landes.x1") is None
    assert await ask("cfa-gironde", reply="_INBOX.partner_cfa-gironde-2.x1") is None
    assert await ask("cfa-gironde", reply="_INBOX.x1") is None


async def test_pruning_keeps_what_the_replay_returns() -> None:
    uow = await answers_kept()
    assert await prune_feedback(PruneFeedback(keep=1, limit=500), uow) == 2
    kept = {
        who: [e["data"]["partner_key"] for e in await uow.feedback.latest(who, 10)]
        for who in ("cfa-gironde", "agri-landes")
    }
    assert kept == {"cfa-gironde": ["A3"], "agri-landes": ["B1"]}
    assert await prune_feedback(PruneFeedback(keep=1, limit=500), uow) == 0


async def test_a_partner_lists_the_reservations_waiting_for_its_answer_at_its_uais_only() -> None:
    uow = FakeFoqualeUnitOfWork()
    gironde = Offer.publish(
        uuid.uuid4(), description(UAI_A), Source.PARTNER_FEED, Owner.partner("cfa-gironde"), T0
    )
    landes = Offer.publish(
        uuid.uuid4(),
        description(UAI_LANDES, departement="40"),
        Source.PARTNER_FEED,
        Owner.partner("agri-landes"),
        T0,
    )

    def reservation(offer: Offer, n: int) -> Reservation:
        request = seat_request(n)
        return Reservation.make(
            request.request_id, request.case_id, request.youth_id, offer, 2, T0 + days(n / 24)
        )

    made = [reservation(gironde, n) for n in range(3)]
    made.append(reservation(landes, 9))
    made[1].confirm(T0 + days(1))
    for reservation in made:
        await uow.reservations.add(reservation)
    partners = {
        "cfa-gironde": Actor.partner("cfa-gironde", {UAI_A}),
        "agri-landes": Actor.partner("agri-landes", {UAI_LANDES}),
    }

    async def ask(who: str, body: dict, reply: str | None = None, at: datetime | None = None) -> dict | None:
        subject = f"partner.{who}.reservations.pending.v1"
        return await pending(
            lambda: uow,
            partners,
            subject,
            reply or f"_INBOX.partner_{who}.y",
            json.dumps(body).encode(),
            at or T0 + days(2),
        )

    answer = await ask("cfa-gironde", {"limit": 1})
    assert answer["status"] == "ok" and answer["pending"]["type"] == "partner.reservations.pending.v1"
    data = answer["pending"]["data"]
    assert [r["reservation_id"] for r in data["reservations"]] == [str(made[0].reservation_id)]
    assert data["more"] is True
    every = (await ask("cfa-gironde", {}))["pending"]["data"]
    assert [r["reservation_id"] for r in every["reservations"]] == [
        str(made[0].reservation_id),
        str(made[2].reservation_id),
    ]
    assert every["more"] is False
    assert (await ask("cfa-gironde", {}, at=T0 + days(30)))["pending"]["data"]["reservations"] == []
    landes_ids = [
        r["reservation_id"] for r in (await ask("agri-landes", {}))["pending"]["data"]["reservations"]
    ]
    assert landes_ids == [str(made[3].reservation_id)]
    assert (await ask("ml-bordeaux", {}))["pending"]["data"]["reservations"] == []  # publishes no seats
    assert (await ask("cfa-gironde", {"limit": 501}))["status"] == "rejected"
    assert await ask("cfa-gironde", {}, reply="_INBOX.partner_agri-landes.y") is None
