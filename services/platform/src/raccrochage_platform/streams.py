"""Reading a JetStream stream whole, or from a sequence on, `batch` messages per request.

`scan` is an ephemeral pull consumer without acks (nothing to acknowledge, nothing kept once it
goes), removed after, and dropped by the server within a minute if the process dies mid-scan.
A pull consumer, not an ordered push one: a user that may answer no flow control (`$JS.FC.>`,
the vault's) reads with it too, and a fetch brings a thousand messages where `get_msg` brings
one."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError


async def scan(
    js: JetStreamContext,
    stream: str,
    *,
    subject: str | None = None,
    first: int | None = None,
    batch: int = 1000,
    fetch_timeout: float = 5.0,
) -> AsyncIterator[list[Msg]]:
    """The messages of `stream` (of `subject` only, wildcards allowed, if given), oldest first,
    from stream sequence `first` if given, `batch` at a time. Nothing when there are none or
    the stream is not declared. A caller that stops before the end closes it
    (`contextlib.aclosing`), which removes its consumer at once."""
    try:
        state = (await js.stream_info(stream, subjects_filter=subject)).state
    except NotFoundError:  # not declared here: it holds nothing
        return
    if state.messages == 0 or (subject is not None and not state.subjects):
        return
    if first is not None and first > state.last_seq:
        return
    name = f"scan_{uuid.uuid4().hex}"
    start = (
        {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": first}
        if first is not None and first > state.first_seq
        else {"deliver_policy": DeliverPolicy.ALL}
    )
    await js.add_consumer(
        stream,
        ConsumerConfig(
            name=name,
            ack_policy=AckPolicy.NONE,
            filter_subject=subject,
            mem_storage=True,
            inactive_threshold=60,  # the server drops it if this process dies mid-scan
            **start,
        ),
    )
    subscription = await js.pull_subscribe_bind(consumer=name, stream=stream)
    try:
        while True:
            try:
                messages = await subscription.fetch(batch, timeout=fetch_timeout)
            except TimeoutError:  # nats-py's fetch timeouts subclass it
                return  # nothing left (the stream's last messages aged out meanwhile)
            yield messages
            if messages[-1].metadata.num_pending == 0:
                return
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, name)
