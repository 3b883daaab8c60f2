"""Erased youths' messages deleted from a JetStream stream: one scan of the stream for every
youth_id of a sweep, then JetStream's message delete of each match (docs/privacy.md "The streams").

The scan is the platform's (`raccrochage_platform.streams.scan`): an ephemeral pull consumer
without acks, fetching `batch` messages at a time from the stream's first.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from raccrochage_platform.streams import scan

# A youth_id is 64 lowercase hex digits (raccrochage_platform.privacy.YOUTH_ID).
_HEX = "0-9a-f"


def youths_named(data: bytes, headers: Mapping[str, str] | None, youth_ids: frozenset[str]) -> set[str]:
    """The youth_ids of `youth_ids` that this message names, exactly.

    A JSON payload names a youth when one of its strings (a value or a key, at any depth: the
    envelope's `subject`, `data.youth_id`, a list of proposals) is that youth_id, whole: a
    longer string holding it does not count. A payload that is not JSON (a dead letter kept
    because it did not parse) and a header name a youth when the youth_id stands alone, not
    inside a longer run of hex digits.

    The bytes are looked at first, so that a message naming no erased youth (almost all) is not
    parsed: JSON never needs to escape a hex digit and our producers' encoders (pydantic, json)
    never do, so a payload naming a youth holds its youth_id's bytes as they are."""
    in_payload = {youth_id for youth_id in youth_ids if youth_id.encode() in data}
    named: set[str] = set()
    if in_payload:
        try:
            document = json.loads(data)
        except ValueError:  # not JSON, or not UTF-8
            text = data.decode("utf-8", errors="replace")
            named |= {youth_id for youth_id in in_payload if _stands_alone(youth_id, text)}
        else:
            named |= in_payload & set(_strings(document))
    for value in (headers or {}).values():
        named |= {youth_id for youth_id in youth_ids if youth_id in value and _stands_alone(youth_id, value)}
    return named


def _stands_alone(youth_id: str, text: str) -> bool:
    return re.search(rf"(?<![{_HEX}]){youth_id}(?![{_HEX}])", text) is not None


def _strings(document: object) -> Iterator[str]:
    """Every string of a JSON document, keys included, without recursion (any depth)."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            yield from node.keys()
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


class JetStreamSweeper:
    """Deletes from a stream the messages that name any of the youths (`youths_named`)."""

    def __init__(self, js: JetStreamContext, *, batch: int = 1000, fetch_timeout: float = 5.0) -> None:
        self.js = js
        self.batch = batch
        self.fetch_timeout = fetch_timeout

    async def sweep(self, stream: str, youth_ids: frozenset[str]) -> dict[str, int]:
        """Scan `stream` once from its first message; returns the messages deleted per youth_id
        (a message naming two erased youths counts for both)."""
        matches = await self._matches(stream, youth_ids)
        deleted: Counter[str] = Counter()
        for seq, named in matches:
            with contextlib.suppress(NotFoundError):  # gone meanwhile: aged out, or another sweep
                await self.js.delete_msg(stream, seq)
            deleted.update(named)
        return dict(deleted)

    async def _matches(self, stream: str, youth_ids: frozenset[str]) -> list[tuple[int, set[str]]]:
        if not youth_ids:
            return []
        matches: list[tuple[int, set[str]]] = []
        async for messages in scan(self.js, stream, batch=self.batch, fetch_timeout=self.fetch_timeout):
            for message in messages:
                named = youths_named(message.data or b"", message.headers, youth_ids)
                if named:
                    matches.append((message.metadata.sequence.stream, named))
        return matches
