"""The service layer with an in-memory unit of work: PSAD requests, admission, enrolment, exit,
capacities, and the survey rebuilt from what was published."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from raccrochage_contracts import CloudEvent, new_event
from raccrochage_contracts.events.psad_v1 import SolutionRequested
from raccrochage_contracts.registry import load_all
from raccrochage_mlds.adapters.survey_files import survey_csv
from raccrochage_mlds.config import DEFAULT_CAPACITIES
from raccrochage_mlds.domain.admission import ADMISSION_STEPS, StepOutcome
from raccrochage_mlds.domain.catalogue import CapacityError, DispositifKind, catalogue, read_directory
from raccrochage_mlds.domain.dates import Dated, SchoolYear
from raccrochage_mlds.domain.facts import Facts
from raccrochage_mlds.domain.states import CandidacyError, CandidacyStatus, ExitDestination, WithdrawalReason
from raccrochage_mlds.reference import directory_text
from raccrochage_mlds.service_layer import candidacies, dispositifs
from raccrochage_mlds.service_layer.survey import survey_from_events
from raccrochage_rig.testing.events import mission_completed
from structlog.testing import capture_logs

from .fakes import FakeMldsUnitOfWork

T0 = datetime(2026, 11, 12, 10, 0, tzinfo=UTC)
REGISTRY = load_all()
K = DispositifKind


def sites():
    return catalogue(read_directory(directory_text()), DEFAULT_CAPACITIES, T0 - timedelta(days=60))


@pytest.fixture
def uow() -> FakeMldsUnitOfWork:
    return FakeMldsUnitOfWork(sites())


def request(
    kind: str = "mlds_paps", *, age: int = 17, months: int | None = 3, departement: str = "24", **more
):
    payload = SolutionRequested(
        case_id=uuid.uuid4(),
        youth_id=uuid.uuid4().hex * 2,
        psad_id=f"psad-{departement.lower()}",
        request_id=uuid.uuid4(),
        solution_number=1,
        kind=kind,
        provider="mlds",
        age=age,
        last_training=more.pop("last_training", "2nde GT"),
        last_diploma=more.pop("last_diploma", "AUCUN"),
        months_since_leaving=months,
        departement=departement,
        requested_at=T0 - timedelta(minutes=5),
        **more,
    )
    return new_event(payload, source="raccrochage/psad", subject=str(payload.case_id)), payload


def types(uow: FakeMldsUnitOfWork) -> list[str]:
    return uow.published_types()


def strictly_valid(uow: FakeMldsUnitOfWork) -> None:
    """Every published event validates as its producer's model, strictly."""
    for event in uow.published:
        REGISTRY.model(event.type).model_validate(event.data)


async def test_an_eligible_paps_request_becomes_an_admissible_candidacy_without_an_answer_yet(uow) -> None:
    envelope, payload = request(wishes=["mlds:paps-24-02"])
    candidacy_id = await candidacies.handle_solution_requested(uow, envelope, payload, T0)
    stored = uow.committed_candidacies[candidacy_id]
    assert (stored.status, stored.dispositif_id) == (CandidacyStatus.ADMISSIBLE, "paps-24-02")
    assert types(uow) == ["mlds.candidacy.received.v1", "mlds.candidacy.decided.v1"]
    decided = uow.published_data("mlds.candidacy.decided.v1")[0]
    assert decided["outcome"] == "eligible"
    assert {r["code"]: r["outcome"] for r in decided["rules"]} == {
        "paps.age_16_to_18": "pass",
        "paps.at_risk_or_left_less_than_1_year": "pass",
        "paps.without_solution": "pass",
        "paps.without_qualification": "pass",
    }
    assert all(
        e.correlationid == envelope.correlationid and e.causationid == envelope.id for e in uow.published
    )
    strictly_valid(uow)


async def test_a_failing_rule_answers_refused_at_once_with_every_failing_code(uow) -> None:
    """A micro-lycée for a youth of 16 out of school for 3 months: two rules fail."""
    envelope, payload = request("mlds_micro_lycee", age=16, months=3, departement="47")
    await candidacies.handle_solution_requested(uow, envelope, payload, T0)
    assert types(uow) == [
        "mlds.candidacy.received.v1",
        "mlds.candidacy.decided.v1",
        "mlds.enrolment.refused.v1",
    ]
    refused = uow.published[-1]
    assert refused.subject == str(payload.request_id)
    assert refused.data["reason"] == "not_eligible"
    assert refused.data["failed_rules"] == [
        "micro_lycee.age_17_to_25_on_1_september",
        "micro_lycee.out_of_school_6_months",
    ]
    assert (refused.data["request_id"], refused.data["case_id"]) == (
        str(payload.request_id),
        str(payload.case_id),
    )
    strictly_valid(uow)


