"""PSAD's service layer on a fake unit of work: what each use case changes, publishes and
commits, without a database or a broker.

Handlers run inside the unit of work the consumer opens and commits; here `handled` plays the
consumer. The counsellor's commands and the timers open and commit their own.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from raccrochage_contracts import new_event
from raccrochage_contracts.events.foquale_v1 import PlacementConfirmed, PlacementRefused
from raccrochage_contracts.events.psad_v1 import CaseTransferred
from raccrochage_contracts.events.reperage_v1 import YouthFound, YouthIdentified, YouthReportedAgain
from raccrochage_platform.auth import Principal, Role
from raccrochage_platform.consumer import Event
from raccrochage_psad.adapters.repository import CaseNotFound
from raccrochage_psad.domain.case import Case
from raccrochage_psad.domain.contact import Channel, ContactOutcome
from raccrochage_psad.domain.interview import InterviewerRole, InterviewOutcome
from raccrochage_psad.domain.solution import SolutionKind
from raccrochage_psad.domain.states import CaseStatus, CloseReason, TransitionRefused
from raccrochage_psad.domain.worklist import WorkList
from raccrochage_psad.service_layer import answers, cases, handover, missions
from raccrochage_psad.service_layer.messages import request_id
from raccrochage_psad.service_layer.timers import apply_timers
from raccrochage_rig.testing.events import mission_completed
from structlog.testing import capture_logs

from .fakes import FakePsadUnitOfWork

T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
PSAD = "psad-33-medoc"
COUNSELLOR = Principal(sub="conseillere-1", role=Role.COUNSELLOR, territory="33")


def youth(n: int) -> str:
    return f"{n:064x}"


def event(payload, source: str = "raccrochage/reperage") -> Event:
    return Event(new_event(payload, source=source, subject="test"), payload, None, 1)


def identified(n: int, psad_id: str = PSAD, departement: str = "33", age: int = 17) -> Event:
    return event(
        YouthIdentified(
            youth_id=youth(n),
            campaign_id="2026-11",
            psad_id=psad_id,
            departement=departement,
            age=age,
            months_since_leaving=4,
            as_of=date(2026, 11, 1),
            last_training="2nde GT",
        )
    )


def found(n: int) -> Event:
    return event(YouthFound(youth_id=youth(n), psad_id=PSAD, base="cfa", enrolled_since=date(2026, 11, 20)))


def stored_case(n: int, *, psad_id: str = PSAD, departement: str = "33", age: int = 17) -> Case:
    return Case.open(str(uuid.uuid4()), youth(n), psad_id, departement, age, T0, level="2nde GT")


async def handled(uow: FakePsadUnitOfWork, handler, *arguments):
    """What the consumer does around a handler: one unit of work, committed after it."""
    async with uow:
        result = await handler(uow, *arguments)
        await uow.commit()
    return result


# --- hand-over from repérage -----------------------------------------------------------------------
async def test_a_batch_of_identified_youths_opens_one_case_each_and_publishes_case_opened() -> None:
    uow = FakePsadUnitOfWork()
    batch = [identified(1), identified(2, departement="40", psad_id="psad-40-dax")]
    assert await handled(uow, handover.open_cases, batch) == 2
    assert uow.commits == 1
    opened = uow.published_of("psad.case.opened.v1")
    assert [e.data["youth_id"] for e in opened] == [youth(1), youth(2)]
    assert [e.causationid for e in opened] == [batch[0].envelope.id, batch[1].envelope.id]
    assert all(e.source == "raccrochage/psad" for e in opened)
    (case,) = uow.cases.cases_of(youth(2))
    assert (case.status, case.departement, case.level) == (CaseStatus.TO_CONTACT, "40", "2nde GT")
    assert [e.subject for e in opened] == [uow.cases.cases_of(youth(1))[0].case_id, case.case_id]


async def test_handlers_leave_the_commit_to_the_consumer() -> None:
    """A handler adds events and changes cases; without the consumer's commit, nothing stays."""
    uow = FakePsadUnitOfWork()
    uow.cases.add(stored_case(1))
    async with uow:
        assert await handover.open_cases(uow, [identified(2)]) == 1
        assert await handover.found(uow, [found(1)]) == 1
        assert len(uow.pending_events) == 3
    assert (uow.commits, uow.published) == (0, [])
    assert uow.cases.cases_of(youth(2)) == []
    assert uow.cases.cases_of(youth(1))[0].status is CaseStatus.TO_CONTACT


