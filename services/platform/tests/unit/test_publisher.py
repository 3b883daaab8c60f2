"""The publisher writes the HPUB commands nats-py's `publish` would write, byte for byte."""

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.protocol import command
from raccrochage_platform.publisher import hpub


def test_hpub_is_what_nats_py_sends() -> None:
    headers = {
        "Nats-Msg-Id": "0b9f3a6e-8d1c-5f7e-9a2b-4c6d8e0f1a2b",
        "Nats-Expected-Stream": "PSAD",
        "Content-Type": "application/cloudevents+json",
    }
    head = b"NATS/1.0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n"
    payload = '{"data":{"zap":"bordeaux-rive-droite","é":1}}'.encode()
    assert hpub("psad.case.opened.v1", "_INBOX.abc.17", headers, payload) == command.hpub_cmd(
        "psad.case.opened.v1", "_INBOX.abc.17", head, payload
    )


def test_the_nats_py_internals_the_publisher_queues_through_still_exist() -> None:
    """The direct path uses nats-py's private `_send_command`, `_flush_pending`, `_flush_queue`:
    a nats-py release that renames them must fail here, not fall back silently."""
    from nats.aio.client import Client

    client = Client()
    assert (
        callable(client._send_command) and callable(client._flush_pending) and hasattr(client, "_flush_queue")
    )
    assert hasattr(client, "is_draining") and hasattr(client, "max_payload")


def test_the_nats_py_internals_the_pull_feed_reads_still_exist() -> None:
    """`PullFeed` drains a subscription's `_pending_queue` and keeps its `_pending_size`, as
    nats-py's own fetch does."""
    from nats.aio.subscription import Subscription

    subscription = Subscription(Client(), 1, "s")
    assert hasattr(subscription, "_pending_queue") and hasattr(subscription, "_pending_size")
    # `PullFeed.ack` writes a batch's acks itself and marks each message as `Msg.ack` does
    assert Msg(Client(), reply="r")._ackd is False
