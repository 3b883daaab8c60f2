"""Seat offers partner systems publish, and FOQUALE's feedback on each record, version 1.

A partner (a CFA network, a school information system, a regional platform) publishes on
`partner.<partner_id>.seats.<verb>.v1`, into the PARTNER stream, with its own NATS user: the
partner is taken from the subject, never from the payload. Each message is one record, named by
the partner's own `partner_key`: the same record sent twice changes nothing.

A partner also answers the reservations FOQUALE made at its UAIs (`placement_confirmed`,
`placement_refused` with a code), keyed by the reservation id.

FOQUALE answers every record it refuses (and, to close the loop, every record it took) on
`partner.<partner_id>.seats.feedback.v1`, with the key, the field and the reason. FOQUALE keeps
each partner's feedback, and a partner asks for its last N answers by request/reply
(`partner.<partner_id>.feedback.replay.v1`): it can read no stream. In the same way it asks
which reservations at its UAIs wait for its answer (`partner.<partner_id>.reservations.pending.v1`),
answered with `partner.reservations.pending.v1`.

No personal data: an offer names a contact role, never a person.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import Field, model_validator

from ..payload import Payload
from ..registry import event_type
from .foquale_v1 import DEPARTEMENT, UAI, ZAP, ContactRole, EstablishmentCode, Formation, Keyword, Statut
from .reperage_v1 import YOUTH_ID

PARTNER_KEY = Field(
    pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$",
    max_length=80,
    description="the partner's own key for the offer; the same key names the same offer",
)


class _SeatRecord(Payload):
    partner_key: str = PARTNER_KEY


class _SeatDescription(_SeatRecord):
    uai: str = UAI
    formation: Formation
    statut: Statut
    departement: str = DEPARTEMENT
    zap: str | None = ZAP
    capacity: int = Field(ge=0, le=10_000)
    opens_on: date
    closes_on: date | None = None
    contact_role: ContactRole
    keywords: list[Keyword] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _closes_after_opening(self) -> _SeatDescription:
        if self.closes_on is not None and self.closes_on < self.opens_on:
            raise ValueError("closes_on is before opens_on")
        return self


@event_type("partner.seats.published.v1")
class SeatsPublished(_SeatDescription):
    """A new offer (or one sent again: the same key updates it, the same content changes nothing)."""


@event_type("partner.seats.updated.v1")
class SeatsUpdated(_SeatDescription):
    """The offer as it is now, whole: a record replaces the previous one of the same key."""


@event_type("partner.seats.confirmed.v1")
class SeatsConfirmed(_SeatRecord):
    """The offer is still valid as published: its freshness clock starts again."""


@event_type("partner.seats.closed.v1")
class SeatsClosed(_SeatRecord):
    """The offer is withdrawn; seats already reserved are answered one by one."""


# What a partner may answer to a reservation at one of its UAIs: the establishment's codes less
# `other`, whose comment is free text (it may name a person, and a stream keeps no person): a
# refusal for another reason goes through the establishment API, whose comment stays in
# FOQUALE's database.
PartnerRefusalCode = EstablishmentCode


class _PlacementAnswer(Payload):
    reservation_id: uuid.UUID = Field(
        description="the reservation FOQUALE made at one of the partner's UAIs; it is the record's key"
    )


@event_type("partner.seats.placement_confirmed.v1")
class PlacementConfirmed(_PlacementAnswer):
    """The establishment takes the youth on the reserved seat: foquale.placement.confirmed.v1."""

    starts_on: date | None = Field(None, description="the first day; by default the offer's opening day")


@event_type("partner.seats.placement_refused.v1")
class PlacementRefused(_PlacementAnswer):
    """The establishment refuses the reservation with a code; the seat is free again:
    foquale.placement.refused.v1."""

    reason: PartnerRefusalCode


class Problem(Payload):
    field: str = Field(
        min_length=1, max_length=200, description="the field, as a dotted path; '*' for the record"
    )
    reason: str = Field(min_length=1, max_length=300)


@event_type("partner.seats.feedback.v1")
class SeatsFeedback(Payload):
    """FOQUALE's answer to one partner record."""

    partner_key: str | None = Field(
        None,
        max_length=80,
        description="the record's key (a placement answer's: its reservation_id); None when none was readable",
    )
    record_type: str = Field(
        pattern=r"^partner\.seats\.[a-z_]+\.v[1-9][0-9]*$",
        max_length=80,
        description="the type of the record answered",
    )
    record_event_id: uuid.UUID | None = Field(None, description="the envelope id of the record answered")
    outcome: Literal["accepted", "unchanged", "rejected"]
    offer_id: uuid.UUID | None = Field(None, description="FOQUALE's offer for this key, once it exists")
    problems: list[Problem] = Field(default_factory=list, max_length=50)


class PendingReservation(Payload):
    """A reservation at one of the partner's UAIs, unanswered and not expired."""

    reservation_id: uuid.UUID = Field(description="the id a placement answer names")
    offer_id: uuid.UUID = Field(description="FOQUALE's offer, as the feedback on its record named it")
    uai: str = UAI
    youth_id: str = YOUTH_ID
    made_at: datetime
    expires_at: datetime = Field(description="unanswered by then, the seat is freed")


@event_type("partner.reservations.pending.v1")
class ReservationsPending(Payload):
    """FOQUALE's answer to a partner asking which reservations wait for its answer: soonest to
    expire first."""

    partner_id: str = Field(pattern=r"^[a-z0-9_-]{1,40}$", max_length=40)
    reservations: list[PendingReservation] = Field(default_factory=list, max_length=500)
    more: bool = Field(False, description="more are pending than the request's limit")
