"""Repérage's service: partner enrolments and contact cards by request/reply, campaign upload by HTTP."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import date
from pathlib import Path

import asyncpg
import structlog
from faststream.nats.annotations import NatsMessage
from pydantic import ValidationError

from raccrochage_contracts import CloudEvent
from raccrochage_contracts.events.partner_v1 import EnrolmentEnded, EnrolmentStarted
from raccrochage_contracts.naming import type_from_subject
from raccrochage_platform.db import libpq_dsn
from raccrochage_platform.inbox import claim_raw
from raccrochage_platform.logging import error_fields, get_logger
from raccrochage_platform.service import ServiceContext, ServiceSpec

from ..config import ReperageSettings
from ..service_layer.partners import UnknownPartner, partner, record_enrolment_ended, record_enrolment_started
from ..service_layer.vault import give_contact_card
from .api import campaign_router
from .cli import demo_main_job

log = get_logger(__name__)
PARTNER_INBOX = "reperage_partner_enrolments"
ENROLMENT_WORKERS = 8
CONTACT_CARD_SUBJECT = "rpc.reperage.contact_card"


def _errors(error: ValidationError, where: str) -> list[dict]:
    return [{"field": ".".join([where, *map(str, e["loc"])]), "message": e["msg"]}
            for e in error.errors(include_input=False, include_url=False)]


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """This pool's connections hold no session state (no LISTEN, SET or cursor outside a
    transaction): asyncpg's default reset would cost a round trip per request."""


async def enrolment_pool(context: ServiceContext) -> asyncpg.Pool:
    """The asyncpg pool of the enrolment path, one connection per concurrent request; closed
    when the service stops (its background jobs are cancelled then)."""
    pool = await asyncpg.create_pool(libpq_dsn(context.settings.database_url), min_size=2,
                                     max_size=ENROLMENT_WORKERS, reset=_no_reset,
                                     server_settings={"application_name": "reperage-enrolments"})

    async def close_when_stopped() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await pool.close()

    context.background.append(close_when_stopped)
    return pool


async def build(context: ServiceContext) -> None:
    settings: ReperageSettings = context.settings  # type: ignore[assignment]
    broker = context.broker
    allowed_callers = {c.strip() for c in settings.contact_card_callers.split(",") if c.strip()}
    enrolments_db = await enrolment_pool(context)

    async def handle_enrolment(msg: NatsMessage) -> dict:
        """Partners send enrolments by request/reply: the answer says accepted, or what is wrong."""
        event_type, partner_id = type_from_subject(msg.raw_message.subject)
        try:
            who = partner(partner_id or "")
            envelope = CloudEvent.from_json(msg.body)
        except UnknownPartner as error:
            return {"status": "rejected", "errors": [{"field": "subject", "message": str(error)}]}
        except ValidationError as error:
            return {"status": "rejected", "errors": _errors(error, "envelope")}
        except ValueError:
            return {"status": "rejected", "errors": [{"field": "envelope", "message": "not a JSON object"}]}
        if envelope.type != event_type:
            return {"status": "rejected", "errors": [{"field": "envelope.type", "message": "does not match the subject"}]}
        if envelope.source != f"partner/{who.partner_id}":
            return {"status": "rejected", "errors": [{"field": "envelope.source",
                                                      "message": f"must be partner/{who.partner_id}"}]}
        model = EnrolmentStarted if event_type == "partner.enrolment.started.v1" else EnrolmentEnded
        try:
            data = model.read(envelope.data)
        except ValidationError as error:
            return {"status": "rejected", "errors": _errors(error, "data")}
        with structlog.contextvars.bound_contextvars(event_id=str(envelope.id), partner=who.partner_id):
            try:
                # The hot path runs on plain asyncpg (prepared statements): through the SQLAlchemy
                # session it cost about five times the CPU, and the service is CPU-bound.
                async with enrolments_db.acquire() as conn, conn.transaction():
                    if not await claim_raw(conn, PARTNER_INBOX, envelope.id, envelope.type):
                        return {"status": "accepted", "event_id": str(envelope.id), "duplicate": True}
                    if isinstance(data, EnrolmentStarted):
                        found = await record_enrolment_started(conn, context.outbox, who, envelope, data,
                                                               date.today())
                        log.info("partner_enrolment_started", found=len(found))
                    else:
                        await record_enrolment_ended(conn, who, envelope, data)
                        log.info("partner_enrolment_ended")
            except ValueError as error:  # a field the model accepts but the domain does not (INE)
                field, _, message = str(error).partition(": ")
                return {"status": "rejected", "errors": [{"field": field, "message": message or str(error)}]}
            except Exception as error:  # noqa: BLE001  (answer, so that the partner retries)
                log.error("partner_enrolment_failed", **error_fields(error))
                return {"status": "error", "error": "not recorded, please retry"}
        return {"status": "accepted", "event_id": str(envelope.id), "duplicate": False}

    for verb in ("started", "ended"):
        # Several requests at once: one at a time, a partner burst queues behind each transaction.
        broker.subscriber(f"partner.*.enrolment.{verb}.v1", queue="reperage", max_workers=ENROLMENT_WORKERS,
                          title=f"partner enrolment {verb}")(handle_enrolment)

    @broker.subscriber(f"{CONTACT_CARD_SUBJECT}.*", queue="reperage", title="contact card")
    async def contact_card(body: dict, msg: NatsMessage) -> dict:
        """`rpc.reperage.contact_card.<caller>` {youth_id, purpose}: the caller is the subject's last
        token, which its NATS credentials restrict."""
        caller = msg.raw_message.subject.rsplit(".", 1)[-1]
        youth_id, purpose = str(body.get("youth_id", "")), str(body.get("purpose", ""))
        async with context.sessions() as session, session.begin():
            answer = await give_contact_card(session, caller=caller, youth_id=youth_id, purpose=purpose,
                                             allowed=allowed_callers)
        if answer.card is None:
            log.warning("contact_card_not_given", caller=caller, status=answer.status)
            return {"status": answer.status, "error": answer.reason}
        log.info("contact_card_given", caller=caller, youth_id=youth_id)
        return {"status": "ok", "card": asdict(answer.card)}

    context.app.include_router(campaign_router(context, settings))


spec = ServiceSpec(
    name="reperage",
    migrations=Path(__file__).resolve().parents[3] / "migrations",
    build=build,
    settings=ReperageSettings,
    main_job=demo_main_job,
)
