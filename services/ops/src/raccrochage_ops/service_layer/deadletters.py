"""Dead letters: list and filter them, look at one, replay one or all of a reason, with an audit.

A replay publishes the original message again on its subject (raccrochage_platform.deadletter):
every consumer of that subject receives it, and those that handled it already skip it through
their inbox. The audit row is written in the same transaction that is committed once the replay
is published: no replay without its row.
"""

from __future__ import annotations

from typing import Any

from nats.js import JetStreamContext
from pydantic import ValidationError
from raccrochage_contracts import CloudEvent
from raccrochage_contracts.registry import Registry, UnknownEventType
from raccrochage_platform.auth import Principal
from raccrochage_platform.deadletter import DeadLetter, get_dead_letter, list_dead_letters, replay
from raccrochage_platform.topology import Topology

from ..domain.deadletters import payload_visibility, reason_group, reason_kind
from .unit_of_work import OpsUnitOfWork


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


async def search(
    js: JetStreamContext,
    topology: Topology,
    *,
    service: str | None = None,
    reason: str | None = None,
    limit: int = 500,
) -> list[DeadLetter]:
    """Dead letters of a service (its consumers) and of a reason (grouped: delivery counts aside)."""
    letters = await list_dead_letters(js, limit=100_000)
    chosen = [
        letter
        for letter in letters
        if (not service or service_of(topology, letter) == service)
        and (not reason or reason_group(letter.reason) == reason)
    ]
    return chosen[:limit]


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
    letters = await search(js, topology, service=service, reason=reason, limit=100_000)
    if not letters:
        raise DeadLetterNotFound(f"no dead letter with reason {reason!r}")
    return await replay_letters(uow, js, letters, principal)
