"""FOQUALE's HTTP API (OpenAPI at /docs): what a school without a system of its own does through
an API key, and the routes an operator uses to hand out and revoke those keys.

- Establishment routes take `X-Api-Key: fq_<id>.<secret>`, a key bound to one or more UAIs; they
  act on those UAIs only (403 otherwise). A revoked or unknown key answers 401.
- Admin routes take an `ops` bearer token (`raccrochage token --role ops`); a counsellor's
  token answers 403.

No `from __future__ import annotations` here: FastAPI reads the routes' annotations, and the
dependencies' aliases are local to `foquale_router`.
"""

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from raccrochage_contracts.events import partner_seats_v1 as partner
from raccrochage_platform.auth import ErrorBody, InvalidToken, Principal, Role, verify
from sqlalchemy.ext.asyncio import AsyncEngine

from ..adapters import api_keys
from ..domain.errors import CommandRefused, InvalidCommand, NotFound, NotYourEstablishment
from ..domain.owners import Actor
from ..domain.refusals import Refusal
from ..domain.uai import Uai
from ..service_layer import handlers
from ..service_layer.commands import (
    CloseOffer,
    ConfirmOffer,
    ConfirmReservation,
    PublishOffer,
    RefuseReservation,
)
from ..service_layer.partners import description_of
from ..service_layer.unit_of_work import FoqualeUnitOfWork

API_KEY = APIKeyHeader(
    name="X-Api-Key", auto_error=False, description="an establishment's key, fq_<id>.<secret>"
)
BEARER = HTTPBearer(auto_error=False, description="an ops token (raccrochage token --role ops)")


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    what = {
        401: "no key or token, or not a valid one",
        403: "valid, but not for this UAI or this route",
        404: "no such offer, reservation or key",
        409: "not allowed in its current state (a closed offer, an answered reservation)",
        422: "a field is wrong; `detail` names it",
    }
    # The platform's error body: a sentence, or FastAPI's list of invalid fields (a 422 on the body)
    return {code: {"model": ErrorBody, "description": what[code]} for code in codes}


class OfferIn(partner.SeatsPublished):
    """The offer, whole, under the school's own `partner_key`: the same key again updates it."""


class OfferOut(BaseModel):
    offer_id: uuid.UUID
    outcome: str = Field(description="accepted (published, changed or confirmed) or unchanged")


class ConfirmIn(BaseModel):
    starts_on: date | None = None


class RefuseIn(BaseModel):
    reason: str = Field(description="a refusal code (seat_no_longer_available, level_not_suited, ...)")
    comment: str | None = Field(None, max_length=500, description="required for `other`; never published")


class ReservationOut(BaseModel):
    reservation_id: uuid.UUID
    state: str


class PendingOut(BaseModel):
    reservation_id: uuid.UUID
    offer_id: uuid.UUID
    uai: str
    training: str
    made_at: datetime
    expires_at: datetime


class KeyIn(BaseModel):
    uais: list[str] = Field(min_length=1, max_length=50)
    label: str = Field(min_length=1, max_length=120, description="which school or office holds it")


class KeyOut(BaseModel):
    key_id: str
    api_key: str = Field(description="shown once: only its hash is stored")
    uais: list[str]


class KeyInfoOut(BaseModel):
    key_id: str
    uais: list[str]
    label: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    last_used_at: datetime | None


def _domain_errors(error: Exception) -> HTTPException:
    match error:
        case InvalidCommand():
            return HTTPException(422, str(error))
        case NotYourEstablishment():
            return HTTPException(403, str(error))
        case NotFound():
            return HTTPException(404, str(error))
        case CommandRefused():
            return HTTPException(409, str(error))
    raise error


