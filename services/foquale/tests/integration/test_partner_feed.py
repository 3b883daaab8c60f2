"""Partners' seat records through the running service: each applied alone and answered."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from nats.aio.client import Client
from raccrochage_rig.testing.processes import ServiceProcess
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .helpers import eventually, publish_partner, seat_record, stream_events


async def feedback(nc: Client, partner_id: str) -> dict[str, dict]:
    """The partner's answers, by the record's event id."""
    events = await stream_events(nc, "PARTNER", f"partner.{partner_id}.seats.feedback.v1")
    return {e["data"]["record_event_id"]: e for e in events}


async def test_each_record_is_answered_alone_and_bad_ones_never_block_good_ones(
    start_foquale: Callable[..., ServiceProcess], nc: Client, engine: AsyncEngine
) -> None:
    start_foquale()
    good = await publish_partner(nc, "cfa-gironde", "published", seat_record("CFA-1"))
    wrong_letter = await publish_partner(nc, "cfa-gironde", "published", seat_record("CFA-2", uai="0331012A"))
    not_its_uai = await publish_partner(nc, "cfa-gironde", "published", seat_record("CFA-3", uai="0400345H"))
    off_contract = await publish_partner(nc, "cfa-gironde", "published", seat_record("CFA-4", capacity=-1))
    unknown_key = await publish_partner(nc, "cfa-gironde", "confirmed", {"partner_key": "CFA-404"})
    also_good = await publish_partner(nc, "cfa-gironde", "published", seat_record("CFA-5", capacity=2))
    sent = [good, wrong_letter, not_its_uai, off_contract, unknown_key, also_good]

    async def all_answered() -> dict[str, dict] | None:
        answers = await feedback(nc, "cfa-gironde")
        return answers if len(answers) == len(sent) else None

    answers = await eventually(all_answered, what="feedback on every record")
    data = {e["id"]: answers[e["id"]]["data"] for e in sent}
    assert data[good["id"]]["outcome"] == "accepted"
    assert data[also_good["id"]]["outcome"] == "accepted"
    assert data[wrong_letter["id"]]["outcome"] == "rejected"
    assert data[wrong_letter["id"]]["problems"][0]["field"] == "uai"
    assert "is W, not A" in data[wrong_letter["id"]]["problems"][0]["reason"]  # names the right letter
    assert data[not_its_uai["id"]]["problems"][0]["field"] == "uai"
    assert [p["field"] for p in data[off_contract["id"]]["problems"]] == ["capacity"]
    assert data[off_contract["id"]]["partner_key"] == "CFA-4"
    assert data[unknown_key["id"]]["problems"][0]["field"] == "partner_key"
    for event in answers.values():  # FOQUALE's answer, on the partner's own subjects
        assert event["source"] == "raccrochage/foquale"
        assert event["type"] == "partner.seats.feedback.v1"
    async with engine.connect() as conn:
        offers = (
            (
                await conn.execute(
                    text("SELECT capacity FROM offer WHERE owner_id = 'cfa-gironde' ORDER BY capacity")
                )
            )
            .scalars()
            .all()
        )
    assert offers == [2, 4]


async def test_the_same_record_twice_changes_nothing(
    start_foquale: Callable[..., ServiceProcess], nc: Client, engine: AsyncEngine
) -> None:
    start_foquale()
    record = seat_record("RECT-1", uai="0240012H", departement="24")
    first = await publish_partner(nc, "en-rectorat", "published", record)
    again = await publish_partner(nc, "en-rectorat", "published", record)
    # The very same message delivered again (same envelope id) is one record with one answer.
    await publish_partner(nc, "en-rectorat", "published", record, event_id=uuid.UUID(again["id"]))

    async def answered() -> dict[str, dict] | None:
        answers = await feedback(nc, "en-rectorat")
        return answers if {first["id"], again["id"]} <= set(answers) else None

    answers = await eventually(answered, what="both answers")
    assert answers[first["id"]]["data"]["outcome"] == "accepted"
    assert answers[again["id"]]["data"]["outcome"] == "unchanged"
    assert answers[again["id"]]["data"]["offer_id"] == answers[first["id"]]["data"]["offer_id"]
    published = await stream_events(nc, "FOQUALE", "foquale.seat.*.v1")
    assert [e["type"] for e in published] == ["foquale.seat.published.v1"]


async def test_with_two_processes_a_partners_records_apply_in_the_order_sent_and_the_other_takes_over(
    start_foquale: Callable[..., ServiceProcess], nc: Client, engine: AsyncEngine
) -> None:
    # Each offer is closed right after its publish: a close applied before its publish would be
    # answered "unknown offer" and leave the offer open.
    processes = [start_foquale(tag="a"), start_foquale(tag="b")]
    sent = []
    for n in range(30):
        sent.append(await publish_partner(nc, "cfa-gironde", "published", seat_record(f"ORD-{n}")))
        sent.append(await publish_partner(nc, "cfa-gironde", "closed", {"partner_key": f"ORD-{n}"}))

    async def all_answered(count: int):
        async def answered() -> dict[str, dict] | None:
            answers = await feedback(nc, "cfa-gironde")
            return answers if len(answers) == count else None

        return await eventually(answered, what=f"{count} answers")

    answers = await all_answered(len(sent))
    assert [answers[e["id"]]["data"]["outcome"] for e in sent] == ["accepted"] * len(sent)
    [holder] = [p for p in processes if "consumers_in_one_process_started" in p.log_text()]

    # The process applying them stops: the other takes the partners' records over.
    holder.stop()
    late = await publish_partner(nc, "cfa-gironde", "published", seat_record("ORD-late"))
    answers = await all_answered(len(sent) + 1)
    assert answers[late["id"]]["data"]["outcome"] == "accepted"
    async with engine.connect() as conn:
        states = (
            await conn.execute(
                text("SELECT state, count(*) FROM offer WHERE owner_id = 'cfa-gironde' GROUP BY 1")
            )
        ).all()
    assert dict(states) == {"closed": 30, "published": 1}