async def test_handling_the_same_identified_again_names_the_same_case_and_events() -> None:
    first, again = FakePsadUnitOfWork(), FakePsadUnitOfWork()
    batch = [identified(1)]
    await handled(first, handover.open_cases, batch)
    await handled(again, handover.open_cases, batch)
    assert [e.id for e in first.published] == [e.id for e in again.published]
    assert first.cases.rows.keys() == again.cases.rows.keys()


async def test_a_youth_twice_in_a_batch_or_with_an_open_case_gets_no_second_case() -> None:
    uow = FakePsadUnitOfWork()
    uow.cases.add(stored_case(1))
    assert await handled(uow, handover.open_cases, [identified(1), identified(2), identified(2)]) == 1
    assert len(uow.cases.cases_of(youth(1))) == len(uow.cases.cases_of(youth(2))) == 1
    assert [e.data["youth_id"] for e in uow.published] == [youth(2)]


async def test_a_youth_handed_over_again_to_the_psad_that_closed_the_case_gets_it_reopened() -> None:
    uow = FakePsadUnitOfWork()
    closed = stored_case(1)
    closed.close(CloseReason.REFUSES_SUPPORT, T0 + timedelta(days=1))
    uow.cases.add(closed)
    assert await handled(uow, handover.open_cases, [identified(1)]) == 1
    (case,) = uow.cases.cases_of(youth(1))
    assert (case.case_id, case.status, case.episode) == (closed.case_id, CaseStatus.TO_CONTACT, 2)
    (opened,) = uow.published_of("psad.case.opened.v1")
    assert (opened.subject, opened.data["episode"]) == (closed.case_id, 2)


async def test_a_youth_whose_case_was_closed_elsewhere_gets_a_new_case() -> None:
    uow = FakePsadUnitOfWork()
    elsewhere = stored_case(1, psad_id="psad-33-blaye")
    elsewhere.close(CloseReason.REFUSES_SUPPORT, T0 + timedelta(days=1))
    uow.cases.add(elsewhere)
    assert await handled(uow, handover.open_cases, [identified(1)]) == 1
    assert sorted(c.status for c in uow.cases.cases_of(youth(1))) == [
        CaseStatus.CLOSED,
        CaseStatus.TO_CONTACT,
    ]


async def test_reported_again_notes_the_campaign_on_the_open_case_only() -> None:
    uow = FakePsadUnitOfWork()
    case = stored_case(1)
    uow.cases.add(case)
    again = YouthReportedAgain(
        youth_id=youth(1),
        campaign_id="2027-03",
        psad_id=PSAD,
        departement="33",
        age=17,
        months_since_leaving=8,
        as_of=date(2027, 3, 1),
    )
    await handled(uow, handover.reported_again, event(again))
    await handled(uow, handover.reported_again, event(again.model_copy(update={"youth_id": youth(9)})))
    assert uow.cases.rows[case.case_id]["last_reported_on"] == date(2027, 3, 1)
    assert uow.published == []


async def test_found_closes_each_open_case_of_the_batch_with_events_caused_by_the_enrolment() -> None:
    uow = FakePsadUnitOfWork()
    uow.cases.add(stored_case(1), stored_case(2))
    batch = [found(1), found(2), found(1)]  # the same youth reported twice: closed once
    assert await handled(uow, handover.found, batch) == 2
    for n in (1, 2):
        (case,) = uow.cases.cases_of(youth(n))
        assert (case.status, case.close_reason, case.found_base) == (
            CaseStatus.CLOSED,
            CloseReason.FOUND_IN_PARTNER_BASE,
            "cfa",
        )
    assert uow.published_types() == ["psad.case.status_changed.v1", "psad.case.closed.v1"] * 2
    assert {e.causationid for e in uow.published} == {batch[0].envelope.id, batch[1].envelope.id}
    # Found again later (another partner): closed already, nothing to do.
    assert await handled(uow, handover.found, [found(1)]) == 0
    assert len(uow.published) == 4


