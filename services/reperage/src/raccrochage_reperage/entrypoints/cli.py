"""`raccrochage ingest siei|partner` and `raccrochage demo generate`: repérage's commands."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from raccrochage_platform import loop as event_loop
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

ingest_app = typer.Typer(help="Ingest SIEI campaign files and partner bases.", no_args_is_help=True)
demo_app = typer.Typer(help="Synthetic data for the académie de Bordeaux.", no_args_is_help=True)
console = Console(stderr=True)


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date YYYY-MM-DD") from None


@asynccontextmanager
async def reperage_runtime():
    """Act as the repérage service from the command line: its settings, a factory of its units
    of work, and a relay that publishes what this command writes (the service's own relay may
    help). Yields (settings, unit_of_work, relay)."""
    import nats
    from raccrochage_platform.db import make_engine
    from raccrochage_platform.outbox import OutboxRelay
    from raccrochage_platform.settings import apply_local_environment, load_settings, nats_servers

    from ..config import ReperageSettings

    apply_local_environment("reperage")
    if "NATS_URL" not in os.environ or "DATABASE_URL" not in os.environ:
        raise typer.BadParameter(
            "no rig found: run `raccrochage up --detach` first, or set NATS_URL and DATABASE_URL"
        )
    settings = load_settings(ReperageSettings)
    engine = make_engine(settings.database_url, application_name="reperage-cli")
    # Once connected, reconnect without limit: an outage mid-ingest is waited out (the events
    # are safe in the outbox meanwhile), never turned into a closed connection.
    nc = await nats.connect(nats_servers(settings.nats_url), connect_timeout=5, max_reconnect_attempts=-1)
    relay = OutboxRelay(engine, nc.jetstream(), sweep_seconds=0.2, lease_seconds=settings.relay_lease_seconds)
    await relay.start()
    try:
        yield settings, unit_of_work_factory(engine, relay), relay
    finally:
        await relay.stop()
        await (nc.drain() if nc.is_connected else nc.close())
        await engine.dispose()


def unit_of_work_factory(engine, relay=None):
    """Repérage's units of work on `engine`, as the service makes them: its source and stream
    from the topology; with `relay`, events are published by their writer once committed."""
    import functools

    from raccrochage_platform.topology import load_topology

    from ..adapters.unit_of_work import ReperageUnitOfWork

    service = load_topology().services["reperage"]
    return functools.partial(
        ReperageUnitOfWork, engine, source=service.source, stream=service.stream, relay=relay
    )


async def wait_published(relay, say=console.print, tell_every: float = 30.0) -> None:
    """Until the outbox has no pending row. Asks whether one exists, not how many: counting a
    backlog of 100,000 rows every 50 ms slowed the relay it was waiting for. While the relay
    fails (NATS unreachable), it is left to its backoff and the user is told, every
    `tell_every` seconds, that the events are safe in the outbox."""
    from sqlalchemy import text

    pending = text("SELECT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL)")
    count = text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    told = None
    while True:
        async with relay.engine.connect() as conn:
            if not (await conn.execute(pending)).scalar_one():
                if told is not None:
                    say("NATS is back: every event is published")
                return
            if relay.failing and (told is None or time.monotonic() - told > tell_every):
                waiting = (await conn.execute(count)).scalar_one()
                say(
                    f"NATS is unreachable: {waiting} events wait in repérage's outbox, safely, and "
                    "are published as soon as it is back; waiting for it (after Ctrl-C the "
                    "repérage service publishes them)"
                )
                told = time.monotonic()
        if not relay.failing:
            relay.wake()
        await asyncio.sleep(0.05)


async def run_siei(path: Path, campaign: str, as_of: date, progress=None) -> dict:
    from ..service_layer.ingest import ingest_campaign

    async with reperage_runtime() as (settings, unit_of_work, relay):
        summary = await ingest_campaign(
            path,
            campaign_id=campaign,
            as_of=as_of,
            unit_of_work=unit_of_work,
            key=settings.key,
            policy=settings.policy(),
            progress=progress,
        )
        await wait_published(relay)
    return summary.as_dict()


async def run_partner(path: Path, source, today: date) -> dict:
    from ..service_layer.partner_file import ingest_partner_file

    async with reperage_runtime() as (_settings, unit_of_work, relay):
        summary = await ingest_partner_file(path, source=source, unit_of_work=unit_of_work, today=today)
        await wait_published(relay)
    return summary.as_dict()


@contextmanager
def _refusals(file: Path) -> Iterator[None]:
    """A file the command cannot read, or a campaign id taken by another file: say so, exit 2."""
    from ..domain.siei import FileFormatError
    from ..service_layer.ingest import CampaignConflict

    try:
        yield
    except FileFormatError as error:
        console.print(f"[red]{file}: {error}[/]")
        raise typer.Exit(2) from None
    except CampaignConflict as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None


@ingest_app.command("siei")
def ingest_siei(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the SIEI campaign file")],
    campaign: Annotated[str, typer.Option("--campaign", help="campaign id, e.g. siei-2026-11")],
    as_of: Annotated[str, typer.Option("--as-of", help="reference date YYYY-MM-DD")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Cross-check a SIEI campaign file and hand the youths found nowhere to their PSAD."""
    reference = _iso_date(as_of)
    size = file.stat().st_size
    with _refusals(file):
        if console.is_terminal and not as_json:
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
            ) as bar:
                task = bar.add_task(f"ingesting {file.name}", total=size)
                summary = event_loop.run(
                    run_siei(file, campaign, reference, lambda done: bar.update(task, completed=done))
                )
        else:
            summary = event_loop.run(run_siei(file, campaign, reference))
    if as_json:
        print(json.dumps(summary))
        return
    _print_summary(summary)


