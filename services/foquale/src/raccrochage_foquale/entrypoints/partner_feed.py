"""The consumer of partners' seat records (`partner.<id>.seats.<verb>.v1`, PARTNER stream): offers
published, updated, confirmed, closed, and answers to reservations (placement confirmed or
refused).

Each record is one message, applied in its own transaction (`service_layer.partners`) and
answered on `partner.<id>.seats.feedback.v1` through the outbox; the answer is also kept in
FOQUALE's database, where the partner asks for it again (`feedback_replay`). The partner is the subject's
(the platform's consumer checks that the envelope's source says the same), never the payload's.

Each partner has a durable of its own (`foquale_partner_<id>`, topology `per_partner`), so a partner's
flood waits in its own durable and never before another's records, and is held to its limits
(deploy/partners.toml): at most `records_per_second` records applied per second (the others wait
in the stream), and while more than `max_backlog` wait, the oldest are answered `rejected`,
naming that limit, all of a fetched batch in one transaction.

The platform's consumer dead-letters a message whose data does not fit its contract, which the
partner never sees. Here the data is read as it is (`RawRecord`) and checked against the
contract by the handler, so that a record with a wrong field is answered with that field, like
any other refusal; only a message that is not an envelope at all is dead-lettered.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError, create_model, model_validator
from raccrochage_contracts import Payload, Registry
from raccrochage_contracts.events import partner_seats_v1 as partner
from raccrochage_platform.broker import jetstream
from raccrochage_platform.consumer import Event, EventConsumer
from raccrochage_platform.logging import get_logger
from raccrochage_platform.service import ServiceContext
from raccrochage_platform.topology import declare_consumer

from ..domain.limits import PartnerLimits
from ..domain.owners import Actor
from ..service_layer.partners import (
    PartnerRecord,
    apply_partner_record,
    feedback_for_invalid_record,
    raw_record_key,
    record_key,
)
from ..service_layer.unit_of_work import FoqualeUnitOfWork

log = get_logger(__name__)

RECORDS: dict[str, type[Payload]] = {
    model.event_type: model
    for model in (
        partner.SeatsPublished,
        partner.SeatsUpdated,
        partner.SeatsConfirmed,
        partner.SeatsClosed,
        partner.PlacementConfirmed,
        partner.PlacementRefused,
    )
}
REFUSED_PER_BATCH = 200
FEEDBACK_NAMESPACE = uuid.UUID("5d2e8f0a-3c41-4f6b-9a7e-1b0c2d3e4f50")


class RawRecord(Payload):
    """A partner record's data as sent, whatever it holds; the handler checks it."""

    data: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _as_sent(cls, value: Any) -> Any:
        return {"data": value}


def _raw_registry() -> Registry:
    registry = Registry()
    for name in RECORDS:
        # One class per type: a registry names its model's type on the class.
        registry.register(name, create_model(f"Raw{RECORDS[name].__name__}", __base__=RawRecord))
    return registry


def feedback_event_id(record_event_id: uuid.UUID, refused_for: str = "") -> uuid.UUID:
    """The same record delivered again names the same answer: the outbox writes it once. A record
    refused for a limit (`refused_for`) has an answer of its own: sent again later, the same
    record is answered again."""
    return uuid.uuid5(FEEDBACK_NAMESPACE, f"{record_event_id}{'/' + refused_for if refused_for else ''}")


async def send_feedback(
    uow: FoqualeUnitOfWork, event: Event[RawRecord], feedback: partner.SeatsFeedback, refused_for: str = ""
) -> None:
    """The answer to a record, in the unit of work: its event to the outbox, and its copy for the
    partner to read again (`feedback_replay`)."""
    published = uow.add_event(
        feedback,
        subject=f"partner/{event.partner_id}",
        cause=event.envelope,
        event_id=feedback_event_id(event.envelope.id, refused_for),
    )
    await uow.feedback.add(event.partner_id, published)


async def refuse_over_backlog(
    events: list[Event[RawRecord]], limits: PartnerLimits, unit_of_work: Callable[[], FoqualeUnitOfWork]
) -> None:
    """Answer `rejected` (field "*", the backlog limit named) to records that found more than the
    partner's `max_backlog` waiting behind them, without applying them: one transaction."""
    async with unit_of_work() as uow:
        for event in events:
            feedback = partner.SeatsFeedback(
                partner_key=raw_record_key(event.data.data),
                record_type=event.envelope.type,
                record_event_id=event.envelope.id,
                outcome="rejected",
                problems=[
                    partner.Problem(
                        field="*", reason=limits.backlog_refusal(event.partner_id, event.pending)[:300]
                    )
                ],
            )
            await send_feedback(uow, event, feedback, refused_for="max_backlog")
        await uow.commit()
    log.info("partner_records_over_backlog", partner_id=events[0].partner_id, records=len(events))


