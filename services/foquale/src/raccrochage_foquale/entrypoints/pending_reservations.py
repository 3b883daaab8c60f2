"""A partner asks which reservations at its UAIs wait for its answer:
`partner.<partner_id>.reservations.pending.v1`, a core NATS request answered from FOQUALE's
database, like the feedback replay (`feedback_replay`: the subject names the partner, the answer
goes to that partner's inbox only).

Request body (JSON, optional): `{"limit": N}`, 1 to 500, 100 by default. Answer:
`{"status": "ok", "partner_id": ..., "pending": envelope}`, the envelope a
`partner.reservations.pending.v1` (contracts: `ReservationsPending`): the reservations made at
the partner's UAIs, unanswered and not expired, soonest to expire first, `more` when there are
more than `limit`; or `{"status": "rejected", "errors": [{"field", "message"}]}`. A partner that
publishes no seats has none. No personal data: the youth is its pseudonymous `youth_id`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field
from raccrochage_contracts import new_event
from raccrochage_contracts.events import partner_seats_v1 as partner

from ..domain.owners import Actor
from ..service_layer.unit_of_work import FoqualeUnitOfWork
from .feedback_replay import PartnerRequests, answer_partner

SUBJECT = "partner.*.reservations.pending.v1"
LIMIT_BY_DEFAULT = 100
LIMIT_AT_MOST = 500


class PendingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(
        LIMIT_BY_DEFAULT, ge=1, le=LIMIT_AT_MOST, description="how many, soonest to expire first"
    )


async def pending(
    unit_of_work: Callable[[], FoqualeUnitOfWork],
    partners: dict[str, Actor],
    subject: str,
    reply: str,
    body: bytes,
    now: datetime | None = None,
) -> dict | None:
    """The answer to one request (`feedback_replay.answer_partner`: None when none may be sent)."""

    async def waiting(partner_id: str, request: PendingRequest) -> dict:
        actor = partners.get(partner_id)
        found = []
        if actor is not None:  # a partner that publishes no seats has none
            async with unit_of_work() as uow:
                found = await uow.reservations.pending_at(
                    actor.uais, now or datetime.now(UTC), request.limit + 1
                )
        answer = partner.ReservationsPending(
            partner_id=partner_id,
            reservations=[
                partner.PendingReservation(
                    reservation_id=r.reservation_id,
                    offer_id=r.offer_id,
                    uai=str(r.uai),
                    youth_id=r.youth_id,
                    made_at=r.made_at,
                    expires_at=r.expires_at,
                )
                for r in found[: request.limit]
            ],
            more=len(found) > request.limit,
        )
        envelope = new_event(answer, source="raccrochage/foquale", subject=f"partner/{partner_id}")
        return {"status": "ok", "partner_id": partner_id, "pending": json.loads(envelope.to_json())}

    return await answer_partner(PendingRequest, subject, reply, body, waiting)


def pending_reservations(
    unit_of_work: Callable[[], FoqualeUnitOfWork], partners: dict[str, Actor]
) -> PartnerRequests:
    return PartnerRequests(SUBJECT, functools.partial(pending, unit_of_work, partners))
