"""From the domain events offers and reservations record to the integration events others read.

Seat events are keyed by their offer, reservation and placement events by the PSAD request they
answer, so that the relay keeps each one's events in order.
"""

from __future__ import annotations

from datetime import datetime

from raccrochage_contracts import Payload
from raccrochage_contracts.events import foquale_v1 as contract

from ..domain import events
from ..domain.matching import Alternatives, SeatRequest
from ..domain.offer import Offer
from ..domain.refusals import CONTRACT_REASON, RefusalReason
from ..domain.reservation import Reservation


def _seat(offer: Offer) -> dict:
    d = offer.description
    return {
        "offer_id": offer.offer_id,
        "uai": str(d.uai),
        "formation": contract.Formation(
            code_kind=d.formation.code_kind.value,
            code=d.formation.code,
            label=d.formation.label,
            level=d.formation.level.value,
        ),
        "statut": d.statut.value,
        "departement": d.departement,
        "zap": d.zap,
        "capacity": d.capacity,
        "seats_left": offer.seats_left,
        "opens_on": d.opens_on,
        "closes_on": d.closes_on,
        "contact_role": d.contact_role.value,
        "source": offer.source.value,
        "owner_kind": offer.owner.kind.value,
        "owner_id": offer.owner.id,
        "keywords": list(d.keywords),
        "last_confirmed_at": offer.last_confirmed_at,
    }


def offer_payloads(offer: Offer) -> list[Payload]:
    """The contract payloads for what the offer recorded since it was loaded."""
    owner = {"uai": str(offer.uai), "owner_kind": offer.owner.kind.value, "owner_id": offer.owner.id}
    out: list[Payload] = []
    for event in offer.events:
        match event:
            case events.OfferPublished():
                out.append(contract.SeatPublished(**_seat(offer), published_at=event.at))
            case events.OfferUpdated():
                out.append(contract.SeatUpdated(**_seat(offer), updated_at=event.at))
            case events.OfferConfirmed():
                out.append(contract.SeatUpdated(**_seat(offer), updated_at=event.at, confirmed=True))
            case events.OfferFlaggedStale():
                out.append(
                    contract.SeatStale(
                        offer_id=offer.offer_id,
                        **owner,
                        last_confirmed_at=event.last_confirmed_at,
                        unpublish_on=event.unpublish_on,
                        flagged_at=event.at,
                    )
                )
            case events.OfferClosed():
                out.append(
                    contract.SeatClosed(
                        offer_id=offer.offer_id, **owner, reason=event.reason.value, closed_at=event.at
                    )
                )
    return out


def reservation_payloads(reservation: Reservation, seats_left: int) -> list[Payload]:
    """The contract payloads for what the reservation recorded; `seats_left` is the offer's after
    the change (the repository's answer to take, release or fill a seat)."""
    r = reservation
    ids = {"request_id": r.request_id, "case_id": r.case_id, "youth_id": r.youth_id}
    held = {**ids, "reservation_id": r.reservation_id, "offer_id": r.offer_id, "uai": str(r.uai)}
    out: list[Payload] = []
    for event in r.events:
        match event:
            case events.ReservationMade():
                out.append(
                    contract.ReservationMade(
                        **held, seats_left=event.seats_left, expires_at=event.expires_at, made_at=event.at
                    )
                )
            case events.ReservationConfirmed():
                out.append(
                    contract.PlacementConfirmed(
                        **ids,
                        decided_at=event.at,
                        seat_id=str(r.offer_id),
                        uai=str(r.uai),
                        training=r.training,
                        starts_on=event.starts_on,
                        reservation_id=r.reservation_id,
                    )
                )
            case events.ReservationRefused():
                out.append(_refused(r, event.refusal.reason, event.at))
            case events.ReservationExpired():
                out.append(contract.ReservationExpired(**held, seats_left=seats_left, expired_at=event.at))
                # PSAD waits for an answer to its request: an expiry is one.
                out.append(_refused(r, RefusalReason.RESERVATION_EXPIRED, event.at))
    return out


def _refused(r: Reservation, code: RefusalReason, at: datetime) -> contract.PlacementRefused:
    return contract.PlacementRefused(
        request_id=r.request_id,
        case_id=r.case_id,
        youth_id=r.youth_id,
        decided_at=at,
        reason=CONTRACT_REASON[code],
        refusal_code=code.value,
        offer_id=r.offer_id,
        uai=str(r.uai),
    )


def request_refused(
    request: SeatRequest, code: RefusalReason, at: datetime, alternatives: Alternatives | None = None
) -> contract.PlacementRefused:
    """FOQUALE's own refusal of a request: no seat (with what was near), or not eligible."""
    return contract.PlacementRefused(
        request_id=request.request_id,
        case_id=request.case_id,
        youth_id=request.youth_id,
        decided_at=at,
        reason=CONTRACT_REASON[code],
        refusal_code=code.value,
        alternatives=(
            contract.Alternatives(
                in_departement_other_wishes=alternatives.in_departement_other_wishes,
                other_departements_same_wishes=alternatives.other_departements_same_wishes,
                full_in_territory=alternatives.full_in_territory,
            )
            if alternatives is not None
            else None
        ),
    )
