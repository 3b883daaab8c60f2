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
import contextlib
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from raccrochage_contracts import CloudEvent, Payload, new_event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import db, inbox, outbox
from .faults import crash_point
from .logging import get_logger
from .outbox import OutboxRelay, OutboxRow

log = get_logger(__name__)


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

    def alone(self, name: str, *, wait: float = 0.0) -> contextlib.AbstractAsyncContextManager[bool]:
        """A block in which the job `name` is this caller's alone (True) or another's (False),
        whichever process of the service that other runs in: held across transactions, until the
        block ends or the process dies; `wait` seconds to keep trying first (`db.exclusive`).
        Entered outside `async with self`."""
        raise NotImplementedError(f"{type(self).__name__} holds no jobs")

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


class SqlAlchemyUnitOfWork(AbstractUnitOfWork):
    """A transaction on one connection of `engine`. Subclasses open their repositories on
    `self.connection` in `open_repositories`.

    `stream`: where this service's events go (None: a service that publishes nothing of its
    own; it may still answer on the shared streams, outbox.needs_own_stream).
    `relay`: when given, the events a commit writes are leased to this writer and published
    right after the commit, instead of waiting for the relay's wake-up and claim."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        source: str,
        stream: str | None = None,
        relay: OutboxRelay | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.source = source
        self.stream = stream
        self.relay = relay
        self.connection: AsyncConnection | None = None  # while inside the block
        self._leased: list[OutboxRow] = []

    def open_repositories(self, connection: AsyncConnection) -> None:
        """Build the service's repositories on the transaction's connection."""

    async def claim(self, consumer: str, events: Sequence[tuple[uuid.UUID, str]]) -> set[uuid.UUID]:
        return await inbox.claim(self._conn, consumer, events)

    def alone(self, name: str, *, wait: float = 0.0) -> contextlib.AbstractAsyncContextManager[bool]:
        return db.exclusive(self.engine, name, wait=wait)

    @property
    def _conn(self) -> AsyncConnection:
        if self.connection is None:
            raise RuntimeError("the unit of work is used outside its `async with` block")
        return self.connection

    async def _begin(self) -> None:
        self.connection = await self.engine.connect()
        try:
            await self.connection.begin()
            self.open_repositories(self.connection)
        except BaseException:
            await self.connection.close()
            self.connection = None
            raise

    async def _commit(self, events: list[CloudEvent]) -> None:
        leased: list[OutboxRow] = []
        if events:
            own = next((event for event in events if outbox.needs_own_stream(event)), None)
            if self.stream is None and own is not None:
                raise RuntimeError(f"{self.source} has no stream to publish {own.type} to")
            lease = self.relay.lease_seconds if self.relay is not None else None
            leased = await outbox.write_events(self._conn, self.stream, events, lease)
            crash_point("uow.mid_transaction")  # written, not committed: PostgreSQL rolls it all back
        await self._conn.commit()
        # Only once committed: the rows of a transaction that failed to commit do not exist.
        self._leased = leased
        # The connection goes back to the pool before the events are published: publishing and
        # marking them must not hold a second connection per writer.
        connection, self.connection = self.connection, None
        await connection.close()

    async def _rollback(self) -> None:
        if self.connection is not None and self.connection.in_transaction():
            await self.connection.rollback()

    async def _end(self) -> None:
        try:
            await self.rollback()
        finally:
            if self.connection is not None:
                connection, self.connection = self.connection, None
                await connection.close()

    async def _after_commit(self) -> None:
        leased, self._leased = self._leased, []
        if leased and self.relay is not None:
            try:
                await self.relay.publish_leased(leased)
            except Exception as error:  # committed: the relay publishes them once the lease runs out
                log.warning("leased_events_left_to_the_relay", rows=len(leased), error=type(error).__name__)
