"""`raccrochage privacy erase|status|export|audit verify`: the DPO's requests to the identity vault, from the
command line of a machine that reaches its database (as `ingest` does). The same as the
`dpo` role's HTTP routes (privacy_api.py)."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from raccrochage_platform import loop as event_loop

privacy_app = typer.Typer(
    help="Erase a youth everywhere, or export what is held (DPO).", no_args_is_help=True
)

Ine = Annotated[str, typer.Option("--ine", help="the youth's INE")]
By = Annotated[str | None, typer.Option("--by", help="who asks (recorded; default: this user)")]


def _who(by: str | None) -> str:
    return by or f"cli:{getpass.getuser()}"


def _status_json(record) -> dict:
    from .privacy_api import ErasureStatus

    return ErasureStatus.of(record).model_dump(mode="json")


def _services() -> list[str]:
    from raccrochage_platform.privacy import answering_services
    from raccrochage_platform.topology import load_topology

    return answering_services(load_topology())


async def _erase(ine: str, by: str, wait: float | None) -> dict:
    from ..service_layer import privacy
    from .cli import reperage_runtime

    async with reperage_runtime() as (settings, unit_of_work, _relay):
        record = await privacy.request_erasure(
            unit_of_work(),
            ine=ine,
            key=settings.key,
            requested_by=by,
            services=_services(),
            now=datetime.now(UTC),
        )
        deadline = time.monotonic() + (wait or 0)
        while wait is not None and record.swept_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            record = await privacy.erasure_status(unit_of_work(), record.request_id)
    return _status_json(record)


def _refused(error: Exception) -> typer.BadParameter:
    return typer.BadParameter(f"--ine: {error}")


@privacy_app.command("erase")
def erase(
    ine: Ine,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="wait until every service has answered and the streams are swept"),
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0, help="seconds --wait waits")] = 60,
    by: By = None,
) -> None:
    """Erase the youth's identity in the vault and ask every service to erase what it holds.
    Prints the request's status (JSON); with --wait, exits 1 after --timeout naming the services
    still silent, or saying the streams are not swept yet."""
    from ..service_layer.privacy import InvalidIne

    try:
        status = event_loop.run(_erase(ine, _who(by), timeout if wait else None))
    except InvalidIne as error:
        raise _refused(error) from None
    print(json.dumps(status, indent=2))
    if wait and status["swept_at"] is None:
        typer.echo(f"erasure {status['request_id']} {_unfinished(status)} after {timeout:g}s", err=True)
        raise typer.Exit(1)


def _unfinished(status: dict) -> str:
    if not status["complete"]:
        return f"incomplete: no answer from {', '.join(status['silent'])}"
    return "complete, but the streams are not swept of the youth yet"


@privacy_app.command("status")
def status(request_id: Annotated[str, typer.Argument(help="the erasure request's id")]) -> None:
    """An erasure request's status (JSON); exits 1 while some service has not answered or the
    streams are not swept yet."""
    from ..service_layer import privacy
    from .cli import reperage_runtime

    try:
        wanted = uuid.UUID(request_id)
    except ValueError:
        raise typer.BadParameter(f"{request_id!r} is not a request id (a UUID)") from None

    async def run():
        async with reperage_runtime() as (_settings, unit_of_work, _relay):
            return await privacy.erasure_status(unit_of_work(), wanted)

    record = event_loop.run(run())
    if record is None:
        typer.echo(f"no erasure request {request_id}", err=True)
        raise typer.Exit(2)
    print(json.dumps(_status_json(record), indent=2))
    if record.swept_at is None:
        raise typer.Exit(1)


async def _export(ine: str, by: str) -> dict:
    from raccrochage_platform.broker import connect_once
    from raccrochage_platform.privacy import ask_export

    from ..service_layer import privacy
    from .cli import reperage_runtime

    async with reperage_runtime() as (settings, unit_of_work, _relay):
        nc = await connect_once(settings.nats_url, timeout=5)
        try:
            return await privacy.export_youth(
                unit_of_work(),
                lambda service, youth_id: ask_export(nc, service, youth_id),
                ine=ine,
                key=settings.key,
                services=_services(),
                requested_by=by,
                now=datetime.now(UTC),
            )
        finally:
            await nc.close()


@privacy_app.command("export")
def export(
    ine: Ine,
    out: Annotated[Path, typer.Option("--out", dir_okay=False, help="the JSON document to write")],
    by: By = None,
) -> None:
    """Write one JSON document of everything every service holds about the youth (subject
    access). Exits 1 naming the services that did not answer (the document says so too)."""
    from ..service_layer.privacy import InvalidIne

    try:
        document = event_loop.run(_export(ine, _who(by)))
    except InvalidIne as error:
        raise _refused(error) from None
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
    typer.echo(f"wrote {out}", err=True)
    if document["unanswered"]:
        typer.echo(f"no answer from {', '.join(document['unanswered'])}", err=True)
        raise typer.Exit(1)


audit_app = typer.Typer(help="The identity audit (who read which identity, when, why).", no_args_is_help=True)
privacy_app.add_typer(audit_app, name="audit")


async def _verify():
    """The chain checked against every head anchored in the REPERAGE stream; a whole chain's
    head is anchored in turn."""
    from raccrochage_platform.broker import connect_once
    from raccrochage_platform.db import make_engine
    from raccrochage_platform.settings import apply_local_environment

    from ..adapters import audit, audit_anchors

    apply_local_environment("reperage")
    for needed in ("DATABASE_URL", "NATS_URL"):
        if needed not in os.environ:
            raise typer.BadParameter(f"no rig found: run `raccrochage up --detach` first, or set {needed}")
    try:
        nc = await connect_once(os.environ["NATS_URL"], timeout=5)
    except Exception as error:
        typer.echo(f"cannot read the audit's anchors: NATS is unreachable ({type(error).__name__})", err=True)
        raise typer.Exit(2) from None
    engine = make_engine(os.environ["DATABASE_URL"], application_name="reperage-audit-verify")
    try:
        js = nc.jetstream()
        anchors = await audit_anchors.read(js)
        async with engine.connect() as connection:
            report = await audit.verify(connection, anchors)
            head = await audit.head(connection)
        if report.ok and head is not None:
            await audit_anchors.publish(js, head, datetime.now(UTC))
        return report
    finally:
        await engine.dispose()
        await nc.close()


@audit_app.command("verify")
def verify() -> None:
    """Walk the audit's hash chain from its first row and check it still holds every head the
    vault anchored: prints how many rows verify, or exits 1 naming the first row found wrong (a
    gap, an edit, a row moved, the last rows deleted)."""
    report = event_loop.run(_verify())
    if not report.ok:
        typer.echo(f"identity audit broken at row {report.seq}: {report.problem}", err=True)
        typer.echo(f"{report.rows} rows verify before it", err=True)
        raise typer.Exit(1)
    print(f"identity audit: {report.rows} rows, chain whole, {report.anchors} anchored heads held")
