"""Durable pull consumers: fetch a batch, handle it in one unit of work with the inbox, ack.

Why not FastStream's batch subscriber: in 0.7 it keeps fetching until the batch is full or its
timeout expires, so an idle system waits the whole timeout for each event. Here a fetch waits
for one message, then asks for as many more as the consumer says are pending (the message's
`num_pending`): a batch is what is there at once, so batches form under load only. A batch
shares one transaction with its inbox rows; a message that cannot be handled is isolated,
retried with backoff, then dead-lettered with its reason while the others go through.
FastStream still owns the connection, request/reply handlers and publishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError
from raccrochage_contracts import CloudEvent, Payload, Registry, UnknownEventType, typed_envelope
from raccrochage_contracts.naming import type_from_subject
from sqlalchemy.exc import DBAPIError, StatementError

from . import metrics
from .deadletter import dead_letter
from .faults import crash_point
from .logging import get_logger
from .topology import ConsumerDef
from .uow import AbstractUnitOfWork

log = get_logger(__name__)
P = TypeVar("P", bound=Payload)


class PermanentError(Exception):
    """A handler raises this when retrying cannot help (the event contradicts our state)."""


class Event(NamedTuple, Generic[P]):
    """What a handler receives: the envelope, its payload model, and transport facts. The
    envelope's `data` is that same payload model (`typed_envelope`)."""

    envelope: CloudEvent
    data: P
    partner_id: str | None  # from the NATS subject, never from the payload
    delivered: int
    pending: int = 0  # messages of this consumer not yet delivered behind this one (its backlog)


# A handler runs inside the batch's unit of work, which the consumer opens, claims and commits.
Handler = Callable[[AbstractUnitOfWork, Event[Any]], Awaitable[None]]
# Takes every new event of its type in a run of the batch at once (one insert for a thousand).
BatchHandler = Callable[[AbstractUnitOfWork, list[Event[Any]]], Awaitable[None]]


def _validation_reason(error: ValidationError, where: str) -> str:
    """Field paths and messages, never the input values (they may hold personal data)."""
    parts = [
        ".".join([where, *(str(p) for p in problem["loc"])]) + f": {problem['msg']}"
        for problem in error.errors(include_input=False, include_url=False)[:10]
    ]
    return "invalid " + "; ".join(parts)


# asyncpg's "invalid input for query argument $9: [10000000000] (value out of int32 range)":
# the argument and the rule are kept, the value between them never.
_ARGUMENT_ERROR = re.compile(r"^(invalid input for query argument \$\d+)(?::.*?)?(\([^()]*\))?$", re.S)


def _database_error(error: BaseException) -> BaseException | None:
    """The driver's error under SQLAlchemy's wrapping (asyncpg's, when there is one)."""
    seen = error
    while seen is not None:
        if type(seen).__module__.startswith("asyncpg"):
            return seen
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


def _sqlstate(error: BaseException) -> str:
    driver = _database_error(error)
    return str(
        getattr(driver, "sqlstate", None) or getattr(getattr(error, "orig", None), "sqlstate", "") or ""
    )


def _failure(error: Exception) -> str:
    """What went wrong in a handler, for a dead letter's reason and the logs, without the input:
    a database error's text quotes the statement's parameters (and often the values in its
    message), and a validation error's the input values. A database error is named by its
    class and SQLSTATE, and for a bad argument by the argument and the rule."""
    if isinstance(error, ValidationError):
        return f"{type(error).__name__}: " + _validation_reason(error, error.title)
    driver = _database_error(error)
    if isinstance(error, StatementError) or driver is not None:
        name = type(error).__name__
        if driver is not None and driver is not error:
            name += f": {type(driver).__name__}"
        elif isinstance(error, StatementError) and error.orig is not None:
            name += f": {type(error.orig).__name__}"
        code = _sqlstate(error)
        argument = _ARGUMENT_ERROR.match(str(driver).strip()) if driver is not None else None
        detail = (
            f" ({argument.group(1)}{' ' + argument.group(2) if argument.group(2) else ''})"
            if argument
            else ""
        )
        return name + (f" (SQLSTATE {code})" if code else "") + detail
    return f"{type(error).__name__}: {error}"