async def test_a_hand_over_emitted_before_a_found_handled_after_it_does_not_reopen_the_case() -> None:
    # Replicas share PSAD's durable: the youth's found, emitted last, is handled first.
    uow = FakePsadUnitOfWork()
    closed = stored_case(1)
    closed.close(CloseReason.REFUSES_SUPPORT, T0 + timedelta(days=1))
    uow.cases.add(closed)
    emitted = datetime.now(UTC)

    def at(delivered: Event, time: datetime) -> Event:
        envelope = delivered.envelope.model_copy(update={"time": time})
        return Event(envelope, delivered.data, None, 1)

    assert await handled(uow, handover.found, [at(found(1), emitted + timedelta(seconds=1))]) == 0
    assert await handled(uow, handover.open_cases, [at(identified(1), emitted)]) == 0
    (case,) = uow.cases.cases_of(youth(1))
    assert case.status is CaseStatus.CLOSED and case.last_found_at == emitted + timedelta(seconds=1)
    assert uow.published == []
    # A later campaign's hand-over, emitted after the found, reopens it.
    assert await handled(uow, handover.open_cases, [at(identified(1), emitted + timedelta(days=90))]) == 1


async def test_found_for_a_youth_without_any_case_fails_the_batch_for_a_retry() -> None:
    uow = FakePsadUnitOfWork()
    uow.cases.add(stored_case(1))
    with pytest.raises(handover.CaseNotYetOpened):
        await handled(uow, handover.found, [found(1), found(2)])
    assert uow.commits == 0 and uow.published == []
    assert uow.cases.cases_of(youth(1))[0].status is CaseStatus.TO_CONTACT


async def test_a_transfer_opens_a_case_at_the_destination_unless_one_is_open() -> None:
    uow = FakePsadUnitOfWork()
    moved = CaseTransferred(
        case_id=uuid.uuid4(),
        youth_id=youth(1),
        psad_id=PSAD,
        to_psad_id="psad-40-dax",
        departement="40",
        age=18,
        transferred_at=T0,
    )
    await handled(uow, handover.transferred_in, event(moved, source="raccrochage/psad"))
    (case,) = uow.cases.cases_of(youth(1))
    assert (case.psad_id, case.departement, case.status) == ("psad-40-dax", "40", CaseStatus.TO_CONTACT)
    assert uow.published_types() == ["psad.case.opened.v1"]
    await handled(uow, handover.transferred_in, event(moved, source="raccrochage/psad"))
    assert len(uow.cases.cases_of(youth(1))) == 1 and len(uow.published) == 1


# --- providers' answers ----------------------------------------------------------------------------
def _requested(
    uow: FakePsadUnitOfWork, kind: SolutionKind = SolutionKind.FOQUALE_SEAT, *, confirmed=False
) -> Case:
    case = stored_case(1)
    case.record_contact_attempt(Channel.PHONE, ContactOutcome.REACHED, T0 + timedelta(hours=1))
    case.schedule_interview(T0 + timedelta(days=2), InterviewerRole.PSY_EN, T0 + timedelta(hours=2))
    case.record_interview(InterviewOutcome.SEEN, T0 + timedelta(days=2))
    case.propose_solution(kind, T0 + timedelta(days=2, hours=1))
    if confirmed:
        case.confirm_solution(T0 + timedelta(days=3))
    uow.cases.add(case)
    return case


def _confirmed(case: Case, request: uuid.UUID) -> Event:
    return event(
        PlacementConfirmed(
            request_id=request,
            case_id=case.case_id,
            youth_id=case.youth_id,
            decided_at=T0 + timedelta(days=3),
            seat_id="s1",
            uai="0331234A",
            starts_on=date(2027, 1, 4),
        ),
        source="raccrochage/foquale",
    )


async def test_a_confirmed_placement_puts_the_case_in_solution() -> None:
    uow = FakePsadUnitOfWork()
    case = _requested(uow)
    assert await handled(uow, answers.apply_answer, _confirmed(case, request_id(case.case_id, 1)))
    assert uow.cases.stored(case.case_id).status is CaseStatus.IN_SOLUTION
    assert [e.data["to_status"] for e in uow.published_of("psad.case.status_changed.v1")] == ["in_solution"]


async def test_a_stale_or_unknown_answer_changes_nothing() -> None:
    uow = FakePsadUnitOfWork()
    case = _requested(uow)
    assert not await handled(uow, answers.apply_answer, _confirmed(case, uuid.uuid4()))
    refused = PlacementRefused(
        request_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        youth_id=case.youth_id,
        decided_at=T0,
        reason="no_seat",
    )
    assert not await handled(uow, answers.apply_answer, event(refused, source="raccrochage/foquale"))
    assert uow.cases.stored(case.case_id).status is CaseStatus.SOLUTION_PROPOSED
    assert uow.published == []


