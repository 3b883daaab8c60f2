"""The unit of work: one transaction of a service, its inbox claim, and the events it publishes.

Every handler and service-layer function takes a unit of work, never a session or a connection
(cosmicpython's `AbstractUnitOfWork`). A service subclasses `SqlAlchemyUnitOfWork` to open its
repositories on the transaction's connection; its unit tests subclass `FakeUnitOfWork`
(`raccrochage_platform.fakes`) with fake repositories.

    async with uow:
        case = await uow.cases.get(case_id)
        case.record_contact_attempt(...)
        await uow.cases.save(case)
        uow.add_events(envelopes_of(case))
        await uow.commit()

Events added are written to the outbox in the same transaction as the state change, at
`commit`; once committed, the ones the outbox leased to this writer are published at once
(`OutboxRelay.publish_leased`), the others by the relay. Leaving the block without `commit`
rolls everything back, events included.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from raccrochage_contracts import CloudEvent, Payload, new_event


class AbstractUnitOfWork(abc.ABC):
    """One transaction. `source` names the producer in the envelopes it builds
    (`raccrochage/<service>`)."""

    source: str = "raccrochage/unknown"

    def __init__(self) -> None:
        self._events: list[CloudEvent] = []
        self.committed_events: list[CloudEvent] = []  # what the last commit wrote to the outbox

    async def __aenter__(self) -> Self:
        self._events = []
        await self._begin()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._end()

    # --- events ------------------------------------------------------------------------------
    def event(
        self,
        payload: Payload,
        *,
        subject: str,
        cause: CloudEvent | None = None,
        correlationid: uuid.UUID | None = None,
        event_id: uuid.UUID | None = None,
    ) -> CloudEvent:
        """An envelope from this service, not yet added. `cause` carries the correlation on; an
        `event_id` derived from the cause makes a re-run name the same event, not a new one."""
        return new_event(
            payload,
            source=self.source,
            subject=subject,
            correlationid=cause.correlationid if cause else correlationid,
            causationid=cause.id if cause else None,
            event_id=event_id,
        )

    def add_event(
        self, payload: Payload, *, subject: str, cause: CloudEvent | None = None, **options
    ) -> CloudEvent:
        """Build an event (`event`) and publish it if, and only if, this unit of work commits."""
        envelope = self.event(payload, subject=subject, cause=cause, **options)
        self._events.append(envelope)
        return envelope

    def add_events(self, events: Sequence[CloudEvent]) -> None:
        """Envelopes already built (`event`), published if this unit of work commits. An event
        already in the outbox (same id: a re-run) is written once."""
        self._events.extend(events)

    @property
    def pending_events(self) -> list[CloudEvent]:
        return list(self._events)

    # --- the transaction -----------------------------------------------------------------------
    async def commit(self) -> None:
        events, self._events = self._events, []
        await self._commit(events)
        self.committed_events = events
        await self._after_commit()

    async def rollback(self) -> None:
        self._events = []
        await self._rollback()

    @abc.abstractmethod
    async def claim(self, consumer: str, events: Sequence[tuple[uuid.UUID, str]]) -> set[uuid.UUID]:
        """Record (event id, event type) as handled by `consumer` in this transaction; returns the
        ids seen for the first time. The others were handled before: skip them."""

    @abc.abstractmethod
    async def _begin(self) -> None: ...

    @abc.abstractmethod
    async def _commit(self, events: list[CloudEvent]) -> None:
        """Write `events` to the outbox, then commit the transaction."""

    @abc.abstractmethod
    async def _rollback(self) -> None: ...

    async def _end(self) -> None:
        """Leaving the block: roll back what was not committed, give the connection back."""
        await self.rollback()

    async def _after_commit(self) -> None:
        """Publish what the commit leased to this writer (nothing by default)."""
        return None
