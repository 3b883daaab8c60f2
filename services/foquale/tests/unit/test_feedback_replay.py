"""A partner's request for its last answers: its own, to its own inbox only."""

from __future__ import annotations

import json

from raccrochage_contracts import new_event
from raccrochage_contracts.events import partner_seats_v1 as partner
from raccrochage_foquale.entrypoints.feedback_replay import replay
from raccrochage_foquale.service_layer.commands import PruneFeedback
from raccrochage_foquale.service_layer.handlers import prune_feedback

from .fakes import FakeFoqualeUnitOfWork


def answer(key: str) -> partner.SeatsFeedback:
    return partner.SeatsFeedback(
        partner_key=key, record_type="partner.seats.published.v1", outcome="accepted"
    )


async def test_a_partner_gets_its_last_answers_oldest_first_and_no_one_elses() -> None:
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
    assert await prune_feedback(PruneFeedback(keep=1, limit=500), uow) == 2
    kept = {
        who: [e["data"]["partner_key"] for e in await uow.feedback.latest(who, 10)]
        for who in ("cfa-gironde", "agri-landes")
    }
    assert kept == {"cfa-gironde": ["A3"], "agri-landes": ["B1"]}
    assert await prune_feedback(PruneFeedback(keep=1, limit=500), uow) == 0
