"""The case repository and the timers against real PostgreSQL (in-process, no broker needed)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest_asyncio
from raccrochage_platform.db import make_engine, make_session_factory
from raccrochage_platform.outbox import OutboxWriter
from raccrochage_psad.adapters.repository import CaseRepository
from raccrochage_psad.domain.case import Case
from raccrochage_psad.domain.contact import Channel, ContactOutcome
from raccrochage_psad.domain.interview import InterviewerRole, InterviewOutcome
from raccrochage_psad.domain.solution import SolutionKind
from raccrochage_psad.service_layer.timers import apply_timers
from sqlalchemy import text

from .helpers import youth_id

OUTBOX = OutboxWriter("raccrochage/psad", "PSAD")
T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def sessions(psad_db: str):
    engine = make_engine(psad_db, pool_size=2)
    yield make_session_factory(engine)
    await engine.dispose()


def _case(n: int, age: int = 17) -> Case:
    return Case.open(str(uuid.uuid4()), youth_id(n), "psad-33-test", "33", age, T0, level="2nde GT")


async def _store(sessions, case: Case) -> None:
    async with sessions() as session, session.begin():
        assert await CaseRepository(session).insert_new([case]) == {case.case_id}


async def test_a_case_survives_the_round_trip_with_its_whole_history(sessions) -> None:
    case = _case(1)
    await _store(sessions, case)
    async with sessions() as session, session.begin():
        repo = CaseRepository(session)
        loaded = await repo.get(case.case_id)
        loaded.record_contact_attempt(Channel.PHONE, ContactOutcome.REACHED, T0 + timedelta(hours=1), by="c1")
        loaded.schedule_interview(
            T0 + timedelta(days=3), InterviewerRole.PSY_EN, T0 + timedelta(hours=2), "psy-1"
        )
        loaded.record_interview(InterviewOutcome.SEEN, T0 + timedelta(days=3, hours=1))
        loaded.propose_solution(SolutionKind.MLDS_DIPA, T0 + timedelta(days=3, hours=2), ("cuisine",))
        await repo.save(loaded)
    async with sessions() as session:
        again = await CaseRepository(session).get(case.case_id, lock=False)
        version = (
            await session.execute(
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


async def test_a_second_open_case_for_the_same_youth_is_refused_by_the_database(sessions) -> None:
    await _store(sessions, _case(2))
    async with sessions() as session, session.begin():
        assert await CaseRepository(session).insert_new([_case(2)]) == set()


async def test_timers_mark_unreachable_and_escalate_minors_once(sessions, psad_db: str) -> None:
    minor, adult = _case(3, age=16), _case(4, age=20)
    for case in (minor, adult):
        for day in (0, 7, 14):
            case.record_contact_attempt(Channel.PHONE, ContactOutcome.NO_ANSWER, T0 + timedelta(days=day))
        case.events.clear()
        await _store(sessions, case)
    before = T0 + timedelta(days=20)  # 3 failed attempts but not yet 21 days
    async with sessions() as session, session.begin():
        assert await apply_timers(CaseRepository(session), OUTBOX, before) == {
            "unreachable": 0,
            "escalated": 0,
        }
    later = T0 + timedelta(days=62)  # unreachable for both; two months after the first attempt for the minor
    async with sessions() as session, session.begin():
        assert await apply_timers(CaseRepository(session), OUTBOX, later) == {
            "unreachable": 2,
            "escalated": 1,
        }
    async with sessions() as session, session.begin():
        assert await apply_timers(CaseRepository(session), OUTBOX, later + timedelta(days=1)) == {
            "unreachable": 0,
            "escalated": 0,
        }
        types = (await session.execute(text("SELECT event_type FROM outbox ORDER BY id"))).scalars().all()
    assert types.count("psad.escalation.raised.v1") == 1
    assert types.count("psad.case.status_changed.v1") == 2


async def test_the_open_case_insert_keeps_working_past_postgresql_generic_plans(sessions) -> None:
    """asyncpg prepares the insert; after five runs PostgreSQL may switch to a generic plan, which
    must still match the partial unique index (a bound 'closed' made every later batch fail)."""
    async with sessions() as session, session.begin():
        repo = CaseRepository(session)
        for batch in range(8):
            cases = [_case(1000 + 10 * batch + n) for n in range(3)]
            assert await repo.insert_new(cases) == {c.case_id for c in cases}
        assert await repo.insert_new([_case(1000)]) == set()


async def test_cases_waiting_for_a_transfer_do_not_starve_the_timers(sessions) -> None:
    """The timer leaves a case whose youth moved to its transfer: selecting it again at every
    pass would fill the batch (oldest first) before the cases that are due."""
    for n in range(3):  # three failed attempts, then the news that the youth moved
        moved = _case(100 + n, age=20)
        for day in (0, 7, 14):
            moved.record_contact_attempt(Channel.PHONE, ContactOutcome.NO_ANSWER, T0 + timedelta(days=day))
        moved.record_contact_attempt(Channel.PHONE, ContactOutcome.MOVED, T0 + timedelta(days=15))
        moved.events.clear()
        assert moved.transfer_needed
        await _store(sessions, moved)
    due = _case(110, age=20)  # last touched after the moved ones (day 16 > 15): oldest first puts them ahead
    for day in (0, 7, 14):
        due.record_contact_attempt(Channel.PHONE, ContactOutcome.NO_ANSWER, T0 + timedelta(days=day + 2))
    due.events.clear()
    await _store(sessions, due)
    later = T0 + timedelta(days=30)
    async with sessions() as session, session.begin():
        selected = await CaseRepository(session).due_for_timers(later.date(), later, limit=2)
    assert [case.case_id for case in selected] == [due.case_id]
    async with sessions() as session, session.begin():
        assert await apply_timers(CaseRepository(session), OUTBOX, later) == {
            "unreachable": 1,
            "escalated": 0,
        }
