"""A partner system's seat records, and its answers to reservations: each one checked and
applied on its own, and answered.

The entrypoint reads `partner.<partner_id>.seats.<verb>.v1`, builds the Actor from the subject and
the partner's registration (never from the payload), and sends back the feedback this returns on
`partner.<partner_id>.seats.feedback.v1`. A bad record is refused alone: the records beside it in
the same batch are separate messages, each with its own transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from raccrochage_contracts.events import partner_seats_v1 as partner

from ..domain.errors import CommandRefused, InvalidCommand, NotFound, NotYourEstablishment
from ..domain.offer_types import Formation, OfferDescription, Owner, offer_id_for
from ..domain.owners import Actor
from ..domain.refusals import Refusal, RefusalReason
from ..domain.reservation import Reservation, ReservationState
from ..domain.uai import Uai
from .commands import CloseOffer, ConfirmOffer, ConfirmReservation, PublishOffer, RefuseReservation
from .handlers import close_offer, confirm_offer, confirm_reservation, publish_offer, refuse_reservation
from .unit_of_work import FoqualeUnitOfWork

SeatRecord = partner.SeatsPublished | partner.SeatsUpdated | partner.SeatsConfirmed | partner.SeatsClosed
PlacementRecord = partner.PlacementConfirmed | partner.PlacementRefused


@dataclass(frozen=True)
class PartnerRecord:
    actor: Actor  # a partner actor, from the subject and the partner's registration
    record: SeatRecord | PlacementRecord
    now: datetime
    event_id: uuid.UUID | None = None  # the envelope's, quoted in the feedback


def description_of(record: partner.SeatsPublished | partner.SeatsUpdated) -> OfferDescription:
    """The domain's description of a valid record; InvalidCommand names the field (a UAI whose
    check letter is wrong passes the contract's pattern and stops here)."""
    f = record.formation
    return OfferDescription(
        uai=Uai.parse(record.uai),
        formation=Formation(f.code_kind, f.code, f.label, f.level),
        statut=record.statut,
        departement=record.departement,
        zap=record.zap,
        capacity=record.capacity,
        opens_on=record.opens_on,
        closes_on=record.closes_on,
        contact_role=record.contact_role,
        keywords=tuple(record.keywords),
    )


def record_key(record: SeatRecord | PlacementRecord) -> str:
    """The key the feedback quotes: the partner's own for an offer, the reservation's for an
    answer to a reservation."""
    if isinstance(record, partner.PlacementConfirmed | partner.PlacementRefused):
        return str(record.reservation_id)
    return record.partner_key


def _feedback(
    cmd: PartnerRecord,
    outcome: str,
    offer_id: uuid.UUID | None = None,
    problems: list[partner.Problem] | None = None,
) -> partner.SeatsFeedback:
    return partner.SeatsFeedback(
        partner_key=record_key(cmd.record),
        record_type=cmd.record.event_type,
        record_event_id=cmd.event_id,
        outcome=outcome,
        offer_id=offer_id,
        problems=problems or [],
    )


async def apply_partner_record(cmd: PartnerRecord, uow: FoqualeUnitOfWork) -> partner.SeatsFeedback:
    """Apply one record (published and updated both put the offer as sent; confirmed and closed
    act on the offer of that key; an answer to a reservation goes through the handlers the
    establishment API calls) and say what became of it."""
    record = cmd.record
    key = record_key(record)
    offer_id = None if isinstance(record, PlacementRecord) else offer_id_for(Owner.partner(cmd.actor.id), key)
    try:
        match record:
            case partner.SeatsPublished() | partner.SeatsUpdated():
                result = await publish_offer(
                    PublishOffer(cmd.actor, record.partner_key, description_of(record), cmd.now), uow
                )
            case partner.SeatsConfirmed():
                result = await confirm_offer(ConfirmOffer(cmd.actor, offer_id, cmd.now), uow)
            case partner.SeatsClosed():
                result = await close_offer(CloseOffer(cmd.actor, offer_id, cmd.now), uow)
            case partner.PlacementConfirmed():
                command = ConfirmReservation(cmd.actor, record.reservation_id, cmd.now, record.starts_on)
                reservation = await confirm_reservation(command, uow)
                return _feedback(cmd, "accepted", reservation.offer_id)
            case partner.PlacementRefused():
                refusal = Refusal(RefusalReason(record.reason))
                command = RefuseReservation(cmd.actor, record.reservation_id, refusal, cmd.now)
                reservation = await refuse_reservation(command, uow)
                return _feedback(cmd, "accepted", reservation.offer_id)
    except InvalidCommand as error:
        return _feedback(
            cmd, "rejected", problems=[partner.Problem(field=error.field, reason=error.reason[:300])]
        )
    except NotYourEstablishment as error:
        return _feedback(cmd, "rejected", problems=[partner.Problem(field="uai", reason=str(error)[:300])])
    except NotFound:
        if isinstance(record, PlacementRecord):
            problem = partner.Problem(field="reservation_id", reason="no reservation has this id")
        else:
            problem = partner.Problem(field="partner_key", reason="no offer was published under this key")
        return _feedback(cmd, "rejected", problems=[problem])
    except CommandRefused as error:
        if isinstance(record, PlacementRecord):
            answered = await _answered_so(record, uow)
            if answered is not None:  # the same answer again
                return _feedback(cmd, "unchanged", answered.offer_id)
            problem = partner.Problem(field="reservation_id", reason=str(error)[:300])
            return _feedback(cmd, "rejected", problems=[problem])
        return _feedback(cmd, "rejected", offer_id, [partner.Problem(field="*", reason=str(error)[:300])])
    return _feedback(cmd, result.outcome.value, result.offer_id)


async def _answered_so(record: PlacementRecord, uow: FoqualeUnitOfWork) -> Reservation | None:
    """The reservation, if it was answered as this record says already."""
    async with uow:
        reservation = await uow.reservations.get(record.reservation_id, lock=False)
    if reservation is None:
        return None
    if isinstance(record, partner.PlacementConfirmed):
        same = reservation.state is ReservationState.CONFIRMED and record.starts_on in (
            None,
            reservation.starts_on,
        )
    else:
        refusal = reservation.refusal
        same = reservation.state is ReservationState.REFUSED and refusal is not None
        same = same and refusal.reason == record.reason
    return reservation if same else None


def raw_record_key(data: Any) -> str | None:
    """The key of a record as sent, when one can be read, for an answer to a record that was not
    (or could not be) read against its contract."""
    key = (data.get("partner_key") or data.get("reservation_id")) if isinstance(data, dict) else None
    return key if isinstance(key, str) and 0 < len(key) <= 80 else None


def feedback_for_invalid_record(
    record_type: str, data: Any, error: ValidationError, event_id: uuid.UUID | None = None
) -> partner.SeatsFeedback:
    """The answer to a record that does not even fit its contract: every field at fault, and the
    key if one can be read."""
    problems = [
        partner.Problem(
            field=".".join(str(part) for part in problem["loc"])[:200] or "*",
            reason=problem["msg"][:300],
        )
        for problem in error.errors()[:50]
    ]
    return partner.SeatsFeedback(
        partner_key=raw_record_key(data),
        record_type=record_type,
        record_event_id=event_id,
        outcome="rejected",
        problems=problems,
    )
