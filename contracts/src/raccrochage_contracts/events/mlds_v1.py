"""Events produced by the MLDS about enrolments, version 1 (the answers to psad.solution.requested)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field

from ..registry import event_type
from .foquale_v1 import _Answer

Dispositif = Literal["paps", "dipa", "micro_lycee", "clause_sociale"]


@event_type("mlds.enrolment.accepted.v1")
class EnrolmentAccepted(_Answer):
    """The youth is enrolled in an MLDS dispositif."""

    dispositif: Dispositif
    structure_uai: str | None = Field(None, pattern=r"^[0-9]{7}[A-Z]$", description="the host establishment")
    starts_on: date


@event_type("mlds.enrolment.refused.v1")
class EnrolmentRefused(_Answer):
    dispositif: Dispositif
    reason: Literal["not_eligible", "no_place", "youth_declined", "other"]
