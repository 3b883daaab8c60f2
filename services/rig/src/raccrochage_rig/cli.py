"""The rig's commands, added to `raccrochage` through the `raccrochage.cli` entry points:
`up` (NATS, PostgreSQL and every installed service), `down`, `status`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .state import RigState, rig_dir

# Commands import what they need when they run: `status` and `down` stay quick to start.

console = Console(stderr=True)


def say(message: str) -> None:
    console.print(f"[bold cyan]rig[/] {message}", highlight=False)


def up(
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="return once up; stop with `raccrochage down`")
    ] = False,
    main_jobs: Annotated[
        bool, typer.Option("--main-jobs", help="run each service's main job once up")
    ] = False,
    replicas: Annotated[
        int,
        typer.Option(
            "--replicas",
            min=1,
            max=8,
            envvar="RACCROCHAGE_REPLICAS",
            help="processes of every service (they share its consumers and outbox)",
        ),
    ] = 1,
    cluster: Annotated[
        int,
        typer.Option(
            "--cluster", min=1, max=5, help="JetStream nodes on loopback; streams get as many replicas"
        ),
    ] = 1,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            metavar="SERVICE",
            help="start this service and no other (repeat for several); default: every installed one",
        ),
    ] = None,
) -> None:
    """Start NATS, PostgreSQL and every installed service; Ctrl-C stops everything."""
    folder = rig_dir()
    if only:
        _check_installed(set(only))
    if detach:
        options = ["--replicas", str(replicas), "--cluster", str(cluster)]
        _up_detached(folder, main_jobs, options + [f"--only={name}" for name in only or ()], only)
        return
    from .runner import Rig, RigAlreadyRunning, RigError

    rig = Rig(folder, say=say)
    stop = [False]

    def request_stop(*_: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        rig.up(only=set(only) if only else None, replicas=replicas, cluster=cluster)
        if main_jobs:
            run_main_jobs(folder, only)
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


def _check_installed(names: set[str]) -> None:
    from raccrochage_platform.service import installed_service_names

    unknown = names - installed_service_names()
    if unknown:
        installed = ", ".join(sorted(installed_service_names()))
        say(f"[red]error:[/] --only {', '.join(sorted(unknown))}: no such service (installed: {installed})")
        raise typer.Exit(2)


def _up_detached(folder, main_jobs: bool, options: list[str], only: list[str] | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "rig.log"
    env = {**os.environ, "RACCROCHAGE_RIG_DIR": str(folder), "RACCROCHAGE_RIG_DETACHED": "1"}
    with open(log, "ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "raccrochage_platform.cli", "up", *options],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    # The supervisor gives up by itself when the servers or the services do not start.
    while True:
        state = RigState.load(folder)
        if state.status == "up" and state.supervisor_pid == child.pid:
            say(f"up (supervisor pid {child.pid}); `raccrochage status`, `raccrochage down`")
            if main_jobs:
                run_main_jobs(folder, only)
            return
        if child.poll() is not None:
            say(f"[red]the rig failed to start[/]; last lines of {log}:")
            console.print(log.read_text(errors="replace")[-3000:], highlight=False, markup=False)
            raise typer.Exit(1)
        time.sleep(0.2)


def run_main_jobs(folder, only: list[str] | None = None) -> None:
    """The main job of every service the rig started (`only`, or all), in their order."""
    from raccrochage_platform import loop as event_loop
    from raccrochage_platform.service import installed_services

    specs = sorted(installed_services().items(), key=lambda item: (item[1].main_job_order, item[0]))
    for name, spec in specs:
        if only and name not in only:
            continue
        if spec.main_job is not None:
            say(f"running the main job of {name}")
            event_loop.run(spec.main_job())


def down() -> None:
    """Stop a rig started with --detach (or clean up after one that crashed)."""
    from .runner import down as stop_rig

    stop_rig(rig_dir(), say=say)
    say("down")


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
    if report["nats"].get("error"):
        out.print(f"  {report['nats']['error']}", markup=False, highlight=False)
    if report["nats"].get("nodes"):
        nodes = Table("NATS node", "state", "url", "pid", "restarts", "replicas")
        states = {"up": "[green]up[/]", "restarting": "[yellow]restarting[/]", "down": "[red]down[/]"}
        for name, node in report["nats"]["nodes"].items():
            current = {True: "current", False: "behind: " + ", ".join(node["replicas_behind"]), None: "?"}
            nodes.add_row(
                name,
                states[node["state"]],
                node["url"],
                str(node["pid"] or ""),
                str(node["restarts"]),
                current[node["replicas_current"]],
            )
        out.print(nodes)
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
                str(entry.get("pending", entry.get("error", "missing"))),
                str(entry.get("ack_pending", "")),
                str(entry.get("redelivered", "")),
            )
        out.print(consumers)
    out.print(f"dead letters: {report['dead_letters']}")
