"""Reservations (made, confirmed, refused with a code, expired) and the seat search."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date

import pytest
from raccrochage_foquale.domain import events
from raccrochage_foquale.domain.errors import CommandRefused, InvalidCommand
from raccrochage_foquale.domain.matching import search, wish_codes
from raccrochage_foquale.domain.offer import Offer
from raccrochage_foquale.domain.offer_types import Level, OfferState, Owner, Source, Statut
from raccrochage_foquale.domain.policy import DEFAULT_POLICY, Policy
from raccrochage_foquale.domain.refusals import Refusal, RefusalReason
from raccrochage_foquale.domain.reservation import Reservation, ReservationState, reservation_id_for

from .builders import T0, UAI_A, UAI_B, days, description, seat_request

TODAY = T0.date()


def offer(n: int, **changes) -> Offer:
    state = changes.pop("state", OfferState.PUBLISHED)
    reserved = changes.pop("reserved", 0)
    made = Offer.publish(
        uuid.UUID(int=n), description(**changes), Source.PARTNER_FEED, Owner.partner("cfa"), T0
    )
    return replace(made, state=state, reserved=reserved, events=[])


def reservation(policy: Policy = DEFAULT_POLICY) -> Reservation:
    request = seat_request()
    made = Reservation.make(request.request_id, request.case_id, request.youth_id, offer(1), 2, T0, policy)
    made.events.clear()
    return made


# --- reservations --------------------------------------------------------------------------------


def test_a_reservation_expires_after_15_days_by_default() -> None:
    request = seat_request()
    made = Reservation.make(request.request_id, request.case_id, request.youth_id, offer(1), 2, T0)
    assert made.reservation_id == reservation_id_for(request.request_id)
    assert made.expires_at == T0 + days(15)
    assert made.events == [
        events.ReservationMade(made.reservation_id, uuid.UUID(int=1), 2, T0 + days(15), T0)
    ]
    assert Reservation.make(
        request.request_id, request.case_id, request.youth_id, offer(1), 2, T0, Policy(reservation_days=3)
    ).expires_at == T0 + days(3)


def test_confirm_starts_on_the_opening_day_by_default() -> None:
    r = reservation()
    r.confirm(T0 + days(2))
    assert r.state is ReservationState.CONFIRMED and r.starts_on == date(2027, 1, 4)
    assert r.events == [
        events.ReservationConfirmed(r.reservation_id, r.offer_id, date(2027, 1, 4), T0 + days(2))
    ]


@pytest.mark.parametrize(
    ("reason", "comment", "field"),
    [
        ("other", None, "comment"),
        ("other", "   ", "comment"),
        ("pas_de_place", None, "reason"),
        ("no_seat", None, "reason"),  # FOQUALE's own code, not an establishment's
        ("level_not_suited", "x" * 501, "comment"),
    ],
)
def test_refusals_take_a_code_from_the_list_and_other_needs_a_comment(reason, comment, field) -> None:
    r = reservation()
    with pytest.raises(InvalidCommand) as error:
        r.refuse(Refusal(reason, comment), T0 + days(1))
    assert error.value.field == field
    assert r.state is ReservationState.MADE and r.events == []


def test_a_refusal_with_its_code_and_comment() -> None:
    r = reservation()
    refusal = Refusal("other", " needs a workshop visit first ")
    r.refuse(refusal, T0 + days(1))
    assert r.refusal == Refusal(RefusalReason.OTHER, "needs a workshop visit first")
    assert r.state is ReservationState.REFUSED


@pytest.mark.parametrize(
    ("state", "at", "match"),
    [
        (ReservationState.CONFIRMED, days(1), "is confirmed"),
        (ReservationState.EXPIRED, days(16), "is expired"),
        (ReservationState.MADE, days(15), "expired at"),
    ],
)
def test_an_answered_or_expired_reservation_takes_no_answer(state, at, match) -> None:
    r = replace(reservation(), state=state)
    with pytest.raises(CommandRefused, match=match):
        r.confirm(T0 + at)
    with pytest.raises(CommandRefused, match=match):
        r.refuse(Refusal("youth_declined"), T0 + at)
    assert r.state is state and r.events == []


def test_expiry_only_once_due_and_unanswered() -> None:
    r = reservation()
    assert r.expire(T0 + days(15) - days(0.001)) is False
    assert r.expire(T0 + days(15)) is True
    assert r.events == [events.ReservationExpired(r.reservation_id, r.offer_id, T0 + days(15))]
    assert r.expire(T0 + days(16)) is False


# --- the seat search -----------------------------------------------------------------------------


def test_zap_first_then_departement() -> None:
    offers = [offer(1, zap="libourne"), offer(2, zap="bordeaux-nord"), offer(3, departement="40", uai=UAI_A)]
    found = search(seat_request(zap="bordeaux-nord"), offers, TODAY)
    assert [o.offer_id.int for o in found.candidates] == [2, 1]


def test_wishes_filter_then_rank() -> None:
    offers = [
        offer(1, keywords=("commerce",)),
        offer(2, keywords=("metiers-relation-client", "accueil")),
        offer(3, keywords=("accueil",)),
    ]
    found = search(seat_request(wishes=("metiers-relation-client", "accueil")), offers, TODAY)
    assert [o.offer_id.int for o in found.candidates] == [2, 3]
    assert found.in_departement_other_wishes == 1


def test_a_wish_may_name_the_status_the_level_or_the_formation_code() -> None:
    apprenticeship = offer(1, statut=Statut.APPRENTISSAGE, level=Level.NIVEAU_3, code="50031213", keywords=())
    assert {"apprentissage", "niveau_3", "50031213"} <= wish_codes(apprenticeship)
    assert search(seat_request(wishes=("apprentissage",)), [apprenticeship, offer(2)], TODAY).candidates == (
        apprenticeship,
    )


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"level": Level.NIVEAU_5}, "a bac+2 needs the bac"),
        ({"state": OfferState.UNPUBLISHED}, "unpublished"),
        ({"state": OfferState.CLOSED}, "closed"),
        ({"opens_on": date(2026, 9, 1), "closes_on": date(2026, 10, 31)}, "past its close date"),
        ({"departement": "40", "uai": UAI_B}, "another département"),
    ],
)
def test_offers_never_proposed(changes: dict, why: str) -> None:
    assert search(seat_request(), [offer(1, **changes)], TODAY).candidates == (), why


def test_stale_offers_come_after_fresh_ones_and_full_ones_are_counted() -> None:
    offers = [offer(1, state=OfferState.STALE), offer(2), offer(3, capacity=2, reserved=2)]
    found = search(seat_request(), offers, TODAY)
    assert [o.offer_id.int for o in found.candidates] == [2, 1]
    assert found.full_in_territory == 1
    assert found.alternatives(4).other_departements_same_wishes == 4


def test_equally_good_offers_form_a_tier_most_seats_first_then_an_order_per_request() -> None:
    near = [offer(n, capacity=5) for n in (1, 2, 3)]
    bigger, later = offer(4, capacity=9), offer(5, capacity=9, opens_on=date(2027, 1, 11))
    found = search(seat_request(), [*near, bigger, later], TODAY)
    assert [[o.offer_id.int for o in tier][:1] for tier in found.tiers] == [[4], [5]]
    assert {o.offer_id.int for o in found.tiers[0][1:]} == {1, 2, 3}
    assert found.candidates == (*found.tiers[0], *found.tiers[1])
    again = search(seat_request(), [*near, bigger, later], TODAY)
    assert again.tiers == found.tiers, "stable for one request"
    orders = {
        tuple(o.offer_id.int for o in search(seat_request(n), near, TODAY).candidates) for n in range(20)
    }
    assert len(orders) > 1, "equal offers are tried in a different order by different requests"
