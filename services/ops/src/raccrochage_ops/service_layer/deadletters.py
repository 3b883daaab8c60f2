"""Dead letters: list and filter them, look at one, replay one or all of a reason, with an audit.

A replay publishes the original message again on its subject (raccrochage_platform.deadletter):
every consumer of that subject receives it, and those that handled it already skip it through
their inbox. The audit row is written in the same transaction that is committed once the replay
is published: no replay without its row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import ValidationError
from raccrochage_contracts import CloudEvent
from raccrochage_contracts.registry import Registry, UnknownEventType
from raccrochage_platform.auth import Principal
from raccrochage_platform.deadletter import (
    DEADLETTER_STREAM,
    DeadLetter,
    get_dead_letter,
    list_dead_letters,
    replay,
)
from raccrochage_platform.topology import Topology

from ..domain.deadletters import payload_visibility, reason_group, reason_kind
from .unit_of_work import OpsUnitOfWork

# A list reads at most the WINDOW most recent dead letters (stream sequences) and shows at most
# LIMIT of them; older ones are a page further (`before`). Replaying a reason reads them all,
# window by window.
WINDOW = 10_000
LIMIT = 500


class DeadLetterNotFound(LookupError):
    pass


def service_of(topology: Topology, letter: DeadLetter) -> str:
    definition = topology.consumers.get(letter.consumer)
    return definition.service if definition else "?"


def summary(topology: Topology, letter: DeadLetter) -> dict[str, Any]:
    return {
        **letter.summary(),
        "service": service_of(topology, letter),
        "kind": reason_kind(letter.reason),
        "reason_group": reason_group(letter.reason),
    }


@dataclass(frozen=True)
class DeadLetterPage:
    """Dead letters of one window of the DEADLETTER stream, newest first."""

    letters: list[DeadLetter]
    # The reasons (grouped) of every dead letter read, for the page's filter.
    reasons: list[str]
    # `before` for the next, older page; None when nothing older is left unread.
    older: int | None

    @property
    def truncated(self) -> bool:
        return self.older is not None


def _consumers(topology: Topology, service: str | None) -> list[str | None]:
    """Whose dead letters to read: a service's consumers (each its own subject), or every one."""
    if not service:
        return [None]
    return sorted(name for name, definition in topology.consumers.items() if definition.service == service)


async def _read(
    js: JetStreamContext, topology: Topology, service: str | None, first: int, last: int
) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    for consumer in _consumers(topology, service):
        letters += await list_dead_letters(
            js, consumer=consumer, first=first, last=last, limit=last - first + 1
        )
    return letters


async def search(
    js: JetStreamContext,
    topology: Topology,
    *,
    service: str | None = None,
    reason: str | None = None,
    before: int | None = None,
    window: int = WINDOW,
    limit: int = LIMIT,
) -> DeadLetterPage:
    """Dead letters of a service (read by its consumers' subjects) and of a reason (grouped:
    delivery counts aside), among the `window` most recent stream sequences before `before`;
    at most `limit` of them, the newest."""
    try:
        state = (await js.stream_info(DEADLETTER_STREAM)).state
    except NotFoundError:
        return DeadLetterPage([], [], None)
    last = state.last_seq if before is None else min(before - 1, state.last_seq)
    first = max(state.first_seq, last - window + 1)
    if state.messages == 0 or last < first:
        return DeadLetterPage([], [], None)
    letters = sorted(await _read(js, topology, service, first, last), key=lambda d: d.seq, reverse=True)
    chosen = [letter for letter in letters if not reason or reason_group(letter.reason) == reason]
    older = first if first > state.first_seq else None
    if len(chosen) > limit:
        chosen = chosen[:limit]
        older = chosen[-1].seq
    return DeadLetterPage(chosen, sorted({reason_group(letter.reason) for letter in letters}), older)


def _payload(letter: DeadLetter, registry: Registry) -> dict[str, Any]:
    """The payload only when the event type carries nothing about a person and reads strictly."""
    try:
        envelope = CloudEvent.from_json(letter.payload)
        model = registry.model(envelope.type)
    except (ValidationError, ValueError, UnknownEventType):
        return {"shown": False, "why": payload_visibility(None, False).why, "payload": None}
    try:
        model.model_validate(envelope.data, strict=False, extra="forbid")
        valid = True
    except ValidationError:
        valid = False
    visibility = payload_visibility(frozenset(model.model_fields), valid)
    return {
        "shown": visibility.shown,
        "why": visibility.why,
        # Declared envelope fields only: the envelope lets unknown attributes through.
        "payload": envelope.model_dump(mode="json", include=set(CloudEvent.model_fields))
        if visibility.shown
        else None,
    }


async def view(js: JetStreamContext, topology: Topology, registry: Registry, seq: int) -> dict[str, Any]:
    letter = await get_dead_letter(js, seq)
    if letter is None:
        raise DeadLetterNotFound(f"no dead letter {seq} (replayed, or past the stream's max age)")
    return {**summary(topology, letter), "headers": letter.headers, **_payload(letter, registry)}


async def replay_letters(
    uow: OpsUnitOfWork, js: JetStreamContext, letters: list[DeadLetter], principal: Principal
) -> int:
    """Replay `letters`, each with its audit row, one transaction per letter."""
    done = 0
    for letter in letters:
        async with uow:
            await uow.projections.audit_replay(
                replayed_by=principal.sub,
                role=principal.role.value,
                deadletter_seq=letter.seq,
                consumer=letter.consumer,
                subject=letter.subject,
                stream=letter.stream,
                stream_seq=letter.stream_seq,
                reason=letter.reason[:1000],
            )
            await replay(js, letter)
            await uow.commit()
        done += 1
    return done


async def replay_one(uow: OpsUnitOfWork, js: JetStreamContext, seq: int, principal: Principal) -> int:
    letter = await get_dead_letter(js, seq)
    if letter is None:
        raise DeadLetterNotFound(f"no dead letter {seq} (replayed already, or past the stream's max age)")
    return await replay_letters(uow, js, [letter], principal)


async def replay_reason(
    uow: OpsUnitOfWork,
    js: JetStreamContext,
    topology: Topology,
    reason: str,
    principal: Principal,
    service: str | None = None,
) -> int:
    """Replay every dead letter of a reason, the whole stream read window by window, oldest first."""
    state = (await js.stream_info(DEADLETTER_STREAM)).state
    done = 0
    for first in range(state.first_seq, state.last_seq + 1, WINDOW):
        letters = await _read(js, topology, service, first, min(first + WINDOW - 1, state.last_seq))
        chosen = sorted((d for d in letters if reason_group(d.reason) == reason), key=lambda d: d.seq)
        done += await replay_letters(uow, js, chosen, principal)
    if not done:
        raise DeadLetterNotFound(f"no dead letter with reason {reason!r}")
    return done
