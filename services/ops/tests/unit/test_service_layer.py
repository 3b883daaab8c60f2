"""The projection through the unit of work: one load and one save per commit, nothing on rollback."""

from __future__ import annotations

import uuid

import pytest
from raccrochage_contracts import new_event
from raccrochage_ops.domain import projection
from raccrochage_ops.domain.projection import Store, Youth
from raccrochage_ops.service_layer.projecting import CONSUMERS, project
from raccrochage_ops.synthetic import campaign
from raccrochage_platform.consumer import Event

from .fakes import FakeOpsUnitOfWork, FakeProjectionRepository


def as_events(pairs) -> list[Event]:
    out = []
    for event_type, data in pairs:
        envelope = new_event(
            data, source=f"raccrochage/{event_type.split('.')[0]}", subject="s", event_id=uuid.uuid4()
        )
        out.append(Event(envelope, data, None, 1))
    return out


async def test_a_batch_is_projected_at_commit_in_one_load():
    uow = FakeOpsUnitOfWork()
    events = as_events(campaign(50, seed=3))
    async with uow:
        await project(uow, events)
        assert uow.projections.tables[Youth] == {}
        await uow.commit()
    assert uow.projections.loads == 1
    expected = Store()
    projection.apply(expected, [(e.envelope.type, e.data) for e in events])
    assert {k: r.values() for k, r in uow.projections.tables[Youth].items()} == {
        k: r.values() for k, r in expected.rows[Youth].items()
    }


async def test_batches_in_several_commits_give_what_one_gives():
    pairs = campaign(80, seed=4)
    one, many = FakeOpsUnitOfWork(), FakeOpsUnitOfWork(FakeProjectionRepository())
    async with one:
        await project(one, as_events(pairs))
        await one.commit()
    for start in range(0, len(pairs), 37):
        async with many:
            await project(many, as_events(pairs[start : start + 37]))
            await many.commit()
    assert {
        kind: {k: r.values() for k, r in rows.items()} for kind, rows in one.projections.tables.items()
    } == {kind: {k: r.values() for k, r in rows.items()} for kind, rows in many.projections.tables.items()}


async def test_a_rolled_back_batch_projects_nothing():
    uow = FakeOpsUnitOfWork()
    async with uow:
        await project(uow, as_events(campaign(10, seed=5)))
        await uow.rollback()
        await uow.commit()
    assert all(not rows for rows in uow.projections.tables.values())


@pytest.mark.parametrize("durable", sorted(CONSUMERS))
def test_each_consumer_is_declared_in_the_topology(durable):
    from raccrochage_platform.topology import load_topology

    definition = load_topology().consumers[durable]
    assert definition.service == "ops"
    assert definition.filter_subjects == (CONSUMERS[durable] + ">",)


async def test_a_reservation_counts_in_its_own_offer_even_when_an_event_names_another():
    """A placement names its offer in seat_id; were it another than the reservation's, the
    reservation's offer is loaded too, so that its count of seats held goes down."""
    from raccrochage_ops.domain.projection import Offer
    from raccrochage_ops.synthetic import payload

    held, other, reservation = (str(uuid.UUID(int=n)) for n in (1, 2, 3))
    made = payload("foquale.reservation.made.v1", reservation_id=reservation, offer_id=held)
    placed = payload("foquale.placement.confirmed.v1", reservation_id=reservation, seat_id=other)
    uow = FakeOpsUnitOfWork()
    for pair in (("foquale.reservation.made.v1", made), ("foquale.placement.confirmed.v1", placed)):
        async with uow:
            await project(uow, as_events([pair]))
            await uow.commit()
        if pair[1] is made:
            assert uow.projections.tables[Offer][held].reserved == 1
    assert uow.projections.loads == 3  # the placement's batch loaded the reservation's offer after
    assert uow.projections.tables[Offer][held].reserved == 0
    assert getattr(uow.projections.tables[Offer].get(other), "reserved", 0) == 0
