"""A sample event type in a registry of its own, for tests of the plumbing (not a contract)."""

from __future__ import annotations

from raccrochage_contracts import Payload, Registry, event_type

SAMPLE_REGISTRY = Registry()


@event_type("sample.counter.incremented.v1", registry=SAMPLE_REGISTRY)
class CounterIncremented(Payload):
    counter: str
    by: int = 1


@event_type("sample.counter.reset.v1", registry=SAMPLE_REGISTRY)
class CounterReset(Payload):
    counter: str


@event_type("partner.seats.reported.v1", registry=SAMPLE_REGISTRY)
class CounterReported(Payload):
    counter: str
