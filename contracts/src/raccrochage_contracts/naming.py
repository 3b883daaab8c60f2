"""The naming rule for event types: `<service>.<entity>.<verb>.v<N>`, which is also the NATS subject."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SEGMENT = r"[a-z][a-z0-9_]*"
TYPE_PATTERN = re.compile(
    rf"^(?P<service>{_SEGMENT})\.(?P<entity>{_SEGMENT})\.(?P<verb>{_SEGMENT})\.v(?P<version>[1-9][0-9]*)$"
)
# The same rule without named groups, for JSON Schema (ECMA-262 regexes) and pydantic-core.
TYPE_RULE = rf"^{_SEGMENT}\.{_SEGMENT}\.{_SEGMENT}\.v[1-9][0-9]*$"
PARTNER_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")


class InvalidEventType(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class EventType:
    """A parsed event type name."""

    service: str
    entity: str
    verb: str
    version: int

    @classmethod
    def parse(cls, name: str) -> EventType:
        match = TYPE_PATTERN.match(name)
        if match is None:
            raise InvalidEventType(
                f"event type {name!r} does not follow <service>.<entity>.<verb>.v<N> "
                "(lower-case segments, version from 1)"
            )
        return cls(match["service"], match["entity"], match["verb"], int(match["version"]))

    @property
    def name(self) -> str:
        return f"{self.service}.{self.entity}.{self.verb}.v{self.version}"

    @property
    def family(self) -> str:
        """The type without its version: `psad.case.opened`."""
        return f"{self.service}.{self.entity}.{self.verb}"

    def __str__(self) -> str:
        return self.name


def nats_subject(event_type: str, partner_id: str | None = None) -> str:
    """The NATS subject an event of this type travels on.

    Service events use their type as subject. Partner events (`partner.<entity>.<verb>.vN`)
    travel on `partner.<partner_id>.<entity>.<verb>.vN`: the subject, which the partner's NATS
    credentials restrict, names the partner, never the payload.
    """
    parsed = EventType.parse(event_type)
    if parsed.service != "partner":
        return parsed.name
    if partner_id is None or not PARTNER_ID_PATTERN.match(partner_id):
        raise InvalidEventType(f"partner event {event_type!r} needs a valid partner id, got {partner_id!r}")
    return f"partner.{partner_id}.{parsed.entity}.{parsed.verb}.v{parsed.version}"


def type_from_subject(subject: str) -> tuple[str, str | None]:
    """Inverse of `nats_subject`: the event type and, for partner subjects, the partner id."""
    parts = subject.split(".")
    if len(parts) == 5 and parts[0] == "partner":
        return f"partner.{parts[2]}.{parts[3]}.{parts[4]}", parts[1]
    return subject, None
