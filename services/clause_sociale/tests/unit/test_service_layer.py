"""The service layer on an in-memory unit of work: from a clause to the bilan delivered, the
company's single proposal slot, the timers on a frozen clock, MLDS enrolments, the buyer's views."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from raccrochage_clause_sociale.adapters.bilan_pdf import render_bilan_pdf
from raccrochage_clause_sociale.domain.bilan import SkillAssessment
from raccrochage_clause_sociale.domain.convention import SignatoryRole
from raccrochage_clause_sociale.domain.errors import Refused, TransitionRefused
from raccrochage_clause_sociale.domain.mission import ActivityDomain, Site
from raccrochage_clause_sociale.domain.proposal import CompanyBusy
from raccrochage_clause_sociale.domain.states import MissionStatus
from raccrochage_clause_sociale.service_layer import commands as c
from raccrochage_clause_sociale.service_layer import handlers, views
from raccrochage_clause_sociale.service_layer.handlers import AlreadyExists, MissionTaken
from raccrochage_clause_sociale.service_layer.unit_of_work import ConcurrentChange
from raccrochage_contracts import new_event
from raccrochage_contracts.events.mlds_v1 import EnrolmentAccepted
from raccrochage_contracts.registry import load_all

from .builders import BUYER, SITE, SKILLS, T0, UAI, days, parties, profile, uid, youth
from .fakes import FakeClauseUnitOfWork

REGISTRY = load_all()
TUTOR = "tuteur-33-07"
CLAUSE = uid("clause")


@pytest.fixture
def uow() -> FakeClauseUnitOfWork:
    return FakeClauseUnitOfWork()


async def enrol(uow, n: int) -> None:
    accepted = EnrolmentAccepted(
        request_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        youth_id=youth(n),
        decided_at=T0 - timedelta(days=30),
        dispositif="clause_sociale",
        starts_on=date(2026, 9, 7),
    )
    assert await handlers.on_enrolment_accepted(
        new_event(accepted, source="raccrochage/mlds", subject="x"), uow
    )


async def publish(
    uow, amount: int = 250_000, ends: date = date(2030, 8, 31), clause_id: str = CLAUSE
) -> None:
    await handlers.publish_clause(
        c.PublishClause(
            clause_id, BUYER, "batisud-33", "Nettoyage", date(2026, 9, 1), date(2028, 8, 31), amount, ends, T0
        ),
        uow,
    )


async def declare(uow, name: str = "m1", hours: int = 150, clause_id: str = CLAUSE, site: Site = SITE) -> str:
    mission_id = uid(name)
    await handlers.declare_mission(
        c.DeclareMission(
            mission_id,
            clause_id,
            "batisud-33",
            ActivityDomain.LOGISTIQUE,
            ("Inventaire",),
            site,
            "ref-204",
            hours,
            T0,
            second_referent_id="ref-311",
        ),
        uow,
    )
    return mission_id


async def propose(uow, mission_id: str, n: int = 1, at: float = 1) -> str:
    await handlers.reserve_mission(c.ReserveMission(mission_id, TUTOR, days(at)), uow)
    proposal_id = uid(f"proposal-{mission_id}-{n}")
    await handlers.propose_youth(
        c.ProposeYouth(mission_id, proposal_id, youth(n), profile(), TUTOR, days(at)), uow
    )
    return proposal_id


def data_of(uow, event_type: str) -> list[dict]:
    return [e.data for e in uow.published if e.type == event_type]


async def test_from_a_clause_to_the_bilan_delivered(uow) -> None:
    await enrol(uow, 1)
    await publish(uow)
    mission_id = await declare(uow)
    proposal_id = await propose(uow, mission_id)
    await handlers.answer_proposal(c.AnswerProposal(mission_id, proposal_id, True, days(5)), uow)
    await handlers.draft_convention(
        c.DraftConvention(
            mission_id,
            uid("conv"),
            date(2026, 11, 2),
            date(2026, 12, 18),
            UAI,
            "ref-204",
            date(2009, 5, 1),
            parties(minor=True),
            days(10),
        ),
        uow,
    )
    for role in SignatoryRole:
        await handlers.sign_convention(c.SignConvention(mission_id, role, days(12)), uow)
    for week, hours in ((date(2026, 11, 2), 28), (date(2026, 11, 9), 30)):
        await handlers.record_hours(
            c.RecordHours(mission_id, week, hours, datetime(2026, 11, 14, tzinfo=UTC)), uow
        )
    end = datetime(2026, 12, 18, 17, tzinfo=UTC)
    await handlers.complete_mission(c.CompleteMission(mission_id, "apprenticeship", end), uow)
    await handlers.write_bilan(
        c.WriteBilan(mission_id, SKILLS, "Ponctuel.", "Prépare une commande.", "CAP.", end), uow
    )
    for role in ("mlds_tutor", "company_referent", "youth"):
        await handlers.sign_bilan(c.SignBilan(mission_id, role, end), uow)
    pdf = await handlers.deliver_bilan(
        c.DeliverBilan(mission_id, end + timedelta(days=1)), uow, render_bilan_pdf
    )

    assert uow.published_types() == [
        "clause.clause.published.v1",
        "clause.mission.declared.v1",
        "clause.mission.status_changed.v1",
        "clause.proposal.made.v1",
        "clause.proposal.answered.v1",
        "clause.mission.status_changed.v1",
        "clause.convention.signed.v1",
        "clause.mission.status_changed.v1",
        "clause.hours.recorded.v1",
        "clause.hours.recorded.v1",
        "clause.mission.completed.v1",
        "clause.mission.status_changed.v1",
        "clause.bilan.delivered.v1",
    ]
    for event in uow.published:  # every one valid as its consumers read it, keyed by its aggregate
        REGISTRY.model(event.type).model_validate(event.data)
        assert event.subject in (CLAUSE, mission_id) and event.source == "raccrochage/clause_sociale"
    [signed] = data_of(uow, "clause.convention.signed.v1")
    assert signed["youth_minor"] is True and [s["role"] for s in signed["signatures"]] == [
        r.value for r in SignatoryRole
    ]
    [completed] = data_of(uow, "clause.mission.completed.v1")
    assert (completed["outcome"], completed["hours_done"], completed["youth_id"]) == (
        "apprenticeship",
        58,
        youth(1),
    )
    [delivered] = data_of(uow, "clause.bilan.delivered.v1")
    assert delivered["document_sha256"] == hashlib.sha256(pdf).hexdigest()
    assert (
        delivered["skills_acquired"],
        delivered["skills_in_progress"],
        delivered["skills_not_acquired"],
    ) == (2, 1, 1)
    assert uow.committed["bilans"][mission_id][1] == pdf

    proof = await views.proof_of_execution(CLAUSE, uow)
    assert (proof.hours_required, proof.hours_declared, proof.hours_planned, proof.hours_done) == (
        450,
        150,
        58,
        58,
    )
    assert proof.hours_by_youth == {youth(1): 58}

    # Nothing about the youth's identity, the site's address or the bilan's remarks left the service.
    stream = json.dumps([e.data for e in uow.published], ensure_ascii=False)
    for private in (
        "2009-05-01",
        "p-youth",
        "p-guardian",
        "rue des Docks",
        "Ponctuel",
        "Prépare une commande",
    ):
        assert private not in stream


async def test_a_refused_command_commits_nothing(uow) -> None:
    await publish(uow)
    mission_id = await declare(uow)
    await handlers.reserve_mission(c.ReserveMission(mission_id, TUTOR, days(1)), uow)
    commits, published = uow.commits, len(uow.published)
    with pytest.raises(Refused, match="not enrolled on an MLDS action"):
        await handlers.propose_youth(
            c.ProposeYouth(mission_id, uid("p"), youth(9), profile(), TUTOR, days(1)), uow
        )
    assert uow.committed["missions"][mission_id].pending_proposal is None
    with pytest.raises(TransitionRefused):
        await handlers.complete_mission(c.CompleteMission(mission_id, "job", days(2)), uow)
    assert uow.commits == commits and len(uow.published) == published


async def test_ids_are_not_reused(uow) -> None:
    await publish(uow)
    await declare(uow)
    with pytest.raises(AlreadyExists):
        await publish(uow)
    with pytest.raises(AlreadyExists):
        await declare(uow)


async def test_one_youth_per_company_at_a_time(uow) -> None:
    await enrol(uow, 1)
    await enrol(uow, 2)
    await publish(uow)
    first, second = await declare(uow, "m1"), await declare(uow, "m2")
    proposal = await propose(uow, first, 1)
    await handlers.reserve_mission(c.ReserveMission(second, TUTOR, days(2)), uow)
    with pytest.raises(CompanyBusy, match="batisud-33 has a proposal waiting for its answer"):
        await handlers.propose_youth(
            c.ProposeYouth(second, uid("p2"), youth(2), profile(), TUTOR, days(2)), uow
        )
    await handlers.answer_proposal(c.AnswerProposal(first, proposal, False, days(3), "schedule"), uow)
    await handlers.propose_youth(c.ProposeYouth(second, uid("p2"), youth(2), profile(), TUTOR, days(3)), uow)
    assert uow.committed["companies"]["batisud-33"] == uid("p2")


async def test_a_tutor_who_read_a_free_mission_loses_to_one_who_reserved_it_first(uow) -> None:
    await publish(uow)
    mission_id = await declare(uow)
    stale = uow.committed["missions"][mission_id]
    await handlers.reserve_mission(c.ReserveMission(mission_id, "tuteur-a", days(1)), uow)

    class StaleRead(type(uow)):
        async def _begin(self) -> None:
            await super()._begin()
            self.missions.get = _returning(stale)

    racing = StaleRead()
    racing.committed = uow.committed
    with pytest.raises(MissionTaken, match="reserved by another tutor first"):
        await handlers.reserve_mission(c.ReserveMission(mission_id, "tuteur-b", days(1)), racing)
    assert racing.commits == 0 and racing.published == []
    assert uow.committed["missions"][mission_id].reserved_by == "tuteur-a"


def _returning(mission):
    async def get(mission_id: str, *, lock: bool = True):
        return mission

    return get


async def test_reminders_at_day_10_and_lapses_past_day_15_on_a_frozen_clock(uow) -> None:
    await enrol(uow, 1)
    await publish(uow)
    mission_id = await declare(uow)
    await propose(uow, mission_id, at=0)

    async def run(at: float) -> tuple[list, list]:
        report = await handlers.run_proposal_deadlines(c.RunProposalDeadlines(days(at)), uow)
        return report.reminded, report.lapsed

    assert await run(9.9) == ([], [])
    assert await run(10) == ([mission_id], [])
    assert await run(12) == ([], [])  # reminded once
    [reminder] = data_of(uow, "clause.answer.reminder.v1")
    assert reminder["recipients"] == ["buyer", "mlds_tutor"] and reminder["buyer_id"] == "bordeaux-metropole"
    assert await run(15) == ([], [])  # day 15 is still in time
    assert await run(15.01) == ([], [mission_id])
    assert await run(16) == ([], [])
    mission = uow.committed["missions"][mission_id]
    assert mission.status is MissionStatus.DISPONIBLE and mission.reserved_by is None
    assert uow.committed["companies"]["batisud-33"] is None  # the company's slot is free again
    [lapsed] = data_of(uow, "clause.proposal.lapsed.v1")
    assert lapsed["lapsed_at"] == "2026-10-16T09:14:24Z"
    assert data_of(uow, "clause.mission.status_changed.v1")[-1]["action"] == "lapse"
    with pytest.raises(TransitionRefused):
        await handlers.answer_proposal(c.AnswerProposal(mission_id, uid("x"), True, days(16)), uow)


async def test_conventions_of_one_tutor_at_one_site_do_not_overlap(uow) -> None:
    await enrol(uow, 1)
    await enrol(uow, 2)
    await publish(uow)
    first, second = await declare(uow, "m1"), await declare(uow, "m2")
    for n, mission_id in enumerate((first, second), 1):
        proposal = await propose(uow, mission_id, n, at=n)
        await handlers.answer_proposal(c.AnswerProposal(mission_id, proposal, True, days(n + 0.5)), uow)

    def draft(mission_id: str, starts: date, ends: date) -> c.DraftConvention:
        return c.DraftConvention(
            mission_id,
            uid(f"conv-{mission_id}"),
            starts,
            ends,
            UAI,
            "ref-204",
            date(2009, 5, 1),
            parties(True),
            days(10),
        )

    await handlers.draft_convention(draft(first, date(2026, 11, 2), date(2026, 11, 27)), uow)
    with pytest.raises(Refused, match="ref-204 already tutors a youth at this site"):
        await handlers.draft_convention(draft(second, date(2026, 11, 23), date(2026, 12, 18)), uow)
    await handlers.draft_convention(draft(second, date(2026, 11, 28), date(2026, 12, 18)), uow)


async def test_an_enrolment_redelivered_is_handled_once(uow) -> None:
    accepted = EnrolmentAccepted(
        request_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        youth_id=youth(3),
        decided_at=T0,
        dispositif="paps",
        starts_on=date(2026, 9, 7),
    )
    event = new_event(accepted, source="raccrochage/mlds", subject="x")
    assert await handlers.on_enrolment_accepted(event, uow)
    assert not await handlers.on_enrolment_accepted(event, uow)
    assert uow.committed["enrolments"][youth(3)].dispositif == "paps"


async def test_bientot_echues_lists_clauses_ending_soon_with_hours_to_plan(uow) -> None:
    await enrol(uow, 1)
    soon, later = uid("soon"), uid("later")
    await publish(uow, 50_000, date(2029, 3, 31), soon)  # 150 h
    await publish(uow, 50_000, date(2030, 8, 31), later)
    mission_id = await declare(uow, "m1", hours=100, clause_id=soon)
    proposal = await propose(uow, mission_id)
    await handlers.answer_proposal(c.AnswerProposal(mission_id, proposal, True, days(2)), uow)

    due = await views.bientot_echues(date(2028, 12, 1), uow)
    assert [(d.clause.clause_id, d.proof.hours_planned, d.hours_to_plan) for d in due] == [(soon, 100, 50)]
    assert await views.bientot_echues(date(2028, 9, 30), uow) == []  # more than six months before


async def test_the_bilan_waits_for_every_signature(uow) -> None:
    await enrol(uow, 1)
    await publish(uow)
    mission_id = await declare(uow)
    proposal = await propose(uow, mission_id)
    await handlers.answer_proposal(c.AnswerProposal(mission_id, proposal, True, days(2)), uow)
    await handlers.draft_convention(
        c.DraftConvention(
            mission_id,
            uid("conv"),
            date(2026, 11, 2),
            date(2026, 12, 18),
            UAI,
            "ref-204",
            date(2005, 1, 1),
            parties(minor=False),
            days(10),
        ),
        uow,
    )
    for role in ("company", "mlds_structure", "youth"):
        await handlers.sign_convention(c.SignConvention(mission_id, role, days(11)), uow)
    end = datetime(2026, 12, 18, tzinfo=UTC)
    await handlers.complete_mission(c.CompleteMission(mission_id, "training", end), uow)
    await handlers.write_bilan(
        c.WriteBilan(mission_id, (SkillAssessment("Accueil", "acquired"),), "a", "b", "c", end), uow
    )
    await handlers.sign_bilan(c.SignBilan(mission_id, "mlds_tutor", end), uow)
    rendered = []
    with pytest.raises(Refused, match="waits for the signature of company_referent, youth"):
        await handlers.deliver_bilan(
            c.DeliverBilan(mission_id, end), uow, lambda d, t: rendered.append(d) or b""
        )
    assert rendered == [] and mission_id not in uow.committed["bilans"]

    # Signed by all, but the youth was erased after the tutor's name lookup: nothing is rendered.
    for role in ("company_referent", "youth"):
        await handlers.sign_bilan(c.SignBilan(mission_id, role, end), uow)
    with pytest.raises(ConcurrentChange, match="its youth was erased since the name was read"):
        await handlers.deliver_bilan(
            c.DeliverBilan(mission_id, end, {"youth": "Léa Martin"}, named_youth_id=youth(2)),
            uow,
            lambda d, t: rendered.append(d) or b"",
        )
    assert rendered == [] and mission_id not in uow.committed["bilans"]
    await handlers.deliver_bilan(
        c.DeliverBilan(mission_id, end, {"youth": "Léa Martin"}, named_youth_id=youth(1)),
        uow,
        lambda d, t: rendered.append(d) or b"",
    )
    assert len(rendered) == 1 and mission_id in uow.committed["bilans"]
