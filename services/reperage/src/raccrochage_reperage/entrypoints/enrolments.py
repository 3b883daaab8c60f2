"""Partners' live enrolments: NATS requests answered on a plain nats-py subscription, written
through a plain asyncpg pool.

This is the service's hot path (a partner's enrolment -> `reperage.youth.found.v1` within
20 ms at 200 requests/s on two shared cores), and the service is CPU-bound on it. Measured per
request: FastStream's subscriber resolves its `Context` fields in anyio worker threads (two
thread hops a message) besides its middlewares, and the SQLAlchemy session cost about five
times the CPU of the same statements on asyncpg, which prepares them once per connection.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date

import asyncpg
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError
from raccrochage_contracts import CloudEvent
from raccrochage_contracts.events.partner_v1 import EnrolmentEnded, EnrolmentStarted
from raccrochage_contracts.naming import type_from_subject
from raccrochage_platform.db import server_settings
from raccrochage_platform.inbox import claim_raw
from raccrochage_platform.logging import error_fields, get_logger
from raccrochage_platform.outbox import Leases, OutboxRelay, OutboxWriter

from ..service_layer.partners import (
    Duplicate,
    UnknownPartner,
    enrolment_started,
    partner,
    record_enrolment_ended,
    warm_up,
)

log = get_logger(__name__)
PARTNER_INBOX = "reperage_partner_enrolments"
SUBJECTS = ("partner.*.enrolment.started.v1", "partner.*.enrolment.ended.v1")
QUEUE = "reperage"  # several service processes share the requests
# Requests handled at once: one at a time, a partner burst would queue behind each transaction.
WORKERS = 8


def _errors(error: ValidationError, where: str) -> list[dict]:
    return [
        {"field": ".".join([where, *map(str, e["loc"])]), "message": e["msg"]}
        for e in error.errors(include_input=False, include_url=False)
    ]


def _rejected(field: str, message: str) -> dict:
    return {"status": "rejected", "errors": [{"field": field, "message": message}]}


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """The pool's connections hold no session state (no LISTEN, SET or cursor outside a
    transaction): asyncpg's default reset on release would cost a round trip per request."""


class EnrolmentResponder:
    """Answers `partner.<partner_id>.enrolment.{started,ended}.v1` requests: accepted once
    committed (with `duplicate` when the inbox already had it), rejected with what is wrong, or
    an error the partner should retry."""

    def __init__(self, pool: asyncpg.Pool, outbox: OutboxWriter, relay: OutboxRelay | None = None) -> None:
        self.pool = pool
        self.outbox = outbox
        self.relay = relay  # publishes a found event as soon as it is committed; else the relay's claim does
        self._workers = asyncio.Semaphore(WORKERS)
        self._in_flight: set[asyncio.Task] = set()
        self._subscriptions: list[Subscription] = []

    @classmethod
    async def connect(
        cls, database_dsn: str, outbox: OutboxWriter, relay: OutboxRelay | None = None
    ) -> EnrolmentResponder:
        # Every connection opened and warmed up front: a partner's burst would otherwise wait for
        # new connections, and for their backends' first reads of the catalog.
        pool = await asyncpg.create_pool(
            database_dsn,
            min_size=WORKERS,
            max_size=WORKERS,
            reset=_no_reset,
            init=warm_up,
            server_settings=server_settings("reperage-enrolments"),
        )
        return cls(pool, outbox, relay)

    async def subscribe(self, nc: Client) -> None:
        for subject in SUBJECTS:
            self._subscriptions.append(await nc.subscribe(subject, queue=QUEUE, cb=self._on_request))

    async def close(self) -> None:
        """Stop taking requests, finish those in flight, close the pool."""
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=10)
        await self.pool.close()

    async def run_until_cancelled(self) -> None:
        """A background job of the service: lives as long as it, closes when it stops."""
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def _on_request(self, msg: Msg) -> None:
        # nats-py awaits this callback before delivering the subscription's next message: hand
        # the request to a task, and wait here only when WORKERS requests are in flight.
        await self._workers.acquire()
        task = asyncio.create_task(self._respond(msg))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _respond(self, msg: Msg) -> None:
        leased: list[tuple] = []
        try:
            try:
                answer, leased = await self._answer(msg.subject, msg.data)
                if msg.reply:
                    await msg.respond(json.dumps(answer).encode())
            except Exception as error:
                log.error("partner_enrolment_reply_failed", **error_fields(error))
            if leased:  # after the reply: the partner waits for the commit, not for the event
                await self._publish(leased)
        finally:
            self._workers.release()

    async def _publish(self, leased: list[tuple]) -> None:
        try:
            await self.relay.publish_leased(leased)
        except Exception as error:
            log.warning("found_event_left_to_the_relay", **error_fields(error))

    async def answer(self, subject: str, body: bytes) -> dict:
        """The answer to one request (its found event, if any, left to the relay's claim)."""
        return (await self._answer(subject, body))[0]

    async def _answer(self, subject: str, body: bytes) -> tuple[dict, list[tuple]]:
        """(the answer, the found events committed leased to this process, to publish now)."""
        event_type, partner_id = type_from_subject(subject)
        try:
            who = partner(partner_id or "")
            envelope = CloudEvent.from_json(body)
        except UnknownPartner as error:
            return _rejected("subject", str(error)), []
        except ValidationError as error:
            return {"status": "rejected", "errors": _errors(error, "envelope")}, []
        except ValueError:
            return _rejected("envelope", "not a JSON object"), []
        if envelope.type != event_type:
            return _rejected("envelope.type", "does not match the subject"), []
        if envelope.source != f"partner/{who.partner_id}":
            return _rejected("envelope.source", f"must be partner/{who.partner_id}"), []
        model = EnrolmentStarted if event_type == "partner.enrolment.started.v1" else EnrolmentEnded
        try:
            data = model.read(envelope.data)
        except ValidationError as error:
            return {"status": "rejected", "errors": _errors(error, "data")}, []
        leases = Leases(self.relay.lease_seconds) if self.relay else None
        with structlog.contextvars.bound_contextvars(event_id=str(envelope.id), partner=who.partner_id):
            try:
                async with self.pool.acquire() as conn:
                    if isinstance(data, EnrolmentStarted):
                        found = await enrolment_started(
                            conn, self.outbox, PARTNER_INBOX, who, envelope, data, date.today(), leases
                        )
                        log.info("partner_enrolment_started", found=len(found))
                    else:
                        async with conn.transaction():
                            if not await claim_raw(conn, PARTNER_INBOX, envelope.id, envelope.type):
                                raise Duplicate
                            await record_enrolment_ended(conn, who, envelope, data)
                        log.info("partner_enrolment_ended")
            except Duplicate:
                return {"status": "accepted", "event_id": str(envelope.id), "duplicate": True}, []
            except ValueError as error:  # a field the model accepts but the domain does not (INE)
                field, _, message = str(error).partition(": ")
                return _rejected(field, message or str(error)), []
            except Exception as error:
                log.error("partner_enrolment_failed", **error_fields(error))
                return {"status": "error", "error": "not recorded, please retry"}, []
        return {
            "status": "accepted",
            "event_id": str(envelope.id),
            "duplicate": False,
        }, leases.take() if leases else []
