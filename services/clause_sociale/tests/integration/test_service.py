"""The service as the rig runs it: the MLDS's enrolments in through the bus, the proposals'
deadlines applied by its timer, its events out through the outbox."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from nats.aio.client import Client
from raccrochage_clause_sociale.domain.clause import Buyer, BuyerType
from raccrochage_clause_sociale.domain.mission import ActivityDomain, Site
from raccrochage_clause_sociale.domain.proposal import SchoolLevel, YouthProfile
from raccrochage_clause_sociale.service_layer import commands, handlers
from raccrochage_clause_sociale.service_layer.unit_of_work import SqlClauseUnitOfWork
from sqlalchemy.ext.asyncio import AsyncEngine

from .helpers import enrolment_accepted, eventually, fetch, publish, stream_events, youth_id

BUYER = Buyer(
    "gironde-lapse",
    "Conseil départemental de la Gironde",
    BuyerType.COLLECTIVITE_TERRITORIALE,
    "acheteur",
    "33",
)


def _uow(engine: AsyncEngine) -> SqlClauseUnitOfWork:
    return SqlClauseUnitOfWork(engine, source="raccrochage/clause_sociale", stream="CLAUSE")


async def test_an_mlds_enrolment_lets_the_youth_be_proposed_once_even_if_redelivered(
    nc: Client, clause_db: str, start_clause
) -> None:
    start_clause()
    event = await publish(nc, enrolment_accepted("enrolled-1", datetime.now(UTC)))
    rows = await eventually(
        lambda: fetch(
            clause_db, "SELECT dispositif FROM enrolment WHERE youth_id = $1", youth_id("enrolled-1")
        ),
        what="the enrolment recorded",
    )
    assert [r["dispositif"] for r in rows] == ["clause_sociale"]
    # The same envelope again without its Nats-Msg-Id (as after the broker's duplicate window):
    # the broker lets it through, the inbox skips it.
    await nc.jetstream().publish("mlds.enrolment.accepted.v1", event.to_json())

    async def both_acked() -> bool:
        info = await nc.jetstream().consumer_info("MLDS", "clause_sociale_mlds")
        return info.delivered.stream_seq >= 2 and info.num_ack_pending == 0

    await eventually(both_acked, what="both deliveries acknowledged")
    handled = await fetch(clause_db, "SELECT count(*) AS n FROM inbox WHERE consumer = 'clause_sociale_mlds'")
    assert handled[0]["n"] == 1


async def test_the_timer_lapses_an_unanswered_proposal_and_frees_the_mission(
    nc: Client, clause_db: str, engine: AsyncEngine, start_clause
) -> None:
    # A proposal made 16 days ago, built through the service layer on the same database.
    then = datetime.now(UTC) - timedelta(days=20)
    await handlers.on_enrolment_accepted(
        (await publish(nc, enrolment_accepted("lapsing", then))), _uow(engine)
    )
    clause_id, mission_id, proposal_id = (str(uuid.uuid4()) for _ in range(3))
    await handlers.publish_clause(
        commands.PublishClause(
            clause_id,
            BUYER,
            "lapse-co",
            "Voirie, lot 1",
            date(2026, 1, 5),
            date(2028, 1, 4),
            150_000,
            date(2030, 1, 4),
            then,
        ),
        _uow(engine),
    )
    await handlers.declare_mission(
        commands.DeclareMission(
            mission_id,
            clause_id,
            "lapse-co",
            ActivityDomain.LOGISTIQUE,
            ("Inventaire",),
            Site("3 quai de Brazza", "33100", "Bordeaux", "33"),
            "ref-1",
            150,
            then,
        ),
        _uow(engine),
    )
    await handlers.reserve_mission(commands.ReserveMission(mission_id, "tuteur-33", then), _uow(engine))
    profile = YouthProfile(19, SchoolLevel.CAP, ("logistique",), then.date(), 30)
    await handlers.propose_youth(
        commands.ProposeYouth(
            mission_id, proposal_id, youth_id("lapsing"), profile, "tuteur-33", then + timedelta(days=4)
        ),
        _uow(engine),
    )
    start_clause(CLAUSE_DEADLINES_TIMER_SECONDS="0.2")
    rows = await eventually(
        lambda: fetch(
            clause_db,
            "SELECT status FROM mission WHERE mission_id = $1 AND status = 'disponible'",
            uuid.UUID(mission_id),
        ),
        what="the mission free again",
    )
    assert rows
    company = await fetch(clause_db, "SELECT pending_proposal_id FROM company WHERE company_id = 'lapse-co'")
    assert company[0]["pending_proposal_id"] is None
    lapsed = await eventually(
        lambda: stream_events(nc, "CLAUSE", "clause.proposal.lapsed.v1"), what="clause.proposal.lapsed.v1"
    )
    assert [e["subject"] for e in lapsed] == [mission_id]
    # Day 10 came and went inside the same pass: the lapse alone is recorded (no late reminder).
    assert await stream_events(nc, "CLAUSE", "clause.answer.reminder.v1") == []