async def test_missing_facts_wait_for_the_coordinator_then_the_psad_gets_its_answer(uow) -> None:
    envelope, payload = request("mlds_dipa", departement="33", last_training=None)
    candidacy_id = await candidacies.handle_solution_requested(uow, envelope, payload, T0)
    decided = uow.published_data("mlds.candidacy.decided.v1")[0]
    assert decided["outcome"] == "incomplete"
    missing = [f for r in decided["rules"] for f in r["missing_facts"]]
    assert missing == ["months_in_france", "french_level", "schooled_in_country_of_origin", "had_upe2a"]
    assert "mlds.enrolment.refused.v1" not in types(uow)
    decision = await candidacies.record_facts(
        uow, candidacy_id, T0 + timedelta(days=2), months_in_france=Dated(20, (T0 + timedelta(days=2)).date())
    )
    assert decision.failed_rules == ("dipa.arrived_less_than_1_year",)
    refused = uow.published[-1]
    assert refused.type == "mlds.enrolment.refused.v1"
    assert refused.correlationid == envelope.correlationid  # the PSAD's chain carries on
    strictly_valid(uow)


async def test_the_same_request_delivered_twice_or_asked_again_makes_one_candidacy(uow) -> None:
    envelope, payload = request()
    first = await candidacies.handle_solution_requested(uow, envelope, payload, T0)
    assert await candidacies.handle_solution_requested(uow, envelope, payload, T0) is None
    again = CloudEvent.model_validate({**json.loads(envelope.to_json()), "id": str(uuid.uuid4())})
    assert await candidacies.handle_solution_requested(uow, again, payload, T0) == first
    assert len(uow.committed_candidacies) == 1 and len(uow.published) == 2


async def test_a_request_for_foquale_or_another_solution_is_not_ours(uow) -> None:
    envelope, payload = request()
    foquale = payload.model_copy(update={"provider": "foquale", "kind": "foquale_seat"})
    assert await candidacies.handle_solution_requested(uow, envelope, foquale, T0) is None
    assert uow.commits == 0


async def through_admission(uow, candidacy_id, kind: DispositifKind, start: datetime) -> datetime:
    now = start
    for step in ADMISSION_STEPS[kind]:
        now += timedelta(days=1)
        await candidacies.record_admission_step(
            uow, candidacy_id, step.code, StepOutcome.FAVOURABLE, now.date(), sorted(step.deciders)[0], now
        )
    return now


async def test_admission_enrolment_and_exit_answer_the_psad_and_move_the_places(uow) -> None:
    envelope, payload = request(age=16, wishes=["mlds:paps-24-02"])
    candidacy_id = await candidacies.handle_solution_requested(uow, envelope, payload, T0)
    now = await through_admission(uow, candidacy_id, K.PAPS, T0)
    assert await candidacies.admit(uow, candidacy_id, now) is True
    accepted = uow.published_data("mlds.enrolment.accepted.v1")
    assert accepted[0]["starts_on"] == now.date().isoformat()  # PAPS: entries all year
    assert accepted[0]["dispositif_id"] == "paps-24-02"
    place = uow.published_data("mlds.dispositif.updated.v1")[-1]
    assert (place["change"], place["places_taken"], place["places_left"]) == ("place_taken", 1, 14)
    await candidacies.enrol(uow, candidacy_id, now.date(), now)
    started = uow.published_data("mlds.enrolment.started.v1")[0]
    # 16 the day before: 16 or 17, under the obligation de formation either way.
    assert (started["departement"], started["age"], started["under_obligation_de_formation"]) == (
        "24",
        16,
        True,
    )
    later = now + timedelta(days=120)
    await candidacies.exit_enrolment(
        uow, candidacy_id, ExitDestination.BACK_TO_SCHOOL, later.date(), later, school_level="2nde"
    )
    exited = uow.published_data("mlds.enrolment.exited.v1")[0]
    assert (exited["destination"], exited["school_level"]) == ("back_to_school", "2nde")
    freed = uow.published_data("mlds.dispositif.updated.v1")[-1]
    assert (freed["change"], freed["places_taken"]) == ("place_released", 0)
    assert uow.committed_sites["paps-24-02"].places_taken == 0
    strictly_valid(uow)


