"""FastStream NATS broker set-up: one connection per process, its JetStream context exposed."""

from __future__ import annotations

from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.js import JetStreamContext


def make_broker(nats_url: str, *, name: str) -> NatsBroker:
    # Reconnect forever: a service outlives a NATS restart; pending work waits in the outbox.
    return NatsBroker(nats_url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=1, logger=None)


def jetstream(broker: NatsBroker) -> JetStreamContext:
    """The nats-py JetStream context of a connected broker (for the relay and consumers)."""
    return broker.connection.jetstream()


def connection(broker: NatsBroker) -> Client:
    return broker.connection
