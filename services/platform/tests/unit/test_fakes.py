"""FakeUnitOfWork keeps the real one's rules (tests/integration/test_uow.py), in memory."""

from __future__ import annotations

import uuid

import pytest
from raccrochage_contracts import new_event
from raccrochage_platform.fakes import FakeUnitOfWork
from raccrochage_rig.testing.sample import CounterIncremented, CounterReset

INCREMENTED = CounterIncremented.event_type


class FakeCounters:
    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    async def add(self, name: str, by: int) -> None:
        self.values[name] = self.values.get(name, 0) + by


class FakeSampleUnitOfWork(FakeUnitOfWork):
    """A service's fake: its repositories beside the platform's fake transaction."""

    def __init__(self) -> None:
        super().__init__(source="raccrochage/sample")
        self.counters = FakeCounters()


async def increment(uow: FakeSampleUnitOfWork, name: str, by: int, *, fail: bool = False) -> None:
    """A service-layer function as services write them."""
    async with uow:
        await uow.counters.add(name, by)
        uow.add_event(CounterIncremented(counter=name, by=by), subject=name)
        if fail:
            raise RuntimeError("refused")
        await uow.commit()


async def test_a_commit_publishes_its_events_and_counts() -> None:
    uow = FakeSampleUnitOfWork()
    await increment(uow, "a", 2)
    await increment(uow, "b", 1)
    assert uow.commits == 2 and uow.counters.values == {"a": 2, "b": 1}
    assert uow.published_types() == [INCREMENTED, INCREMENTED]
    assert [(e.subject, e.data, e.source) for e in uow.published] == [
        ("a", {"counter": "a", "by": 2}, "raccrochage/sample"),
        ("b", {"counter": "b", "by": 1}, "raccrochage/sample"),
    ]
    assert uow.committed_events == uow.published[1:] and uow.pending_events == []


async def test_leaving_without_commit_or_with_an_exception_publishes_nothing() -> None:
    uow = FakeUnitOfWork()
    async with uow:
        uow.add_event(CounterIncremented(counter="forgotten"), subject="forgotten")
        assert await uow.claim("c", [(uuid.uuid4(), INCREMENTED)])
    with pytest.raises(RuntimeError, match="refused"):
        async with uow:
            uow.add_event(CounterIncremented(counter="failed"), subject="failed")
            await uow.claim("c", [(uuid.uuid4(), INCREMENTED)])
            raise RuntimeError("refused")
    assert uow.commits == 0 and uow.published == [] and uow.pending_events == []
    assert uow.inbox.get("c", set()) == set()


async def test_claim_returns_the_new_ids_only_and_a_rolled_back_claim_leaves_them_new() -> None:
    uow = FakeUnitOfWork()
    a, b, c, d = (uuid.uuid4() for _ in range(4))
    async with uow:
        assert await uow.claim("first", [(a, INCREMENTED), (b, INCREMENTED), (a, INCREMENTED)]) == {a, b}
        assert await uow.claim("first", [(a, INCREMENTED), (c, INCREMENTED)]) == {c}
        assert await uow.claim("first", []) == set()
        await uow.commit()
    async with uow:
        assert await uow.claim("first", [(a, INCREMENTED), (b, INCREMENTED), (d, INCREMENTED)]) == {d}
    async with uow:
        assert await uow.claim("first", [(d, INCREMENTED)]) == {d}
        assert await uow.claim("second", [(a, INCREMENTED)]) == {a}
        await uow.commit()
    assert uow.inbox == {"first": {a, b, c, d}, "second": {a}}


async def test_an_event_already_published_or_twice_in_a_commit_is_published_once() -> None:
    uow = FakeUnitOfWork()
    first = uow.event(CounterIncremented(counter="again"), subject="again")
    second = uow.event(CounterIncremented(counter="again", by=2), subject="again")
    async with uow:
        uow.add_events([first])
        await uow.commit()
    async with uow:
        uow.add_events([first, second, second])
        await uow.commit()
    assert [e.id for e in uow.published] == [first.id, second.id]


async def test_events_carry_their_cause() -> None:
    uow = FakeUnitOfWork(source="raccrochage/sample")
    cause = new_event(CounterIncremented(counter="c"), source="raccrochage/other", subject="c")
    async with uow:
        event = uow.add_event(CounterReset(counter="c"), subject="c", cause=cause)
        await uow.commit()
    assert uow.published == [event]
    assert (event.source, event.correlationid, event.causationid) == (
        "raccrochage/sample",
        cause.correlationid,
        cause.id,
    )


async def test_outside_its_block_it_refuses_as_the_real_one_does() -> None:
    uow = FakeUnitOfWork()
    with pytest.raises(RuntimeError, match="outside its `async with` block"):
        await uow.claim("first", [(uuid.uuid4(), INCREMENTED)])
    uow.add_event(CounterIncremented(counter="loose"), subject="loose")
    with pytest.raises(RuntimeError, match="outside its `async with` block"):
        await uow.commit()
    assert uow.published == [] and uow.commits == 0
