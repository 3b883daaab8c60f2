"""HTTP for the DPO: erase a youth everywhere, follow the request, export what is held.

Every route takes a `dpo` token (raccrochage_platform.auth); no other role reaches them. The INE
travels in a request body, never in a URL (URLs end up in access logs).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from raccrochage_platform.auth import Principal, Role, caller, error_responses

from ..service_layer import privacy
from ..service_layer.unit_of_work import AbstractReperageUnitOfWork, ErasureRecord


class YouthByIne(BaseModel):
    ine: str = Field(min_length=11, max_length=40, description="the youth's INE (11 letters or digits)")


class ServiceAnswer(BaseModel):
    service: str
    answered_at: datetime | None
    erased: dict[str, int] | None = None
    anonymised: dict[str, int] | None = None


class ErasureStatus(BaseModel):
    """An erasure request: who asked, what the vault erased, which services have answered, and
    whether the streams are swept of the youth's messages (the erasure is then whole)."""

    request_id: uuid.UUID
    requested_by: str
    requested_at: datetime
    identity_found: bool = Field(description="the vault held an identity for the INE")
    erased: dict[str, int] = Field(description="the vault's own rows, per kind of record")
    complete: bool
    completed_at: datetime | None
    silent: list[str] = Field(description="the services that have not answered yet")
    answers: list[ServiceAnswer]
    swept_at: datetime | None = Field(
        description="when the youth's messages were deleted from every stream (after completion)"
    )
    swept: dict[str, int] | None = Field(description="the youth's messages deleted, per stream")

    @classmethod
    def of(cls, record: ErasureRecord) -> ErasureStatus:
        return cls(
            **dataclasses.asdict(record), complete=record.completed_at is not None, silent=record.silent
        )


def privacy_router(
    unit_of_work: Callable[[], AbstractReperageUnitOfWork],
    *,
    token_key: str,
    key: bytes,
    services: Sequence[str],
    ask: privacy.AskService,
) -> APIRouter:
    router = APIRouter(prefix="/privacy", tags=["privacy"])
    dpo = Depends(caller(token_key, Role.DPO))

    def valid(ine: str) -> str:
        try:
            privacy.youth_of(ine, key)
        except privacy.InvalidIne as error:
            raise HTTPException(422, f"body.ine: {error}") from None
        return ine

    @router.post(
        "/erasures",
        status_code=202,
        summary="Erase a youth from every service (DPO)",
        responses=error_responses(401, 403, 422),
    )
    async def erase(body: YouthByIne, principal: Principal = dpo) -> ErasureStatus:
        """The vault erases the identity and asks every service; the request is complete once
        each has answered (GET /privacy/erasures/{request_id})."""
        record = await privacy.request_erasure(
            unit_of_work(),
            ine=valid(body.ine),
            key=key,
            requested_by=principal.sub,
            services=services,
            now=datetime.now(UTC),
        )
        return ErasureStatus.of(record)

    @router.get(
        "/erasures/{request_id}",
        summary="An erasure request's status (DPO)",
        responses=error_responses(401, 403, 404, 422),
    )
    async def status(
        request_id: Annotated[uuid.UUID, PathParam(description="the request's id")],
        principal: Principal = dpo,
    ) -> ErasureStatus:
        record = await privacy.erasure_status(unit_of_work(), request_id)
        if record is None:
            raise HTTPException(404, f"no erasure request {request_id}")
        return ErasureStatus.of(record)

    @router.post(
        "/exports",
        summary="Everything every service holds about a youth (DPO)",
        responses=error_responses(401, 403, 422),
    )
    async def export(body: YouthByIne, principal: Principal = dpo) -> dict[str, Any]:
        """One JSON document: the vault's identity and records, then each service's; `unanswered`
        names the services that did not answer."""
        return await privacy.export_youth(
            unit_of_work(),
            ask,
            ine=valid(body.ine),
            key=key,
            services=services,
            requested_by=principal.sub,
            now=datetime.now(UTC),
        )

    return router
