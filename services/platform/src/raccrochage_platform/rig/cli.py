"""`raccrochage`: the local rig and operator commands. Services add their own commands."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from importlib.metadata import entry_points
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .state import RigState, rig_dir

# Commands import what they need when they run: `status` and `down` stay quick to start.

app = typer.Typer(
    help="Raccrochage: the local rig and operator commands.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
dlq_app = typer.Typer(help="Dead letters: list and replay.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
console = Console(stderr=True)


def say(message: str) -> None:
    console.print(f"[bold cyan]rig[/] {message}", highlight=False)


@app.command()
def up(
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="return once up; stop with `raccrochage down`")
    ] = False,
    main_jobs: Annotated[
        bool, typer.Option("--main-jobs", help="run each service's main job once up")
    ] = False,
) -> None:
    """Start NATS, PostgreSQL and every installed service; Ctrl-C stops everything."""
    folder = rig_dir()
    if detach:
        _up_detached(folder, main_jobs)
        return
    from .runner import Rig, RigAlreadyRunning, RigError

    rig = Rig(folder, say=say)
    stop = [False]

    def request_stop(*_: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        rig.up()
        if main_jobs:
            run_main_jobs(folder)
        if not os.environ.get("RACCROCHAGE_RIG_DETACHED"):
            say("press Ctrl-C to stop")
        rig.supervise(stop)
    except RigAlreadyRunning as error:
        say(f"[red]error:[/] {error}")
        raise typer.Exit(1) from None
    except (RigError, RuntimeError, TimeoutError, FileNotFoundError) as error:
        say(f"[red]error:[/] {error}")
        rig.stop_all()
        raise typer.Exit(1) from None
    except BaseException:
        rig.stop_all()
        raise
    rig.stop_all()


def _up_detached(folder, main_jobs: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "rig.log"
    env = {**os.environ, "RACCROCHAGE_RIG_DIR": str(folder), "RACCROCHAGE_RIG_DETACHED": "1"}
    with open(log, "ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "raccrochage_platform.rig.cli", "up"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = RigState.load(folder)
        if state.status == "up" and state.supervisor_pid == child.pid:
            say(f"up (supervisor pid {child.pid}); `raccrochage status`, `raccrochage down`")
            if main_jobs:
                run_main_jobs(folder)
            return
        if child.poll() is not None:
            say(f"[red]the rig failed to start[/]; last lines of {log}:")
            console.print(log.read_text(errors="replace")[-3000:], highlight=False, markup=False)
            raise typer.Exit(1)
        time.sleep(0.2)
    say(f"[red]the rig is not up after 180s[/]; see {log}")
    raise typer.Exit(1)


def run_main_jobs(folder) -> None:
    from .. import loop as event_loop
    from ..service import installed_services

    specs = sorted(installed_services().items(), key=lambda item: (item[1].main_job_order, item[0]))
    for name, spec in specs:
        if spec.main_job is not None:
            say(f"running the main job of {name}")
            event_loop.run(spec.main_job())


@app.command("down")
def down_command() -> None:
    """Stop a rig started with --detach (or clean up after one that crashed)."""
    from .runner import down

    folder = rig_dir()
    down(folder, say=say)
    say("down")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False) -> None:
    """Health of NATS, PostgreSQL and each service; consumer lag, backlogs, dead letters."""
    from .status import collect

    report = asyncio.run(collect(rig_dir()))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    out = Console()
    mark = {True: "[green]healthy[/]", False: "[red]down[/]"}
    out.print(f"rig {report['rig_dir']}: {report['rig']['status']}")
    out.print(f"NATS {report['nats']['url']}: {mark[report['nats']['healthy']]}")
    out.print(
        f"PostgreSQL {report['postgres']['host']}:{report['postgres']['port']}: "
        f"{mark[report['postgres']['healthy']]}"
    )
    table = Table("service", "health", "http", "pid", "restarts", "outbox backlog")
    for name, entry in report["services"].items():
        table.add_row(
            name,
            mark[entry["healthy"]],
            entry["http"] or "",
            str(entry["pid"] or ""),
            str(entry["restarts"]),
            str(report.get("outbox_backlog", {}).get(name, "")),
        )
    out.print(table)
    if report["consumers"]:
        consumers = Table("consumer", "stream", "pending", "ack pending", "redelivered")
        for name, entry in report["consumers"].items():
            consumers.add_row(
                name,
                entry.get("stream", ""),
                str(entry.get("pending", "missing")),
                str(entry.get("ack_pending", "")),
                str(entry.get("redelivered", "")),
            )
        out.print(consumers)
    out.print(f"dead letters: {report['dead_letters']}")


@app.command("declare")
def declare_command() -> None:
    """Create or update every stream and durable consumer of deploy/topology.toml."""
    import nats

    from ..topology import declare, load_topology
    from .status import nats_url

    url = nats_url(rig_dir()) or "nats://127.0.0.1:4222"

    async def run() -> None:
        nc = await nats.connect(url, connect_timeout=5)
        try:
            await declare(nc.jetstream(), load_topology())
        finally:
            await nc.close()

    asyncio.run(run())
    say(f"declared on {url}")


@app.command("token")
def token_command(
    role: Annotated[str, typer.Option(help="counsellor (one territory) or ops (counts, every territory)")],
    territory: Annotated[str | None, typer.Option(help="the counsellor's département, e.g. 33")] = None,
    sub: Annotated[str, typer.Option(help="who the token is for (a counsellor id)")] = "local",
    hours: Annotated[float, typer.Option(help="validity")] = 12,
) -> None:
    """Print a bearer token for the services' HTTP APIs, signed with the rig's token key
    (RACCROCHAGE_TOKEN_KEY when set, else the rig's secrets.json)."""
    from ..auth import Role, mint
    from ..topology import load_topology
    from .state import load_secrets

    key = os.environ.get("RACCROCHAGE_TOKEN_KEY") or load_secrets(rig_dir(), load_topology())["token_key"]
    try:
        print(mint(key, role=Role(role), sub=sub, territory=territory, ttl_seconds=int(hours * 3600)))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


@app.command("migrate")
def migrate_command(name: str) -> None:
    """Apply a service's migrations to DATABASE_URL (containers run this before `serve`)."""
    from ..migrations import upgrade
    from ..service import installed_services

    specs = installed_services()
    if name not in specs:
        raise typer.BadParameter(f"unknown service {name!r}; installed: {', '.join(specs)}")
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise typer.BadParameter("DATABASE_URL is not set")
    upgrade(specs[name].migrations, url)
    say(f"{name} migrated")


@app.command(hidden=True)
def serve(name: str) -> None:
    """Run one service in this process (the rig and containers call this)."""
    from ..service import main

    main(name)


async def _js_call(fn):
    from .status import connect_once, nats_url

    url = nats_url(rig_dir())
    if not url:
        raise typer.BadParameter("no NATS: start the rig or set NATS_URL")
    try:
        nc = await connect_once(url, timeout=5)
    except Exception as error:
        say(f"NATS at {url} is down ({type(error).__name__}): start the rig (raccrochage up)")
        raise typer.Exit(1) from None
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
    from .. import deadletter

    letters = asyncio.run(_js_call(lambda js: deadletter.list_dead_letters(js, consumer=consumer)))
    if as_json:
        print(json.dumps([letter.summary() for letter in letters], indent=2))
        return
    table = Table("seq", "consumer", "subject", "delivered", "at", "reason")
    for letter in letters:
        table.add_row(
            str(letter.seq), letter.consumer, letter.subject, str(letter.delivered), letter.at, letter.reason
        )
    Console().print(table)


@dlq_app.command("replay")
def dlq_replay(
    seqs: Annotated[list[int] | None, typer.Argument(help="dead-letter sequences (see `dlq list`)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="replay every dead letter (of --consumer)")] = False,
    consumer: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Publish dead letters again on their original subject and remove them from DEADLETTER."""
    from .. import deadletter

    if not seqs and not all_:
        raise typer.BadParameter("give sequences or --all")

    async def run(js) -> int:
        letters = await deadletter.list_dead_letters(js, consumer=consumer)
        chosen = [x for x in letters if all_ or x.seq in set(seqs or [])]
        missing = set(seqs or []) - {x.seq for x in letters}
        if missing:
            say(f"[yellow]no dead letter with sequence {', '.join(map(str, sorted(missing)))}[/]")
        for letter in chosen:
            await deadletter.replay(js, letter)
        return len(chosen)

    count = asyncio.run(_js_call(run))
    say(f"replayed {count} dead letter(s)")


def _load_plugins() -> None:
    """Service packages add commands (`ingest`, `demo`, `token`) through this entry point group."""
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
