"""FOQUALE's handlers: one per command, each one transaction of the unit of work it is given.

A handler loads what it needs (locked), lets the domain decide, writes, adds the integration
events and commits; a domain error leaves the block before `commit`, so nothing is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum

from raccrochage_contracts import Payload

from ..domain.errors import NotFound
from ..domain.matching import Alternatives, SeatSearch, search
from ..domain.offer import Offer
from ..domain.offer_types import offer_id_for
from ..domain.policy import DEFAULT_POLICY, Policy
from ..domain.refusals import RefusalReason
from ..domain.reservation import Reservation
from .commands import (
    CheckFreshness,
    CloseOffer,
    ConfirmOffer,
    ConfirmReservation,
    ExpireReservations,
    PruneFeedback,
    PublishOffer,
    RefuseReservation,
    RequestSeat,
    UpdateOffer,
)
from .messages import offer_payloads, request_refused, reservation_payloads
from .unit_of_work import FoqualeUnitOfWork, OfferExists

# The inbox name of FOQUALE's consumer of PSAD's requests.
CONSUMER = "foquale.solution_requested"


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # the offer changed (or was confirmed)
    UNCHANGED = "unchanged"  # the same record again


@dataclass(frozen=True)
class OfferOutcome:
    offer_id: uuid.UUID
    outcome: Outcome


def _add_offer_events(uow: FoqualeUnitOfWork, offer: Offer) -> None:
    for payload in offer_payloads(offer):
        uow.add_event(payload, subject=str(offer.offer_id))


def _add_reservation_events(uow: FoqualeUnitOfWork, reservation: Reservation, seats_left: int) -> None:
    for payload in reservation_payloads(reservation, seats_left):
        uow.add_event(payload, subject=str(reservation.request_id))


async def _owned_offer(uow: FoqualeUnitOfWork, cmd: UpdateOffer | ConfirmOffer | CloseOffer) -> Offer:
    offer = await uow.offers.get(cmd.offer_id)
    if offer is None:
        raise NotFound(f"no offer {cmd.offer_id}")
    cmd.actor.check(offer.uai)
    return offer


# --- the owner's commands ------------------------------------------------------------------------


async def publish_offer(cmd: PublishOffer, uow: FoqualeUnitOfWork) -> OfferOutcome:
    """A new offer; an offer the owner published under the same key is updated instead (a record
    sent twice changes nothing, and the second of two sent at once updates the first's)."""
    try:
        return await _publish_offer(cmd, uow)
    except OfferExists:  # added by another meanwhile: this one comes right after it
        return await _publish_offer(cmd, uow, after_another=True)


async def _publish_offer(
    cmd: PublishOffer, uow: FoqualeUnitOfWork, *, after_another: bool = False
) -> OfferOutcome:
    owner = cmd.actor.owner_for(cmd.description.uai)
    offer_id = offer_id_for(owner, cmd.key)
    async with uow:
        offer = await uow.offers.get(offer_id)
        if offer is None:
            offer = Offer.publish(
                offer_id, cmd.description, cmd.source or cmd.actor.default_source, owner, cmd.now
            )
            await uow.offers.add(offer)
            changed = True
        else:
            cmd.actor.check(offer.uai)
            changed = offer.update(
                cmd.description, max(cmd.now, offer.updated_at) if after_another else cmd.now
            )
            if changed:
                await uow.offers.save(offer)
        _add_offer_events(uow, offer)
        await uow.commit()
    return OfferOutcome(offer_id, Outcome.ACCEPTED if changed else Outcome.UNCHANGED)


async def update_offer(cmd: UpdateOffer, uow: FoqualeUnitOfWork) -> OfferOutcome:
    async with uow:
        offer = await _owned_offer(uow, cmd)
        cmd.actor.check(cmd.description.uai)
        changed = offer.update(cmd.description, cmd.now)
        if changed:
            await uow.offers.save(offer)
            _add_offer_events(uow, offer)
        await uow.commit()
    return OfferOutcome(offer.offer_id, Outcome.ACCEPTED if changed else Outcome.UNCHANGED)


async def confirm_offer(cmd: ConfirmOffer, uow: FoqualeUnitOfWork) -> OfferOutcome:
    async with uow:
        offer = await _owned_offer(uow, cmd)
        offer.confirm(cmd.now)
        await uow.offers.save(offer)
        _add_offer_events(uow, offer)
        await uow.commit()
    return OfferOutcome(offer.offer_id, Outcome.ACCEPTED)


async def close_offer(cmd: CloseOffer, uow: FoqualeUnitOfWork) -> OfferOutcome:
    async with uow:
        offer = await _owned_offer(uow, cmd)
        changed = offer.close(cmd.now)
        if changed:
            await uow.offers.save(offer)
            _add_offer_events(uow, offer)
        await uow.commit()
    return OfferOutcome(offer.offer_id, Outcome.ACCEPTED if changed else Outcome.UNCHANGED)


# --- a PSAD's request ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SeatAnswer:
    """What became of a request: a reservation, or a refusal with its code (and for no_seat,
    what was near). Both None for a request handled before (inbox)."""

    reservation: Reservation | None = None
    refused: RefusalReason | None = None
    alternatives: Alternatives | None = None


def _answer_event_id(cmd: RequestSeat, payload: Payload) -> uuid.UUID:
    """A re-run of the same request names the same answer events."""
    return uuid.uuid5(cmd.cause.id, payload.event_type)


class _HeldSeats:
    """The offers this transaction took a seat on: it holds their rows (no other transaction can
    move their counters or their state until it ends), so it knows their seats left exactly and
    takes more of them here, without a statement each; `write` adds them in one statement."""

    def __init__(self) -> None:
        self.seats_left: dict[uuid.UUID, int] = {}  # per offer held, after this transaction's seats
        self.more: dict[uuid.UUID, int] = {}  # seats taken here, not yet written

    def took(self, offer_id: uuid.UUID, seats_left: int) -> None:
        self.seats_left[offer_id] = seats_left

    def take(self, tier: Sequence[Offer]) -> tuple[Offer, int] | None:
        """A seat on the first offer of the tier held with one left."""
        for offer in tier:
            if self.seats_left.get(offer.offer_id, 0) > 0:
                self.seats_left[offer.offer_id] -= 1
                self.more[offer.offer_id] = self.more.get(offer.offer_id, 0) + 1
                return offer, self.seats_left[offer.offer_id]
        return None

    async def write(self, uow: FoqualeUnitOfWork) -> None:
        if self.more:
            await uow.offers.take_held_seats(self.more)
            self.more = {}


async def _take_a_seat(
    uow: FoqualeUnitOfWork, found: SeatSearch, today: date, held: _HeldSeats
) -> tuple[Offer, int] | None:
    """A seat on the best candidate that has one, tier by tier. In a tier of equally good offers,
    first one this transaction holds already (no statement, no other lock taken), else the best
    one no other transaction holds, in one statement: concurrent requests spread over the tier
    instead of queueing on the lock of its first offer. If each was held (or full), wait for them
    in order: a holder may roll back, or take a seat and leave others."""
    for tier in found.tiers:
        taken = held.take(tier)
        if taken is not None:
            return taken
        others = [offer for offer in tier if offer.offer_id not in held.seats_left]  # held: full
        by_id = {offer.offer_id: offer for offer in others}
        free = await uow.offers.take_free_seat(list(by_id), today)
        if free is not None:
            held.took(*free)
            return by_id[free[0]], free[1]
        for offer in others:
            seats_left = await uow.offers.take_seat(offer.offer_id, today)
            if seats_left is not None:
                held.took(offer.offer_id, seats_left)
                return offer, seats_left
    return None


async def request_seat(
    cmd: RequestSeat, uow: FoqualeUnitOfWork, policy: Policy = DEFAULT_POLICY
) -> SeatAnswer:
    """One request in a transaction of its own, claimed in the inbox as `CONSUMER`
    (`request_seats` says what is decided)."""
    async with uow:
        if not await uow.claim(CONSUMER, [(cmd.cause.id, cmd.cause.type)]):
            return SeatAnswer()
        [answer] = await request_seats(uow, [cmd], policy)
        await uow.commit()
    return answer


async def request_seats(
    uow: FoqualeUnitOfWork, cmds: Sequence[RequestSeat], policy: Policy = DEFAULT_POLICY
) -> list[SeatAnswer]:
    """Reserve the best seat for each request, in order, or refuse it: not eligible (age), or no
    seat with the nearest alternatives counted. In the caller's open unit of work, which claimed
    the requests and commits: the consumer's, one transaction per fetched batch. A request
    answered before (its reservation exists) is answered the same.

    Seats are taken by the repository's atomic conditional UPDATEs, in the search's order
    (`_take_a_seat`): a candidate another request filled meanwhile is passed over. The offers are
    read once per batch and kept up to date here with the seats the batch takes, so a later
    request of the batch ranks them on what is left."""
    requests = [cmd.request for cmd in cmds]
    known = await uow.reservations.for_requests([r.request_id for r in requests])
    departements = {r.departement for r in requests if r.is_eligible and r.request_id not in known}
    levels = frozenset().union(*(r.levels for r in requests))
    first_day = min(cmd.now for cmd in cmds).date()
    offers = {o.offer_id: o for o in await uow.offers.search(departements, levels, first_day)}
    held = _HeldSeats()
    made: list[Reservation] = []
    answers: list[SeatAnswer] = []
    for cmd in cmds:
        request, today = cmd.request, cmd.now.date()

        def answer(payload: Payload, cmd: RequestSeat = cmd) -> None:
            event_id = _answer_event_id(cmd, payload)
            uow.add_event(payload, subject=str(cmd.request.request_id), cause=cmd.cause, event_id=event_id)

        if request.request_id in known:  # the same request under another envelope: answered already
            answers.append(SeatAnswer(reservation=known[request.request_id]))
            continue
        if not request.is_eligible:
            answer(request_refused(request, RefusalReason.AGE_OUT_OF_RANGE, cmd.now))
            answers.append(SeatAnswer(refused=RefusalReason.AGE_OUT_OF_RANGE))
            continue
        found = search(request, offers.values(), today)
        taken = await _take_a_seat(uow, found, today, held)
        if taken is None:
            await held.write(uow)  # the seats the batch took count as taken
            elsewhere = await uow.offers.count_with_seats_elsewhere(
                request.departement, request.levels, request.wishes, today
            )
            alternatives = found.alternatives(elsewhere)
            answer(request_refused(request, RefusalReason.NO_SEAT, cmd.now, alternatives))
            answers.append(SeatAnswer(refused=RefusalReason.NO_SEAT, alternatives=alternatives))
            continue
        offer, seats_left = taken
        offers[offer.offer_id] = replace(offer, reserved=offer.capacity - offer.placed - seats_left)
        reservation = Reservation.make(
            request.request_id, request.case_id, request.youth_id, offer, seats_left, cmd.now, policy
        )
        for payload in reservation_payloads(reservation, seats_left):
            answer(payload)
        made.append(reservation)
        known[request.request_id] = reservation
        answers.append(SeatAnswer(reservation=reservation))
    await held.write(uow)
    await uow.reservations.add_all(made)
    return answers


# --- the establishment's answer ------------------------------------------------------------------


async def _pending_reservation(
    uow: FoqualeUnitOfWork, cmd: ConfirmReservation | RefuseReservation
) -> Reservation:
    reservation = await uow.reservations.get(cmd.reservation_id)
    if reservation is None:
        raise NotFound(f"no reservation {cmd.reservation_id}")
    cmd.actor.check(reservation.uai)
    return reservation


async def confirm_reservation(cmd: ConfirmReservation, uow: FoqualeUnitOfWork) -> Reservation:
    """The reservation becomes a placement: its seat moves from reserved to placed."""
    async with uow:
        reservation = await _pending_reservation(uow, cmd)
        reservation.confirm(cmd.now, cmd.starts_on)
        seats_left = await uow.offers.fill_seat(reservation.offer_id)
        await uow.reservations.save(reservation)
        _add_reservation_events(uow, reservation, seats_left)
        await uow.commit()
    return reservation


async def refuse_reservation(cmd: RefuseReservation, uow: FoqualeUnitOfWork) -> Reservation:
    """Refused with a coded reason: the seat is free again."""
    async with uow:
        reservation = await _pending_reservation(uow, cmd)
        reservation.refuse(cmd.refusal, cmd.now)
        seats_left = await uow.offers.release_seat(reservation.offer_id)
        await uow.reservations.save(reservation)
        _add_reservation_events(uow, reservation, seats_left)
        await uow.commit()
    return reservation


# --- the clocks ----------------------------------------------------------------------------------


async def expire_reservations(cmd: ExpireReservations, uow: FoqualeUnitOfWork) -> int:
    """Expire the unanswered reservations past their time, freeing their seats; how many."""
    async with uow:
        expired = 0
        for reservation in await uow.reservations.due_to_expire(cmd.now, cmd.limit):
            if not reservation.expire(cmd.now):
                continue
            seats_left = await uow.offers.release_seat(reservation.offer_id)
            await uow.reservations.save(reservation)
            _add_reservation_events(uow, reservation, seats_left)
            expired += 1
        await uow.commit()
    return expired


async def check_freshness(
    cmd: CheckFreshness, uow: FoqualeUnitOfWork, policy: Policy = DEFAULT_POLICY
) -> int:
    """Flag stale, unpublish, or close past their date the offers that are due; how many changed."""
    async with uow:
        changed = 0
        for offer in await uow.offers.due_for_freshness(cmd.now, policy, cmd.limit):
            if offer.check_freshness(cmd.now, policy):
                await uow.offers.save(offer)
                _add_offer_events(uow, offer)
                changed += 1
        await uow.commit()
    return changed


async def prune_feedback(cmd: PruneFeedback, uow: FoqualeUnitOfWork) -> int:
    """Forget partners' answers their replay no longer returns; how many."""
    async with uow:
        pruned = await uow.feedback.prune(cmd.keep, cmd.limit)
        await uow.commit()
    return pruned
