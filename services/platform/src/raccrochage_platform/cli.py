"""`raccrochage`: the commands a service image runs (serve, migrate, declare, token, dlq,
retention).

Other packages add theirs through the `raccrochage.cli` entry point group: a service its
operator commands (repérage's `ingest`), the developer rig (raccrochage-rig) `up`, `down` and
`status`. Everything here is configured by environment (NATS_URL, DATABASE_URL,
RACCROCHAGE_TOKEN_KEY); beside a local rig, the rig fills in what the environment leaves unset
through the `raccrochage.environment` entry point group.
"""

from __future__ import annotations

import asyncio
import json
import os
from importlib.metadata import entry_points
from typing import Annotated

import typer

# Commands import what they need when they run: the CLI stays quick to start.

app = typer.Typer(
    help="Raccrochage: service and operator commands.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
dlq_app = typer.Typer(help="Dead letters: list and replay.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
retention_app = typer.Typer(help="Retention: apply the periods of docs/privacy.md.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")


def say(message: str) -> None:
    typer.echo(message, err=True)


def _setting(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise typer.BadParameter(f"{name} is not set: {what}")
    return value


def _nats_url() -> str:
    return _setting("NATS_URL", "the NATS server to use (a local rig sets it once it is up)")


@app.command()
def serve(name: str) -> None:
    """Run one service in this process (the rig and the containers call this)."""
    from .service import main

    main(name)


@app.command("migrate")
def migrate_command(name: str) -> None:
    """Apply a service's migrations to DATABASE_URL (containers run this before `serve`)."""
    from .migrations import upgrade
    from .service import installed_services

    specs = installed_services()
    if name not in specs:
        raise typer.BadParameter(f"unknown service {name!r}; installed: {', '.join(specs)}")
    upgrade(specs[name].migrations, _setting("DATABASE_URL", "the service's database"))
    say(f"{name} migrated")


@app.command("declare")
def declare_command() -> None:
    """Create or update every stream and durable consumer of deploy/topology.toml."""
    from .topology import declare, load_topology

    url = _nats_url()

    async def run() -> None:
        nc = await _connect(url)
        try:
            await declare(nc.jetstream(), load_topology())
        finally:
            await nc.close()

    asyncio.run(run())
    say(f"declared on {url}")


@app.command("token")
def token_command(
    role: Annotated[
        str,
        typer.Option(
            help="with --territory: counsellor, academy, mlds_coordinator, mlds_tutor; with "
            "--organisation: buyer, company; alone: ops, campaign_manager, dpo"
        ),
    ],
    territory: Annotated[
        str | None, typer.Option(help="the département a territorial role acts for, e.g. 33")
    ] = None,
    organisation: Annotated[str | None, typer.Option(help="a buyer's or a company's id")] = None,
    sub: Annotated[str, typer.Option(help="who the token is for (a counsellor id)")] = "local",
    hours: Annotated[float, typer.Option(help="validity")] = 12,
) -> None:
    """Print a bearer token for the services' HTTP APIs, signed with RACCROCHAGE_TOKEN_KEY."""
    from .auth import mint

    key = _setting("RACCROCHAGE_TOKEN_KEY", "the key the services check tokens with")
    try:
        token = mint(
            key,
            role=role,
            sub=sub,
            territory=territory,
            organisation=organisation,
            ttl_seconds=int(hours * 3600),
        )
        print(token)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


async def _connect(url: str):
    from .broker import connect_once

    try:
        return await connect_once(url, timeout=5)
    except Exception as error:
        say(f"NATS at {url} is down ({type(error).__name__})")
        raise typer.Exit(1) from None


async def _js_call(fn):
    nc = await _connect(_nats_url())
    try:
        return await fn(nc.jetstream())
    finally:
        await nc.close()


@dlq_app.command("list")
def dlq_list(
    consumer: Annotated[str | None, typer.Option(help="only this consumer's dead letters")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Dead letters with their origin and reason (payloads are not shown: they may be personal)."""
    from . import deadletter

    letters = asyncio.run(_js_call(lambda js: deadletter.list_dead_letters(js, consumer=consumer)))
    if as_json:
        print(json.dumps([letter.summary() for letter in letters], indent=2))
        return
    print(f"{'seq':>6}  {'consumer':<20} {'subject':<40} {'delivered':>9}  {'at':<25} reason")
    for letter in letters:
        print(
            f"{letter.seq:>6}  {letter.consumer:<20} {letter.subject:<40} {letter.delivered:>9}  "
            f"{letter.at:<25} {letter.reason}"
        )


@dlq_app.command("replay")
def dlq_replay(
    seqs: Annotated[list[int] | None, typer.Argument(help="dead-letter sequences (see `dlq list`)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="replay every dead letter (of --consumer)")] = False,
    consumer: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Publish dead letters again on their original subject and remove them from DEADLETTER."""
    from . import deadletter

    if not seqs and not all_:
        raise typer.BadParameter("give sequences or --all")

    async def run(js) -> int:
        letters = await deadletter.list_dead_letters(js, consumer=consumer)
        chosen = [x for x in letters if all_ or x.seq in set(seqs or [])]
        missing = set(seqs or []) - {x.seq for x in letters}
        if missing:
            say(f"no dead letter with sequence {', '.join(map(str, sorted(missing)))}")
        for letter in chosen:
            await deadletter.replay(js, letter)
        return len(chosen)

    count = asyncio.run(_js_call(run))
    say(f"replayed {count} dead letter(s)")


@retention_app.command("run")
def retention_run(
    service: Annotated[
        str | None, typer.Option(help="only this service (with DATABASE_URL set, it is required)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count what is due, change nothing")] = False,
) -> None:
    """Anonymise or delete what is past its retention period now, as each service's daily job
    does; prints counts per service and kind of record, never a record."""
    from datetime import UTC, datetime

    from .db import make_engine
    from .retention import RetentionSettings, apply_retention
    from .service import installed_services
    from .settings import load_settings, local_environment

    specs = {name: spec for name, spec in installed_services().items() if spec.retention is not None}
    if service is not None and service not in specs:
        raise typer.BadParameter(f"no retention for {service!r}; services with one: {', '.join(specs)}")
    chosen = [service] if service else list(specs)
    settings = load_settings(RetentionSettings)
    now = datetime.now(UTC)

    def database_of(name: str) -> str:
        # DATABASE_URL for the one service named; else, beside a local rig, each one's own.
        if service is not None and os.environ.get("DATABASE_URL"):
            return os.environ["DATABASE_URL"]
        url = local_environment(name).get("DATABASE_URL")
        if not url:
            raise typer.BadParameter("no rig found: set DATABASE_URL and name its --service")
        return url

    async def run() -> None:
        for name in chosen:
            engine = make_engine(database_of(name), application_name=f"{name}-retention")
            try:
                rules = specs[name].retention(settings)
                counts = await apply_retention(
                    engine, name, rules, now, batch_size=settings.batch_size, dry_run=dry_run
                )
            finally:
                await engine.dispose()
            for rule in rules:
                verb = "due" if dry_run else rule.action
                print(f"{name:<15} {rule.kind:<15} {verb:<11} {counts[rule.kind]}")

    asyncio.run(run())


def _load_plugins() -> None:
    """Other packages' commands, and the defaults a local rig gives the environment."""
    from .settings import apply_local_environment

    apply_local_environment()
    for entry in entry_points(group="raccrochage.cli"):
        plugin = entry.load()
        if isinstance(plugin, typer.Typer):
            app.add_typer(plugin, name=entry.name)
        else:
            app.command(entry.name)(plugin)


def main() -> None:
    _load_plugins()
    app()


if __name__ == "__main__":
    main()
