"""Events produced by FOQUALE, version 1: seat offers, reservations and placements.

An offer is named by `offer_id`, a reservation by `reservation_id`, a youth by the pseudonymous
`youth_id`. No event carries a person: an offer names a contact *role*, never a name or a phone.
Placement answers (`foquale.placement.*`) quote the `request_id` of the psad.solution.requested.v1
they answer; reservation events do too, so that PSAD and ops can follow one request end to end.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ..payload import Payload
from ..registry import event_type
from .reperage_v1 import YOUTH_ID

REQUEST_ID = Field(description="request_id of the psad.solution.requested.v1 this answers")
UAI = Field(
    pattern=r"^[0-9]{7}[A-Z]$",
    max_length=8,
    description="the establishment (UAI: 7 digits and a check letter)",
)
DEPARTEMENT = Field(pattern=r"^([0-9]{2}|2A|2B|9[78][0-9])$", max_length=3)
OFFER_ID = Field(description="the seat offer at FOQUALE")
ZAP = Field(
    None, pattern=r"^[a-z0-9][a-z0-9-]{0,79}$", max_length=80, description="ZAP slug; None when not known"
)

# Nomenclature of diploma levels (2019): 3 = CAP/BEP, 4 = baccalauréat, 5 = bac+2. `sans_niveau`
# for what leads to no diploma of its own (positioning modules, dispositifs).
Level = Literal["sans_niveau", "niveau_3", "niveau_4", "niveau_5"]
# The youth's status in the seat: pupil, apprentice, or in a dispositif.
Statut = Literal["scolaire", "apprentissage", "dispositif"]
FormationCodeKind = Literal["mef", "cfd"]
Source = Literal["establishment_api", "partner_feed", "file_import"]
OwnerKind = Literal["establishment", "partner"]
ContactRole = Literal[
    "chef_etablissement",
    "proviseur_adjoint",
    "directeur_delegue_formations",
    "cpe",
    "referent_decrochage",
    "psy_en",
    "coordonnateur_mlds",
    "secretariat",
]
CloseReason = Literal["closed_by_owner", "unpublished_stale", "past_close_date"]
# Why an establishment (or FOQUALE) refuses a placement: a fixed list. `other` needs a comment,
# which stays in FOQUALE (free text may name a person); the event carries the code only.
# An establishment's codes but `other` (a partner's feed may send these: partner_seats_v1).
EstablishmentCode = Literal[
    "seat_no_longer_available",
    "level_not_suited",
    "prerequisites_missing",
    "age_out_of_range",
    "youth_declined",
    "youth_no_show",
]
RefusalCode = Literal["no_seat", EstablishmentCode, "reservation_expired", "other"]
# A coded field, trade or place a youth's wishes are matched against, e.g. "metiers-relation-client".
Keyword = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,59}$", max_length=60)]


class Formation(Payload):
    """The training the seat leads into: its national code (MEF: 11 characters, CFD: 8)."""

    code_kind: FormationCodeKind
    code: str = Field(pattern=r"^([0-9A-Z]{8}|[0-9A-Z]{11})$", max_length=11)
    label: str = Field(min_length=1, max_length=200)
    level: Level


class _Seat(Payload):
    """An offer as FOQUALE holds it after the change the event reports."""

    offer_id: uuid.UUID = OFFER_ID
    uai: str = UAI
    formation: Formation
    statut: Statut
    departement: str = DEPARTEMENT
    zap: str | None = ZAP
    capacity: int = Field(ge=0, le=10_000)
    seats_left: int = Field(ge=0, le=10_000, description="capacity - active reservations - placements")
    opens_on: date
    closes_on: date | None = None
    contact_role: ContactRole
    source: Source
    owner_kind: OwnerKind
    owner_id: str = Field(
        min_length=1, max_length=63, description="the partner id, or the UAI for an establishment"
    )
    keywords: list[Keyword] = Field(
        default_factory=list, max_length=20, description="coded fields and trades the wishes match"
    )
    last_confirmed_at: datetime


@event_type("foquale.seat.published.v1")
class SeatPublished(_Seat):
    """An offer is published (or published again after being unpublished) and can be reserved."""

    published_at: datetime


@event_type("foquale.seat.updated.v1")
class SeatUpdated(_Seat):
    """The owner changed the offer or confirmed it is still valid (which resets its freshness)."""

    updated_at: datetime
    confirmed: bool = Field(False, description="true when the owner only confirmed the offer")


@event_type("foquale.seat.stale.v1")
class SeatStale(Payload):
    """Nobody confirmed the offer for too long: its owner is asked to, before it is unpublished."""

    offer_id: uuid.UUID = OFFER_ID
    uai: str = UAI
    owner_kind: OwnerKind
    owner_id: str = Field(min_length=1, max_length=63)
    last_confirmed_at: datetime
    unpublish_on: date = Field(description="the day the offer is unpublished unless confirmed")
    flagged_at: datetime


@event_type("foquale.seat.closed.v1")
class SeatClosed(Payload):
    """The offer can no longer be reserved; reservations already made stay valid until answered."""

    offer_id: uuid.UUID = OFFER_ID
    uai: str = UAI
    owner_kind: OwnerKind
    owner_id: str = Field(min_length=1, max_length=63)
    reason: CloseReason
    closed_at: datetime


class _Reservation(Payload):
    reservation_id: uuid.UUID
    request_id: uuid.UUID = REQUEST_ID
    case_id: uuid.UUID
    youth_id: str = YOUTH_ID
    offer_id: uuid.UUID = OFFER_ID
    uai: str = UAI
    seats_left: int = Field(ge=0, le=10_000, description="on the offer, just after this change")


@event_type("foquale.reservation.made.v1")
class ReservationMade(_Reservation):
    """A seat is held for the youth until the establishment answers, or until it expires."""

    expires_at: datetime
    made_at: datetime


@event_type("foquale.reservation.expired.v1")
class ReservationExpired(_Reservation):
    """The establishment did not answer in time: the seat is free again."""

    expired_at: datetime


class _Answer(Payload):
    request_id: uuid.UUID = REQUEST_ID
    case_id: uuid.UUID
    youth_id: str = YOUTH_ID
    decided_at: datetime


@event_type("foquale.placement.confirmed.v1")
class PlacementConfirmed(_Answer):
    """A seat is reserved for the youth in a school or a dispositif."""

    seat_id: str = Field(min_length=1, max_length=80, description="the seat offer at FOQUALE")
    uai: str = Field(pattern=r"^[0-9]{7}[A-Z]$", max_length=8, description="the establishment")
    training: str | None = Field(None, max_length=200)
    starts_on: date
    reservation_id: uuid.UUID | None = Field(None, description="the reservation the establishment confirmed")


class Alternatives(Payload):
    """What was near when no seat matched, counted in offers with seats left (never a list)."""

    in_departement_other_wishes: int = Field(
        ge=0, description="in the youth's département, at a suited level, matching none of the wishes"
    )
    other_departements_same_wishes: int = Field(
        ge=0, description="in other départements, at a suited level, matching the wishes"
    )
    full_in_territory: int = Field(ge=0, description="matching offers in the territory with no seat left")


@event_type("foquale.placement.refused.v1")
class PlacementRefused(_Answer):
    reason: Literal["no_seat", "not_eligible", "youth_declined", "other"]
    refusal_code: RefusalCode | None = Field(None, description="the detailed coded reason")
    offer_id: uuid.UUID | None = Field(None, description="the offer refused, when a seat had been reserved")
    uai: str | None = Field(None, pattern=r"^[0-9]{7}[A-Z]$", max_length=8)
    alternatives: Alternatives | None = Field(None, description="for no_seat: what was near")
