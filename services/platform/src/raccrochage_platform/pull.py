"""A durable pull consumer's messages as they arrive, from pull requests kept open ahead of need.

nats-py's `fetch` sends a pull request per batch and awaits each message of it in a task of
its own (`next_msg` under `wait_for`): about 7 % of PSAD's CPU in bulk. At a trickle, each batch
also costs a pull request and its status reply: two more wake-ups of NATS and of the service
per event, on a VM where waking a process is the dearest thing there is. A `PullFeed` keeps up
to `window` messages requested (requests with an expiry and an idle heartbeat); messages wait
in the subscription's queue, and `take` returns what is there at once, or waits for the first
one. (nats.go's `Consume` works this way.)

`pending` counts what the open requests may still deliver: a message takes one off; a status
that ends a request (408: expired; 409: consumer deleted, leadership change, too many waiting
requests...) takes off what it says was left undelivered (Nats-Pending-Messages), or the whole
request. A request lost with its connection ends silently, but an open request beats every
`heartbeat` while idle: nothing at all for two heartbeats while something is pending means the
requests are gone, and the whole window is asked again. `take` asks again whenever half the
window is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .logging import get_logger

log = get_logger(__name__)

STATUS = "Status"
PENDING_MESSAGES = "Nats-Pending-Messages"
HEARTBEAT, EXPIRED = "100", "408"
ERROR_PAUSE = 1.0  # seconds without asking after a request refused (a 409 "exceeded max waiting" …)


class PullFeed:
    """Messages of one durable pull consumer (`stream`, `durable`) on connection `nc`."""

    def __init__(
        self,
        nc: Client,
        stream: str,
        durable: str,
        *,
        window: int,
        expires: float = 30.0,
        heartbeat: float = 2.0,
        api_prefix: str = "$JS.API",
    ) -> None:
        if window < 1:
            raise ValueError("PullFeed: window must be at least 1")
        if not 0 < heartbeat <= expires / 2:
            raise ValueError("PullFeed: heartbeat must be positive and at most half of expires")
        self._nc = nc
        self._next_subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.window, self.expires, self.heartbeat = window, expires, heartbeat
        self.pending = 0
        self.requests_sent = 0
        self._sizes: dict[str, tuple[int, float]] = {}  # reply token -> (batch asked, when)
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()  # the subscription's, once started
        self._last_heard = time.monotonic()
        self._paused_until = 0.0
        self._numbers = 0
        self._prefix = ""
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._prefix = self._nc.new_inbox()
        # No callback: messages wait in the subscription's queue until `take` drains it (as
        # nats-py's own fetch does), with no task woken per message while the consumer is busy.
        self._subscription = await self._nc.subscribe(f"{self._prefix}.*")
        self._queue = self._subscription._pending_queue

    async def stop(self) -> None:
        """Stop listening. What the open requests deliver from now on comes back after ack_wait."""
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def take(self, most: int, timeout: float) -> list[Msg]:
        """Up to `most` messages: those already here at once, else the first to arrive within
        `timeout` seconds with whatever came with it; [] if none came."""
        taken: list[Msg] = []
        deadline = time.monotonic() + timeout
        queue = self._queue
        while True:
            while len(taken) < most and not queue.empty():
                self._read(self._dequeued(queue.get_nowait()), taken)
            if taken:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            await self._ask()
            if not queue.empty():
                continue
            try:
                async with asyncio.timeout(min(left, self.heartbeat)):  # no task, unlike wait_for
                    self._read(self._dequeued(await queue.get()), taken)
            except TimeoutError:
                pass
        await self._ask()
        return taken

    async def ack(self, messages: Sequence[Msg]) -> None:
        """Acknowledge messages handled together: their acks written as one command on the
        connection, as nats-py's `publish` queues each (1.9 -> 0.15 µs a message). Connection
        down or draining, or a message `Msg.ack` would refuse (not from JetStream, acked
        already): `Msg.ack` itself, with its errors and nats-py's reconnect buffer."""
        if not messages:
            return
        nc = self._nc
        if not (nc.is_connected and not nc.is_draining) or any(not m.reply or m._ackd for m in messages):
            for msg in messages:
                await msg.ack()
            return
        command = b"".join(b"PUB %s 0\r\n\r\n" % msg.reply.encode() for msg in messages)
        for msg in messages:
            msg._ackd = True
        nc.stats["out_msgs"] += len(messages)  # as `publish` counts them
        await nc._send_command(command)
        if nc._flush_queue is not None and nc._flush_queue.empty():
            await nc._flush_pending()  # what `publish` does after queueing its command

    def _dequeued(self, msg: Msg) -> Msg:
        self._subscription._pending_size -= len(
            msg.data
        )  # nats-py's slow-consumer count, as its fetch keeps it
        return msg

    async def _ask(self) -> None:
        """Ask for the free part of the window once it is half the window or more."""
        now = time.monotonic()
        if self.pending and now - self._last_heard > 2 * self.heartbeat:
            log.warning("pull_requests_lost", subject=self._next_subject, pending=self.pending)
            self.pending, self._last_heard = 0, now  # gone with a connection: ask again
            self._sizes.clear()
        free = self.window - self.pending - self._queue.qsize()
        if free < max(1, self.window // 2) or now < self._paused_until:
            return
        self._numbers += 1
        token = str(self._numbers)
        request = {
            "batch": free,
            "expires": int(self.expires * 1e9),
            "idle_heartbeat": int(self.heartbeat * 1e9),
        }
        await self._nc.publish(
            self._next_subject, json.dumps(request).encode(), reply=f"{self._prefix}.{token}"
        )
        if not self.pending:
            self._last_heard = now  # the silence is counted from the first request
        self.pending += free
        self.requests_sent += 1
        self._sizes[token] = (free, now)
        expired = now - self.expires - 2 * self.heartbeat  # served in full: no status ever comes
        for old in [t for t, (_, sent) in self._sizes.items() if sent < expired]:
            del self._sizes[old]

    def _read(self, msg: Msg, taken: list[Msg]) -> None:
        """A message for `taken`, or a status for the accounting."""
        self._last_heard = time.monotonic()
        headers = msg.headers
        status = headers.get(STATUS) if headers else None
        if status is None:
            taken.append(msg)
            if self.pending:
                self.pending -= 1
        elif status == HEARTBEAT:
            return
        else:  # this request delivers no more
            size, _ = self._sizes.pop(msg.subject[len(self._prefix) + 1 :], (0, 0.0))
            try:
                undelivered = int(headers[PENDING_MESSAGES])
            except (KeyError, ValueError):
                undelivered = size
            self.pending = max(0, self.pending - undelivered)
            if status != EXPIRED:
                self._paused_until = time.monotonic() + ERROR_PAUSE
                log.warning(
                    "pull_request_ended",
                    subject=self._next_subject,
                    status=status,
                    description=headers.get("Description", ""),
                )
