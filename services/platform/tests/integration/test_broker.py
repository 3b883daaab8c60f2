"""A NATS_URL naming several servers (a cluster's nodes): a service or a command reaches NATS
through any of them, the first named down included."""

from __future__ import annotations

import nats
import pytest
from raccrochage_platform.broker import connect_once, make_broker
from raccrochage_rig.ports import free_port
from raccrochage_rig.testing.servers import Servers


def with_a_dead_node_first(servers: Servers) -> str:
    return f"nats://127.0.0.1:{free_port()}, {servers.nats_url}"


async def test_a_service_connects_through_the_node_that_answers(servers: Servers) -> None:
    broker = make_broker(with_a_dead_node_first(servers), name="sample")
    await broker.connect()
    try:
        assert broker.connection.is_connected
        assert broker.connection.connected_url.port == int(servers.nats_url.rsplit(":", 1)[1])
    finally:
        await broker.stop()


async def test_a_command_connects_through_the_node_that_answers_or_fails_at_once(servers: Servers) -> None:
    nc = await connect_once(with_a_dead_node_first(servers))
    try:
        await nc.flush(timeout=2)
    finally:
        await nc.close()
    dead = ",".join(f"nats://127.0.0.1:{free_port()}" for _ in range(2))
    with pytest.raises(nats.errors.NoServersError):
        await connect_once(dead, timeout=1)
