"""Privacy events, version 1: a youth's erasure asked by the identity vault and each service's answer.

They travel on the PRIVACY stream (deploy/topology.toml): repérage, the vault, asks; every
service that holds something about youths answers once, in the transaction that erased it.
Neither carries an identity: the request names the pseudonymous `youth_id`, the answer only
counts.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field, StringConstraints

from ..payload import Payload
from ..registry import event_type
from .reperage_v1 import YOUTH_ID

SERVICE_NAME = Field(pattern=r"^[a-z][a-z0-9_]{1,39}$", max_length=40, description="the answering service")
# A kind of record (a table's name) and how many rows of it.
RecordKind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$", max_length=63)]
Rows = Annotated[int, Field(ge=0)]


@event_type("privacy.erasure.requested.v1")
class ErasureRequested(Payload):
    """The DPO asked that everything about a youth be erased; the vault erased the identity."""

    request_id: uuid.UUID = Field(description="the erasure request, as the vault tracks it")
    youth_id: str = YOUTH_ID


@event_type("privacy.erasure.done.v1")
class ErasureDone(Payload):
    """A service erased or anonymised what it held about the youth of an erasure request."""

    request_id: uuid.UUID
    service: str = SERVICE_NAME
    # What was done, per kind of record (e.g. {"case_file": 1}); anonymised rows are kept for the
    # counts and no longer name the youth.
    erased: dict[RecordKind, Rows] = Field(
        default_factory=dict,
        max_length=40,
        description="rows deleted, per kind of record (e.g. case_file)",
    )
    anonymised: dict[RecordKind, Rows] = Field(
        default_factory=dict,
        max_length=40,
        description="rows kept for counts with the youth's id removed, per kind of record",
    )
