"""The projection handlers: every event of the streams ops reads goes to its unit of work."""

from __future__ import annotations

from raccrochage_contracts.registry import Registry
from raccrochage_platform.consumer import Event, EventConsumer

from .unit_of_work import OpsUnitOfWork

# Durable consumer -> the event types it reads (its stream's prefix), as deploy/topology.toml says.
CONSUMERS: dict[str, str] = {
    "ops_reperage": "reperage.",
    "ops_psad": "psad.",
    "ops_foquale": "foquale.",
    "ops_mlds": "mlds.",
    "ops_clause": "clause.",
}


async def project(uow: OpsUnitOfWork, events: list[Event]) -> None:
    for event in events:
        uow.project(event.envelope.type, event.data)


def register(consumer: EventConsumer, registry: Registry, prefix: str) -> None:
    """A handler for every type of the stream, those no read model needs included: an event
    without a handler would be dead-lettered, and it is still counted as handled."""
    for event_type in registry:
        if event_type.startswith(prefix):
            consumer.on_batch(event_type)(project)