async def test_a_full_site_refuses_with_no_place(uow) -> None:
    await dispositifs.set_capacity(uow, "dipa-33-01", 1, T0)
    ids = []
    for _ in range(2):
        envelope, payload = request("mlds_dipa", departement="33", age=16)
        ids.append(await candidacies.handle_solution_requested(uow, envelope, payload, T0))
    for candidacy_id in ids:
        await candidacies.record_facts(
            uow,
            candidacy_id,
            T0 + timedelta(hours=1),
            months_in_france=Dated(2, T0.date()),
            french_level="none",
            schooled_in_country_of_origin=True,
            had_upe2a=False,
        )
        now = await through_admission(uow, candidacy_id, K.DIPA, T0 + timedelta(hours=1))
    assert [await candidacies.admit(uow, i, now + timedelta(hours=1)) for i in ids] == [True, False]
    assert uow.committed_candidacies[ids[1]].status is CandidacyStatus.REFUSED
    assert uow.published_data("mlds.enrolment.refused.v1")[-1]["reason"] == "no_place"
    assert uow.committed_sites["dipa-33-01"].places_taken == 1


async def test_a_withdrawal_after_admission_frees_the_place(uow) -> None:
    envelope, payload = request(wishes=["mlds:paps-24-02"])
    candidacy_id = await candidacies.handle_solution_requested(uow, envelope, payload, T0)
    now = await through_admission(uow, candidacy_id, K.PAPS, T0)
    await candidacies.admit(uow, candidacy_id, now)
    await candidacies.withdraw(uow, candidacy_id, WithdrawalReason.NO_SHOW, now + timedelta(days=3))
    assert uow.committed_sites["paps-24-02"].places_taken == 0
    assert types(uow).count("mlds.enrolment.accepted.v1") == 1
    assert "mlds.enrolment.refused.v1" not in types(uow)  # one answer only


async def consumed(uow: FakeMldsUnitOfWork, envelope: CloudEvent, mission, now: datetime) -> list[uuid.UUID]:
    """What the `mlds_clause` consumer does: claim in the inbox, handle if new, commit."""
    async with uow:
        moved = []
        if await uow.claim("mlds_clause", [(envelope.id, envelope.type)]):
            moved = await candidacies.mission_completed(uow, envelope, mission, now)
        await uow.commit()
    return moved


async def admitted_youth(uow, *, enrolled: bool) -> tuple[uuid.UUID, str, datetime]:
    envelope, payload = request(wishes=["mlds:paps-24-02"])
    candidacy_id = await candidacies.handle_solution_requested(uow, envelope, payload, T0)
    now = await through_admission(uow, candidacy_id, K.PAPS, T0)
    await candidacies.admit(uow, candidacy_id, now)
    if enrolled:
        await candidacies.enrol(uow, candidacy_id, now.date(), now)
    return candidacy_id, payload.youth_id, now


async def test_a_mission_ending_in_an_apprenticeship_exits_the_enrolment_there_once(uow) -> None:
    candidacy_id, youth_id, now = await admitted_youth(uow, enrolled=True)
    end = now + timedelta(days=60)
    envelope, mission = mission_completed(youth_id, "apprenticeship", completed_at=end)
    assert await consumed(uow, envelope, mission, end + timedelta(hours=1)) == [candidacy_id]
    stored = uow.committed_candidacies[candidacy_id]
    assert stored.status is CandidacyStatus.EXITED
    assert (stored.exit.destination, stored.exit.exited_on) == (ExitDestination.APPRENTICESHIP, end.date())
    exited = uow.published_data("mlds.enrolment.exited.v1")
    assert [(e["destination"], e["exited_on"]) for e in exited] == [
        ("apprenticeship", end.date().isoformat())
    ]
    assert uow.committed_sites["paps-24-02"].places_taken == 0
    # Delivered again: the inbox knows it; nothing moves twice.
    assert await consumed(uow, envelope, mission, end + timedelta(hours=2)) == []
    assert len(uow.published_data("mlds.enrolment.exited.v1")) == 1
    strictly_valid(uow)