def foquale_router(
    unit_of_work: Callable[[], FoqualeUnitOfWork], engine: AsyncEngine, token_key: str
) -> APIRouter:
    router = APIRouter(prefix="/foquale", tags=["foquale"])

    async def establishment(key: Annotated[str | None, Depends(API_KEY)]) -> Actor:
        if not key:
            raise HTTPException(401, "missing X-Api-Key (an establishment key, fq_<id>.<secret>)")
        actor = await api_keys.actor_for(engine, key.strip(), datetime.now(UTC))
        if actor is None:
            raise HTTPException(401, "unknown or revoked API key")
        return actor

    def operator(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> Principal:
        if credentials is None:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        try:
            principal = verify(token_key, credentials.credentials)
        except InvalidToken as error:
            raise HTTPException(
                401, f"invalid token: {error}", headers={"WWW-Authenticate": "Bearer"}
            ) from None
        if principal.role is not Role.OPS:
            raise HTTPException(403, "API keys are handed out by an ops token")
        return principal

    School = Annotated[Actor, Depends(establishment)]
    Operator = Annotated[Principal, Depends(operator)]

    @router.post("/offers", response_model=OfferOut, responses=_responses(401, 403, 409, 422))
    async def publish(body: OfferIn, actor: School) -> OfferOut:
        """Publish an offer, or update the one published under the same key."""
        try:
            cmd = PublishOffer(actor, body.partner_key, description_of(body), datetime.now(UTC))
            result = await handlers.publish_offer(cmd, unit_of_work())
        except Exception as error:
            raise _domain_errors(error) from None
        return OfferOut(offer_id=result.offer_id, outcome=result.outcome.value)

    @router.post(
        "/offers/{offer_id}/confirm", response_model=OfferOut, responses=_responses(401, 403, 404, 409)
    )
    async def confirm_offer(offer_id: uuid.UUID, actor: School) -> OfferOut:
        """Still valid as published: its freshness clock starts again."""
        try:
            result = await handlers.confirm_offer(
                ConfirmOffer(actor, offer_id, datetime.now(UTC)), unit_of_work()
            )
        except Exception as error:
            raise _domain_errors(error) from None
        return OfferOut(offer_id=result.offer_id, outcome=result.outcome.value)

    @router.post(
        "/offers/{offer_id}/close", response_model=OfferOut, responses=_responses(401, 403, 404, 409)
    )
    async def close_offer(offer_id: uuid.UUID, actor: School) -> OfferOut:
        try:
            result = await handlers.close_offer(
                CloseOffer(actor, offer_id, datetime.now(UTC)), unit_of_work()
            )
        except Exception as error:
            raise _domain_errors(error) from None
        return OfferOut(offer_id=result.offer_id, outcome=result.outcome.value)

    @router.get("/reservations", response_model=list[PendingOut], responses=_responses(401))
    async def pending(actor: School) -> list[PendingOut]:
        """The reservations waiting for the school's answer, on the key's UAIs, oldest first."""
        rows = await api_keys.pending_reservations(engine, sorted(str(uai) for uai in actor.uais))
        return [PendingOut(**row) for row in rows]

    @router.post(
        "/reservations/{reservation_id}/confirm",
        response_model=ReservationOut,
        responses=_responses(401, 403, 404, 409, 422),
    )
    async def confirm_reservation(
        reservation_id: uuid.UUID, body: ConfirmIn, actor: School
    ) -> ReservationOut:
        """The youth takes the seat: foquale.placement.confirmed.v1."""
        try:
            cmd = ConfirmReservation(actor, reservation_id, datetime.now(UTC), body.starts_on)
            reservation = await handlers.confirm_reservation(cmd, unit_of_work())
        except Exception as error:
            raise _domain_errors(error) from None
        return ReservationOut(reservation_id=reservation.reservation_id, state=reservation.state.value)

    @router.post(
        "/reservations/{reservation_id}/refuse",
        response_model=ReservationOut,
        responses=_responses(401, 403, 404, 409, 422),
    )
    async def refuse_reservation(reservation_id: uuid.UUID, body: RefuseIn, actor: School) -> ReservationOut:
        """Refused with a code (the seat is free again): foquale.placement.refused.v1."""
        try:
            cmd = RefuseReservation(
                actor, reservation_id, Refusal(body.reason, body.comment), datetime.now(UTC)
            )
            reservation = await handlers.refuse_reservation(cmd, unit_of_work())
        except Exception as error:
            raise _domain_errors(error) from None
        return ReservationOut(reservation_id=reservation.reservation_id, state=reservation.state.value)

    @router.post("/api-keys", response_model=KeyOut, status_code=201, responses=_responses(401, 403, 422))
    async def create_key(body: KeyIn, principal: Operator) -> KeyOut:
        """A key for a school's UAIs; the clear key is in this answer only."""
        try:
            uais = [Uai.parse(text, f"uais[{n}]") for n, text in enumerate(body.uais)]
        except InvalidCommand as error:
            raise HTTPException(422, str(error)) from None
        key_id, clear = await api_keys.create_key(engine, uais, body.label, principal.sub, datetime.now(UTC))
        return KeyOut(key_id=key_id, api_key=clear, uais=sorted({str(u) for u in uais}))

    @router.delete("/api-keys/{key_id}", response_model=KeyInfoOut, responses=_responses(401, 403, 404))
    async def revoke_key(key_id: str, principal: Operator) -> KeyInfoOut:
        """Revoke a key at once; its later requests answer 401."""
        info = await api_keys.revoke_key(engine, key_id, datetime.now(UTC))
        if info is None:
            raise HTTPException(404, f"no API key {key_id}")
        return KeyInfoOut(**info.__dict__)

    return router
