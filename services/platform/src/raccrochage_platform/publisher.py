"""Publishing to JetStream and waiting for the PubAcks, through nats-py's `publish_async`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import nats.errors
from nats.js.errors import APIError

PUBLISH_ERRORS = (nats.errors.Error, TimeoutError, OSError)
NO_PUBACK = "TimeoutError: no PubAck"
# nats-py leaves the `publish_async` future of a message JetStream refused pending forever (its
# error reply is raised inside nats-py's reply handler instead of set on the future:
# nats-io/nats.py#985). Workaround on the public API: once no PubAck has come for this long,
# the messages still waiting are published again with `js.publish` (request/reply, which raises
# JetStream's error); their `Nats-Msg-Id` makes one stored meanwhile a duplicate, not a second copy.
ASK_AGAIN_AFTER = 0.25


def _reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return NO_PUBACK
    if isinstance(error, APIError):  # JetStream's refusal, as it words it
        return f"{type(error).__name__}: {error.description} (JetStream error {error.err_code})"
    return f"{type(error).__name__}: {error}"


async def publish_all(
    js, messages: Sequence[tuple[str, bytes, str, dict[str, str]]], timeout: float
) -> list[str]:
    """Publish (subject, payload, expected stream, headers) messages at once and wait at most
    `timeout` seconds for their PubAcks. Per message: "" once JetStream stored it (a duplicate
    within its window included), else why not (a refusal, a send that failed, no PubAck in time).

    A refusal (no stream, wrong expected stream, stream full) comes back with JetStream's reason
    well before `timeout` for messages with a `Nats-Msg-Id` (see ASK_AGAIN_AFTER); a PubAck that
    never comes is waited out, and its future cancelled so that its slot in nats-py's window of
    pending publishes is given back.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    outcomes: list[str] = [""] * len(messages)
    futures: dict[asyncio.Future, int] = {}
    for index, (subject, payload, stream, headers) in enumerate(messages):
        try:
            future = await js.publish_async(subject, payload, stream=stream, headers=dict(headers))
        except PUBLISH_ERRORS as error:
            outcomes[index] = _reason(error)
            continue
        futures[future] = index
    waiting = set(futures)
    while waiting and (left := deadline - loop.time()) > 0:
        done, waiting = await asyncio.wait(waiting, timeout=min(left, ASK_AGAIN_AFTER))
        if not done:
            break  # none came in a while: the rest are refusals nats-py dropped, or slow
    answers: dict[int, str] = {}
    if waiting:
        asked = sorted(futures[future] for future in waiting if "Nats-Msg-Id" in messages[futures[future]][3])
        rest = [future for future in waiting if "Nats-Msg-Id" not in messages[futures[future]][3]]
        outcomes_of_asked, _ = await asyncio.gather(
            asyncio.gather(*(_ask_again(js, messages[index], deadline - loop.time()) for index in asked)),
            asyncio.wait(rest, timeout=max(0.0, deadline - loop.time())) if rest else asyncio.sleep(0),
        )
        answers = dict(zip(asked, outcomes_of_asked, strict=True))
    for future, index in futures.items():
        if index in answers:
            future.cancel()
            outcomes[index] = answers[index]
        elif not future.done():
            future.cancel()
            outcomes[index] = NO_PUBACK
        elif future.cancelled():
            outcomes[index] = NO_PUBACK
        elif (error := future.exception()) is not None:
            outcomes[index] = _reason(error)
    return outcomes


async def _ask_again(js, message: tuple[str, bytes, str, dict[str, str]], timeout: float) -> str:
    subject, payload, stream, headers = message
    if timeout <= 0:
        return NO_PUBACK
    try:
        await js.publish(subject, payload, timeout=timeout, stream=stream, headers=dict(headers))
    except PUBLISH_ERRORS as error:
        return _reason(error)
    return ""
