"""In-memory repositories and unit of work for FOQUALE's service-layer tests.

The repositories hand out copies, as a database would: an aggregate changed and not saved changes
nothing, and a unit of work left without `commit` restores what its block wrote.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime

from raccrochage_contracts import CloudEvent
from raccrochage_foquale.domain.limits import RecordRate
from raccrochage_foquale.domain.matching import meets_wishes
from raccrochage_foquale.domain.offer import Offer
from raccrochage_foquale.domain.offer_types import RESERVABLE_STATES, Level
from raccrochage_foquale.domain.policy import Policy
from raccrochage_foquale.domain.reservation import Reservation, ReservationState
from raccrochage_foquale.domain.uai import Uai
from raccrochage_foquale.service_layer.unit_of_work import (
    FoqualeUnitOfWork,
    OfferExists,
    OfferRepository,
    PartnerFeedbackRepository,
    PartnerRateRepository,
    ReservationRepository,
)
from raccrochage_platform.fakes import FakeUnitOfWork


class FakeOfferRepository(OfferRepository):
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Offer] = {}

    @staticmethod
    def _copy(offer: Offer) -> Offer:
        return replace(offer, events=[])

    async def add(self, offer: Offer) -> None:
        if offer.offer_id in self.rows:
            raise OfferExists(str(offer.offer_id))
        self.rows[offer.offer_id] = replace(self._copy(offer), reserved=0, placed=0)

    async def get(self, offer_id: uuid.UUID, *, lock: bool = True) -> Offer | None:
        row = self.rows.get(offer_id)
        return None if row is None else self._copy(row)

    async def save(self, offer: Offer) -> None:
        stored = self.rows[offer.offer_id]
        self.rows[offer.offer_id] = replace(self._copy(offer), reserved=stored.reserved, placed=stored.placed)

    def _reservable(self, today: date, levels: Collection[Level]) -> list[Offer]:
        return [
            o
            for o in self.rows.values()
            if o.is_reservable(today) and o.description.formation.level in levels
        ]

    async def search(
        self, departements: Collection[str], levels: Collection[Level], today: date
    ) -> list[Offer]:
        return [
            self._copy(o)
            for o in self._reservable(today, levels)
            if o.description.departement in departements
        ]

    async def count_with_seats_elsewhere(
        self, departement: str, levels: Collection[Level], wishes: Collection[str], today: date
    ) -> int:
        return sum(
            o.description.departement != departement and o.seats_left > 0 and meets_wishes(o, wishes)
            for o in self._reservable(today, levels)
        )

    async def take_seat(self, offer_id: uuid.UUID, today: date) -> int | None:
        row = self.rows.get(offer_id)
        if row is None or not row.is_reservable(today) or row.seats_left == 0:
            return None
        row.reserved += 1
        return row.seats_left

    async def take_free_seat(
        self, offer_ids: Sequence[uuid.UUID], today: date
    ) -> tuple[uuid.UUID, int] | None:
        for offer_id in offer_ids:  # nothing is ever held by another transaction here
            seats_left = await self.take_seat(offer_id, today)
            if seats_left is not None:
                return offer_id, seats_left
        return None

    async def take_held_seats(self, seats: Mapping[uuid.UUID, int]) -> None:
        for offer_id, more in seats.items():
            row = self.rows[offer_id]
            assert row.seats_left >= more, "took more seats than the offer has"
            row.reserved += more

    async def release_seat(self, offer_id: uuid.UUID) -> int:
        row = self.rows[offer_id]
        assert row.reserved > 0, "released a seat nobody held"
        row.reserved -= 1
        return row.seats_left

    async def fill_seat(self, offer_id: uuid.UUID) -> int:
        row = self.rows[offer_id]
        assert row.reserved > 0, "filled a seat nobody held"
        row.reserved -= 1
        row.placed += 1
        return row.seats_left

    async def due_for_freshness(self, now: datetime, policy: Policy, limit: int) -> list[Offer]:
        due = [
            o
            for o in self.rows.values()
            if o.state in RESERVABLE_STATES
            and (
                not o.description.is_open_on(now.date())
                or now - o.last_confirmed_at >= policy.unpublish_after
                or (o.is_fresh() and now - o.last_confirmed_at >= policy.stale_after)
            )
        ]
        return [self._copy(o) for o in sorted(due, key=lambda o: o.last_confirmed_at)[:limit]]


class FakeReservationRepository(ReservationRepository):
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Reservation] = {}

    @staticmethod
    def _copy(reservation: Reservation) -> Reservation:
        return replace(reservation, events=[])

    async def add(self, reservation: Reservation) -> None:
        assert reservation.reservation_id not in self.rows, "add of a reservation that exists"
        self.rows[reservation.reservation_id] = self._copy(reservation)

    async def get(self, reservation_id: uuid.UUID, *, lock: bool = True) -> Reservation | None:
        row = self.rows.get(reservation_id)
        return None if row is None else self._copy(row)

    async def add_all(self, reservations: Sequence[Reservation]) -> None:
        for reservation in reservations:
            await self.add(reservation)

    async def for_requests(self, request_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Reservation]:
        return {r.request_id: self._copy(r) for r in self.rows.values() if r.request_id in request_ids}

    async def save(self, reservation: Reservation) -> None:
        assert reservation.reservation_id in self.rows
        self.rows[reservation.reservation_id] = self._copy(reservation)

    async def pending_at(self, uais: Collection[Uai], now: datetime, limit: int) -> list[Reservation]:
        waiting = [
            r
            for r in self.rows.values()
            if r.state is ReservationState.MADE and r.expires_at > now and r.uai in uais
        ]
        return [
            self._copy(r) for r in sorted(waiting, key=lambda r: (r.expires_at, r.reservation_id))[:limit]
        ]

    async def due_to_expire(self, now: datetime, limit: int) -> list[Reservation]:
        due = [r for r in self.rows.values() if r.state is ReservationState.MADE and now >= r.expires_at]
        return [self._copy(r) for r in sorted(due, key=lambda r: r.expires_at)[:limit]]


class FakePartnerFeedbackRepository(PartnerFeedbackRepository):
    def __init__(self) -> None:
        self.rows: list[tuple[str, CloudEvent]] = []

    async def add(self, partner_id: str, feedback: CloudEvent) -> None:
        if all(kept.id != feedback.id for _, kept in self.rows):
            self.rows.append((partner_id, feedback))

    async def latest(self, partner_id: str, count: int) -> list[dict]:
        theirs = [json.loads(event.to_json()) for who, event in self.rows if who == partner_id]
        return theirs[-count:] if count > 0 else []

    async def prune(self, keep: int, limit: int) -> int:
        seen: dict[str, int] = {}
        outranked = []
        for index in reversed(range(len(self.rows))):
            partner_id = self.rows[index][0]
            seen[partner_id] = seen.get(partner_id, 0) + 1
            if seen[partner_id] > keep:
                outranked.append(index)
        gone = set(sorted(outranked)[:limit])
        self.rows = [row for index, row in enumerate(self.rows) if index not in gone]
        return len(gone)


class FakePartnerRateRepository(PartnerRateRepository):
    def __init__(self) -> None:
        self.rows: dict[str, tuple[RecordRate, datetime]] = {}

    async def take_turn(self, partner_id: str, per_second: float, now: datetime) -> float:
        rate, at = self.rows.get(partner_id, (RecordRate.full(per_second), now))
        rate, wait = RecordRate(per_second, rate.tokens).take((now - at).total_seconds())
        self.rows[partner_id] = (rate, max(now, at))
        return wait


class FakeFoqualeUnitOfWork(FoqualeUnitOfWork, FakeUnitOfWork):
    def __init__(self) -> None:
        FakeUnitOfWork.__init__(self, source="raccrochage/foquale")
        self.offers = FakeOfferRepository()
        self.reservations = FakeReservationRepository()
        self.feedback = FakePartnerFeedbackRepository()
        self.rates = FakePartnerRateRepository()
        self._snapshot: tuple[dict, dict] | None = None

    def _copy_rows(self) -> tuple[dict, dict]:
        return (
            {k: replace(v) for k, v in self.offers.rows.items()},
            {k: replace(v) for k, v in self.reservations.rows.items()},
        )

    async def _begin(self) -> None:
        await FakeUnitOfWork._begin(self)
        self._snapshot = self._copy_rows()

    async def _commit(self, events: list) -> None:
        await FakeUnitOfWork._commit(self, events)
        self._snapshot = None

    async def _rollback(self) -> None:
        await FakeUnitOfWork._rollback(self)
        if self._snapshot is not None:
            self.offers.rows, self.reservations.rows = self._snapshot
            self._snapshot = None

    def payloads(self, event_type: str) -> list[dict]:
        return [event.data for event in self.published if event.type == event_type]
