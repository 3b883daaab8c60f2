"""The repositories against real PostgreSQL: round trips, the queries the timers and the buyer
use, and the races the database decides (a mission's reservation, a company's proposal slot)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from raccrochage_clause_sociale.adapters.repository import (
    SqlBilanDocumentRepository,
    SqlClauseRepository,
    SqlCompanyRepository,
    SqlEnrolmentRepository,
    SqlMissionRepository,
)
from raccrochage_clause_sociale.adapters.tables import mission as mission_table
from raccrochage_clause_sociale.domain.clause import Clause
from raccrochage_clause_sociale.domain.errors import TransitionRefused
from raccrochage_clause_sociale.domain.mission import Mission
from raccrochage_clause_sociale.domain.states import MissionStatus
from raccrochage_clause_sociale.service_layer.unit_of_work import (
    ClauseNotFound,
    ConcurrentChange,
    Enrolment,
    MissionNotFound,
)
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..unit.builders import (
    T0,
    accepted,
    completed,
    days,
    drafted,
    new_clause,
    new_mission,
    proposed,
    signed,
    with_signed_bilan,
    youth,
)

M = mission_table.c


def fresh_clause(**options) -> Clause:
    return new_clause(name=f"clause-{uuid.uuid4()}", company_id=f"co-{uuid.uuid4().hex[:12]}", **options)


async def store(engine: AsyncEngine, clause: Clause, *missions: Mission) -> None:
    async with engine.begin() as conn:
        await SqlCompanyRepository(conn).ensure(clause.company_id)
        assert await SqlClauseRepository(conn).add(clause)
        for mission in missions:
            assert await SqlMissionRepository(conn).add(mission)


async def load(engine: AsyncEngine, mission_id: str) -> Mission:
    async with engine.connect() as conn:
        return await SqlMissionRepository(conn).get(mission_id, lock=False)


async def test_the_migration_creates_the_tables_the_outbox_and_the_inbox(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        tables = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    assert {"company", "clause", "mission", "enrolment", "bilan_document", "outbox", "inbox"} <= tables


async def test_a_clause_and_a_mission_survive_the_round_trip_at_every_stage(engine: AsyncEngine) -> None:
    clause = fresh_clause()
    mission = new_mission(clause, name=f"m-{uuid.uuid4()}")
    await store(engine, clause, mission)
    async with engine.connect() as conn:
        assert (await SqlClauseRepository(conn).get(clause.clause_id)).__dict__ == {
            **clause.__dict__,
            "events": [],
        }
    # build the whole history in memory, saving after each stage, and compare what comes back
    stored = await load(engine, mission.mission_id)
    for build in (
        lambda m: proposed(m),
        accept,
        lambda m: drafted(m),
        lambda m: signed(m),
        lambda m: completed(m),
        lambda m: with_signed_bilan(m),
    ):
        stage = build(stored)
        async with engine.begin() as conn:
            await SqlMissionRepository(conn).save(stage)
        stored = await load(engine, mission.mission_id)
        expected = {**stage.__dict__, "events": []}
        assert {**stored.__dict__, "events": []} == expected
    assert stored.status is MissionStatus.REALISEE and stored.bilan.fully_signed and stored.hours_done == 58


def accept(mission: Mission) -> Mission:
    mission.answer(mission.pending_proposal.proposal_id, True, days(5))
    return mission


async def test_unknown_ids_and_duplicates(engine: AsyncEngine) -> None:
    clause = fresh_clause()
    mission = new_mission(clause, name=f"m-{uuid.uuid4()}")
    await store(engine, clause, mission)
    async with engine.begin() as conn:
        assert not await SqlClauseRepository(conn).add(clause)
        assert not await SqlMissionRepository(conn).add(mission)
        with pytest.raises(ClauseNotFound):
            await SqlClauseRepository(conn).get(str(uuid.uuid4()))
        with pytest.raises(MissionNotFound):
            await SqlMissionRepository(conn).get(str(uuid.uuid4()))


async def test_a_save_from_a_stale_copy_is_refused(engine: AsyncEngine) -> None:
    clause = fresh_clause()
    mission = new_mission(clause, name=f"m-{uuid.uuid4()}")
    await store(engine, clause, mission)
    first, second = await load(engine, mission.mission_id), await load(engine, mission.mission_id)
    first.reserve("t-1", days(1))
    async with engine.begin() as conn:
        await SqlMissionRepository(conn).save(first)
    second.reserve("t-2", days(1))
    with pytest.raises(ConcurrentChange, match="changed since it was read at version 1"):
        async with engine.begin() as conn:
            await SqlMissionRepository(conn).save(second)
    assert (await load(engine, mission.mission_id)).reserved_by == "t-1"


async def test_the_database_refuses_a_free_mission_held_by_someone(engine: AsyncEngine) -> None:
    clause = fresh_clause()
    mission = new_mission(clause, name=f"m-{uuid.uuid4()}")
    await store(engine, clause, mission)
    with pytest.raises(IntegrityError, match="mission_reserved_iff_not_free"):
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE mission SET reserved_by = 't-1' WHERE mission_id = :id"),
                {"id": mission.mission_id},
            )


# --- the reservation race ---------------------------------------------------------------------------


async def reserve(
    engine: AsyncEngine, mission_id: str, tutor: str, read: asyncio.Barrier | None = None
) -> bool:
    """What the reserve_mission handler does, in its own transaction: read without a lock, let
    the domain reserve, save only if still free. False when the tutor lost."""
    async with engine.begin() as conn:
        missions = SqlMissionRepository(conn)
        mission = await missions.get(mission_id, lock=False)
        if read is not None:
            await read.wait()  # every racer has read the mission free before anyone writes
        try:
            mission.reserve(tutor, days(1))
        except TransitionRefused:
            return False  # read after another's commit
        return await missions.save_reservation(mission)


async def test_50_concurrent_reservations_of_one_mission_exactly_one_wins(engine: AsyncEngine) -> None:
    clause = fresh_clause()
    mission = new_mission(clause, name=f"m-{uuid.uuid4()}")
    await store(engine, clause, mission)
    read = asyncio.Barrier(50)
    tutors = [f"tuteur-{n}" for n in range(50)]
    results = await asyncio.gather(*(reserve(engine, mission.mission_id, t, read) for t in tutors))
    assert sum(results) == 1
    winner = tutors[results.index(True)]
    stored = await load(engine, mission.mission_id)
    assert (stored.status, stored.reserved_by, stored.version) == (MissionStatus.RESERVEE, winner, 2)


async def test_many_missions_raced_by_two_tutors_each_has_exactly_one_winner(engine: AsyncEngine) -> None:
    clause = fresh_clause()
    missions = [new_mission(clause, name=f"m-{uuid.uuid4()}", hours=10) for _ in range(40)]
    await store(engine, clause, *missions)

    async def tutor(name: str, order: list[Mission]) -> set[str]:
        won = await asyncio.gather(*(reserve(engine, m.mission_id, name) for m in order))
        return {m.mission_id for m, ok in zip(order, won, strict=True) if ok}

    a, b = await asyncio.gather(tutor("tuteur-a", missions), tutor("tuteur-b", missions[::-1]))
    assert a.isdisjoint(b) and a | b == {m.mission_id for m in missions}
    async with engine.connect() as conn:
        query = select(M.mission_id, M.reserved_by, M.version).where(M.clause_id == clause.clause_id)
        rows = (await conn.execute(query)).all()
    holders = {str(row.mission_id): row.reserved_by for row in rows}
    assert holders == {**{m: "tuteur-a" for m in a}, **{m: "tuteur-b" for m in b}}
    assert {row.version for row in rows} == {2}


async def test_one_proposal_slot_per_company_even_when_raced(engine: AsyncEngine) -> None:
    clause = fresh_clause()
    await store(engine, clause)
    proposals = [str(uuid.uuid4()) for _ in range(20)]

    async def take(proposal_id: str) -> bool:
        async with engine.begin() as conn:
            return await SqlCompanyRepository(conn).take_proposal_slot(clause.company_id, proposal_id)

    results = await asyncio.gather(*(take(p) for p in proposals))
    assert sum(results) == 1
    holder = proposals[results.index(True)]
    async with engine.begin() as conn:
        companies = SqlCompanyRepository(conn)
        await companies.free_proposal_slot(clause.company_id, proposals[results.index(False)])  # not its slot
        assert not await companies.take_proposal_slot(
            clause.company_id, "00000000-0000-4000-8000-000000000001"
        )
        await companies.free_proposal_slot(clause.company_id, holder)
        assert await companies.take_proposal_slot(clause.company_id, "00000000-0000-4000-8000-000000000001")


# --- the queries ------------------------------------------------------------------------------------


async def test_missions_awaiting_an_answer_and_placements_of_a_tutor(engine: AsyncEngine) -> None:
    clause = fresh_clause()
    waiting = proposed(new_mission(clause, name=f"m-{uuid.uuid4()}"), at=1)
    placed = drafted(accepted(new_mission(clause, name=f"m-{uuid.uuid4()}")))
    free = new_mission(clause, name=f"m-{uuid.uuid4()}")
    await store(engine, clause, waiting, placed, free)
    async with engine.connect() as conn:
        missions = SqlMissionRepository(conn)
        due = await missions.awaiting_answer(days(11))
        assert waiting.mission_id in due and placed.mission_id not in due and free.mission_id not in due
        assert waiting.mission_id not in await missions.awaiting_answer(days(0.5))
        hosted = await missions.hosted_by(clause.company_id, "ref-204", placed.site.key)
        assert [m.mission_id for m in hosted] == [placed.mission_id]
        assert await missions.hosted_by(clause.company_id, "ref-311", placed.site.key) == []
        # declared at the same time: in id order
        of_clause = [m.mission_id for m in await missions.of_clause(clause.clause_id)]
        assert of_clause == sorted([waiting.mission_id, placed.mission_id, free.mission_id])


async def test_clauses_ending_between_two_days(engine: AsyncEngine) -> None:
    soon = fresh_clause(firm_end=date(2031, 9, 30), ends=date(2031, 9, 30))
    later = fresh_clause(firm_end=date(2031, 9, 30), ends=date(2032, 9, 30))
    await store(engine, soon)
    await store(engine, later)
    async with engine.connect() as conn:
        found = await SqlClauseRepository(conn).ending_between(date(2031, 4, 1), date(2031, 10, 1))
    ids = [c.clause_id for c in found]
    assert soon.clause_id in ids and later.clause_id not in ids


async def test_enrolments_are_recorded_and_refreshed(engine: AsyncEngine) -> None:
    youth_id = youth(uuid.uuid4())
    first = Enrolment(youth_id, "paps", date(2026, 9, 7), str(uuid.uuid4()), str(uuid.uuid4()), T0)
    again = Enrolment(
        youth_id,
        "clause_sociale",
        date(2026, 10, 5),
        str(uuid.uuid4()),
        str(uuid.uuid4()),
        T0 + timedelta(days=30),
    )
    async with engine.begin() as conn:
        enrolments = SqlEnrolmentRepository(conn)
        assert await enrolments.get(youth_id) is None
        await enrolments.record(first)
        assert await enrolments.get(youth_id) == first
        await enrolments.record(again)
        assert await enrolments.get(youth_id) == again


async def test_the_delivered_bilan_is_kept_as_it_was(engine: AsyncEngine) -> None:
    clause = fresh_clause()
    mission = new_mission(clause, name=f"m-{uuid.uuid4()}")
    await store(engine, clause, mission)
    pdf = b"%PDF-1.3 a document"
    async with engine.begin() as conn:
        bilans = SqlBilanDocumentRepository(conn)
        await bilans.add(mission.mission_id, "a" * 64, pdf, datetime(2026, 12, 21, tzinfo=UTC))
        assert await bilans.get(mission.mission_id) == pdf
        assert await bilans.get(str(uuid.uuid4())) is None