def _print_summary(summary: dict) -> None:
    out = Console()
    if summary["already_ingested"]:
        out.print(f"campaign {summary['campaign_id']}: already ingested, nothing changed")
    out.print(
        f"campaign {summary['campaign_id']} (reference date {summary['as_of']}): {summary['rows']} rows"
    )
    out.print(f"  rejected    {summary['rejected']:>8}  {summary['rejected_by_reason']}")
    out.print(f"  duplicates  {summary['duplicates']:>8}")
    out.print(f"  excluded    {summary['excluded']:>8}  {summary['excluded_by_reason']}")
    out.print(
        f"  identified  {summary['identified']:>8}  (of whom {summary['reported_again']} already "
        "handed over, reported again)"
    )
    out.print(f"  events published {summary['events_published']}")
    if summary["extra_columns"]:
        out.print(f"  extra columns ignored: {', '.join(summary['extra_columns'])}")


@ingest_app.command("partner")
def ingest_partner(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the partner base file")],
    source: Annotated[str, typer.Option("--source", help="cfa, agri, ml, mlds or en")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Load a partner base; handed-over youths now enrolled there are announced as found."""
    from ..domain.partners import PartnerSource

    try:
        kind = PartnerSource(source)
    except ValueError:
        raise typer.BadParameter(
            f"--source must be one of {', '.join(s.value for s in PartnerSource)}"
        ) from None
    with _refusals(file):
        summary = event_loop.run(run_partner(file, kind, date.today()))
    if as_json:
        print(json.dumps(summary))
        return
    Console().print(
        f"{file.name} ({source}): {summary['rows']} rows, {summary['rejected']} rejected, "
        f"{summary['enrolments']} new enrolments, {summary['found']} handed-over youths found"
    )


@demo_app.command("generate")
def demo_generate(
    youths: Annotated[int, typer.Option("--youths", min=1)] = 5000,
    seed: Annotated[int, typer.Option("--seed")] = 1,
    out: Annotated[Path, typer.Option("--out")] = Path("demo"),
    campaign: Annotated[str, typer.Option("--campaign")] = "demo",
    as_of: Annotated[str, typer.Option("--as-of")] = "2026-11-02",
) -> None:
    """Write a synthetic SIEI campaign for the académie's five départements, with partner files."""
    from ..domain.demo import generate

    files = generate(youths, seed, out, campaign=campaign, as_of=_iso_date(as_of))
    Console().print(f"wrote {files}")


async def demo_main_job() -> None:
    """`make run`: a 5,000-youth demo campaign and its partner files, ingested once the rig is up."""
    from raccrochage_rig.state import rig_dir

    from ..domain.demo import generate
    from ..domain.partners import PartnerSource

    as_of = date(2026, 11, 2)
    folder = rig_dir() / "demo"
    files = generate(5000, 1, folder, campaign="demo", as_of=as_of)
    for path in sorted(folder.glob("partner_*.csv")):
        source = PartnerSource(path.stem.split("_", 1)[1])
        summary = await run_partner(path, source, as_of)
        console.print(f"[cyan]demo[/] partner base {path.name}: {summary['enrolments']} enrolments")
    started = datetime.now()
    summary = await run_siei(files.siei, "demo-2026-11", as_of)
    console.print(
        f"[cyan]demo[/] campaign demo-2026-11 in {(datetime.now() - started).total_seconds():.1f}s:"
    )
    _print_summary(summary)