async def test_a_mission_ending_in_a_job_withdraws_an_admission_not_started(uow) -> None:
    candidacy_id, youth_id, now = await admitted_youth(uow, enrolled=False)
    envelope, mission = mission_completed(youth_id, "job", completed_at=now + timedelta(days=30))
    assert await consumed(uow, envelope, mission, now + timedelta(days=30)) == [candidacy_id]
    stored = uow.committed_candidacies[candidacy_id]
    assert (stored.status, stored.withdrawal.reason) == (
        CandidacyStatus.WITHDRAWN,
        WithdrawalReason.OTHER_SOLUTION,
    )
    assert uow.committed_sites["paps-24-02"].places_taken == 0


async def test_another_outcome_or_a_youth_holding_no_place_changes_nothing(uow) -> None:
    candidacy_id, youth_id, now = await admitted_youth(uow, enrolled=True)
    published = len(uow.published)
    logged = []
    for youth, outcome in ((youth_id, "training"), ("e" * 64, "apprenticeship")):
        envelope, mission = mission_completed(youth, outcome, completed_at=now + timedelta(days=9))
        with capture_logs() as logs:
            assert await consumed(uow, envelope, mission, now + timedelta(days=10)) == []
        logged += logs
    assert [(log["event"], log["mission_id"]) for log in logged] == [
        ("mission_completed_without_enrolment", str(mission.mission_id))
    ]
    assert "e" * 64 not in str(logged)
    assert uow.committed_candidacies[candidacy_id].status is CandidacyStatus.ENROLLED
    assert len(uow.published) == published and uow.inbox["mlds_clause"]  # acknowledged


async def test_a_refused_command_commits_nothing(uow) -> None:
    envelope, payload = request(wishes=["mlds:paps-24-02"])
    candidacy_id = await candidacies.handle_solution_requested(uow, envelope, payload, T0)
    before = (uow.commits, len(uow.published), uow.committed_candidacies[candidacy_id].__dict__.copy())
    with pytest.raises(CandidacyError):
        await candidacies.enrol(uow, candidacy_id, T0.date(), T0 + timedelta(hours=1))
    with pytest.raises(CandidacyError):
        await candidacies.admit(uow, candidacy_id, T0 + timedelta(hours=1))  # the interview is to be held
    assert (uow.commits, len(uow.published), uow.committed_candidacies[candidacy_id].__dict__) == before
    assert uow.committed_sites["paps-24-02"].places_taken == 0


async def test_capacities_set_by_a_coordinator(uow) -> None:
    site = await dispositifs.set_capacity(uow, "micro_lycee-47-01", 24, T0)
    assert (site.capacity, site.revision) == (24, 2)
    updated = uow.published_data("mlds.dispositif.updated.v1")[-1]
    assert (updated["change"], updated["capacity"], updated["entries"]) == (
        "capacity_set",
        24,
        "start_of_school_year",
    )
    with pytest.raises(CapacityError, match="negative"):
        await dispositifs.set_capacity(uow, "micro_lycee-47-01", -1, T0)


async def test_a_capacity_below_the_places_taken_is_refused(uow) -> None:
    envelope, payload = request(wishes=["mlds:paps-24-02"])
    candidacy_id = await candidacies.handle_solution_requested(uow, envelope, payload, T0)
    now = await through_admission(uow, candidacy_id, K.PAPS, T0)
    await candidacies.admit(uow, candidacy_id, now)
    commits = uow.commits
    with pytest.raises(CapacityError, match="below the 1 places taken"):
        await dispositifs.set_capacity(uow, "paps-24-02", 0, now)
    assert uow.commits == commits


async def test_the_catalogue_is_loaded_once() -> None:
    uow = FakeMldsUnitOfWork()
    assert len(await dispositifs.load_catalogue(uow, sites())) == 51
    assert await dispositifs.load_catalogue(uow, sites()) == []
    assert types(uow).count("mlds.dispositif.updated.v1") == 51
    strictly_valid(uow)


