"""A reservation: a seat held for a youth until the establishment confirms it, refuses it, or it expires."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from . import events
from .errors import CommandRefused, InvalidCommand
from .offer import Offer
from .policy import DEFAULT_POLICY, Policy
from .refusals import ESTABLISHMENT_REASONS, Refusal
from .uai import Uai

# One reservation per PSAD request: derived from the request, a re-run names the same one.
RESERVATION_NAMESPACE = uuid.UUID("0c5d9a4e-6b1f-4e27-9a83-2d4f6b8c1e07")


def reservation_id_for(request_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(RESERVATION_NAMESPACE, str(request_id))


class ReservationState(StrEnum):
    MADE = "made"  # holds a seat
    CONFIRMED = "confirmed"  # a placement: the seat stays taken
    REFUSED = "refused"  # the seat is free again
    EXPIRED = "expired"  # the seat is free again


@dataclass(eq=False)
class Reservation:
    """Build a new one with `Reservation.make`; the constructor is for repositories.

    Each command takes `now` and refuses (CommandRefused) when the reservation was answered
    already: a refused command leaves it exactly as it was.
    """

    reservation_id: uuid.UUID
    request_id: uuid.UUID
    case_id: uuid.UUID
    youth_id: str
    offer_id: uuid.UUID
    uai: Uai
    training: str  # the formation's label when the seat was reserved
    opens_on: date
    made_at: datetime
    expires_at: datetime
    state: ReservationState = ReservationState.MADE
    decided_at: datetime | None = None
    starts_on: date | None = None
    refusal: Refusal | None = None
    events: list[events.ReservationEvent] = field(default_factory=list, repr=False)

    @classmethod
    def make(
        cls,
        request_id: uuid.UUID,
        case_id: uuid.UUID,
        youth_id: str,
        offer: Offer,
        seats_left: int,
        now: datetime,
        policy: Policy = DEFAULT_POLICY,
    ) -> Reservation:
        """A seat of `offer` has just been taken for this request (the repository's `take_seat`
        returned `seats_left`): record it, to expire after `policy.reservation_days`."""
        _require_aware(now)
        if seats_left < 0:
            raise InvalidCommand("seats_left", f"{seats_left} is negative")
        reservation = cls(
            reservation_id_for(request_id),
            request_id,
            case_id,
            youth_id,
            offer.offer_id,
            offer.uai,
            offer.description.formation.label,
            offer.description.opens_on,
            now,
            now + policy.reservation_lasts,
        )
        reservation.events.append(
            events.ReservationMade(
                reservation.reservation_id, offer.offer_id, seats_left, reservation.expires_at, now
            )
        )
        return reservation

    @property
    def holds_a_seat(self) -> bool:
        """Counts in the offer's `reserved` (a confirmed one counts in `placed`)."""
        return self.state is ReservationState.MADE

    def is_due(self, now: datetime) -> bool:
        return self.state is ReservationState.MADE and now >= self.expires_at

    def confirm(self, now: datetime, starts_on: date | None = None) -> None:
        """The establishment takes the youth: a placement, starting on `starts_on` (by default the
        offer's opening day, or today if it has opened)."""
        self._check_pending("confirm", now)
        start = starts_on or max(self.opens_on, now.date())
        if start < self.made_at.date():
            raise InvalidCommand("starts_on", f"{start.isoformat()} is before the reservation was made")
        self.state = ReservationState.CONFIRMED
        self.decided_at = now
        self.starts_on = start
        self.events.append(events.ReservationConfirmed(self.reservation_id, self.offer_id, start, now))

    def refuse(self, refusal: Refusal, now: datetime) -> None:
        """The establishment refuses, with a code of its list (`other` needs a comment)."""
        if refusal.reason not in ESTABLISHMENT_REASONS:
            allowed = ", ".join(sorted(r.value for r in ESTABLISHMENT_REASONS))
            raise InvalidCommand("reason", f"{refusal.reason.value!r} is not an establishment's ({allowed})")
        self._check_pending("refuse", now)
        self.state = ReservationState.REFUSED
        self.decided_at = now
        self.refusal = refusal
        self.events.append(events.ReservationRefused(self.reservation_id, self.offer_id, refusal, now))

    def expire(self, now: datetime) -> bool:
        """Past its expiry and still unanswered: expired, the seat is free. True when it did;
        never refuses (a timer calls it)."""
        if not self.is_due(now):
            return False
        self.state = ReservationState.EXPIRED
        self.decided_at = now
        self.events.append(events.ReservationExpired(self.reservation_id, self.offer_id, now))
        return True

    def _check_pending(self, action: str, now: datetime) -> None:
        _require_aware(now)
        if self.state is not ReservationState.MADE:
            raise CommandRefused(
                f"reservation {self.reservation_id} is {self.state.value}: cannot {action} it"
            )
        if now >= self.expires_at:
            raise CommandRefused(
                f"reservation {self.reservation_id} expired at {self.expires_at.isoformat()}: cannot {action} it"
            )
        if now < self.made_at:
            raise InvalidCommand("now", f"{now.isoformat()} is before the reservation was made")


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidCommand("now", f"{moment.isoformat()} has no time zone")
