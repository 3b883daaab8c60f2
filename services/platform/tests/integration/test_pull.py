"""PullFeed against a real nats-server: messages as they arrive, requests renewed, lost, refused."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from raccrochage_platform.pull import PullFeed
from raccrochage_platform.testing.servers import Servers

pytestmark = pytest.mark.asyncio(loop_scope="session")
SUBJECT = "sample.counter.incremented.v1"


async def durable(nc: Client, stream: str, name: str, **config) -> str:
    await nc.jetstream().add_consumer(
        stream, ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT, **config)
    )
    return name


async def take_one(feed: PullFeed, timeout: float = 5.0) -> bytes:
    taken = await feed.take(10, timeout)
    assert len(taken) == 1
    await taken[0].ack()
    return taken[0].data


async def test_a_trickle_is_taken_as_it_comes_without_a_pull_request_per_batch(
    nc: Client, sample_stream: str
) -> None:
    feed = PullFeed(nc, sample_stream, await durable(nc, sample_stream, "trickle"), window=100)
    await feed.start()
    try:
        assert await feed.take(10, 0.2) == []  # nothing yet: asks for the window, waits, returns empty
        for n in range(5):
            await nc.jetstream().publish(SUBJECT, str(n).encode())
            started = time.monotonic()
            assert await take_one(feed) == str(n).encode()
            assert time.monotonic() - started < 2.0  # not a fetch timeout's worth
        assert feed.requests_sent == 1 and feed.pending == 95
        for _ in range(60):  # what is here is taken at once, up to `most`
            await nc.jetstream().publish(SUBJECT, b"x")
        taken: list = []
        while len(taken) < 60:
            batch = await feed.take(25, 5.0)
            assert 0 < len(batch) <= 25
            taken += batch
        assert feed.requests_sent == 2  # half the window was free again once: one more request
    finally:
        await feed.stop()


async def test_an_expired_request_is_renewed(nc: Client, sample_stream: str) -> None:
    feed = PullFeed(
        nc, sample_stream, await durable(nc, sample_stream, "renewed"), window=10, expires=0.6, heartbeat=0.2
    )
    await feed.start()
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # requests expire (408) and are asked again
            assert await feed.take(10, 0.3) == []
        assert feed.requests_sent >= 3 and feed.pending <= feed.window
        await nc.jetstream().publish(SUBJECT, b"after")
        assert await take_one(feed) == b"after"
    finally:
        await feed.stop()


async def test_requests_lost_with_the_connection_are_asked_again(
    servers: Servers, sample_stream: str
) -> None:
    client = await nats.connect(servers.nats_url, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
    feed = PullFeed(
        client, sample_stream, await durable(client, sample_stream, "lost"), window=10, heartbeat=0.2
    )
    await feed.start()
    try:
        assert await feed.take(10, 0.2) == [] and feed.requests_sent == 1
        client._transport.close()  # the server drops the connection's pull requests; nats-py reconnects
        deadline = time.monotonic() + 10
        while not client.is_connected or client.stats["reconnects"] == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await nc_publish(servers, b"after reconnect")
        # through the old request (the server kept it, and the inbox has interest again) or a new one
        assert await take_one(feed, timeout=5.0) == b"after reconnect"
    finally:
        await feed.stop()
        await client.close()


async def test_requests_silent_for_two_heartbeats_are_forgotten_and_asked_again(
    nc: Client, sample_stream: str
) -> None:
    feed = PullFeed(nc, sample_stream, await durable(nc, sample_stream, "silent"), window=10, heartbeat=0.2)
    await feed.start()
    try:
        feed.pending, feed._last_heard = 10, time.monotonic() - 1  # asked, then gone: no beat, no status
        await nc.jetstream().publish(SUBJECT, b"asked again")
        assert await take_one(feed) == b"asked again"
        assert feed.requests_sent == 1
    finally:
        await feed.stop()


async def nc_publish(servers: Servers, payload: bytes) -> None:
    other = await nats.connect(servers.nats_url)
    try:
        await other.jetstream().publish(SUBJECT, payload)
    finally:
        await other.close()


async def test_a_crowded_consumer_is_not_asked_in_a_loop(nc: Client, sample_stream: str) -> None:
    """One waiting request allowed: the second feed's is refused (a 409 from nats-server 2.9,
    dropped silently by 2.15); either way it does not ask again and again, and the first works."""
    name = await durable(nc, sample_stream, "crowded", max_waiting=1)
    first, second = (PullFeed(nc, sample_stream, name, window=10, heartbeat=0.5) for _ in range(2))
    await first.start()
    await second.start()
    try:
        assert await first.take(10, 0.2) == []
        assert await second.take(10, 1.5) == []
        assert second.requests_sent <= 2 and second.pending <= second.window
        await nc.jetstream().publish(SUBJECT, b"to the first")
        assert await take_one(first) == b"to the first"
    finally:
        await first.stop()
        await second.stop()


@pytest.mark.parametrize(
    ("headers", "pending_after"),
    [
        ({"Status": "408", "Description": "Request Timeout", "Nats-Pending-Messages": "7"}, 3),
        ({"Status": "409", "Description": "Exceeded MaxWaiting"}, 6),  # no count: the whole request (4)
        ({"Status": "409", "Description": "Consumer Deleted", "Nats-Pending-Messages": "40"}, 0),
        ({"Status": "100", "Description": "Idle Heartbeat"}, 10),
    ],
)
async def test_a_status_ends_its_request_and_frees_what_it_left(headers: dict, pending_after: int) -> None:
    feed = PullFeed(Client(), "S", "d", window=100)
    feed._prefix, feed.pending, feed._sizes = "_INBOX.x", 10, {"2": (4, time.monotonic())}
    taken: list = []
    feed._read(Msg(Client(), subject="_INBOX.x.2", headers=headers), taken)
    assert feed.pending == pending_after and taken == []
    assert feed._paused_until > 0 if headers["Status"] == "409" else feed._paused_until == 0


async def test_a_window_and_heartbeat_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        PullFeed(Client(), "S", "d", window=0)
    with pytest.raises(ValueError, match="heartbeat"):
        PullFeed(Client(), "S", "d", window=10, expires=1.0, heartbeat=0.8)


async def test_a_batch_is_acked_in_one_command_and_jetstream_counts_every_ack(
    nc: Client, sample_stream: str
) -> None:
    name = await durable(nc, sample_stream, "acked_together", ack_wait=30)
    feed = PullFeed(nc, sample_stream, name, window=100)
    await feed.start()
    try:
        for n in range(20):
            await nc.jetstream().publish(SUBJECT, str(n).encode())
        taken: list[Msg] = []
        while len(taken) < 20:
            taken += await feed.take(20, 5.0)
        sent, commands = nc.stats["out_msgs"], []
        send_command = nc._send_command

        async def spy(cmd: bytes, priority: bool = False) -> None:
            commands.append(cmd)
            await send_command(cmd, priority)

        nc._send_command = spy
        try:
            await feed.ack(taken[:15])
        finally:
            del nc._send_command  # the class's method again
        assert len(commands) == 1 and commands[0].count(b"PUB $JS.ACK.") == 15  # one command, not 15
        assert nc.stats["out_msgs"] == sent + 15 and all(m._ackd for m in taken[:15])
        with pytest.raises(nats.errors.MsgAlreadyAckdError):  # what `Msg.ack` refuses, refused
            await feed.ack(taken[10:20])
        await feed.ack(taken[15:])
        deadline = time.monotonic() + 5
        while (
            info := await nc.jetstream().consumer_info(sample_stream, name)
        ).num_ack_pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert info.num_ack_pending == 0 and info.num_redelivered == 0
    finally:
        await feed.stop()


async def test_acks_on_a_closed_connection_fail_as_msg_ack_fails(
    servers: Servers, sample_stream: str
) -> None:
    client = await nats.connect(servers.nats_url)
    feed = PullFeed(client, sample_stream, await durable(client, sample_stream, "acked_closed"), window=10)
    await feed.start()
    await client.jetstream().publish(SUBJECT, b"x")
    taken = await feed.take(10, 5.0)
    await client.close()
    with pytest.raises(nats.errors.ConnectionClosedError):  # nats-py's own error, not a silent write
        await feed.ack(taken)
    assert not taken[0]._ackd
