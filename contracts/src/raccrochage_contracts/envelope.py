"""The CloudEvents 1.0 envelope (structured JSON mode) every event travels in."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model

from .naming import TYPE_RULE
from .payload import Payload

SOURCE_PATTERN = r"^(raccrochage/[a-z][a-z0-9_]*|partner/[a-z0-9][a-z0-9_-]{1,62})$"
SCHEMA_BASE = "https://schemas.raccrochage.local/events"


class CloudEvent(BaseModel):
    """Envelope of every event. `data` stays a plain dict here; the registry gives its model."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID
    source: str = Field(pattern=SOURCE_PATTERN, max_length=80)
    # The naming rule (naming.py) as a pattern that pydantic-core checks itself: a Python
    # validator here cost half of each consumed message's validation.
    type: str = Field(pattern=TYPE_RULE, max_length=200)
    time: AwareDatetime
    subject: str = Field(min_length=1, max_length=200)
    dataschema: str = Field(max_length=300)
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]
    correlationid: uuid.UUID
    causationid: uuid.UUID | None = None

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> CloudEvent:
        return cls.model_validate_json(raw)


@functools.cache
def typed_envelope(model: type[Payload]) -> type[CloudEvent]:
    """The envelope with `data` validated as `model` in the same pass, for consumers: read it with
    `model_validate_json(raw, extra="ignore")`, which ignores unknown fields as `Payload.read`
    does (and the envelope's extension attributes, which no consumer reads). Its `data` is the
    payload model instead of a dict."""
    return create_model(f"{model.__name__}Envelope", __base__=CloudEvent, data=(model, ...))


def schema_uri(event_type: str) -> str:
    return f"{SCHEMA_BASE}/{event_type}.json"


def new_event(
    payload: Payload,
    *,
    source: str,
    subject: str,
    correlationid: uuid.UUID | None = None,
    causationid: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    """Wrap a payload (already validated strictly by its model) in a new envelope.

    A new causal chain starts with correlationid = id; an event caused by another carries the
    cause's correlationid and its id as causationid.
    """
    event_id = event_id or uuid.uuid4()
    return CloudEvent(
        id=event_id,
        source=source,
        type=payload.event_type,
        time=time or datetime.now(UTC),
        subject=subject,
        dataschema=schema_uri(payload.event_type),
        data=payload.model_dump(mode="json", exclude_none=True),
        correlationid=correlationid or event_id,
        causationid=causationid,
    )
