"""Raccrochage event contracts: the CloudEvents envelope, versioned payload models and their registry."""

from .envelope import CloudEvent, new_event, typed_envelope
from .naming import EventType, nats_subject
from .payload import Payload
from .registry import REGISTRY, Registry, UnknownEventType, event_type

__all__ = [
    "REGISTRY",
    "CloudEvent",
    "EventType",
    "Payload",
    "Registry",
    "UnknownEventType",
    "event_type",
    "nats_subject",
    "new_event",
    "typed_envelope",
]
