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
