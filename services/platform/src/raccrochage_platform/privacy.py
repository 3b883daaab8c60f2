"""Each service's part in a youth's erasure and subject access (docs/privacy.md).

The identity vault (repérage) turns the DPO's INE into a youth_id and asks every service:
- to erase: `privacy.erasure.requested.v1` on the PRIVACY stream; the service erases or
  anonymises what it holds for that youth_id and answers `privacy.erasure.done.v1` with the
  counts, in one unit of work with its inbox row (a redelivered request is answered once);
- to export: core NATS request/reply on `rpc.<service>.privacy.export` {youth_id}; the answer is
  what the service holds, which never travels on a stream. Only the vault's NATS user may
  publish there (deploy/topology.toml `requests`).

A service gives `answer_privacy` its `YouthRecords`: what to erase and what to show, on the
unit of work's connection. Published outbox rows naming the youth are deleted here for all.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.client import Client
from pydantic_core import to_jsonable_python
from raccrochage_contracts.events.privacy_v1 import ErasureDone, ErasureRequested
from sqlalchemy import Table, bindparam, cast, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Text

from .consumer import Event
from .logging import get_logger
from .service import ServiceContext
from .topology import Topology
from .uow import SqlAlchemyUnitOfWork

log = get_logger(__name__)

REQUESTED = "privacy.erasure.requested.v1"
YOUTH_ID = re.compile(r"^[0-9a-f]{64}$")
# What an anonymised row says in place of the youth_id: not a youth_id (it has no 64 hex digits).
ERASED = "erased"


def export_subject(service: str) -> str:
    return f"rpc.{service}.privacy.export"


def privacy_consumer(service: str) -> str:
    """The durable consumer of erasure requests a service declares in deploy/topology.toml."""
    return f"{service}_privacy"


def answering_services(topology: Topology) -> list[str]:
    """The services that owe an answer to an erasure request: those with a consumer of it."""
    return sorted({c.service for c in topology.consumers.values() if REQUESTED in c.filter_subjects})


@dataclass
class Erasure:
    """What a service did for one erasure request: rows deleted and rows anonymised, per kind."""

    erased: dict[str, int] = field(default_factory=dict)
    anonymised: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, rows: int, *, anonymised: bool = False) -> None:
        if rows:
            into = self.anonymised if anonymised else self.erased
            into[kind] = into.get(kind, 0) + rows


@dataclass(frozen=True)
class YouthRecords:
    """A service's records about youths: `erase` deletes or anonymises the youth's rows and says
    how many (Erasure); `export` returns them, per kind, as JSON-ready lists."""

    erase: Callable[[AsyncConnection, str, Erasure], Awaitable[None]]
    export: Callable[[AsyncConnection, str], Awaitable[Mapping[str, list[dict[str, Any]]]]]


# --- helpers for the services' YouthRecords -----------------------------------------------------
async def rows_of(connection: AsyncConnection, table: Table, *where: Any, leave: tuple[str, ...] = ()):
    """The rows of `table` matching `where`, as JSON-ready dicts, without the columns in `leave`
    (a PDF's bytes: its checksum says which document it was)."""
    columns = [column for column in table.c if column.name not in leave]
    result = await connection.execute(select(*columns).where(*where))
    return [to_jsonable_python(dict(row)) for row in result.mappings()]


async def delete_rows(connection: AsyncConnection, table: Table, *where: Any) -> int:
    return (await connection.execute(delete(table).where(*where))).rowcount


def scrubbed(json_column: Any, youth_id: Any) -> Any:
    """`json_column` with `youth_id` (a value or the row's own column) replaced wherever it
    appears: an UPDATE's new value."""
    return cast(func.replace(cast(json_column, Text), youth_id, ERASED), json_column.type)


async def scrub_json(connection: AsyncConnection, table: Table, column: str, youth_id: str) -> int:
    """Replace the youth_id wherever it appears in a JSON column (an aggregate's history), so
    that the row keeps its meaning for counts without naming the youth; returns rows changed."""
    json_column = table.c[column]
    statement = (
        update(table)
        .where(cast(json_column, Text).contains(youth_id, autoescape=True))
        .values({column: scrubbed(json_column, youth_id)})
    )
    return (await connection.execute(statement)).rowcount


# Published events stay in the outbox for a while (OutboxRelay.retention_seconds); the ones that
# name the youth go now. Pending rows stay: they must still reach their consumers.
_DELETE_PUBLISHED = text(
    "DELETE FROM outbox WHERE published_at IS NOT NULL AND position(convert_to(:needle, 'UTF8') in envelope) > 0"
).bindparams(bindparam("needle", type_=Text))


async def delete_published_events(connection: AsyncConnection, needle: str) -> int:
    return (await connection.execute(_DELETE_PUBLISHED, {"needle": needle})).rowcount


# --- the vault's side ----------------------------------------------------------------------------
async def ask_export(nc: Client, service: str, youth_id: str, timeout: float = 10.0) -> dict[str, Any] | None:
    """What `service` holds about the youth (its answer), or None when it does not answer."""
    try:
        reply = await nc.request(
            export_subject(service), json.dumps({"youth_id": youth_id}).encode(), timeout=timeout
        )
    except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError):
        return None
    return json.loads(reply.data)


# --- the service's side -------------------------------------------------------------------------
async def erase_youth(
    uow: SqlAlchemyUnitOfWork, event: Event[ErasureRequested], service: str, records: YouthRecords
) -> Erasure:
    """Erase the youth of the request and add the service's answer to the same unit of work."""
    request = event.data
    erasure = Erasure()
    await records.erase(uow.connection, request.youth_id, erasure)
    erasure.count("outbox", await delete_published_events(uow.connection, request.youth_id))
    uow.add_event(
        ErasureDone(
            request_id=request.request_id,
            service=service,
            erased=erasure.erased,
            anonymised=erasure.anonymised,
        ),
        subject=str(request.request_id),
        cause=event.envelope,
        # One answer per service and request, whatever the redeliveries.
        event_id=uuid.uuid5(event.envelope.id, f"erasure-done/{service}"),
    )
    return erasure


async def export_youth(
    unit_of_work: Callable[[], SqlAlchemyUnitOfWork], service: str, records: YouthRecords, body: Any
) -> dict[str, Any]:
    """The answer to `rpc.<service>.privacy.export` {youth_id}."""
    youth_id = str(body.get("youth_id", "")) if isinstance(body, dict) else ""
    if not YOUTH_ID.match(youth_id):
        return {"status": "refused", "service": service, "reason": "youth_id must be 64 hex digits"}
    async with unit_of_work() as uow:
        found = await records.export(uow.connection, youth_id)
    return {"status": "ok", "service": service, "records": dict(found)}


def answer_privacy(context: ServiceContext, records: YouthRecords) -> None:
    """Register the service's erasure consumer and export responder (call from its `build`)."""
    service = context.settings.service_name
    unit_of_work = context.unit_of_work(SqlAlchemyUnitOfWork)
    consumer = context.consumer(privacy_consumer(service), unit_of_work)

    @consumer.on(REQUESTED)
    async def erasure_requested(uow: SqlAlchemyUnitOfWork, event: Event[ErasureRequested]) -> None:
        erasure = await erase_youth(uow, event, service, records)
        # The request id only: the youth_id is what is being erased.
        log.info(
            "youth_erased",
            request_id=str(event.data.request_id),
            erased=erasure.erased,
            anonymised=erasure.anonymised,
        )

    @context.broker.subscriber(export_subject(service), queue=service, title="privacy export")
    async def privacy_export(body: dict) -> dict:
        return await export_youth(unit_of_work, service, records, body)
