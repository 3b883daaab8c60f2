"""The projection rules: order-independent, so a replay in any interleaving gives the same rows."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from raccrochage_ops.domain import projection
from raccrochage_ops.domain.projection import Candidacy, Offer, Reservation, Store, Youth
from raccrochage_ops.synthetic import campaign, payload, stream_of, youth_id


def project(events) -> Store:
    store = Store()
    projection.apply(store, events)
    return store


def rows(store: Store) -> dict:
    return {kind.TABLE: {k: r.values() for k, r in store.rows[kind].items()} for kind in projection.ROW_KINDS}


def interleave(events, rng: random.Random):
    """Each stream in its order, the streams mixed at random (what ops' five consumers see)."""
    queues: dict[str, list] = {}
    for event in events:
        queues.setdefault(stream_of(event[0]), []).append(event)
    out = []
    while queues:
        stream = rng.choice(sorted(queues))
        out.append(queues[stream].pop(0))
        if not queues[stream]:
            del queues[stream]
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_streams_interleaved_differently_give_the_same_rows(seed):
    events = campaign(300, seed=seed)
    expected = rows(project(events))
    assert rows(project(interleave(events, random.Random(seed)))) == expected


@pytest.mark.parametrize("seed", [4, 5])
def test_even_fully_shuffled_the_rows_are_the_same(seed):
    events = campaign(200, seed=seed)
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    assert rows(project(shuffled)) == rows(project(events))


def test_applying_twice_changes_nothing():
    """The inbox keeps an event from running twice; the rules would not mind anyway."""
    events = campaign(100, seed=9)
    assert rows(project(events + events)) == rows(project(events))


def _case(yid: str) -> dict:
    return {
        "case_id": "6b1c2f3e-0000-4000-8000-00000000c0de",
        "youth_id": yid,
        "psad_id": "psad-33-bordeaux-nord",
    }


def test_the_latest_status_wins_and_closing_wins_a_tie():
    yid = youth_id(1)
    at = datetime(2026, 11, 20, 10, tzinfo=UTC)
    events = [
        (
            "psad.case.closed.v1",
            payload("psad.case.closed.v1", **_case(yid), reason="moved", closed_at=at.isoformat()),
        ),
        (
            "psad.case.status_changed.v1",
            payload(
                "psad.case.status_changed.v1",
                **_case(yid),
                from_status="reached",
                to_status="in_solution",
                action="x",
                at=at.isoformat(),
            ),
        ),
        (
            "psad.case.status_changed.v1",
            payload(
                "psad.case.status_changed.v1",
                **_case(yid),
                from_status="to_contact",
                to_status="reached",
                action="x",
                at=datetime(2026, 11, 10, tzinfo=UTC).isoformat(),
            ),
        ),
    ]
    youth: Youth = project(events).rows[Youth][yid]
    assert (youth.status, youth.closed_reason) == ("closed", "moved")


def test_first_contact_is_the_earliest_whatever_the_order():
    yid = youth_id(2)
    times = [datetime(2026, 11, d, tzinfo=UTC) for d in (9, 3, 5)]
    events = [
        (
            "psad.contact.recorded.v1",
            payload("psad.contact.recorded.v1", **_case(yid), attempt_number=i + 1, at=t.isoformat()),
        )
        for i, t in enumerate(times)
    ]
    assert project(events).rows[Youth][yid].first_contact_at == times[1]


def test_a_stale_offer_is_fresh_again_once_confirmed_after_the_flag():
    offer_id = "0b1c2f3e-0000-4000-8000-0000000000aa"
    flagged = datetime(2026, 11, 1, tzinfo=UTC)
    stale = (
        "foquale.seat.stale.v1",
        payload("foquale.seat.stale.v1", offer_id=offer_id, last_confirmed_at=flagged.isoformat()),
    )
    confirmed = (
        "foquale.seat.updated.v1",
        payload(
            "foquale.seat.updated.v1",
            offer_id=offer_id,
            last_confirmed_at=datetime(2026, 11, 5, tzinfo=UTC).isoformat(),
            updated_at=datetime(2026, 11, 5, tzinfo=UTC).isoformat(),
            confirmed=True,
        ),
    )
    offer: Offer = project([confirmed, stale]).rows[Offer][offer_id]
    assert offer.stale_confirmed_at < offer.confirmed_at


def test_a_placement_marks_its_reservation_placed_even_before_it_is_seen():
    events = [e for e in campaign(200, seed=7) if e[0] == "foquale.placement.confirmed.v1"]
    store = project(events)
    assert events and all(r.placed and not r.made for r in store.rows[Reservation].values())


def test_mlds_exit_keeps_the_latest_destination():
    template = payload("mlds.enrolment.exited.v1")
    first = template.model_copy(update={"exited_on": template.started_on, "destination": "training"})
    later = template.model_copy(update={"exited_on": template.exited_on})
    store = project([("mlds.enrolment.exited.v1", later), ("mlds.enrolment.exited.v1", first)])
    candidacy: Candidacy = store.rows[Candidacy][str(template.candidacy_id)]
    assert candidacy.destination == later.destination


def test_events_no_read_model_needs_are_skipped():
    assert not projection.projects("psad.case.transferred.v1")
    assert projection.keys_of("psad.case.transferred.v1", payload("psad.case.transferred.v1")) == {
        Youth: payload("psad.case.transferred.v1").youth_id
    }
