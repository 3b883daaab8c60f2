"""A seat offer: what an establishment or a partner publishes, its seats, and its freshness."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime

from . import events
from .errors import CommandRefused, InvalidCommand
from .offer_types import (
    RESERVABLE_STATES,
    CloseReason,
    OfferDescription,
    OfferState,
    Owner,
    Source,
)
from .policy import DEFAULT_POLICY, Policy
from .uai import Uai


@dataclass(eq=False)
class Offer:
    """An offer and its seat counts. Build a new one with `Offer.publish` (which records
    OfferPublished); the constructor is for repositories loading a stored offer.

    `reserved` and `placed` are what the database held when the offer was loaded: the database
    moves them, by atomic conditional updates (the repository's `take_seat`...), never this object,
    so that concurrent reservations cannot overbook.

    Every command takes the time it happens at (`now`) and checks everything before changing
    anything: a refused command leaves the offer exactly as it was.
    """

    offer_id: uuid.UUID
    description: OfferDescription
    source: Source
    owner: Owner
    published_at: datetime
    last_confirmed_at: datetime
    updated_at: datetime
    state: OfferState = OfferState.PUBLISHED
    reserved: int = 0  # active reservations
    placed: int = 0  # confirmed placements
    stale_since: datetime | None = None
    closed_at: datetime | None = None
    close_reason: CloseReason | None = None
    events: list[events.OfferEvent] = field(default_factory=list, repr=False)

    @classmethod
    def publish(
        cls, offer_id: uuid.UUID, description: OfferDescription, source: Source, owner: Owner, now: datetime
    ) -> Offer:
        _require_aware(now)
        offer = cls(offer_id, description, Source(source), owner, now, now, now)
        offer.events.append(events.OfferPublished(offer_id, now))
        return offer

    # -- what the offer knows ---------------------------------------------------------------

    @property
    def uai(self) -> Uai:
        return self.description.uai

    @property
    def capacity(self) -> int:
        return self.description.capacity

    @property
    def taken(self) -> int:
        return self.reserved + self.placed

    @property
    def seats_left(self) -> int:
        """Capacity left = capacity - active reservations - placements."""
        return max(self.capacity - self.taken, 0)

    def is_reservable(self, today: date) -> bool:
        """Published (stale included) and not past its close date; seats left or not."""
        return self.state in RESERVABLE_STATES and self.description.is_open_on(today)

    def is_fresh(self) -> bool:
        return self.state is OfferState.PUBLISHED

    def unpublish_on(self, policy: Policy = DEFAULT_POLICY) -> date:
        return (self.last_confirmed_at + policy.unpublish_after).date()

    # -- the owner's commands ----------------------------------------------------------------

    def update(self, description: OfferDescription, now: datetime) -> bool:
        """Replace the description. The owner acting shows the offer is alive: it counts as a
        confirmation. False, and nothing recorded, when the description is the same (a record
        sent twice) and the offer needs no confirmation."""
        self._check_open("update")
        if description.uai != self.uai:
            raise InvalidCommand(
                "uai", f"an offer stays at its establishment ({self.uai}): close it and publish another"
            )
        if description.capacity < self.taken:
            raise InvalidCommand(
                "capacity",
                f"{description.capacity} is below the {self.taken} seats already reserved or filled",
            )
        self._check_time(now)
        changed = description.changes_from(self.description)
        if not changed:
            return self.confirm(now) if self.state is not OfferState.PUBLISHED else False
        self.description = description
        self._refresh(now)
        self.events.append(events.OfferUpdated(self.offer_id, changed, now))
        return True

    def confirm(self, now: datetime) -> bool:
        """The offer still holds: the freshness clock starts again; an unpublished offer is
        published again. Always True (a confirmation is news, even a repeated one)."""
        self._check_open("confirm")
        self._check_time(now)
        if not self._refresh(now):
            self.events.append(events.OfferConfirmed(self.offer_id, now))
        return True

    def close(self, now: datetime, reason: CloseReason = CloseReason.CLOSED_BY_OWNER) -> bool:
        """No more reservations; those made stay until answered. False when already closed."""
        if self.state is OfferState.CLOSED:
            return False
        self._check_time(now)
        self._close(now, CloseReason(reason))
        return True

    # -- the rules a timer applies -----------------------------------------------------------

    def check_freshness(self, now: datetime, policy: Policy = DEFAULT_POLICY) -> bool:
        """Past its close date: closed. Not confirmed for `unpublish_after_days`: unpublished;
        for `stale_after_days`: flagged stale (its owner is asked). True when something changed;
        never refuses (a timer calls it)."""
        if self.state in (OfferState.CLOSED, OfferState.UNPUBLISHED) or now < self.updated_at:
            return False
        if not self.description.is_open_on(now.date()):
            self._close(now, CloseReason.PAST_CLOSE_DATE)
            return True
        unconfirmed_for = now - self.last_confirmed_at
        if unconfirmed_for >= policy.unpublish_after:
            self.state = OfferState.UNPUBLISHED
            self.updated_at = now
            self.events.append(events.OfferClosed(self.offer_id, CloseReason.UNPUBLISHED_STALE, now))
            return True
        if unconfirmed_for >= policy.stale_after and self.state is OfferState.PUBLISHED:
            self.state = OfferState.STALE
            self.stale_since = now
            self.updated_at = now
            self.events.append(
                events.OfferFlaggedStale(
                    self.offer_id, self.last_confirmed_at, self.unpublish_on(policy), now
                )
            )
            return True
        return False

    # -- the machinery ----------------------------------------------------------------------

    def _refresh(self, now: datetime) -> bool:
        """Confirmed now; True when this published the offer again."""
        republished = self.state is OfferState.UNPUBLISHED
        if republished:
            self.events.append(events.OfferPublished(self.offer_id, now, republished=True))
        self.state = OfferState.PUBLISHED
        self.stale_since = None
        self.last_confirmed_at = now
        self.updated_at = now
        return republished

    def _close(self, now: datetime, reason: CloseReason) -> None:
        self.state = OfferState.CLOSED
        self.closed_at = now
        self.close_reason = reason
        self.updated_at = now
        self.events.append(events.OfferClosed(self.offer_id, reason, now))

    def _check_open(self, action: str) -> None:
        if self.state is OfferState.CLOSED:
            raise CommandRefused(f"offer {self.offer_id} is closed: cannot {action} it")

    def _check_time(self, now: datetime) -> None:
        _require_aware(now)
        if now < self.updated_at:
            raise InvalidCommand(
                "now",
                f"{now.isoformat()} is before offer {self.offer_id}'s last change at {self.updated_at.isoformat()}",
            )


def _require_aware(moment: datetime, name: str = "now") -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidCommand(name, f"{moment.isoformat()} has no time zone")