# SQLSTATE classes: 08 connection exception, 53 insufficient resources, 57 operator intervention
# (a server shutting down or starting); 22 data exception (a value the column cannot take).
_TRANSIENT_SQLSTATE = ("08", "53", "57")
_PERMANENT_SQLSTATE = ("22",)


def is_transient(error: BaseException) -> bool:
    """The database or the broker is unreachable: the same message will succeed once it is back."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    code = _sqlstate(error)
    if code:
        return code.startswith(_TRANSIENT_SQLSTATE)
    driver = _database_error(error)
    if driver is not None and type(driver).__name__ in (
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "InterfaceError",
        "TooManyConnectionsError",
    ):
        return True
    chain = error
    while chain is not None:
        if isinstance(chain, (OSError, TimeoutError)):  # ConnectionRefusedError, a timed-out connect
            return True
        if type(chain).__module__.startswith("nats") and "Connection" in type(chain).__name__:
            return True
        chain = getattr(chain, "orig", None) or chain.__cause__
    return False


def is_permanent(error: BaseException) -> bool:
    """Retrying cannot help: the message itself is wrong for us (our validation, a value out of
    its column's range)."""
    if isinstance(error, PermanentError | ValidationError):
        return True
    if _sqlstate(error).startswith(_PERMANENT_SQLSTATE):
        return True
    driver = _database_error(error)
    return driver is not None and type(driver).__name__ == "DataError"


@dataclass
class _Parsed:
    msg: Msg
    delivered: int
    event: Event[Any] | None = None
    reason: str | None = None


@dataclass
class EventConsumer:
    """One durable consumer of one service. Register handlers with `on`, then `start`."""

    definition: ConsumerDef
    registry: Registry
    unit_of_work: Callable[[], AbstractUnitOfWork]
    js: JetStreamContext
    batch_size: int = 200
    # How long an idle fetch waits for a first message, and how long a fetch of the messages
    # said to be pending may wait for them (another replica may have taken them).
    idle_timeout: float = 5.0
    fill_timeout: float = 0.05
    # Batches handled at once, each in its own transaction. A batch waits while one in flight
    # holds an event of the same aggregate (envelope `subject`), and the batches fetched after
    # it wait with it: an aggregate's events keep their order.
    concurrency: int = 1
    handlers: dict[str, Handler] = field(default_factory=dict)
    batch_handlers: dict[str, BatchHandler] = field(default_factory=dict)
    # Per handled type, its envelope with typed data: one validation pass per message.
    _readers: dict[str, type[CloudEvent]] = field(default_factory=dict)
    _task: asyncio.Task | None = None
    _subscription: JetStreamContext.PullSubscription | None = None
    _stopping: bool = False
    _paused_batches: int = 0

    @property
    def paused(self) -> bool:
        """A batch waits out an outage of the database or the broker (readiness is down)."""
        return self._paused_batches > 0

    @property
    def name(self) -> str:
        return self.definition.durable

    def on(self, event_type: str) -> Callable[[Handler], Handler]:
        self._readers[event_type] = typed_envelope(self.registry.model(event_type))  # fails now if unknown

        def register(handler: Handler) -> Handler:
            self.handlers[event_type] = handler
            return handler

        return register

    def on_batch(self, event_type: str) -> Callable[[BatchHandler], BatchHandler]:
        """Like `on`, for a handler that takes a list: consecutive new events of this type in a
        fetched batch come together, in order, and the events around them keep their order."""
        self._readers[event_type] = typed_envelope(self.registry.model(event_type))

        def register(handler: BatchHandler) -> BatchHandler:
            self.batch_handlers[event_type] = handler
            return handler

        return register

    async def start(self) -> None:
        self._stopping = False  # started again after a stop (`ServiceContext.in_one_process`)
        self._subscription = await self.js.pull_subscribe_bind(
            durable=self.definition.durable, stream=self.definition.stream
        )
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _run(self) -> None:
        # The next batch is fetched and parsed while the current one's transaction runs: under
        # load the consumer does not wait for NATS between two batches. Up to `concurrency`
        # batches are handled at once; one that shares an aggregate with a batch in flight waits.
        fetching: asyncio.Task | None = None
        handling: dict[asyncio.Task, frozenset[str]] = {}  # batch in flight -> its aggregates
        try:
            while not self._stopping:
                parsed, keeper = await (fetching or self._fetch_parsed())
                fetching = asyncio.create_task(self._fetch_parsed()) if parsed else None
                if not parsed:
                    continue
                keys = frozenset(item.event.envelope.subject for item in parsed if item.event is not None)
                try:
                    while handling and (
                        len(handling) >= self.concurrency or any(keys & held for held in handling.values())
                    ):
                        done, _ = await asyncio.wait(handling, return_when=asyncio.FIRST_COMPLETED)
                        for task in done:
                            del handling[task]
                except BaseException:
                    keeper.cancel()
                    raise
                handling[asyncio.create_task(self._handle_or_log(parsed, keeper))] = keys
        finally:
            if fetching is not None:
                fetching.cancel()
                if fetching.done() and not fetching.cancelled() and fetching.exception() is None:
                    fetching.result()[1].cancel()  # a batch fetched, never handled
            for task in handling:  # unacked: their messages come back after ack_wait
                task.cancel()
            if handling:  # their transactions roll back before the process closes its pool
                await asyncio.gather(*handling, return_exceptions=True)

    async def _handle_or_log(self, parsed: list[_Parsed], keeper: asyncio.Task) -> None:
        try:
            await self.handle(parsed)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # unacked messages come back after ack_wait
            log.error("batch_failed", consumer=self.name, error=_failure(error)[:300])
            await asyncio.sleep(1.0)
        finally:
            keeper.cancel()

    async def _fetch_parsed(self) -> tuple[list[_Parsed], asyncio.Task]:
        """A batch, and the task that keeps its messages ours until it is handled (cancel it)."""
        messages = await self._fetch()
        return [self._parse(msg) for msg in messages], asyncio.create_task(self._keep_in_progress(messages))

    async def _keep_in_progress(self, messages: list[Msg]) -> None:
        """Tell the server, every third of ack_wait, that `messages` are still being worked on:
        a batch may take longer than ack_wait (a large one, or one waiting behind another), while
        a short ack_wait brings a crashed consumer's messages back within seconds."""
        if not messages:
            return
        every = max(0.2, self.definition.ack_wait_seconds / 3)
        while True:
            await asyncio.sleep(every)
            for msg in messages:
                if msg.is_acked:  # acked, nacked or terminated already
                    continue
                with contextlib.suppress(Exception):  # the broker may be down: the batch waits it out
                    await msg.in_progress()

    async def _fetch(self) -> list[Msg]:
        """One message as soon as there is one, then those pending behind it, up to a batch."""
        try:
            messages = await self._subscription.fetch(1, timeout=self.idle_timeout)
        except TimeoutError:  # nats-py's fetch timeouts subclass it
            return []
        except asyncio.CancelledError:
            raise
        except Exception as error:  # reconnects are nats-py's job; keep polling
            log.warning("fetch_failed", consumer=self.name, error=type(error).__name__)
            await asyncio.sleep(1.0)
            return []
        pending = min(messages[-1].metadata.num_pending, self.batch_size - len(messages))
        if pending > 0:
            try:
                messages += await self._subscription.fetch(pending, timeout=self.fill_timeout)
            except TimeoutError:
                pass
            except (nats.errors.Error, OSError) as error:  # the server went away: those we have are a batch
                log.warning("fetch_failed", consumer=self.name, error=type(error).__name__)
        return messages

    # --- one batch ------------------------------------------------------------------------------
    async def handle(self, parsed: list[_Parsed]) -> None:
        """Dead-letter what cannot be read, handle the rest in one unit of work, ack; if the
        batch fails, each message on its own (retried or dead-lettered alone)."""
        for item in parsed:
            if item.delivered > 1:
                metrics.REDELIVERED.labels(self.name).inc()
            if item.reason is not None:
                await self._dead_letter(item.msg, item.reason)
        good = [item for item in parsed if item.event is not None]
        if not good:
            return
        if len(good) == 1:  # a failure would only run it again, alone
            await self._handle_alone(good[0])
            return
        try:
            await self._waiting_out_outages(good)
        except Exception:  # find the culprit: one transaction per message
            for item in good:
                await self._handle_alone(item)
            return
        for item in good:
            await item.msg.ack()

    async def _handle_in_one_transaction(self, items: list[_Parsed]) -> None:
        started = time.perf_counter()
        async with self.unit_of_work() as uow:
            new = await uow.claim(self.name, [(i.event.envelope.id, i.event.envelope.type) for i in items])
            run: list[Event[Any]] = []  # consecutive new events of one batch-handled type
            for item in items:
                event = item.event
                if event.envelope.id not in new:
                    continue
                new.discard(event.envelope.id)  # a batch may hold the same event twice
                if run and run[0].envelope.type != event.envelope.type:
                    await self._call_batch(uow, run)
                    run = []
                if event.envelope.type in self.batch_handlers:
                    run.append(event)
                else:
                    await self._call(uow, event)
            if run:
                await self._call_batch(uow, run)
            await uow.commit()
        crash_point("consumer.after_commit")  # committed, not acked: the inbox drops the redelivery
        counts: dict[str, int] = {}
        for item in items:
            kind = item.event.envelope.type
            counts[kind] = counts.get(kind, 0) + 1
        for kind, count in counts.items():  # one labelled child per type, not per event
            metrics.HANDLED.labels(self.name, kind).inc(count)
        metrics.BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)

    async def _waiting_out_outages(self, items: list[_Parsed]) -> None:
        """The batch's transaction; while it fails because the database or the broker is
        unreachable, the consumer is paused (readiness down) and tries again with backoff, with
        no limit: the messages stay ours (`in_progress`), so no delivery is used up and no good
        event reaches the dead letters because of an outage."""
        wait, paused = 0.5, False
        # a pause is renewed well within ack_wait, so the server does not deliver them again
        longest = max(1.0, min(10.0, self.definition.ack_wait_seconds / 3))
        try:
            while True:
                try:
                    await self._handle_in_one_transaction(items)
                    return
                except Exception as error:
                    if not is_transient(error):
                        raise
                    if not paused:
                        paused = True
                        self._paused_batches += 1
                        log.warning("consumer_paused", consumer=self.name, error=_failure(error)[:300])
                    for item in items:
                        with contextlib.suppress(Exception):  # the broker may be the one down
                            await item.msg.in_progress()
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, longest)
        finally:
            if paused:
                self._paused_batches -= 1
                log.info("consumer_resumed", consumer=self.name)

    async def _handle_alone(self, item: _Parsed) -> None:
        event = item.event
        try:
            await self._waiting_out_outages([item])
        except PermanentError as error:
            await self._dead_letter(item.msg, f"rejected by handler: {error}")
            return
        except Exception as error:
            if is_permanent(error):  # retrying cannot help: no need to wait for max_deliver
                metrics.FAILED.labels(self.name, "handler").inc()
                await self._dead_letter(item.msg, f"handler failed: {_failure(error)}"[:500])
                return
            reason = f"handler failed: {_failure(error)}"[:500]
            metrics.FAILED.labels(self.name, "handler").inc()
            if event.delivered >= self.definition.max_deliver:
                await self._dead_letter(item.msg, f"{reason} (after {event.delivered} deliveries)")
            else:
                delay = self.definition.backoff_for(event.delivered)
                log.warning(
                    "handler_failed_will_retry",
                    consumer=self.name,
                    event_id=str(event.envelope.id),
                    event_type=event.envelope.type,
                    delivered=event.delivered,
                    retry_in=delay,
                    error=type(error).__name__,
                )
                await item.msg.nak(delay=delay)
            return
        await item.msg.ack()

    async def _call(self, uow: AbstractUnitOfWork, event: Event[Any]) -> None:
        handler = self.handlers[event.envelope.type]
        with structlog.contextvars.bound_contextvars(
            event_id=str(event.envelope.id), correlation_id=str(event.envelope.correlationid)
        ):
            await handler(uow, event)

    async def _call_batch(self, uow: AbstractUnitOfWork, events: list[Event[Any]]) -> None:
        with structlog.contextvars.bound_contextvars(batch=len(events), event_type=events[0].envelope.type):
            await self.batch_handlers[events[0].envelope.type](uow, events)

    def _parse(self, msg: Msg) -> _Parsed:
        """Envelope and payload validated in one pass; anything wrong is explained by `_explain`."""
        delivered = msg.metadata.num_delivered
        event_type, partner_id = type_from_subject(msg.subject)
        reader = self._readers.get(event_type)
        if reader is not None:
            try:
                envelope = reader.model_validate_json(msg.data, extra="ignore")
            except ValueError:  # ValidationError included
                envelope = None
            if (
                envelope is not None
                and envelope.type == event_type
                and (partner_id is None or envelope.source == f"partner/{partner_id}")
            ):
                pending = msg.metadata.num_pending
                return _Parsed(msg, delivered, Event(envelope, envelope.data, partner_id, delivered, pending))
        return self._explain(msg, delivered)

    def _explain(self, msg: Msg, delivered: int) -> _Parsed:
        """The envelope, then its type, then the payload, each checked on its own: the reason
        names the first thing wrong (or the event, if nothing is)."""
        try:
            envelope = CloudEvent.from_json(msg.data)
        except ValidationError as error:
            return _Parsed(msg, delivered, reason=_validation_reason(error, "envelope"))
        except ValueError:
            return _Parsed(msg, delivered, reason="invalid envelope: not a JSON object")
        event_type, partner_id = type_from_subject(msg.subject)
        if envelope.type != event_type:
            return _Parsed(
                msg, delivered, reason=f"envelope type {envelope.type} does not match subject {msg.subject}"
            )
        if partner_id is not None and envelope.source != f"partner/{partner_id}":
            return _Parsed(
                msg,
                delivered,
                reason=f"source {envelope.source} does not match the partner of subject {msg.subject}",
            )
        try:
            model = self.registry.model(envelope.type)
        except UnknownEventType as error:
            return _Parsed(msg, delivered, reason=str(error))
        if envelope.type not in self.handlers and envelope.type not in self.batch_handlers:
            return _Parsed(msg, delivered, reason=f"consumer {self.name} has no handler for {envelope.type}")
        try:
            data = model.read(envelope.data)
        except ValidationError as error:
            return _Parsed(msg, delivered, reason=_validation_reason(error, "data"))
        return _Parsed(msg, delivered, Event(envelope, data, partner_id, delivered, msg.metadata.num_pending))

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        await dead_letter(self.js, msg, consumer=self.name, reason=reason)
        await msg.term()
        metrics.DEADLETTERED.labels(self.name).inc()
        log.warning(
            "dead_lettered",
            consumer=self.name,
            subject=msg.subject,
            stream_seq=msg.metadata.sequence.stream,
            reason=reason[:300],
        )
