"""FOQUALE's handlers on a fake unit of work: what each command writes and publishes."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest
from pydantic import ValidationError
from raccrochage_contracts import CloudEvent, new_event
from raccrochage_contracts.catalog import EXAMPLES_DIR
from raccrochage_contracts.events import partner_seats_v1 as partner_contract
from raccrochage_contracts.events.psad_v1 import SolutionRequested
from raccrochage_foquale.domain.errors import CommandRefused, InvalidCommand, NotYourEstablishment
from raccrochage_foquale.domain.matching import SeatRequest
from raccrochage_foquale.domain.offer_types import OfferState, Owner, OwnerKind, offer_id_for
from raccrochage_foquale.domain.policy import Policy
from raccrochage_foquale.domain.refusals import Refusal, RefusalReason
from raccrochage_foquale.domain.reservation import ReservationState
from raccrochage_foquale.service_layer import handlers
from raccrochage_foquale.service_layer.commands import (
    CheckFreshness,
    CloseOffer,
    ConfirmOffer,
    ConfirmReservation,
    ExpireReservations,
    PublishOffer,
    RefuseReservation,
    RequestSeat,
    UpdateOffer,
)
from raccrochage_foquale.service_layer.partners import (
    PartnerRecord,
    apply_partner_record,
    feedback_for_invalid_record,
)

from .builders import T0, UAI_A, UAI_B, UAI_LANDES, days, description, partner, school, seat_request
from .fakes import FakeFoqualeUnitOfWork


@pytest.fixture
def uow() -> FakeFoqualeUnitOfWork:
    return FakeFoqualeUnitOfWork()


async def publish(uow, key: str = "k1", actor=None, at: datetime = T0, **changes) -> uuid.UUID:
    result = await handlers.publish_offer(
        PublishOffer(actor or partner(), key, description(**changes), at), uow
    )
    return result.offer_id


def requested(request: SeatRequest, **changes) -> CloudEvent:
    payload = SolutionRequested(
        case_id=request.case_id,
        youth_id=request.youth_id,
        psad_id="psad-33-bordeaux-nord",
        request_id=request.request_id,
        solution_number=1,
        kind=changes.pop("kind", "foquale_seat"),
        provider=changes.pop("provider", "foquale"),
        age=request.age,
        departement=request.departement,
        zap=request.zap,
        wishes=list(request.wishes),
        requested_at=request.requested_at,
        last_diploma="DNB",
    )
    return new_event(payload, source="raccrochage/psad", subject=str(request.case_id))


def seat_command(request: SeatRequest, at: datetime = T0, **changes) -> RequestSeat:
    cause = requested(request, **changes)
    command = RequestSeat.from_event(cause, SolutionRequested.read(cause.data), at)
    assert command is not None
    return command


# --- offers --------------------------------------------------------------------------------------


async def test_a_partner_publishes_an_offer_once_per_key(uow) -> None:
    offer_id = await publish(uow)
    assert offer_id == offer_id_for(Owner.partner("cfa-gironde"), "k1")
    again = await handlers.publish_offer(PublishOffer(partner(), "k1", description(), T0 + days(1)), uow)
    assert again.outcome is handlers.Outcome.UNCHANGED
    assert uow.published_types() == ["foquale.seat.published.v1"]
    data = uow.payloads("foquale.seat.published.v1")[0]
    assert data["owner_kind"] == "partner" and data["source"] == "partner_feed" and data["seats_left"] == 3
    assert uow.published[0].subject == str(offer_id)


async def test_the_same_key_with_new_content_updates_the_offer(uow) -> None:
    await publish(uow)
    result = await handlers.publish_offer(
        PublishOffer(partner(), "k1", description(capacity=6), T0 + days(1)), uow
    )
    assert result.outcome is handlers.Outcome.ACCEPTED
    assert uow.published_types() == ["foquale.seat.published.v1", "foquale.seat.updated.v1"]
    assert uow.payloads("foquale.seat.updated.v1")[0]["capacity"] == 6


async def test_nobody_acts_on_a_uai_it_is_not_registered_for(uow) -> None:
    with pytest.raises(NotYourEstablishment, match="not registered for UAI 0400003L"):
        await publish(uow, uai=UAI_LANDES, departement="40")
    offer_id = await publish(uow, actor=school(UAI_A))
    assert uow.offers.rows[offer_id].owner.kind is OwnerKind.ESTABLISHMENT
    for command in (
        UpdateOffer(school(UAI_B), offer_id, description(capacity=9), T0 + days(1)),
        ConfirmOffer(school(UAI_B), offer_id, T0 + days(1)),
        CloseOffer(partner("cfa-landes", UAI_LANDES), offer_id, T0 + days(1)),
    ):
        handler = {
            UpdateOffer: handlers.update_offer,
            ConfirmOffer: handlers.confirm_offer,
            CloseOffer: handlers.close_offer,
        }
        with pytest.raises(NotYourEstablishment):
            await handler[type(command)](command, uow)
    assert uow.published_types() == ["foquale.seat.published.v1"]
    assert uow.offers.rows[offer_id].capacity == 3


async def test_a_partner_registered_for_the_uai_may_act_on_the_schools_offer(uow) -> None:
    offer_id = await publish(uow, actor=school(UAI_A))
    await handlers.confirm_offer(ConfirmOffer(partner(), offer_id, T0 + days(10)), uow)
    await handlers.close_offer(CloseOffer(partner(), offer_id, T0 + days(11)), uow)
    again = await handlers.close_offer(CloseOffer(partner(), offer_id, T0 + days(12)), uow)
    assert again.outcome is handlers.Outcome.UNCHANGED
    assert uow.published_types()[1:] == ["foquale.seat.updated.v1", "foquale.seat.closed.v1"]
    assert uow.payloads("foquale.seat.updated.v1")[0]["confirmed"] is True


# --- freshness -----------------------------------------------------------------------------------


async def test_freshness_flags_then_unpublishes_and_confirming_resets(uow) -> None:
    stale_one = await publish(uow, "stale", closes_on=None)
    kept = await publish(uow, "kept", closes_on=None)
    await handlers.confirm_offer(ConfirmOffer(partner(), kept, T0 + days(50)), uow)
    assert await handlers.check_freshness(CheckFreshness(T0 + days(59)), uow) == 0
    assert await handlers.check_freshness(CheckFreshness(T0 + days(60)), uow) == 1
    assert uow.offers.rows[stale_one].state is OfferState.STALE
    stale = uow.payloads("foquale.seat.stale.v1")
    assert [(s["offer_id"], s["unpublish_on"], s["owner_id"]) for s in stale] == [
        (str(stale_one), "2027-01-31", "cfa-gironde")
    ]
    assert await handlers.check_freshness(CheckFreshness(T0 + days(61)), uow) == 0  # flagged once
    assert await handlers.check_freshness(CheckFreshness(T0 + days(90)), uow) == 1
    assert uow.offers.rows[stale_one].state is OfferState.UNPUBLISHED
    assert uow.payloads("foquale.seat.closed.v1")[0]["reason"] == "unpublished_stale"
    assert await handlers.check_freshness(CheckFreshness(T0 + days(110)), uow) == 1  # kept: 60 days
    assert uow.offers.rows[kept].state is OfferState.STALE


async def test_freshness_follows_the_policy(uow) -> None:
    await publish(uow, closes_on=None)
    policy = Policy(stale_after_days=7, unpublish_after_days=14)
    assert await handlers.check_freshness(CheckFreshness(T0 + days(7)), uow, policy) == 1


# --- a PSAD's request ----------------------------------------------------------------------------


async def test_a_request_reserves_a_seat_and_says_so(uow) -> None:
    offer_id = await publish(uow, capacity=2)
    request = seat_request(wishes=("metiers-relation-client",))
    command = seat_command(request)
    answer = await handlers.request_seat(command, uow)
    assert answer.reservation is not None and answer.reservation.offer_id == offer_id
    assert uow.offers.rows[offer_id].reserved == 1
    made = uow.published[-1]
    assert made.type == "foquale.reservation.made.v1" and made.subject == str(request.request_id)
    assert made.causationid == command.cause.id and made.correlationid == command.cause.correlationid
    assert made.data["seats_left"] == 1 and made.data["expires_at"] == "2026-11-17T08:00:00Z"


async def test_a_redelivered_request_is_skipped(uow) -> None:
    await publish(uow)
    command = seat_command(seat_request())
    await handlers.request_seat(command, uow)
    assert await handlers.request_seat(command, uow) == handlers.SeatAnswer()
    assert uow.published_types().count("foquale.reservation.made.v1") == 1
    # The same request under a new envelope gets the reservation it has, not a second seat.
    again = await handlers.request_seat(seat_command(seat_request()), uow)
    assert again.reservation is not None
    assert sum(o.reserved for o in uow.offers.rows.values()) == 1


async def test_requests_for_other_providers_are_not_foquales() -> None:
    cause = requested(seat_request(), kind="mlds_paps", provider="mlds")
    assert RequestSeat.from_event(cause, SolutionRequested.read(cause.data), T0) is None


async def test_more_requests_than_seats_end_in_no_seat_with_what_was_near(uow) -> None:
    wished = ("metiers-relation-client",)
    full_offer = await publish(uow, "a", capacity=2)
    await publish(uow, "b", keywords=("commerce",))  # same département, other wishes
    await publish(uow, "c", actor=partner("cfa-landes", UAI_LANDES), uai=UAI_LANDES, departement="40")
    answers = [
        await handlers.request_seat(seat_command(seat_request(n, wishes=wished)), uow) for n in range(3)
    ]
    assert [a.reservation is not None for a in answers] == [True, True, False]
    assert uow.offers.rows[full_offer].seats_left == 0
    refused = uow.payloads("foquale.placement.refused.v1")
    assert refused == [
        {
            "request_id": str(seat_request(2).request_id),
            "case_id": str(seat_request(2).case_id),
            "youth_id": seat_request(2).youth_id,
            "decided_at": "2026-11-02T08:00:00Z",
            "reason": "no_seat",
            "refusal_code": "no_seat",
            "alternatives": {
                "in_departement_other_wishes": 1,
                "other_departements_same_wishes": 1,
                "full_in_territory": 1,
            },
        }
    ]


async def test_a_youth_outside_the_droit_au_retour_ages_is_not_eligible(uow) -> None:
    await publish(uow)
    answer = await handlers.request_seat(seat_command(seat_request(age=26)), uow)
    assert answer.refused is RefusalReason.AGE_OUT_OF_RANGE
    assert uow.payloads("foquale.placement.refused.v1")[0]["reason"] == "not_eligible"


# --- the establishment's answer, and expiry ------------------------------------------------------


async def reserved(uow, capacity: int = 2) -> tuple[uuid.UUID, uuid.UUID]:
    offer_id = await publish(uow, capacity=capacity)
    answer = await handlers.request_seat(seat_command(seat_request()), uow)
    return offer_id, answer.reservation.reservation_id


async def test_a_confirmed_reservation_is_a_placement(uow) -> None:
    offer_id, reservation_id = await reserved(uow)
    await handlers.confirm_reservation(ConfirmReservation(school(UAI_A), reservation_id, T0 + days(3)), uow)
    row = uow.offers.rows[offer_id]
    assert (row.reserved, row.placed, row.seats_left) == (0, 1, 1)
    confirmed = uow.payloads("foquale.placement.confirmed.v1")[0]
    assert confirmed["seat_id"] == str(offer_id) and confirmed["starts_on"] == "2027-01-04"
    assert confirmed["reservation_id"] == str(reservation_id) and confirmed["uai"] == "0331234M"


async def test_a_refusal_frees_the_seat_with_its_code(uow) -> None:
    offer_id, reservation_id = await reserved(uow)
    refusal = Refusal(RefusalReason.LEVEL_NOT_SUITED)
    await handlers.refuse_reservation(
        RefuseReservation(partner(), reservation_id, refusal, T0 + days(1)), uow
    )
    assert uow.offers.rows[offer_id].seats_left == 2
    refused = uow.payloads("foquale.placement.refused.v1")[0]
    assert (refused["reason"], refused["refusal_code"], refused["offer_id"]) == (
        "not_eligible",
        "level_not_suited",
        str(offer_id),
    )


async def test_answers_are_checked_before_anything_is_written(uow) -> None:
    offer_id, reservation_id = await reserved(uow)
    published = len(uow.published)
    with pytest.raises(NotYourEstablishment):
        await handlers.confirm_reservation(
            ConfirmReservation(school(UAI_B), reservation_id, T0 + days(1)), uow
        )
    with pytest.raises(InvalidCommand, match="needs a comment"):
        Refusal("other")
    await handlers.confirm_reservation(ConfirmReservation(school(), reservation_id, T0 + days(1)), uow)
    with pytest.raises(CommandRefused, match="is confirmed"):
        await handlers.refuse_reservation(
            RefuseReservation(school(), reservation_id, Refusal("youth_declined"), T0 + days(2)), uow
        )
    assert len(uow.published) == published + 1
    assert uow.offers.rows[offer_id].placed == 1 and uow.offers.rows[offer_id].reserved == 0


async def test_expired_reservations_free_their_seats_and_answer_psad(uow) -> None:
    offer_id, reservation_id = await reserved(uow, capacity=1)
    assert await handlers.expire_reservations(ExpireReservations(T0 + days(15) - days(0.01)), uow) == 0
    assert await handlers.expire_reservations(ExpireReservations(T0 + days(15)), uow) == 1
    assert uow.reservations.rows[reservation_id].state is ReservationState.EXPIRED
    assert uow.offers.rows[offer_id].seats_left == 1
    assert uow.published_types()[-2:] == ["foquale.reservation.expired.v1", "foquale.placement.refused.v1"]
    assert uow.payloads("foquale.placement.refused.v1")[0]["refusal_code"] == "reservation_expired"
    assert await handlers.expire_reservations(ExpireReservations(T0 + days(16)), uow) == 0


# --- partner records -----------------------------------------------------------------------------


def record(name: str, **changes) -> partner_contract.SeatsPublished:
    path = next((EXAMPLES_DIR / name).glob("*.json"))
    data = {**json.loads(path.read_bytes())["data"], **changes}
    return partner_contract.SeatsPublished.model_validate(data) if name.endswith("published.v1") else data


async def test_each_partner_record_is_answered_on_its_own(uow) -> None:
    good = record("partner.seats.published.v1")
    bad = good.model_copy(update={"partner_key": "K2", "uai": "0332745A"})
    answers = [
        await apply_partner_record(PartnerRecord(partner(), r, T0, uuid.uuid4()), uow)
        for r in (bad, good, good)
    ]
    assert [a.outcome for a in answers] == ["rejected", "accepted", "unchanged"]
    assert [(p.field, p.reason) for p in answers[0].problems] == [
        ("uai", "UAI '0332745A': the check letter of 0332745 is E, not A")
    ]
    assert answers[1].offer_id == offer_id_for(Owner.partner("cfa-gironde"), good.partner_key)
    assert uow.published_types() == ["foquale.seat.published.v1"]


async def test_partner_records_on_unknown_keys_or_foreign_uais_are_rejected(uow) -> None:
    confirm = partner_contract.SeatsConfirmed(partner_key="nope")
    answer = await apply_partner_record(PartnerRecord(partner(), confirm, T0), uow)
    assert answer.outcome == "rejected" and answer.problems[0].field == "partner_key"
    foreign = await apply_partner_record(
        PartnerRecord(partner("cfa-landes", UAI_LANDES), record("partner.seats.published.v1"), T0), uow
    )
    assert foreign.outcome == "rejected" and foreign.problems[0].field == "uai"
    assert uow.published == []


def test_a_record_that_breaks_its_contract_gets_every_field_at_fault() -> None:
    data = record("partner.seats.updated.v1", capacity=-1, departement="330")
    with pytest.raises(ValidationError) as error:
        partner_contract.SeatsUpdated.model_validate(data)
    feedback = feedback_for_invalid_record("partner.seats.updated.v1", data, error.value)
    assert feedback.partner_key == "CFA33-2027-ACC-01" and feedback.outcome == "rejected"
    assert sorted(p.field for p in feedback.problems) == ["capacity", "departement"]


async def test_a_partner_answers_reservations_the_way_the_establishment_api_does(uow) -> None:
    offer_id, confirmed_id = await reserved(uow)
    refused_id = (await handlers.request_seat(seat_command(seat_request(2)), uow)).reservation.reservation_id
    at = T0 + days(1)

    async def send(answer) -> partner_contract.SeatsFeedback:
        return await apply_partner_record(PartnerRecord(partner(), answer, at, uuid.uuid4()), uow)

    confirm = partner_contract.PlacementConfirmed(reservation_id=confirmed_id)
    refuse = partner_contract.PlacementRefused(reservation_id=refused_id, reason="youth_declined")
    assert [(f.outcome, f.partner_key, f.offer_id) for f in [await send(confirm), await send(refuse)]] == [
        ("accepted", str(confirmed_id), offer_id),
        ("accepted", str(refused_id), offer_id),
    ]
    assert uow.payloads("foquale.placement.confirmed.v1")[0]["reservation_id"] == str(confirmed_id)
    assert uow.payloads("foquale.placement.refused.v1")[0]["refusal_code"] == "youth_declined"
    published = len(uow.published)
    # the same answers again change nothing; a contrary one is refused with the field
    assert (await send(confirm)).outcome == "unchanged"
    assert (await send(refuse)).outcome == "unchanged"
    contrary = await send(
        partner_contract.PlacementRefused(reservation_id=confirmed_id, reason="youth_no_show")
    )
    assert contrary.outcome == "rejected" and contrary.problems[0].field == "reservation_id"
    assert "is confirmed" in contrary.problems[0].reason
    unknown = await send(partner_contract.PlacementConfirmed(reservation_id=uuid.uuid4()))
    assert unknown.outcome == "rejected" and unknown.problems[0].field == "reservation_id"
    assert len(uow.published) == published


async def test_a_partner_answers_only_for_its_own_uais(uow) -> None:
    offer_id, reservation_id = await reserved(uow)
    answer = partner_contract.PlacementConfirmed(reservation_id=reservation_id)
    foreign = await apply_partner_record(PartnerRecord(partner("cfa-landes", UAI_LANDES), answer, T0), uow)
    assert foreign.outcome == "rejected" and foreign.problems[0].field == "uai"
    assert uow.reservations.rows[reservation_id].state is ReservationState.MADE


def test_a_refusal_code_a_partner_may_not_send_is_named() -> None:
    data = {"reservation_id": "not-a-uuid", "reason": "other"}
    with pytest.raises(ValidationError) as error:
        partner_contract.PlacementRefused.model_validate(data)
    feedback = feedback_for_invalid_record("partner.seats.placement_refused.v1", data, error.value)
    assert feedback.partner_key == "not-a-uuid"
    assert sorted(p.field for p in feedback.problems) == ["reason", "reservation_id"]


async def test_a_batch_of_requests_is_answered_in_one_transaction(uow) -> None:
    offer_id = await publish(uow, capacity=2)
    again = seat_command(seat_request(1))  # the first request, under another envelope
    commands = [seat_command(seat_request(n)) for n in (1, 2, 3)] + [again]
    async with uow:
        answers = await handlers.request_seats(uow, commands)
        await uow.commit()
    assert [a.reservation is not None for a in answers] == [True, True, False, True]
    assert answers[3].reservation.reservation_id == answers[0].reservation.reservation_id
    assert answers[2].refused is RefusalReason.NO_SEAT
    assert uow.offers.rows[offer_id].seats_left == 0 and len(uow.reservations.rows) == 2
    made = uow.payloads("foquale.reservation.made.v1")
    assert [m["seats_left"] for m in made] == [1, 0]
