"""Offers: publishing, the owner's changes, and freshness on a frozen clock."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date, datetime

import pytest
from raccrochage_foquale.domain import events
from raccrochage_foquale.domain.errors import CommandRefused, InvalidCommand
from raccrochage_foquale.domain.offer import Offer
from raccrochage_foquale.domain.offer_types import (
    CloseReason,
    Formation,
    FormationCodeKind,
    Level,
    OfferState,
    Owner,
    Source,
)
from raccrochage_foquale.domain.policy import Policy

from .builders import T0, UAI_A, UAI_B, days, description

OFFER_ID = uuid.UUID("9a3c1f00-0000-4000-8000-00000000f001")


def published(**changes) -> Offer:
    offer = Offer.publish(OFFER_ID, description(**changes), Source.PARTNER_FEED, Owner.partner("cfa"), T0)
    offer.events.clear()
    return offer


def test_publish_records_the_event_and_counts_every_seat_left() -> None:
    offer = Offer.publish(
        OFFER_ID, description(capacity=4), Source.ESTABLISHMENT_API, Owner.establishment(UAI_A), T0
    )
    assert offer.events == [events.OfferPublished(OFFER_ID, T0)]
    assert offer.seats_left == 4 and offer.state is OfferState.PUBLISHED
    assert offer.last_confirmed_at == T0


def test_seats_left_is_capacity_less_reservations_and_placements() -> None:
    offer = replace(published(capacity=5), reserved=2, placed=1)
    assert offer.seats_left == 2


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"capacity": -1}, "capacity"),
        ({"departement": "330"}, "departement"),
        ({"zap": "Bordeaux Nord"}, "zap"),
        ({"closes_on": date(2026, 12, 1)}, "closes_on"),
        ({"keywords": ("Relation Client",)}, "keywords[0]"),
        ({"keywords": tuple(f"k{i}" for i in range(21))}, "keywords"),
        ({"code": "2402002011"}, "formation.code"),
        ({"label": "  "}, "formation.label"),
        ({"statut": "alternance"}, "statut"),
    ],
)
def test_a_bad_description_names_its_field(changes: dict, field: str) -> None:
    with pytest.raises(InvalidCommand) as error:
        description(**changes)
    assert error.value.field == field


def test_a_cfd_code_has_8_characters() -> None:
    assert Formation(FormationCodeKind.CFD, "50031213", "CAP EPC", Level.NIVEAU_3).code == "50031213"
    with pytest.raises(InvalidCommand, match="a CFD code is 8"):
        Formation(FormationCodeKind.CFD, "24020020110", "CAP EPC", Level.NIVEAU_3)


def test_update_records_what_changed_and_resets_freshness() -> None:
    offer = published()
    later = T0 + days(30)
    assert offer.update(description(capacity=5, zap="libourne"), later)
    assert offer.events == [events.OfferUpdated(OFFER_ID, ("zap", "capacity"), later)]
    assert offer.last_confirmed_at == later and offer.capacity == 5


def test_the_same_description_again_changes_nothing() -> None:
    offer = published()
    assert offer.update(description(), T0 + days(1)) is False
    assert offer.events == [] and offer.last_confirmed_at == T0


@pytest.mark.parametrize(
    ("offer", "new", "error", "match"),
    [
        (
            replace(published(capacity=3), reserved=2, placed=1),
            description(capacity=2),
            InvalidCommand,
            "below the 3 seats",
        ),
        (published(), description(uai=UAI_B), InvalidCommand, "stays at its establishment"),
    ],
    ids=["capacity-below-taken", "uai-changed"],
)
def test_refused_updates_leave_the_offer_unchanged(offer: Offer, new, error, match: str) -> None:
    before = replace(offer)
    with pytest.raises(error, match=match):
        offer.update(new, T0 + days(1))
    assert offer.description == before.description and offer.updated_at == before.updated_at
    assert offer.events == []


def test_a_closed_offer_takes_no_update_and_a_second_close_changes_nothing() -> None:
    offer = published()
    assert offer.close(T0 + days(1))
    assert offer.events == [events.OfferClosed(OFFER_ID, CloseReason.CLOSED_BY_OWNER, T0 + days(1))]
    assert offer.close(T0 + days(2)) is False
    with pytest.raises(CommandRefused, match="is closed"):
        offer.confirm(T0 + days(2))
    assert offer.updated_at == T0 + days(1)


def test_commands_may_not_go_back_in_time_nor_come_without_a_zone() -> None:
    offer = published()
    with pytest.raises(InvalidCommand, match="before offer"):
        offer.confirm(T0 - days(1))
    with pytest.raises(InvalidCommand, match="no time zone"):
        offer.confirm(datetime(2026, 12, 1, 8, 0))


# --- freshness, on a frozen clock ------------------------------------------------------------------

POLICY = Policy()  # 60 days stale, 90 unpublished


@pytest.mark.parametrize(
    ("age_days", "state", "expected_state", "event"),
    [
        (59, OfferState.PUBLISHED, OfferState.PUBLISHED, None),
        (60, OfferState.PUBLISHED, OfferState.STALE, events.OfferFlaggedStale),
        (75, OfferState.STALE, OfferState.STALE, None),
        (89.9, OfferState.STALE, OfferState.STALE, None),
        (90, OfferState.STALE, OfferState.UNPUBLISHED, events.OfferClosed),
        (90, OfferState.PUBLISHED, OfferState.UNPUBLISHED, events.OfferClosed),
        (120, OfferState.UNPUBLISHED, OfferState.UNPUBLISHED, None),
    ],
)
def test_freshness(
    age_days: float, state: OfferState, expected_state: OfferState, event: type | None
) -> None:
    offer = replace(published(closes_on=None), state=state)
    now = T0 + days(age_days)
    assert offer.check_freshness(now, POLICY) is (event is not None)
    assert offer.state is expected_state
    assert [type(e) for e in offer.events] == ([event] if event else [])


def test_the_stale_flag_says_when_the_offer_will_be_unpublished() -> None:
    offer = published(closes_on=None)
    offer.check_freshness(T0 + days(60), POLICY)
    assert offer.events == [events.OfferFlaggedStale(OFFER_ID, T0, date(2027, 1, 31), T0 + days(60))]


def test_unpublishing_is_reported_as_a_closing_for_staleness() -> None:
    offer = published(closes_on=None)
    offer.check_freshness(T0 + days(90), POLICY)
    assert offer.events == [events.OfferClosed(OFFER_ID, CloseReason.UNPUBLISHED_STALE, T0 + days(90))]
    assert not offer.is_reservable((T0 + days(90)).date())


def test_confirming_resets_the_clock() -> None:
    offer = published(closes_on=None)
    offer.check_freshness(T0 + days(60), POLICY)
    offer.confirm(T0 + days(70))
    assert offer.state is OfferState.PUBLISHED and offer.stale_since is None
    assert offer.check_freshness(T0 + days(129), POLICY) is False  # 59 days after the confirmation
    assert offer.check_freshness(T0 + days(130), POLICY) is True
    assert offer.state is OfferState.STALE


def test_confirming_an_unpublished_offer_publishes_it_again() -> None:
    offer = published(closes_on=None)
    offer.check_freshness(T0 + days(90), POLICY)
    offer.events.clear()
    offer.confirm(T0 + days(100))
    assert offer.events == [events.OfferPublished(OFFER_ID, T0 + days(100), republished=True)]
    assert offer.is_reservable((T0 + days(100)).date())


def test_a_shorter_policy_is_configurable() -> None:
    policy = Policy(stale_after_days=10, unpublish_after_days=20)
    offer = published(closes_on=None)
    assert offer.check_freshness(T0 + days(10), policy) and offer.state is OfferState.STALE
    with pytest.raises(ValueError, match="must be after"):
        Policy(stale_after_days=30, unpublish_after_days=30)


def test_an_offer_past_its_close_date_is_closed() -> None:
    offer = published(opens_on=date(2026, 11, 2), closes_on=date(2026, 11, 30))
    assert offer.is_reservable(date(2026, 11, 30))
    assert offer.check_freshness(datetime(2026, 12, 1, 3, 0, tzinfo=T0.tzinfo), POLICY)
    assert offer.close_reason is CloseReason.PAST_CLOSE_DATE and offer.state is OfferState.CLOSED