# --- the clause sociale's missions -----------------------------------------------------------------
def _mission_completed(youth_id: str, outcome: str = "apprenticeship") -> Event:
    envelope, payload = mission_completed(youth_id, outcome, completed_at=T0 + timedelta(days=40))
    return Event(envelope, payload, None, 1)


async def consumed(uow: FakePsadUnitOfWork, handler, event: Event) -> bool:
    """What the consumer does around a handler: claim the event in the inbox, handle it only if
    new, commit. True when it was new."""
    async with uow:
        new = await uow.claim("psad_clause", [(event.envelope.id, event.envelope.type)])
        if new:
            await handler(uow, event)
        await uow.commit()
    return bool(new)


def _in_mission(uow: FakePsadUnitOfWork) -> Case:
    """A case in solution through the MLDS: the clause sociale's mission."""
    return _requested(uow, SolutionKind.CLAUSE_SOCIALE_VIA_MLDS, confirmed=True)


async def test_a_mission_ending_in_an_apprenticeship_is_the_case_s_solution_once() -> None:
    uow = FakePsadUnitOfWork()
    case = _in_mission(uow)
    completed = _mission_completed(case.youth_id)
    assert await consumed(uow, missions.mission_completed, completed)
    stored = uow.cases.stored(case.case_id)
    assert stored.status is CaseStatus.IN_SOLUTION
    assert [(s.kind.value, s.state.value) for s in stored.solutions] == [
        ("clause_sociale_via_mlds", "ended"),
        ("apprenticeship", "confirmed"),
    ]
    assert uow.published == []  # in solution before and after: no status change to tell
    # Delivered again: the inbox knows it, the case is not moved twice.
    assert not await consumed(uow, missions.mission_completed, completed)
    assert len(uow.cases.stored(case.case_id).solutions) == 2 and uow.commits == 2


async def test_a_mission_ending_in_a_job_closes_a_case_still_before_the_solution_stage() -> None:
    uow = FakePsadUnitOfWork()
    case = stored_case(2)
    uow.cases.add(case)
    assert await handled(uow, missions.mission_completed, _mission_completed(case.youth_id, "job"))
    stored = uow.cases.stored(case.case_id)
    assert (stored.status, stored.close_reason) == (CaseStatus.CLOSED, CloseReason.REACHED_SOLUTION)
    assert [e.data["reason"] for e in uow.published_of("psad.case.closed.v1")] == ["reached_solution"]
    assert [e.data["action"] for e in uow.published_of("psad.case.status_changed.v1")] == [
        "record_solution_found"
    ]


async def test_a_mission_ending_otherwise_or_for_a_youth_without_open_case_changes_nothing() -> None:
    uow = FakePsadUnitOfWork()
    case = _in_mission(uow)
    assert not await handled(uow, missions.mission_completed, _mission_completed(case.youth_id, "training"))
    nobody = _mission_completed(youth(99))
    with capture_logs() as logs:
        assert not await handled(uow, missions.mission_completed, nobody)
    assert uow.cases.stored(case.case_id).solutions[-1].kind is SolutionKind.CLAUSE_SOCIALE_VIA_MLDS
    assert uow.published == [] and uow.commits == 2  # acknowledged: nothing to retry
    assert [(log["event"], log["mission_id"]) for log in logs] == [
        ("mission_completed_without_open_case", str(nobody.data.mission_id))
    ]
    assert youth(99) not in str(logs)


# --- the timers ------------------------------------------------------------------------------------
async def test_timers_mark_unreachable_and_escalate_a_minor_once_in_one_committed_unit_of_work() -> None:
    uow = FakePsadUnitOfWork()
    minor, adult = stored_case(1, age=16), stored_case(2, age=20)
    for case in (minor, adult):
        for day in (0, 7, 14):
            case.record_contact_attempt(Channel.PHONE, ContactOutcome.NO_ANSWER, T0 + timedelta(days=day))
    uow.cases.add(minor, adult)
    assert await apply_timers(uow, T0 + timedelta(days=20)) == {"unreachable": 0, "escalated": 0}
    later = T0 + timedelta(days=62)
    assert await apply_timers(uow, later) == {"unreachable": 2, "escalated": 1}
    assert await apply_timers(uow, later + timedelta(days=1)) == {"unreachable": 0, "escalated": 0}
    assert uow.commits == 3
    assert uow.published_types().count("psad.escalation.raised.v1") == 1
    assert uow.cases.stored(adult.case_id).status is CaseStatus.UNREACHABLE


