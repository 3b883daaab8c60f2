"""Finding a seat for a PSAD's request: territory (ZAP first, then département), level, wishes.

The search orders candidates; it does not take a seat. The service layer tries them in order with
the repository's atomic `take_seat`, so two requests racing for the last seat cannot both get it;
within a tier of equally good offers it takes the first that no other request holds
(`take_free_seat`), so concurrent requests spread over them instead of queueing on one row.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from .offer import Offer
from .offer_types import Level

# Droit au retour en formation: 16 to 25.
RETURN_TO_TRAINING_AGES = range(16, 26)
# The youths PSAD hands over hold at most the DNB: a level-5 training (bac+2) needs the bac.
LEVELS_WITHOUT_BAC = frozenset({Level.SANS_NIVEAU, Level.NIVEAU_3, Level.NIVEAU_4})


@dataclass(frozen=True)
class SeatRequest:
    """What psad.solution.requested.v1 says FOQUALE needs: no identity."""

    request_id: uuid.UUID
    case_id: uuid.UUID
    youth_id: str
    age: int
    departement: str
    zap: str | None
    last_diploma: str | None
    wishes: tuple[str, ...]
    requested_at: datetime

    @property
    def levels(self) -> frozenset[Level]:
        """The levels the youth may enter; every youth PSAD sends has at most the DNB."""
        return LEVELS_WITHOUT_BAC

    @property
    def is_eligible(self) -> bool:
        return self.age in RETURN_TO_TRAINING_AGES


def wish_codes(offer: Offer) -> frozenset[str]:
    """What a wish may name about an offer: its keywords, formation code, level or status."""
    description = offer.description
    return frozenset(
        (
            *description.keywords,
            description.formation.code,
            description.formation.level.value,
            description.statut.value,
        )
    )


def wishes_met(offer: Offer, wishes: Iterable[str]) -> int:
    return len(wish_codes(offer) & set(wishes))


@dataclass(frozen=True)
class Alternatives:
    """What was near when nothing matched, counted in offers (never listed: a count tells the
    PSAD whether widening the wishes or the territory is worth it)."""

    in_departement_other_wishes: int
    other_departements_same_wishes: int
    full_in_territory: int


@dataclass(frozen=True)
class SeatSearch:
    """Candidates with seats left, best first, in tiers of equally good offers; and what a
    refusal would count."""

    tiers: tuple[tuple[Offer, ...], ...]
    in_departement_other_wishes: int
    full_in_territory: int

    @property
    def candidates(self) -> tuple[Offer, ...]:
        return tuple(offer for tier in self.tiers for offer in tier)

    def alternatives(self, other_departements_same_wishes: int) -> Alternatives:
        return Alternatives(
            self.in_departement_other_wishes, other_departements_same_wishes, self.full_in_territory
        )


def _spread(request: SeatRequest, offer: Offer) -> bytes:
    """An order of equally good offers of the same size, stable for a request and different from
    one request to the next: concurrent requests do not all try the same offer first."""
    return hashlib.blake2b(offer.offer_id.bytes + request.request_id.bytes, digest_size=8).digest()


def search(request: SeatRequest, offers: Iterable[Offer], today: date) -> SeatSearch:
    """Order the département's offers for the request. Equally good for the youth: the same
    place in the territory (its ZAP before the rest of the département), as many wishes met,
    fresh or stale alike, the same opening day. Tiers go from the best; within a tier, the most
    seats left first, then an order of the request's own (`_spread`). With wishes, an offer must
    meet at least one."""
    tiers: dict[tuple, list[tuple[tuple, Offer]]] = {}
    other_wishes = full = 0
    for offer in offers:
        description = offer.description
        if (
            description.departement != request.departement
            or description.formation.level not in request.levels
            or not offer.is_reservable(today)
        ):
            continue
        met = wishes_met(offer, request.wishes)
        if request.wishes and met == 0:
            other_wishes += offer.seats_left > 0
            continue
        if offer.seats_left == 0:
            full += 1
            continue
        in_zap = request.zap is not None and description.zap == request.zap
        goodness = (not in_zap, -met, not offer.is_fresh(), description.opens_on)
        tiers.setdefault(goodness, []).append(((-offer.seats_left, _spread(request, offer)), offer))
    ordered = tuple(
        tuple(offer for _, offer in sorted(tiers[goodness], key=lambda pair: pair[0]))
        for goodness in sorted(tiers)
    )
    return SeatSearch(ordered, other_wishes, full)


def meets_wishes(offer: Offer, wishes: Iterable[str]) -> bool:
    """With no wish, every offer does."""
    wishes = tuple(wishes)
    return not wishes or wishes_met(offer, wishes) > 0
