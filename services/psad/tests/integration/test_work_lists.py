"""A territory's case list against real PostgreSQL: every filter and page gives what ranking
every case of the territory by the work-list rules gives (open cases by urgency, then closed
ones, longest closed first), though only the open cases are loaded and ranked in Python."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from raccrochage_platform.db import make_engine
from raccrochage_psad.domain.case import Case
from raccrochage_psad.domain.contact import Channel, ContactOutcome
from raccrochage_psad.domain.deadlines import DEFAULT_POLICY
from raccrochage_psad.domain.interview import InterviewerRole, InterviewOutcome
from raccrochage_psad.domain.solution import SolutionKind
from raccrochage_psad.domain.states import CaseError, CloseReason
from raccrochage_psad.domain.worklist import WorkList, worklist
from raccrochage_psad.service_layer import cases as service
from raccrochage_psad.service_layer.cases import urgency
from raccrochage_psad.service_layer.unit_of_work import SqlPsadUnitOfWork

from .helpers import youth_id

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
TODAY = (T0 + timedelta(days=40)).date()


def _story(n: int, rng: random.Random) -> Case:
    """A case somewhere in its life: opened, tried, reached, interviewed, in a solution, closed."""
    case = Case.open(
        str(uuid.UUID(int=rng.getrandbits(128))),
        youth_id(f"list-{n}"),
        rng.choice(["psad-a", "psad-b"]),
        "40" if n % 10 == 0 else "33",
        rng.randint(16, 22),
        T0 + timedelta(hours=n),
        level="2nde GT",
    )
    now = case.opened_at
    steps = rng.randint(0, 7)

    def later(days: int) -> datetime:
        nonlocal now
        now = now + timedelta(days=rng.randint(0, days), hours=1)
        return now

    try:
        if rng.random() < 0.5:
            case.assign(rng.choice(["c1", "c2"]), later(1))
        if steps >= 1:
            case.record_contact_attempt(Channel.PHONE, ContactOutcome.NO_ANSWER, later(3))
        if steps >= 2:
            outcome = rng.choice([ContactOutcome.REACHED, ContactOutcome.NO_ANSWER])
            case.record_contact_attempt(Channel.SMS, outcome, later(10))
            if outcome is ContactOutcome.NO_ANSWER:  # a third miss, and the timer's verdict weeks later
                case.record_contact_attempt(Channel.PHONE, ContactOutcome.NO_ANSWER, later(10))
                case.check_unreachable(later(1) + timedelta(days=22))
        if steps >= 3:
            case.schedule_interview(later(20), InterviewerRole.PSY_EN, now, "psy-1")
        if steps >= 4:
            case.record_interview(InterviewOutcome.SEEN, later(3))
        if steps >= 5:
            case.propose_solution(SolutionKind.APPRENTICESHIP, later(3))
        if steps >= 6:
            case.confirm_solution(later(3))
        if steps >= 7 or rng.random() < 0.3:
            case.close(rng.choice([CloseReason.REFUSES_SUPPORT, CloseReason.ALREADY_SUPPORTED]), later(30))
    except CaseError:
        pass  # the story stops where the state machine refuses it
    case.events.clear()
    return case


def _expected(cases: list[Case], **filters) -> list[str]:
    """The list as the rules define it, from every case loaded."""

    def keeps(case: Case) -> bool:
        deadline = case.interview_still_owed(DEFAULT_POLICY)
        return (
            case.departement == "33"
            and filters.get("status") in (None, case.status.value)
            and filters.get("psad_id") in (None, case.psad_id)
            and filters.get("owner") in (None, case.owner)
            and filters.get("work_list") in (None, worklist(case, TODAY))
            and (filters.get("deadline") != "overdue" or (deadline is not None and deadline < TODAY))
            and (filters.get("deadline") != "due" or case.is_overdue(TODAY) or case.interview_due_soon(TODAY))
        )

    return [
        case.case_id
        for case in sorted(filter(keeps, cases), key=lambda case: urgency(case, TODAY, DEFAULT_POLICY))
    ]


@pytest_asyncio.fixture(loop_scope="session")
async def territory(psad_db: str):
    rng = random.Random(7)
    cases = [_story(n, rng) for n in range(160)]
    engine = make_engine(psad_db, pool_size=2)

    def unit_of_work() -> SqlPsadUnitOfWork:
        return SqlPsadUnitOfWork(engine, source="raccrochage/psad", stream="PSAD")

    async with unit_of_work() as uow:
        await uow.cases.insert_new(cases)
        await uow.commit()
    yield unit_of_work, cases
    await engine.dispose()


FILTERS = [
    {},
    {"status": "closed"},
    {"status": "to_contact"},
    {"psad_id": "psad-a"},
    {"owner": "c1"},
    {"deadline": "overdue"},
    {"deadline": "due"},
    *({"work_list": w} for w in WorkList),
    {"work_list": WorkList.CLOSED, "psad_id": "psad-b"},
    {"status": "closed", "work_list": WorkList.TO_HANDLE},
]


@pytest.mark.parametrize(
    "filters", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "all"
)
async def test_every_page_of_every_filter_follows_the_rules(territory, filters) -> None:
    unit_of_work, stored = territory
    expected = _expected(stored, **filters)
    for limit in (7, 50, 1000):
        pages = []
        for offset in range(0, len(expected) + limit, limit):
            total, page = await service.search(
                unit_of_work(), departement="33", today=TODAY, limit=limit, offset=offset, **filters
            )
            assert total == len(expected)
            pages.extend(case.case_id for case in page)
        assert pages == expected


async def test_the_stories_cover_every_list(territory) -> None:
    _, stored = territory
    lists = {worklist(case, TODAY) for case in stored if case.departement == "33"}
    assert lists == set(WorkList)


async def test_a_case_closed_while_a_page_is_read_is_listed_once(psad_db: str) -> None:
    """The open cases, the closed count and the closed page are read in one snapshot: a case
    closed between the first query and the next is neither counted twice nor listed twice."""
    from sqlalchemy import event, text
    from sqlalchemy.util import await_only

    case = Case.open(str(uuid.uuid4()), youth_id("race-1"), "psad-a", "47", 17, T0)
    case.events.clear()
    engine = make_engine(psad_db, pool_size=2)
    closer = make_engine(psad_db, pool_size=1)

    def unit_of_work() -> SqlPsadUnitOfWork:
        return SqlPsadUnitOfWork(engine, source="raccrochage/psad", stream="PSAD")

    async with unit_of_work() as uow:
        await uow.cases.insert_new([case])
        await uow.commit()

    async def close_it() -> None:
        async with closer.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE case_file SET status = 'closed', close_reason = 'refuses_support', "
                    "status_since = now() WHERE case_id = :id"
                ),
                {"id": uuid.UUID(case.case_id)},
            )

    closed_meanwhile = False

    def close_before_counting(conn, cursor, statement, parameters, context, executemany) -> None:
        nonlocal closed_meanwhile
        if "count(" in statement and not closed_meanwhile:  # the open cases are read: close it now
            closed_meanwhile = True
            await_only(close_it())

    event.listen(engine.sync_engine, "before_cursor_execute", close_before_counting)
    try:
        total, page = await service.search(unit_of_work(), departement="47", today=TODAY)
        assert closed_meanwhile
        assert (total, [c.case_id for c in page]) == (1, [case.case_id])
        total, page = await service.search(unit_of_work(), departement="47", today=TODAY)
        assert (total, [c.status.value for c in page]) == (1, ["closed"])  # and the next read sees it closed
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", close_before_counting)
        await engine.dispose()
        await closer.dispose()
