"""Base class of every event payload: strict for producers, tolerant for consumers."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict


class Payload(BaseModel):
    """An event's `data`.

    Producers build payloads directly and get `extra="forbid"`: a typo or an undeclared field is
    an error at the source. Consumers call `read()`, which ignores fields they do not know yet, so
    a producer may add an optional field before its consumers are upgraded.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    event_type: ClassVar[str]

    @classmethod
    def read(cls, data: Any) -> Self:
        """Validate as a consumer: unknown fields are ignored, known ones still checked."""
        return cls.model_validate(data, extra="ignore")
