"""FastStream NATS broker set-up: one connection per process, its JetStream context exposed."""

from __future__ import annotations

import nats
from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.js import JetStreamContext

from .settings import nats_servers


def make_broker(nats_url: str, *, name: str) -> NatsBroker:
    """A broker on every server of `nats_url` (settings.nats_servers). It reconnects forever: a
    service outlives a NATS restart; pending work waits in the outbox."""
    return NatsBroker(
        nats_servers(nats_url), name=name, max_reconnect_attempts=-1, reconnect_time_wait=1, logger=None
    )


def jetstream(broker: NatsBroker) -> JetStreamContext:
    """The nats-py JetStream context of a connected broker (for the relay and consumers)."""
    return broker.connection.jetstream()


def connection(broker: NatsBroker) -> Client:
    return broker.connection


async def _quiet(error: Exception) -> None:
    """The caller reports the failure; nats-py's default callback would log each try's traceback."""


async def connect_once(url: str, timeout: float = 2) -> Client:
    """A connection for a one-shot command, or the error at once when NATS is down.

    nats-py reads `max_reconnect_attempts=0` as "no limit" (it retried forever here), so the
    limit is 1. One server: reconnection off, one try, then the connect error. Several (a
    cluster's nodes): each tried in turn, twice at most, then NoServersError; the connection
    then moves to another node if its own goes."""
    servers = nats_servers(url)
    return await nats.connect(
        servers,
        connect_timeout=timeout,
        allow_reconnect=len(servers) > 1,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.1,
        error_cb=_quiet,
    )
