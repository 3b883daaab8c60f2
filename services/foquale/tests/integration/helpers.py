"""What FOQUALE's integration tests share: offers to publish, requests to send, streams to read."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from nats.aio.client import Client
from raccrochage_contracts import CloudEvent, Payload, nats_subject, new_event
from raccrochage_contracts.events.psad_v1 import SolutionRequested
from raccrochage_foquale.domain.offer_types import (
    ContactRole,
    Formation,
    FormationCodeKind,
    Level,
    OfferDescription,
    Statut,
)
from raccrochage_foquale.domain.owners import Actor
from raccrochage_foquale.domain.uai import Uai
from raccrochage_foquale.service_layer.commands import PublishOffer
from raccrochage_foquale.service_layer.handlers import OfferOutcome, publish_offer
from raccrochage_foquale.service_layer.unit_of_work import SqlFoqualeUnitOfWork
from sqlalchemy.ext.asyncio import AsyncEngine

UAI_A = Uai("0331234M")  # Gironde


def youth_id(n: int | str) -> str:
    return hashlib.sha256(f"youth-{n}".encode()).hexdigest()


def description(
    uai: Uai = UAI_A, *, capacity: int = 3, departement: str = "33", **more: Any
) -> OfferDescription:
    return OfferDescription(
        uai=uai,
        formation=Formation(
            FormationCodeKind.MEF, "24020020110", "Bac pro métiers de l'accueil (1re)", Level.NIVEAU_4
        ),
        statut=Statut.SCOLAIRE,
        departement=departement,
        zap=more.pop("zap", "bordeaux-nord"),
        capacity=capacity,
        opens_on=more.pop("opens_on", date(2027, 1, 4)),
        closes_on=more.pop("closes_on", None),
        contact_role=ContactRole.DIRECTEUR_DELEGUE_FORMATIONS,
        keywords=more.pop("keywords", ("metiers-relation-client",)),
    )


async def publish_school_offer(
    engine: AsyncEngine, key: str, *, uai: Uai = UAI_A, capacity: int = 3, **more: Any
) -> OfferOutcome:
    """An offer as a school's API key would publish it, straight through the service layer."""
    uow = SqlFoqualeUnitOfWork(engine, source="raccrochage/foquale", stream="FOQUALE")
    actor = Actor.establishment(f"key-{uai}", {uai})
    return await publish_offer(
        PublishOffer(actor, key, description(uai, capacity=capacity, **more), datetime.now(UTC)), uow
    )


def seat_requested(n: int | str, *, departement: str = "33", age: int = 17, wishes=()) -> SolutionRequested:
    case_id = uuid.uuid5(uuid.NAMESPACE_URL, f"case/{n}")
    return SolutionRequested(
        case_id=case_id,
        youth_id=youth_id(n),
        psad_id="psad-33-bordeaux-nord",
        request_id=uuid.uuid5(uuid.NAMESPACE_URL, f"request/{n}"),
        solution_number=1,
        kind="foquale_seat",
        provider="foquale",
        age=age,
        last_diploma="DNB",
        months_since_leaving=5,
        departement=departement,
        zap="bordeaux-nord",
        wishes=list(wishes),
        requested_at=datetime.now(UTC),
    )


async def publish(nc: Client, payload: Payload, *, subject: str = "test") -> CloudEvent:
    service = payload.event_type.split(".")[0]
    event = new_event(payload, source=f"raccrochage/{service}", subject=subject)
    await nc.jetstream().publish(
        nats_subject(event.type), event.to_json(), headers={"Nats-Msg-Id": str(event.id)}
    )
    return event


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 30, what: str = "condition"
) -> Any:
    """Poll `check` until it returns something truthy (no timing assertion: a deadline for hangs)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {result!r}")
        await asyncio.sleep(0.1)


async def stream_events(nc: Client, stream: str, subject: str) -> list[dict]:
    """Every event on `subject` in `stream` (an ephemeral ordered read)."""
    js = nc.jetstream()
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True)
    out = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except Exception:
                break
            out.append(json.loads(msg.data))
    finally:
        await sub.unsubscribe()
    return out


def seat_record(key: str, uai: str = "0331012W", *, capacity: int = 4, **more: Any) -> dict[str, Any]:
    """A partner's `partner.seats.published.v1` data, as a partner system would send it."""
    return {
        "partner_key": key,
        "uai": uai,
        "formation": {
            "code_kind": "cfd",
            "code": "50031213",
            "label": "CAP équipier polyvalent du commerce",
            "level": "niveau_3",
        },
        "statut": "apprentissage",
        "departement": more.pop("departement", "33"),
        "zap": "bordeaux-nord",
        "capacity": capacity,
        "opens_on": "2027-01-04",
        "closes_on": "2027-06-30",
        "contact_role": "coordonnateur_mlds",
        "keywords": ["commerce"],
        **more,
    }


def partner_envelope(
    partner_id: str, verb: str, data: dict[str, Any], event_id: uuid.UUID | None = None
) -> dict:
    """A partner's envelope, built by hand: the data is sent as is, wrong fields included."""
    event_id = event_id or uuid.uuid4()
    kind = f"partner.seats.{verb}.v1"
    return {
        "specversion": "1.0",
        "id": str(event_id),
        "source": f"partner/{partner_id}",
        "type": kind,
        "time": datetime.now(UTC).isoformat(),
        "subject": str(data.get("partner_key", "x")),
        "dataschema": f"https://schemas.raccrochage.local/events/{kind}.json",
        "datacontenttype": "application/json",
        "data": data,
        "correlationid": str(event_id),
    }


async def publish_partner(
    nc: Client, partner_id: str, verb: str, data: dict[str, Any], **options: Any
) -> dict:
    envelope = partner_envelope(partner_id, verb, data, **options)
    await nc.jetstream().publish(
        f"partner.{partner_id}.seats.{verb}.v1",
        json.dumps(envelope).encode(),
        headers={"Nats-Msg-Id": envelope["id"]},
    )
    return envelope
