"""What FOQUALE is asked to do: one command per handler, each carrying the time it happens at."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from raccrochage_contracts import CloudEvent
from raccrochage_contracts.events.psad_v1 import SolutionRequested

from ..domain.matching import SeatRequest
from ..domain.offer_types import OfferDescription, Source
from ..domain.owners import Actor
from ..domain.refusals import Refusal


@dataclass(frozen=True)
class PublishOffer:
    """Publish an offer under the owner's own key; the same key again updates it."""

    actor: Actor
    key: str
    description: OfferDescription
    now: datetime
    source: Source | None = None  # by default the actor's (partner feed, establishment API)


@dataclass(frozen=True)
class UpdateOffer:
    actor: Actor
    offer_id: uuid.UUID
    description: OfferDescription
    now: datetime


@dataclass(frozen=True)
class ConfirmOffer:
    actor: Actor
    offer_id: uuid.UUID
    now: datetime


@dataclass(frozen=True)
class CloseOffer:
    actor: Actor
    offer_id: uuid.UUID
    now: datetime


@dataclass(frozen=True)
class RequestSeat:
    """A PSAD asks for a FOQUALE seat (psad.solution.requested.v1); `cause` is its envelope."""

    request: SeatRequest
    cause: CloudEvent
    now: datetime

    @classmethod
    def from_event(cls, cause: CloudEvent, payload: SolutionRequested, now: datetime) -> RequestSeat | None:
        """None for a request FOQUALE does not provide (an MLDS place, ...)."""
        if payload.provider != "foquale" or payload.kind != "foquale_seat":
            return None
        request = SeatRequest(
            request_id=payload.request_id,
            case_id=payload.case_id,
            youth_id=payload.youth_id,
            age=payload.age,
            departement=payload.departement,
            zap=payload.zap,
            last_diploma=payload.last_diploma,
            wishes=tuple(payload.wishes),
            requested_at=payload.requested_at,
        )
        return cls(request, cause, now)


@dataclass(frozen=True)
class ConfirmReservation:
    actor: Actor
    reservation_id: uuid.UUID
    now: datetime
    starts_on: date | None = None


@dataclass(frozen=True)
class RefuseReservation:
    actor: Actor
    reservation_id: uuid.UUID
    refusal: Refusal
    now: datetime


@dataclass(frozen=True)
class ExpireReservations:
    now: datetime
    limit: int = 500


@dataclass(frozen=True)
class CheckFreshness:
    now: datetime
    limit: int = 500


@dataclass(frozen=True)
class PruneFeedback:
    """Keep each partner's last `keep` answers (what its replay can ask for), forget at most
    `limit` older ones."""

    keep: int
    limit: int = 500
