"""Base class of every event payload: strict for producers, tolerant for consumers."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

TOLERANT = {"tolerant": True}
_KNOWN_KEYS: dict[type, frozenset[str]] = {}  # per model: its field names and aliases


class Payload(BaseModel):
    """An event's `data`.

    Producers build payloads directly and get `extra="forbid"`: a typo or an undeclared field is
    an error at the source. Consumers call `read()`, which ignores fields they do not know yet, so
    a producer may add an optional field before its consumers are upgraded.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    event_type: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown_when_tolerant(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context and info.context.get("tolerant") and isinstance(data, dict):
            known = _KNOWN_KEYS.get(cls)
            if known is None:
                known = _KNOWN_KEYS[cls] = frozenset(cls.model_fields) | {
                    f.alias for f in cls.model_fields.values() if f.alias}
            if not known.issuperset(data):  # copy only when there is something to drop
                return {key: value for key, value in data.items() if key in known}
        return data

    @classmethod
    def read(cls, data: Any) -> Self:
        """Validate as a consumer: unknown fields are ignored, known ones still checked."""
        return cls.model_validate(data, context=TOLERANT)
