"""publish_all against a real nats-server: every PubAck's outcome, refusals without waiting."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client
from raccrochage_platform.publisher import NO_PUBACK, publish_all

pytestmark = pytest.mark.asyncio(loop_scope="session")
SUBJECT = "sample.counter.incremented.v1"


async def test_each_message_gets_its_own_outcome(nc: Client, sample_stream: str, unique: str) -> None:
    js = nc.jetstream()
    outcomes = await asyncio.wait_for(  # a guard: refusals must not wait out the 60 s
        publish_all(
            js,
            [
                (SUBJECT, b"{}", sample_stream, {"Nats-Msg-Id": f"{unique}-1"}),
                (SUBJECT, b"{}", sample_stream, {"Nats-Msg-Id": f"{unique}-1"}),  # a duplicate: acked
                (SUBJECT, b"{}", f"ANOTHER_{unique}", {"Nats-Msg-Id": f"{unique}-2"}),
                ("nowhere.at.all", b"{}", sample_stream, {"Nats-Msg-Id": f"{unique}-3"}),
                (SUBJECT, b"{}", sample_stream, {"Nats-Msg-Id": f"{unique}-4"}),
            ],
            timeout=60,
        ),
        20,
    )
    assert outcomes[:2] == ["", ""] and outcomes[4] == ""
    assert "expected stream does not match" in outcomes[2] and "10060" in outcomes[2]
    assert outcomes[3].startswith("NoStreamResponseError")
    info = await js.stream_info(sample_stream)
    assert info.state.messages == 2
    await asyncio.sleep(0)  # nats-py frees a cancelled future's slot in its done callback
    assert js.publish_async_pending() == 0  # no future left behind in nats-py's window


async def test_refusals_among_many_come_back_with_their_reason(
    nc: Client, sample_stream: str, unique: str
) -> None:
    js = nc.jetstream()
    messages = [
        (SUBJECT, b"{}", sample_stream if n % 10 else f"ANOTHER_{unique}", {"Nats-Msg-Id": f"{unique}-{n}"})
        for n in range(300)
    ]
    outcomes = await asyncio.wait_for(publish_all(js, messages, timeout=60), 20)
    assert [n for n, outcome in enumerate(outcomes) if outcome] == list(range(0, 300, 10))
    assert all("expected stream does not match" in outcomes[n] for n in range(0, 300, 10))
    assert (await js.stream_info(sample_stream)).state.messages == 270
    await asyncio.sleep(0)  # nats-py frees a cancelled future's slot in its done callback
    assert js.publish_async_pending() == 0


async def test_a_puback_that_never_comes_is_waited_out(nc: Client, unique: str) -> None:
    """A subscriber that never answers: someone is there (no 'no responders'), no PubAck."""
    subject = f"silent.{unique}"
    subscription = await nc.subscribe(subject)
    js = nc.jetstream()
    try:
        outcomes = await publish_all(
            js,
            [
                (subject, b"{}", "ANY", {"Nats-Msg-Id": f"{unique}-1"}),
                (subject, b"{}", "ANY", {}),  # without a message id: not published again
            ],
            timeout=1.0,
        )
    finally:
        await subscription.unsubscribe()
    assert outcomes == [NO_PUBACK, NO_PUBACK]
    await asyncio.sleep(0)  # nats-py frees a cancelled future's slot in its done callback
    assert js.publish_async_pending() == 0