async def test_a_coordinator_records_a_pupil_at_risk_with_a_pafi(uow) -> None:
    facts = Facts(age=Dated(16, T0.date()), still_enrolled=True, qualifying_diploma=False)
    candidacy_id = await candidacies.receive_candidacy(
        uow, "c" * 64, K.PAPS, "40", facts, T0, dispositif_id="paps-40-01"
    )
    await candidacies.record_pafi(uow, candidacy_id, T0.date(), T0 + timedelta(hours=1))
    now = await through_admission(uow, candidacy_id, K.PAPS, T0 + timedelta(hours=1))
    await candidacies.admit(uow, candidacy_id, now)
    await candidacies.enrol(uow, candidacy_id, now.date(), now)
    started = uow.published_data("mlds.enrolment.started.v1")[0]
    assert started["pafi"] is True
    assert "mlds.enrolment.accepted.v1" not in types(uow)  # no PSAD asked
    received = uow.published_data("mlds.candidacy.received.v1")[0]
    assert received["channel"] == "coordinator" and "request_id" not in received


def keys(node) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for value in node.values() for k in keys(value)}
    if isinstance(node, list):
        return {k for value in node for k in keys(value)}
    return set()


async def test_published_events_carry_no_fact_value_nor_identity(uow) -> None:
    envelope, payload = request("mlds_micro_lycee", age=19, months=8, departement="33")
    candidacy_id = await candidacies.handle_solution_requested(uow, envelope, payload, T0)
    every_key = keys([e.data for e in uow.published])
    assert not every_key & {
        "ine",
        "name",
        "first_name",
        "birth_date",
        "phone",
        "email",
        "address",
        "evidence",
    }
    text = json.dumps([e.data for e in uow.published])
    stored = uow.committed_candidacies[candidacy_id].decisions[0]
    for result in stored.results:  # what each rule saw stays in the MLDS
        assert result.evidence and result.evidence not in text
    assert payload.last_training not in text


async def test_the_survey_rebuilt_from_the_published_events_is_the_same_file() -> None:
    uow = FakeMldsUnitOfWork(sites())
    start = datetime(2025, 9, 15, 9, tzinfo=UTC)
    for n in range(14):
        envelope, payload = request(
            departement=["24", "33"][n % 2], wishes=[f"mlds:paps-{['24', '33'][n % 2]}-01"]
        )
        payload = payload.model_copy(update={"requested_at": start})
        candidacy_id = await candidacies.handle_solution_requested(uow, envelope, payload, start)
        now = await through_admission(uow, candidacy_id, K.PAPS, start)
        await candidacies.admit(uow, candidacy_id, now)
        await candidacies.enrol(uow, candidacy_id, now.date(), now)
        if n < 11:
            left = now + timedelta(days=30 * (n + 1))
            await candidacies.exit_enrolment(uow, candidacy_id, ExitDestination.TRAINING, left.date(), left)
    year = SchoolYear.parse("2025-2026")
    replay = [CloudEvent.from_json(e.to_json()) for e in uow.published]
    first = survey_csv(survey_from_events(replay, year))
    assert first == survey_csv(survey_from_events(list(reversed(replay)) + replay, year))
    lines = first.splitlines()
    assert lines[0] == "section,dispositif,departement,category,value"
    assert "entries,paps,24,count,7" in lines and "entries,paps,all,count,14" in lines
    assert "exits,paps,all,count,11" in lines
    assert (
        "back_in_training_share,paps,all,share_percent,100.0" not in lines
    )  # none out of training: withheld
    assert date(2025, 9, 1) in year


async def test_a_batch_of_requests_is_decided_as_one_by_one(uow) -> None:
    refused, eligible = request(age=22), request(wishes=["mlds:paps-24-02"])
    seat = request()
    foquale = (seat[0], seat[1].model_copy(update={"provider": "foquale", "kind": "foquale_seat"}))
    again = (new_event(eligible[1], source="raccrochage/psad", subject="again"), eligible[1])
    async with uow:
        added = await candidacies.solutions_requested(uow, [refused, foquale, eligible, again], T0)
        await uow.commit()
    assert len(added) == 2
    one_by_one = FakeMldsUnitOfWork(sites())
    for envelope, payload in (refused, eligible):
        await candidacies.handle_solution_requested(one_by_one, envelope, payload, T0)
    assert types(uow) == types(one_by_one)
    assert [e.data for e in uow.published] == [e.data for e in one_by_one.published]
    async with uow:  # a request with its candidacy already adds nothing
        assert await candidacies.solutions_requested(uow, [eligible], T0) == []
