"""The DPO's requests to the identity vault: erase a youth everywhere, and show what is held.

Only the vault can turn an INE into a youth_id (the keyed hash), so both start here. An
erasure deletes the vault's own rows and asks every service by one event (youth_id and request
id, nothing else), in one transaction; it is complete once every service has answered, and
whole once a sweep has deleted the youth's messages from the streams (`sweep_streams`). An
export asks every service by request/reply and adds the identity locally: the identity never
leaves this process but in the document the DPO receives.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from raccrochage_contracts.events.privacy_v1 import ErasureDone, ErasureRequested

from ..domain.identity import youth_id as youth_id_of
from ..domain.rules import is_valid_ine, normalise_ine
from .unit_of_work import AbstractReperageUnitOfWork, ErasureAnswer, ErasureRecord, IdentityRead


class InvalidIne(ValueError):
    pass


def youth_of(ine: str, key: bytes) -> str:
    normalised = normalise_ine(ine)
    if not is_valid_ine(normalised):
        raise InvalidIne("an INE is 11 letters or digits")
    return youth_id_of(normalised, key)


async def request_erasure(
    uow: AbstractReperageUnitOfWork,
    *,
    ine: str,
    key: bytes,
    requested_by: str,
    services: Sequence[str],
    now: datetime,
) -> ErasureRecord:
    """Erase the vault's rows of the INE's youth, record the request (every service of
    `services` owes an answer) and publish it, in one transaction. An INE the vault does not
    know is asked all the same: a service may hold a youth the vault erased earlier."""
    youth_id = youth_of(ine, key)
    request_id = uuid.uuid4()
    async with uow:
        identity = await uow.vault.get(youth_id)
        erased, anonymised = await uow.vault.erase(youth_id, identity)
        record = ErasureRecord(
            request_id=request_id,
            requested_by=requested_by,
            requested_at=now,
            identity_found=identity is not None,
            erased={kind: rows for kind, rows in {**erased, **anonymised}.items() if rows},
            completed_at=now if not services else None,
            answers=tuple(ErasureAnswer(service, None) for service in sorted(services)),
        )
        await uow.erasures.add(record, youth_id)
        uow.add_event(ErasureRequested(request_id=request_id, youth_id=youth_id), subject=str(request_id))
        await uow.commit()
    return record


async def record_answer(uow: AbstractReperageUnitOfWork, done: ErasureDone, now: datetime) -> bool:
    """A service's answer (in the consumer's unit of work); the request completes with its last
    answer. False for an answer nobody waits for (unknown request or service, or a repeat)."""
    if not await uow.erasures.answer(done.request_id, done.service, now, done.erased, done.anonymised):
        return False
    record = await uow.erasures.get(done.request_id)
    if record is not None and not record.silent and record.completed_at is None:
        await uow.erasures.complete(done.request_id, now)
    return True


class StreamSweeper(Protocol):
    async def sweep(self, stream: str, youth_ids: frozenset[str]) -> dict[str, int]:
        """Delete from `stream` every message naming one of the youths; returns how many per
        youth_id."""
        ...


async def sweep_streams(
    unit_of_work: Callable[[], AbstractReperageUnitOfWork],
    sweeper: StreamSweeper,
    streams: Sequence[str],
    now: Callable[[], datetime],
) -> dict[uuid.UUID, dict[str, int]]:
    """Delete the messages naming the youths of every complete, unswept request from every
    stream: each stream is scanned once for all of them, however many. Each request then
    records how many of its youth's messages went per stream, and its youth_id goes. Returns
    that, per request. A pass that fails leaves its requests to the next (deleting twice is
    harmless)."""
    async with unit_of_work() as uow:
        due = await uow.erasures.due_for_sweep()
        await uow.commit()
    if not due:
        return {}
    youth_ids = frozenset(due.values())
    found = {stream: await sweeper.sweep(stream, youth_ids) for stream in streams}
    swept = {
        request_id: {stream: counts.get(youth_id, 0) for stream, counts in found.items()}
        for request_id, youth_id in due.items()
    }
    async with unit_of_work() as uow:
        at = now()
        for request_id, deleted in swept.items():
            await uow.erasures.swept(request_id, at, deleted)
        await uow.commit()
    return swept


async def erasure_status(uow: AbstractReperageUnitOfWork, request_id: uuid.UUID) -> ErasureRecord | None:
    async with uow:
        return await uow.erasures.get(request_id)


# Asks one service what it holds about a youth: its answer, or None when it did not answer.
AskService = Callable[[str, str], Awaitable[dict[str, Any] | None]]


async def export_youth(
    uow: AbstractReperageUnitOfWork,
    ask: AskService,
    *,
    ine: str,
    key: bytes,
    services: Sequence[str],
    requested_by: str,
    now: datetime,
) -> dict[str, Any]:
    """One document of everything every service holds about the youth, for the DPO. The
    export is audited like a contact card: who, when, which youth, why."""
    youth_id = youth_of(ine, key)
    async with uow:
        identity = await uow.vault.get(youth_id)
        held = await uow.vault.export(youth_id, identity)
        await uow.vault.audit(
            IdentityRead(
                caller=f"dpo:{requested_by}"[:64],
                youth_id=youth_id,
                what="export",
                purpose="subject access export",
                granted=True,
                role="dpo",
                sub=requested_by[:64],
            )
        )
        await uow.commit()
    document: dict[str, Any] = {
        "youth_id": youth_id,
        "exported_at": now.isoformat(),
        "exported_by": requested_by,
        "services": {"reperage": held},
        "unanswered": [],
    }
    # Asked all at once: a silent service costs one timeout, not one each.
    answers = await asyncio.gather(*(ask(service, youth_id) for service in services))
    for service, answer in zip(services, answers, strict=True):
        if answer is None or answer.get("status") != "ok":
            document["unanswered"].append(service)
        else:
            document["services"][service] = answer["records"]
    return document
