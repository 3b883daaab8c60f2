"""From a case's domain events to the contract events: what goes out, what stays in, and ids."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from raccrochage_contracts import CloudEvent, new_event
from raccrochage_contracts.events.reperage_v1 import YouthFound, YouthIdentified
from raccrochage_platform.fakes import FakeUnitOfWork
from raccrochage_psad.domain.case import Case
from raccrochage_psad.domain.contact import Channel, ContactOutcome
from raccrochage_psad.domain.interview import InterviewerRole, InterviewOutcome
from raccrochage_psad.domain.solution import SolutionKind
from raccrochage_psad.service_layer.messages import envelopes, opened_envelopes, payloads, request_id

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
YOUTH = "ab" * 32
OUTBOX = FakeUnitOfWork(source="raccrochage/psad")  # builds the envelopes


def _case(zap: str | None = "bordeaux-nord", departement: str = "33") -> Case:
    return Case.open(
        str(uuid.uuid4()),
        YOUTH,
        "psad-33-bordeaux-nord",
        departement,
        17,
        T0,
        zap=zap,
        level="2nde GT",
        last_diploma="DNB",
        months_since_leaving=4,
    )


def test_a_case_life_maps_to_the_contract_events_in_order() -> None:
    case = _case()
    case.assign("c-1", T0)
    case.record_contact_attempt(Channel.PHONE, ContactOutcome.REACHED, T0 + timedelta(hours=1))
    case.schedule_interview(T0 + timedelta(days=2), InterviewerRole.PSY_EN, T0 + timedelta(hours=2))
    case.record_interview(InterviewOutcome.SEEN, T0 + timedelta(days=2))
    case.propose_solution(SolutionKind.FOQUALE_SEAT, T0 + timedelta(days=2, hours=1), ("cuisine",))
    types = [p.event_type for p in payloads(case)]
    assert types == [
        "psad.case.opened.v1",
        "psad.contact.recorded.v1",
        "psad.case.status_changed.v1",
        "psad.interview.scheduled.v1",
        "psad.case.status_changed.v1",
        "psad.interview.recorded.v1",
        "psad.case.status_changed.v1",
        "psad.solution.requested.v1",
        "psad.case.status_changed.v1",
    ]  # the owner assignment and the proposal itself stay inside PSAD
    requested = next(p for p in payloads(case) if p.event_type == "psad.solution.requested.v1")
    assert requested.request_id == request_id(case.case_id, 1)
    assert (requested.age, requested.last_training, requested.wishes) == (17, "2nde GT", ["cuisine"])
    scheduled = next(p for p in payloads(case) if p.event_type == "psad.interview.scheduled.v1")
    assert scheduled.deadline == (T0 + timedelta(hours=1)).date() + timedelta(days=15)


def test_no_contract_event_carries_a_field_that_could_identify_the_youth() -> None:
    case = _case()
    case.record_contact_attempt(Channel.PHONE, ContactOutcome.MOVED, T0)
    case.transfer("psad-40-mont-de-marsan", T0 + timedelta(hours=1))
    forbidden = {"nom", "prenom", "ine", "telephone", "courriel", "adresse", "date_naissance"}
    for payload in payloads(case):
        assert not forbidden & set(payload.model_dump())
    transferred = next(p for p in payloads(case) if p.event_type == "psad.case.transferred.v1")
    assert (transferred.to_psad_id, transferred.departement) == ("psad-40-mont-de-marsan", "40")


def test_ids_derive_from_the_cause_so_handling_it_again_makes_the_same_events() -> None:
    cause = new_event(
        YouthFound(youth_id=YOUTH, psad_id="psad-33-bordeaux-nord", base="cfa", enrolled_since=T0.date()),
        source="raccrochage/reperage",
        subject=YOUTH,
    )
    first, second = _case(), _case()
    second.case_id = first.case_id
    for case in (first, second):
        case.mark_found("cfa", T0 + timedelta(days=1))
    ids = [[e.id for e in envelopes(OUTBOX, case, cause)] for case in (first, second)]
    assert ids[0] == ids[1] and len(set(ids[0])) == len(ids[0])
    assert first.events == []  # drained
    fresh = _case()
    assert all(
        e.causationid == cause.id and e.subject == fresh.case_id for e in envelopes(OUTBOX, fresh, cause)
    )


@pytest.mark.parametrize("zap", [None, "bordeaux-rive-droite", "ile-d-oleron"])
@pytest.mark.parametrize("chained", [False, True])
def test_opened_envelopes_are_what_envelopes_gives(zap: str | None, chained: bool) -> None:
    cause = new_event(
        YouthIdentified(
            youth_id=YOUTH,
            campaign_id="c",
            psad_id="psad-33-bordeaux-nord",
            departement="2A",
            age=17,
            months_since_leaving=4,
            as_of=T0.date(),
        ),
        source="raccrochage/reperage",
        subject=YOUTH,
        correlationid=uuid.uuid4() if chained else None,
    )
    slow, fast = _case(zap=zap, departement="2A"), _case(zap=zap, departement="2A")
    fast.case_id = slow.case_id
    (expected,) = envelopes(OUTBOX, slow, cause)
    (built,) = opened_envelopes(OUTBOX, [(fast, cause)])
    assert fast.events == []
    got, want = json.loads(built.to_json()), json.loads(expected.to_json())
    assert got.pop("time") == "2026-11-02T09:00:00Z"
    want.pop("time")
    assert got == want
    assert CloudEvent.from_json(built.to_json()) == built  # the model it says it is


def test_opened_envelopes_refuse_a_batch_whose_first_payload_breaks_the_contract() -> None:
    """Built without validation, so the first of each batch is checked: a value the contract
    refuses (never from a validated youth.identified) fails the batch instead of publishing."""
    cause = new_event(
        YouthIdentified(
            youth_id=YOUTH,
            campaign_id="c",
            psad_id="psad-33",
            departement="33",
            age=17,
            months_since_leaving=4,
            as_of=T0.date(),
        ),
        source="raccrochage/reperage",
        subject=YOUTH,
    )
    case = _case()
    case.psad_id = "not a psad id"
    with pytest.raises(ValueError, match="psad_id"):
        opened_envelopes(OUTBOX, [(case, cause)])
