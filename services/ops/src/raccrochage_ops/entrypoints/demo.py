"""`make run`, after the other services' demos: the dashboard's address and how to open it."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True)


async def demo_main_job() -> None:
    from raccrochage_rig.state import RigState, rig_dir

    http = RigState.load(rig_dir()).services["ops"].http
    console.print(
        f"[cyan]ops[/] dashboard at {http}/ (log in with a token):\n"
        "  .venv/bin/raccrochage token --role ops\n"
        "  .venv/bin/raccrochage token --role academy --territory 33   # one territory's counts"
    )
