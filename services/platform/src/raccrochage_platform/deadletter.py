"""Dead letters: messages a consumer cannot handle go to the DEADLETTER stream with their reason.

The dead letter keeps the original payload and headers; its own headers say where it came
from (subject, stream sequence, consumer), how many deliveries it had, and why it failed. The
reason is written by us, never copied from the input, so no personal data reaches it.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from .streams import scan

DEADLETTER_STREAM = "DEADLETTER"
H_REASON = "Raccrochage-Dlq-Reason"
H_SUBJECT = "Raccrochage-Dlq-Subject"
H_STREAM = "Raccrochage-Dlq-Stream"
H_SEQ = "Raccrochage-Dlq-Stream-Seq"
H_CONSUMER = "Raccrochage-Dlq-Consumer"
H_DELIVERED = "Raccrochage-Dlq-Delivered"
H_AT = "Raccrochage-Dlq-At"
H_ORIGINAL_HEADERS = "Raccrochage-Dlq-Headers"
OWN_HEADERS = {H_REASON, H_SUBJECT, H_STREAM, H_SEQ, H_CONSUMER, H_DELIVERED, H_AT, H_ORIGINAL_HEADERS}


@dataclass(frozen=True)
class DeadLetter:
    seq: int  # sequence in the DEADLETTER stream
    consumer: str
    subject: str
    stream: str
    stream_seq: int
    delivered: int
    reason: str
    at: str
    headers: dict[str, str]
    payload: bytes

    def summary(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "consumer": self.consumer,
            "subject": self.subject,
            "stream": self.stream,
            "stream_seq": self.stream_seq,
            "delivered": self.delivered,
            "reason": self.reason,
            "at": self.at,
            "bytes": len(self.payload),
        }


async def dead_letter(js: JetStreamContext, msg: Msg, *, consumer: str, reason: str) -> None:
    """Copy `msg` to the DEADLETTER stream with its reason (waits for the PubAck)."""
    meta = msg.metadata
    original = {k: v for k, v in (msg.headers or {}).items() if k not in OWN_HEADERS}
    headers = {
        # One dead letter per (stream, sequence, consumer) even if we crash and retry.
        "Nats-Msg-Id": f"dlq:{consumer}:{meta.stream}:{meta.sequence.stream}",
        H_REASON: reason[:1000],
        H_SUBJECT: msg.subject,
        H_STREAM: meta.stream,
        H_SEQ: str(meta.sequence.stream),
        H_CONSUMER: consumer,
        H_DELIVERED: str(meta.num_delivered),
        H_AT: datetime.now(UTC).isoformat(),
        H_ORIGINAL_HEADERS: json.dumps(original),
    }
    await js.publish(f"deadletter.{consumer}", msg.data, headers=headers, stream=DEADLETTER_STREAM)


def _from_raw(seq: int, headers: dict[str, str] | None, data: bytes) -> DeadLetter:
    headers = headers or {}
    return DeadLetter(
        seq=seq,
        consumer=headers.get(H_CONSUMER, ""),
        subject=headers.get(H_SUBJECT, ""),
        stream=headers.get(H_STREAM, ""),
        stream_seq=int(headers.get(H_SEQ, "0")),
        delivered=int(headers.get(H_DELIVERED, "0")),
        reason=headers.get(H_REASON, ""),
        at=headers.get(H_AT, ""),
        headers=json.loads(headers.get(H_ORIGINAL_HEADERS, "{}")),
        payload=data or b"",
    )


async def list_dead_letters(
    js: JetStreamContext,
    *,
    consumer: str | None = None,
    limit: int = 1000,
    first: int | None = None,
    last: int | None = None,
) -> list[DeadLetter]:
    """Dead letters in stream order (of one consumer if given), at most `limit`, from stream
    sequence `first` to `last` (both included; the stream's own ends by default). Read a
    thousand per request (`streams.scan`): ops' pipeline page reads up to ten thousand."""
    letters: list[DeadLetter] = []
    if limit < 1:
        return letters
    subject = f"deadletter.{consumer}" if consumer else "deadletter.>"
    # Closed on the way out, a return mid-stream included: its consumer is removed at once.
    async with contextlib.aclosing(
        scan(js, DEADLETTER_STREAM, subject=subject, first=first, batch=min(limit, 1000))
    ) as batches:
        async for messages in batches:
            for message in messages:
                seq = message.metadata.sequence.stream
                if (last is not None and seq > last) or len(letters) == limit:
                    return letters
                letters.append(_from_raw(seq, message.headers, message.data))
    return letters


async def get_dead_letter(js: JetStreamContext, seq: int) -> DeadLetter | None:
    """The dead letter at `seq` in the DEADLETTER stream, or None (replayed or expired)."""
    try:
        raw = await js.get_msg(DEADLETTER_STREAM, seq=seq)
    except NotFoundError:
        return None
    return _from_raw(raw.seq, raw.headers, raw.data)


async def replay(js: JetStreamContext, letter: DeadLetter) -> None:
    """Publish the original message again on its subject, then drop the dead letter.

    The new `Nats-Msg-Id` gets past the broker's duplicate window; consumers that handled the
    event already skip it through their inbox.
    """
    headers = dict(letter.headers)
    original_id = headers.get("Nats-Msg-Id", f"{letter.stream}:{letter.stream_seq}")
    headers["Nats-Msg-Id"] = f"{original_id}:replay:{letter.seq}"
    await js.publish(letter.subject, letter.payload, headers=headers, stream=letter.stream or None)
    await js.delete_msg(DEADLETTER_STREAM, letter.seq)
