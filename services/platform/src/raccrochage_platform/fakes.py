"""An in-memory unit of work for service-layer unit tests (no database, no broker).

A service's tests subclass it and add fake repositories in `_begin`, as cosmicpython's
`FakeUnitOfWork` does; what was committed is then read from `published` and `commits`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Self

from raccrochage_contracts import CloudEvent

from .uow import AbstractUnitOfWork


class FakeUnitOfWork(AbstractUnitOfWork):
    """Commits count and keep their events in `published`; the inbox is a set per consumer.

    As the real one: claims and commits only inside the `async with` block, an event id
    already published (or twice in one commit) is published once, a claim is undone by a
    rollback."""

    def __init__(self, source: str = "raccrochage/test") -> None:
        super().__init__()
        self.source = source
        self.commits = 0
        self.published: list[CloudEvent] = []
        self.inbox: dict[str, set[uuid.UUID]] = {}
        self._claimed: dict[str, set[uuid.UUID]] = {}
        self._inside = False
        self.held: set[str] = set()  # the jobs held (`alone`)

    async def __aenter__(self) -> Self:
        entered = await super().__aenter__()
        self._inside = True
        return entered

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(kind, error, traceback)
        finally:
            self._inside = False

    def _check_inside(self) -> None:
        if not self._inside:
            raise RuntimeError("the unit of work is used outside its `async with` block")

    async def claim(self, consumer: str, events: Sequence[tuple[uuid.UUID, str]]) -> set[uuid.UUID]:
        self._check_inside()
        seen = self.inbox.setdefault(consumer, set())
        claimed = self._claimed.setdefault(consumer, set())
        new = {event_id for event_id, _ in events if event_id not in seen and event_id not in claimed}
        claimed.update(new)
        return new

    @contextlib.asynccontextmanager
    async def alone(self, name: str, *, wait: float = 0.0) -> AsyncIterator[bool]:
        """As the real one's, among the units of work sharing `held` (one fake, or fakes given
        the same set)."""
        if name in self.held:
            yield False
            return
        self.held.add(name)
        try:
            yield True
        finally:
            self.held.discard(name)

    async def _begin(self) -> None:
        self._claimed = {}

    async def _commit(self, events: list[CloudEvent]) -> None:
        self._check_inside()
        known = {event.id for event in self.published}
        for event in events:
            if event.id not in known:
                known.add(event.id)
                self.published.append(event)
        for consumer, ids in self._claimed.items():
            self.inbox.setdefault(consumer, set()).update(ids)
        self._claimed = {}
        self.commits += 1

    async def _rollback(self) -> None:
        self._claimed = {}

    def published_types(self) -> list[str]:
        return [event.type for event in self.published]
