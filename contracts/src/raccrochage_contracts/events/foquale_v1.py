"""Events produced by FOQUALE about placements, version 1 (the answers to psad.solution.requested)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import Field

from ..payload import Payload
from ..registry import event_type
from .reperage_v1 import YOUTH_ID

REQUEST_ID = Field(description="request_id of the psad.solution.requested.v1 this answers")


class _Answer(Payload):
    request_id: uuid.UUID = REQUEST_ID
    case_id: uuid.UUID
    youth_id: str = YOUTH_ID
    decided_at: datetime


@event_type("foquale.placement.confirmed.v1")
class PlacementConfirmed(_Answer):
    """A seat is reserved for the youth in a school or a dispositif."""

    seat_id: str = Field(min_length=1, max_length=80, description="the seat offer at FOQUALE")
    uai: str = Field(pattern=r"^[0-9]{7}[A-Z]$", description="the establishment")
    training: str | None = Field(None, max_length=200)
    starts_on: date


@event_type("foquale.placement.refused.v1")
class PlacementRefused(_Answer):
    reason: Literal["no_seat", "not_eligible", "youth_declined", "other"]
