"""Domain events offers and reservations record; the service layer maps them to integration events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from .offer_types import CloseReason
from .refusals import Refusal


@dataclass(frozen=True)
class OfferPublished:
    """Published for the first time, or again after being unpublished (`republished`)."""

    offer_id: uuid.UUID
    at: datetime
    republished: bool = False


@dataclass(frozen=True)
class OfferUpdated:
    offer_id: uuid.UUID
    changed: tuple[str, ...]  # the description's fields that changed
    at: datetime


@dataclass(frozen=True)
class OfferConfirmed:
    """The owner says the offer still holds: its freshness clock starts again."""

    offer_id: uuid.UUID
    at: datetime


@dataclass(frozen=True)
class OfferFlaggedStale:
    offer_id: uuid.UUID
    last_confirmed_at: datetime
    unpublish_on: date
    at: datetime


@dataclass(frozen=True)
class OfferClosed:
    """No longer reservable: closed by its owner, past its close date, or unpublished stale."""

    offer_id: uuid.UUID
    reason: CloseReason
    at: datetime


@dataclass(frozen=True)
class ReservationMade:
    reservation_id: uuid.UUID
    offer_id: uuid.UUID
    seats_left: int  # on the offer, once this seat was taken
    expires_at: datetime
    at: datetime


@dataclass(frozen=True)
class ReservationConfirmed:
    """The establishment confirms: the reservation becomes a placement."""

    reservation_id: uuid.UUID
    offer_id: uuid.UUID
    starts_on: date
    at: datetime


@dataclass(frozen=True)
class ReservationRefused:
    reservation_id: uuid.UUID
    offer_id: uuid.UUID
    refusal: Refusal
    at: datetime


@dataclass(frozen=True)
class ReservationExpired:
    reservation_id: uuid.UUID
    offer_id: uuid.UUID
    at: datetime


OfferEvent = OfferPublished | OfferUpdated | OfferConfirmed | OfferFlaggedStale | OfferClosed
ReservationEvent = ReservationMade | ReservationConfirmed | ReservationRefused | ReservationExpired