# --- the counsellor's commands and lists -----------------------------------------------------------
async def test_a_command_saves_the_case_and_publishes_its_events_when_it_commits() -> None:
    uow = FakePsadUnitOfWork()
    case = stored_case(1)
    uow.cases.add(case)
    now = datetime.now(UTC)
    changed = await cases.command(
        uow,
        COUNSELLOR,
        case.case_id,
        lambda c, at: c.record_contact_attempt(Channel.PHONE, ContactOutcome.REACHED, max(at, now), "c-1"),
    )
    assert changed.status is CaseStatus.REACHED
    assert uow.cases.stored(case.case_id).status is CaseStatus.REACHED
    assert uow.cases.rows[case.case_id]["version"] == 2
    assert uow.commits == 1
    assert uow.published_types() == ["psad.contact.recorded.v1", "psad.case.status_changed.v1"]


async def test_a_refused_command_or_another_territory_leaves_the_case_and_publishes_nothing() -> None:
    uow = FakePsadUnitOfWork()
    here, there = stored_case(1), stored_case(2, departement="40")
    uow.cases.add(here, there)

    def attempt_then_refuse(case: Case, now: datetime) -> None:
        case.record_contact_attempt(Channel.PHONE, ContactOutcome.REACHED, now)
        case.reopen(now)  # refused: the case is open

    with pytest.raises(TransitionRefused):
        await cases.command(uow, COUNSELLOR, here.case_id, attempt_then_refuse)
    with pytest.raises(cases.NotYourTerritory):
        await cases.command(uow, COUNSELLOR, there.case_id, lambda case, now: case.assign("c-1", now))
    with pytest.raises(cases.NotYourTerritory):
        await cases.get(uow, COUNSELLOR, there.case_id)
    with pytest.raises(CaseNotFound):
        await cases.get(uow, COUNSELLOR, str(uuid.uuid4()))
    assert uow.commits == 0 and uow.published == []
    assert uow.cases.stored(here.case_id).status is CaseStatus.TO_CONTACT
    assert uow.cases.stored(there.case_id).owner is None


async def test_a_territory_lists_its_open_cases_by_urgency_then_its_closed_ones_in_one_snapshot() -> None:
    uow = FakePsadUnitOfWork()
    minor, adult, closed, elsewhere = (
        stored_case(1, age=16),
        stored_case(2, age=20),
        stored_case(3, age=20),
        stored_case(4, departement="40"),
    )
    closed.close(CloseReason.REFUSES_SUPPORT, T0 + timedelta(days=1))
    uow.cases.add(minor, adult, closed, elsewhere)
    today = (T0 + timedelta(days=1)).date()
    total, page = await cases.search(uow, departement="33", today=today)
    assert (total, [c.case_id for c in page]) == (3, [minor.case_id, adult.case_id, closed.case_id])
    total, page = await cases.search(uow, departement="33", today=today, limit=1, offset=2)
    assert (total, [c.case_id for c in page]) == (3, [closed.case_id])
    total, page = await cases.search(uow, departement="33", today=today, work_list=WorkList.PRIORITY)
    assert (total, [c.case_id for c in page]) == (1, [minor.case_id])
    total, page = await cases.search(uow, departement="33", today=today, status="closed")
    assert (total, [c.case_id for c in page]) == (1, [closed.case_id])
    assert uow.cases.snapshots == 4
    assert uow.commits == 0  # reads only


async def test_stats_count_by_territory_and_status() -> None:
    uow = FakePsadUnitOfWork()
    closed = stored_case(3)
    closed.close(CloseReason.REFUSES_SUPPORT, T0 + timedelta(days=1))
    uow.cases.add(stored_case(1), stored_case(2, departement="40"), closed)
    stats = await cases.stats(uow, None, T0.date())
    assert stats["by_status"] == {"to_contact": 2, "closed": 1}
    assert stats["territories"]["33"] == {
        "by_status": {"closed": 1, "to_contact": 1},
        "open": 1,
        "interview_overdue": 0,
    }
    assert (await cases.stats(uow, "40", T0.date()))["territories"].keys() == {"40"}
