"""Offers, actors and requests for FOQUALE's unit tests, with a fixed clock."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from raccrochage_foquale.domain.matching import SeatRequest
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

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
UAI_A = Uai("0331234M")  # Gironde
UAI_B = Uai("0332745E")  # Gironde
UAI_LANDES = Uai("0400003L")


def days(n: float) -> timedelta:
    return timedelta(days=n)


def description(
    uai: Uai = UAI_A,
    *,
    capacity: int = 3,
    departement: str = "33",
    zap: str | None = "bordeaux-nord",
    level: Level = Level.NIVEAU_4,
    code: str = "24020020110",
    keywords: tuple[str, ...] = ("metiers-relation-client",),
    opens_on: date = date(2027, 1, 4),
    closes_on: date | None = date(2027, 6, 30),
    statut: Statut = Statut.SCOLAIRE,
    **more: Any,
) -> OfferDescription:
    kind = FormationCodeKind.MEF if len(code) == 11 else FormationCodeKind.CFD
    return OfferDescription(
        uai=uai,
        formation=Formation(kind, code, more.pop("label", "Bac pro métiers de l'accueil (1re)"), level),
        statut=statut,
        departement=departement,
        zap=zap,
        capacity=capacity,
        opens_on=opens_on,
        closes_on=closes_on,
        contact_role=more.pop("contact_role", ContactRole.DIRECTEUR_DELEGUE_FORMATIONS),
        keywords=keywords,
        **more,
    )


def partner(partner_id: str = "cfa-gironde", *uais: Uai) -> Actor:
    return Actor.partner(partner_id, set(uais or (UAI_A, UAI_B)))


def school(uai: Uai = UAI_A) -> Actor:
    return Actor.establishment(f"key-{uai}", {uai})


def youth_id(n: int) -> str:
    return hashlib.sha256(f"youth-{n}".encode()).hexdigest()


def seat_request(
    n: int = 1,
    *,
    departement: str = "33",
    zap: str | None = "bordeaux-nord",
    wishes: tuple[str, ...] = (),
    age: int = 17,
    at: datetime = T0,
) -> SeatRequest:
    return SeatRequest(
        request_id=uuid.uuid5(uuid.NAMESPACE_URL, f"request/{n}"),
        case_id=uuid.uuid5(uuid.NAMESPACE_URL, f"case/{n}"),
        youth_id=youth_id(n),
        age=age,
        departement=departement,
        zap=zap,
        last_diploma="DNB",
        wishes=wishes,
        requested_at=at,
    )
