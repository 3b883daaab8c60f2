"""`make run`, after repérage's demo: the cases PSAD opened, per territory, and how to work them."""

from __future__ import annotations

import asyncio
import time


async def demo_main_job() -> None:
    # The demo runs beside the local rig only: its tools are the rig's, not the service image's.
    import httpx
    from raccrochage_platform.auth import mint
    from raccrochage_platform.topology import load_topology
    from raccrochage_rig.state import RigState, load_secrets, rig_dir
    from rich.console import Console

    console = Console(stderr=True)
    folder = rig_dir()
    http = RigState.load(folder).services["psad"].http
    key = load_secrets(folder, load_topology())["token_key"]
    headers = {"Authorization": f"Bearer {mint(key, role='ops', sub='make-run')}"}
    stats, previous, deadline = {}, -1, time.monotonic() + 60
    async with httpx.AsyncClient(base_url=http, headers=headers, timeout=10) as client:
        while time.monotonic() < deadline:  # until the handed-over youths stop arriving
            stats = (await client.get("/stats")).json()
            opened = sum(t["open"] for t in stats["territories"].values())
            if opened == previous and opened > 0:
                break
            previous = opened
            await asyncio.sleep(1.0)
    console.print(
        "[cyan]psad[/] open cases by territory: "
        + ", ".join(f"{dep}: {t['open']}" for dep, t in stats.get("territories", {}).items())
    )
    console.print(
        f"[cyan]psad[/] a counsellor's work list (API docs at {http}/docs):\n"
        f"  TOKEN=$(.venv/bin/raccrochage token --role counsellor --territory 33)\n"
        f"  curl -s -H \"Authorization: Bearer $TOKEN\" '{http}/cases?work_list=priority&limit=3'"
    )
