"""FOQUALE's unit of work and the repositories it opens: the interface handlers are written against.

`SqlFoqualeUnitOfWork` (the service's) subclasses both this and the platform's SQLAlchemy unit of
work, opening `adapters.repository.SqlOfferRepository` and `SqlReservationRepository` on its
connection; unit tests subclass `raccrochage_platform.fakes.FakeUnitOfWork` with in-memory
repositories.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime

from raccrochage_contracts import CloudEvent
from raccrochage_platform.uow import AbstractUnitOfWork, SqlAlchemyUnitOfWork
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.offer import Offer
from ..domain.offer_types import Level
from ..domain.policy import Policy
from ..domain.reservation import Reservation
from ..domain.uai import Uai


class OfferExists(Exception):
    """The offer was added by another transaction since this one read that it did not exist."""


class OfferRepository(abc.ABC):
    """Offers, and the seat counters that only atomic conditional updates move."""

    @abc.abstractmethod
    async def add(self, offer: Offer) -> None:
        """Insert a new offer (counters at zero); OfferExists if another transaction has (its
        commit waited for)."""

    @abc.abstractmethod
    async def get(self, offer_id: uuid.UUID, *, lock: bool = True) -> Offer | None:
        """The offer, locked for the transaction unless `lock=False`; None if unknown."""

    @abc.abstractmethod
    async def save(self, offer: Offer) -> None:
        """Write what the owner and the clocks change (description, state, freshness); never
        `reserved` or `placed`."""

    @abc.abstractmethod
    async def search(
        self, departements: Collection[str], levels: Collection[Level], today: date
    ) -> list[Offer]:
        """Reservable offers of these départements at these levels (full ones too, to count
        them), not locked."""

    @abc.abstractmethod
    async def count_with_seats_elsewhere(
        self, departement: str, levels: Collection[Level], wishes: Collection[str], today: date
    ) -> int:
        """Reservable offers with seats left outside the département, at these levels, meeting at
        least one wish (any offer when there is none)."""

    @abc.abstractmethod
    async def take_seat(self, offer_id: uuid.UUID, today: date) -> int | None:
        """Reserve one seat if the offer is reservable today and has one left, in one atomic
        statement; the seats left after it, or None when there was none to take. Waits for a
        transaction that holds the offer."""

    @abc.abstractmethod
    async def take_free_seat(
        self, offer_ids: Sequence[uuid.UUID], today: date
    ) -> tuple[uuid.UUID, int] | None:
        """Like `take_seat`, on the first of these offers, in this order, that has a seat left and
        that no other transaction holds (those are skipped, not waited for): the offer taken and
        its seats left, or None when each is full or held."""

    @abc.abstractmethod
    async def take_held_seats(self, seats: Mapping[uuid.UUID, int]) -> None:
        """Reserve so many more seats on each of these offers, which this transaction holds (it
        took a seat on each, so it knows they have them left), in one statement."""

    @abc.abstractmethod
    async def release_seat(self, offer_id: uuid.UUID) -> int:
        """A reservation ends without a placement: its seat is free again. Seats left after it."""

    @abc.abstractmethod
    async def fill_seat(self, offer_id: uuid.UUID) -> int:
        """A reservation becomes a placement: one seat moves from reserved to placed. Seats left."""

    @abc.abstractmethod
    async def due_for_freshness(self, now: datetime, policy: Policy, limit: int) -> list[Offer]:
        """Published or stale offers a freshness check would change at `now` (past their close
        date, due to be flagged stale or unpublished), locked; rows another transaction holds are
        skipped, for the next run."""


class ReservationRepository(abc.ABC):
    @abc.abstractmethod
    async def add(self, reservation: Reservation) -> None: ...

    @abc.abstractmethod
    async def get(self, reservation_id: uuid.UUID, *, lock: bool = True) -> Reservation | None: ...

    @abc.abstractmethod
    async def add_all(self, reservations: Sequence[Reservation]) -> None:
        """`add` each, in one statement."""

    @abc.abstractmethod
    async def for_requests(self, request_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Reservation]:
        """The reservations made for these PSAD requests, by request (one per request)."""

    @abc.abstractmethod
    async def save(self, reservation: Reservation) -> None: ...

    @abc.abstractmethod
    async def pending_at(self, uais: Collection[Uai], now: datetime, limit: int) -> list[Reservation]:
        """Reservations at these UAIs unanswered and not expired at `now`, soonest to expire
        first, at most `limit`; not locked."""

    @abc.abstractmethod
    async def due_to_expire(self, now: datetime, limit: int) -> list[Reservation]:
        """Unanswered reservations past their expiry, locked; rows another transaction holds are
        skipped, for the next run."""


class PartnerFeedbackRepository(abc.ABC):
    """The answers given to each partner, kept for the partner to read again."""

    @abc.abstractmethod
    async def add(self, partner_id: str, feedback: CloudEvent) -> None:
        """Keep an answer (once: the same envelope id again is kept once)."""

    @abc.abstractmethod
    async def latest(self, partner_id: str, count: int) -> list[dict]:
        """The partner's last `count` answers, oldest first, as the envelopes published."""

    @abc.abstractmethod
    async def prune(self, keep: int, limit: int) -> int:
        """Forget at most `limit` answers older than each partner's last `keep`; how many."""


class PartnerRateRepository(abc.ABC):
    """Each partner's record rate (`domain.limits.RecordRate`), one for every FOQUALE process."""

    @abc.abstractmethod
    async def take_turn(self, partner_id: str, per_second: float, now: datetime) -> float:
        """Take the partner's next record turn at `now`, the bucket locked until the transaction
        ends: the seconds that record waits before it is applied."""


class FoqualeUnitOfWork(AbstractUnitOfWork):
    """One FOQUALE transaction: its repositories, its inbox claim, the events it publishes."""

    source = "raccrochage/foquale"
    offers: OfferRepository
    reservations: ReservationRepository
    feedback: PartnerFeedbackRepository
    rates: PartnerRateRepository


class SqlFoqualeUnitOfWork(SqlAlchemyUnitOfWork, FoqualeUnitOfWork):
    """One PostgreSQL transaction of FOQUALE (`ServiceContext.unit_of_work(SqlFoqualeUnitOfWork)`)."""

    def open_repositories(self, connection: AsyncConnection) -> None:
        # Imported here: the adapters import this module for the interfaces they implement.
        from ..adapters.repository import (
            SqlOfferRepository,
            SqlPartnerFeedbackRepository,
            SqlPartnerRateRepository,
            SqlReservationRepository,
        )

        self.offers = SqlOfferRepository(connection)
        self.reservations = SqlReservationRepository(connection)
        self.feedback = SqlPartnerFeedbackRepository(connection)
        self.rates = SqlPartnerRateRepository(connection)
