"""The case repository and the timers against real PostgreSQL, through PSAD's unit of work
(in-process, no broker: the events stay in the outbox)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest_asyncio
from raccrochage_platform.db import make_engine
from raccrochage_psad.domain.case import Case
from raccrochage_psad.domain.contact import Channel, ContactOutcome
from raccrochage_psad.domain.interview import InterviewerRole, InterviewOutcome
from raccrochage_psad.domain.solution import SolutionKind
from raccrochage_psad.service_layer.timers import apply_timers
from raccrochage_psad.service_layer.unit_of_work import SqlPsadUnitOfWork
from sqlalchemy import text

from .helpers import youth_id

T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def unit_of_work(psad_db: str):
    engine = make_engine(psad_db, pool_size=2)
    yield lambda: SqlPsadUnitOfWork(engine, source="raccrochage/psad", stream="PSAD")
    await engine.dispose()


def _case(n: int, age: int = 17) -> Case:
    return Case.open(str(uuid.uuid4()), youth_id(n), "psad-33-medoc", "33", age, T0, level="2nde GT")


async def _store(unit_of_work, case: Case) -> None:
    async with unit_of_work() as uow:
        assert await uow.cases.insert_new([case]) == {case.case_id}
        await uow.commit()


async def test_a_case_survives_the_round_trip_with_its_whole_history(unit_of_work) -> None:
    case = _case(1)
    await _store(unit_of_work, case)
    async with unit_of_work() as uow:
        loaded = await uow.cases.get(case.case_id)
        loaded.record_contact_attempt(Channel.PHONE, ContactOutcome.REACHED, T0 + timedelta(hours=1), by="c1")
        loaded.schedule_interview(
            T0 + timedelta(days=3), InterviewerRole.PSY_EN, T0 + timedelta(hours=2), "psy-1"
        )
        loaded.record_interview(InterviewOutcome.SEEN, T0 + timedelta(days=3, hours=1))
        loaded.propose_solution(SolutionKind.MLDS_DIPA, T0 + timedelta(days=3, hours=2), ("cuisine",))
        await uow.cases.save(loaded)
        await uow.commit()
    async with unit_of_work() as uow:
        again = await uow.cases.get(case.case_id, lock=False)
        version = (
            await uow.connection.execute(
                text("SELECT version FROM case_file WHERE case_id = :id"), {"id": uuid.UUID(case.case_id)}
            )
        ).scalar_one()
    assert again.status.value == "solution_proposed"
    assert (again.attempts, again.interviews, again.solutions) == (
        loaded.attempts,
        loaded.interviews,
        loaded.solutions,
    )
    assert again.interview_held_at == T0 + timedelta(days=3)
    assert again.events == []  # loading records nothing
    assert version == 2


async def test_what_a_unit_of_work_does_not_commit_is_not_there(unit_of_work) -> None:
    case = _case(5)
    async with unit_of_work() as uow:
        await uow.cases.insert_new([case])
    async with unit_of_work() as uow:
        assert await uow.cases.open_case_of(case.youth_id) is None


async def test_a_second_open_case_for_the_same_youth_is_refused_by_the_database(unit_of_work) -> None:
    await _store(unit_of_work, _case(2))
    async with unit_of_work() as uow:
        assert await uow.cases.insert_new([_case(2)]) == set()


async def test_timers_mark_unreachable_and_escalate_minors_once(unit_of_work) -> None:
    minor, adult = _case(3, age=16), _case(4, age=20)
    for case in (minor, adult):
        for day in (0, 7, 14):
            case.record_contact_attempt(Channel.PHONE, ContactOutcome.NO_ANSWER, T0 + timedelta(days=day))
        case.events.clear()
        await _store(unit_of_work, case)
    before = T0 + timedelta(days=20)  # 3 failed attempts but not yet 21 days
    assert await apply_timers(unit_of_work(), before) == {"unreachable": 0, "escalated": 0}
    later = T0 + timedelta(days=62)  # unreachable for both; two months after the first attempt for the minor
    assert await apply_timers(unit_of_work(), later) == {"unreachable": 2, "escalated": 1}
    assert await apply_timers(unit_of_work(), later + timedelta(days=1)) == {"unreachable": 0, "escalated": 0}
    async with unit_of_work() as uow:
        found = await uow.connection.execute(
            text("SELECT event_type FROM outbox WHERE aggregate_key = ANY(:ids) ORDER BY id"),
            {"ids": [minor.case_id, adult.case_id]},
        )
        types = found.scalars().all()
    assert types.count("psad.escalation.raised.v1") == 1
    assert types.count("psad.case.status_changed.v1") == 2


async def test_the_open_case_insert_keeps_working_past_postgresql_generic_plans(unit_of_work) -> None:
    """The insert is prepared; after five runs PostgreSQL may switch to a generic plan, which
    must still match the partial unique index (a bound 'closed' made every later batch fail)."""
    async with unit_of_work() as uow:
        for batch in range(8):
            cases = [_case(1000 + 10 * batch + n) for n in range(3)]
            assert await uow.cases.insert_new(cases) == {c.case_id for c in cases}
        assert await uow.cases.insert_new([_case(1000)]) == set()
        await uow.commit()


async def test_a_hand_over_batch_opens_new_cases_and_reports_the_youths_known(unit_of_work) -> None:
    """`open_new`, batch after batch (past the generic plans too): a youth with an open case, or
    with a closed one of the same PSAD, gets no new row; the others do."""
    open_case, closed_here, closed_elsewhere = _case(2000), _case(2001), _case(2002)
    closed_elsewhere.psad_id = "psad-33-blaye"
    await _store(unit_of_work, open_case)
    for case in (closed_here, closed_elsewhere):
        case.mark_found("cfa", T0 + timedelta(days=1))
        case.events.clear()
        await _store(unit_of_work, case)
    async with unit_of_work() as uow:
        for batch in range(7):
            fresh = [_case(2100 + 10 * batch + n) for n in range(3)]
            inserted, known = await uow.cases.open_new(fresh)
            assert (inserted, known) == ({c.case_id for c in fresh}, {})
        handed = [_case(2000), _case(2001), _case(2002), _case(2003)]
        inserted, known = await uow.cases.open_new(handed)
        await uow.commit()
    assert inserted == {handed[2].case_id, handed[3].case_id}
    assert {youth: (c.case_id, c.status.value, c.is_open) for youth, c in known.items()} == {
        open_case.youth_id: (open_case.case_id, "to_contact", True),
        closed_here.youth_id: (closed_here.case_id, "closed", False),
        closed_elsewhere.youth_id: (closed_elsewhere.case_id, "closed", False),
    }
    async with unit_of_work() as uow:
        new = await uow.cases.get(handed[3].case_id, lock=False)
    assert (new.status.value, new.level, new.episode, new.attempts) == ("to_contact", "2nde GT", 1, [])


async def test_cases_waiting_for_a_transfer_do_not_starve_the_timers(unit_of_work) -> None:
    """The timer leaves a case whose youth moved to its transfer: selecting it again at every
    pass would fill the batch (oldest first) before the cases that are due."""
    for n in range(3):  # three failed attempts, then the news that the youth moved
        moved = _case(100 + n, age=20)
        for day in (0, 7, 14):
            moved.record_contact_attempt(Channel.PHONE, ContactOutcome.NO_ANSWER, T0 + timedelta(days=day))
        moved.record_contact_attempt(Channel.PHONE, ContactOutcome.MOVED, T0 + timedelta(days=15))
        moved.events.clear()
        assert moved.transfer_needed
        await _store(unit_of_work, moved)
    due = _case(110, age=20)  # last touched after the moved ones (day 16 > 15): oldest first puts them ahead
    for day in (0, 7, 14):
        due.record_contact_attempt(Channel.PHONE, ContactOutcome.NO_ANSWER, T0 + timedelta(days=day + 2))
    due.events.clear()
    await _store(unit_of_work, due)
    later = T0 + timedelta(days=30)
    async with unit_of_work() as uow:
        selected = await uow.cases.due_for_timers(later.date(), later, limit=2)
    assert [case.case_id for case in selected] == [due.case_id]
    assert await apply_timers(unit_of_work(), later) == {"unreachable": 1, "escalated": 0}