async def answer(
    event: Event[RawRecord], partners: dict[str, Actor], unit_of_work: Callable[[], FoqualeUnitOfWork]
) -> partner.SeatsFeedback:
    """Check the record, apply it if it is valid and the partner may publish seats, and write the
    answer to the outbox; the answer."""
    partner_id = event.partner_id
    envelope = event.envelope
    raw = event.data.data
    try:
        record = RECORDS[envelope.type].read(raw)
    except ValidationError as error:
        feedback = feedback_for_invalid_record(envelope.type, raw, error, envelope.id)
    else:
        actor = partners.get(partner_id)
        if actor is None:
            feedback = partner.SeatsFeedback(
                partner_key=record_key(record),
                record_type=envelope.type,
                record_event_id=envelope.id,
                outcome="rejected",
                problems=[
                    partner.Problem(
                        field="*", reason=f"partner {partner_id} is not registered to publish seats"
                    )
                ],
            )
        else:
            feedback = await apply_partner_record(
                PartnerRecord(actor, record, datetime.now(UTC), envelope.id), unit_of_work()
            )
    async with unit_of_work() as uow:
        await send_feedback(uow, event, feedback)
        await uow.commit()
    if feedback.outcome == "rejected":
        log.info(
            "partner_record_rejected",
            partner_id=partner_id,
            record_type=envelope.type,
            fields=[problem.field for problem in feedback.problems][:10],
        )
    return feedback


async def partner_consumers(
    context: ServiceContext,
    unit_of_work: Callable[[], FoqualeUnitOfWork],
    each_handler_commits: Callable[[], Any],
    partners: dict[str, Actor],
    limits: dict[str, PartnerLimits],
    **options: Any,
) -> list[EventConsumer]:
    """One consumer per partner's durable, reading records as sent (`RawRecord`), each held to
    its partner's limits. A partner's batches are handled one at a time, in the order sent, by one
    FOQUALE process at a time however many run (`in_one_process`): a close must not overtake
    the publish of its offer. Each durable is declared here too (as `raccrochage declare` does): a
    partner added to deploy/partners.toml is read from FOQUALE's next start."""
    consumers = []
    for definition in context.topology.consumers_of("foquale"):
        if definition.partner is None:
            continue
        await declare_consumer(jetstream(context.broker), definition)
        consumer = EventConsumer(
            definition,
            _raw_registry(),
            each_handler_commits,
            jetstream(context.broker),
            concurrency=1,
            # The records over the backlog in a batch are answered in one transaction: a large
            # batch brings a flood's backlog down fast. Those applied go one at a time anyway.
            batch_size=REFUSED_PER_BATCH,
            **options,
        )
        handle = _limited(definition.partner, limits[definition.partner], partners, unit_of_work)
        for name in RECORDS:
            consumer.on_batch(name)(handle)
        context.consumers.append(consumer)
        context.in_one_process(consumer)
        consumers.append(consumer)
    return consumers


def _limited(
    partner_id: str,
    limits: PartnerLimits,
    partners: dict[str, Actor],
    unit_of_work: Callable[[], FoqualeUnitOfWork],
) -> Callable[[Any, list[Event[RawRecord]]], Any]:
    """A partner's handler: the records over its backlog refused at once, the others applied at
    its rate at most, whichever FOQUALE process applies them (the rate's state is a row)."""

    async def turn() -> float:
        async with unit_of_work() as uow:
            wait = await uow.rates.take_turn(partner_id, limits.records_per_second, datetime.now(UTC))
            await uow.commit()
        return wait

    async def handle(_: Any, events: list[Event[RawRecord]]) -> None:
        over = [event for event in events if limits.over_backlog(event.pending)]
        if over:
            await refuse_over_backlog(over, limits, unit_of_work)
        for event in events:
            if limits.over_backlog(event.pending):
                continue
            await asyncio.sleep(await turn())  # held: the rest wait in the stream
            await answer(event, partners, unit_of_work)

    return handle
