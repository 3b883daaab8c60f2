"""Partners' live enrolments: NATS requests answered on a plain nats-py queue subscription, each
in one unit of work.

A partner's request carries personal data, so it is a request/reply and never a stream message;
the reply says it is recorded once its unit of work committed. Requests are handled concurrently
(up to WORKERS at once), so that a burst does not queue behind each transaction.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import date

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError
from raccrochage_contracts import CloudEvent
from raccrochage_contracts.events.partner_v1 import EnrolmentEnded, EnrolmentStarted
from raccrochage_contracts.naming import type_from_subject
from raccrochage_platform.logging import error_fields, get_logger

from ..service_layer.partners import (
    PARTNER_INBOX,
    Duplicate,
    UnknownPartner,
    enrolment_ended,
    enrolment_started,
    partner,
)
from ..service_layer.unit_of_work import AbstractReperageUnitOfWork

log = get_logger(__name__)
SUBJECTS = ("partner.*.enrolment.started.v1", "partner.*.enrolment.ended.v1")
QUEUE = "reperage"  # several service processes share the requests
WORKERS = 4  # requests handled at once (see EnrolmentResponder)


def _errors(error: ValidationError, where: str) -> list[dict]:
    return [
        {"field": ".".join([where, *map(str, e["loc"])]), "message": e["msg"]}
        for e in error.errors(include_input=False, include_url=False)
    ]


def _rejected(field: str, message: str) -> dict:
    return {"status": "rejected", "errors": [{"field": field, "message": message}]}


class EnrolmentResponder:
    """Answers `partner.<partner_id>.enrolment.{started,ended}.v1` requests: accepted once
    committed (with `duplicate` when the inbox already had it), rejected with what is wrong, or
    an error the partner should retry."""

    def __init__(
        self,
        unit_of_work: Callable[[], AbstractReperageUnitOfWork],
        *,
        key: bytes,
        inbox: str = PARTNER_INBOX,
    ) -> None:
        self.unit_of_work = unit_of_work
        self.key = key  # the youth_id key: a youth is found by the youth_id of the INE
        self.inbox = inbox
        self._workers = asyncio.Semaphore(WORKERS)
        self._in_flight: set[asyncio.Task] = set()
        self._subscriptions: list[Subscription] = []

    async def subscribe(self, nc: Client) -> None:
        for subject in SUBJECTS:
            self._subscriptions.append(await nc.subscribe(subject, queue=QUEUE, cb=self._on_request))

    async def close(self) -> None:
        """Stop taking requests, finish those in flight."""
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        self._subscriptions = []
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=10)

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
        try:
            answer = await self.answer(msg.subject, msg.data)
            if msg.reply:
                await msg.respond(json.dumps(answer).encode())
        except Exception as error:
            log.error("partner_enrolment_reply_failed", **error_fields(error))
        finally:
            self._workers.release()

    async def answer(self, subject: str, body: bytes) -> dict:
        """The answer to one request, once its unit of work committed (or did not)."""
        event_type, partner_id = type_from_subject(subject)
        try:
            who = partner(partner_id or "")
            envelope = CloudEvent.from_json(body)
        except UnknownPartner as error:
            return _rejected("subject", str(error))
        except ValidationError as error:
            return {"status": "rejected", "errors": _errors(error, "envelope")}
        except ValueError:
            return _rejected("envelope", "not a JSON object")
        if envelope.type != event_type:
            return _rejected("envelope.type", "does not match the subject")
        if envelope.source != f"partner/{who.partner_id}":
            return _rejected("envelope.source", f"must be partner/{who.partner_id}")
        model = EnrolmentStarted if event_type == "partner.enrolment.started.v1" else EnrolmentEnded
        try:
            data = model.read(envelope.data)
        except ValidationError as error:
            return {"status": "rejected", "errors": _errors(error, "data")}
        with structlog.contextvars.bound_contextvars(event_id=str(envelope.id), partner=who.partner_id):
            try:
                if isinstance(data, EnrolmentStarted):
                    found = await enrolment_started(
                        self.unit_of_work(), who, envelope, data, date.today(), key=self.key, inbox=self.inbox
                    )
                    log.info("partner_enrolment_started", found=len(found))
                else:
                    await enrolment_ended(self.unit_of_work(), who, envelope, data, inbox=self.inbox)
                    log.info("partner_enrolment_ended")
            except Duplicate:
                return {"status": "accepted", "event_id": str(envelope.id), "duplicate": True}
            except ValueError as error:  # a field the model accepts but the domain does not (INE)
                field, _, message = str(error).partition(": ")
                return _rejected(field, message or str(error))
            except Exception as error:
                log.error("partner_enrolment_failed", **error_fields(error))
                return {"status": "error", "error": "not recorded, please retry"}
        return {"status": "accepted", "event_id": str(envelope.id), "duplicate": False}
