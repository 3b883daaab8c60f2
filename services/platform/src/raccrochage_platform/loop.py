"""The event loop a Raccrochage process runs on: uvloop, unless RACCROCHAGE_EVENT_LOOP=asyncio.

Half of a service's CPU goes to moving messages (asyncio's transports and loop, nats-py):
uvloop does that part in C. bench/psad_latency, back to back on this machine: PSAD's CPU
14.9 -> 13.2 and 13.7 -> 12.3 core-s, repérage's 7.6 -> 6.4 and 7.2 -> 6.2, p99 36 -> 20 and
28.5 -> 17.6 ms. `asyncio` stays a switch away, to compare or to debug with asyncio's own tools.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

VARIABLE = "RACCROCHAGE_EVENT_LOOP"
CHOICES = ("uvloop", "asyncio")


def chosen() -> str:
    """The loop the environment asks for; a value that is neither stops with what is allowed."""
    choice = os.environ.get(VARIABLE, "uvloop").strip().lower() or "uvloop"
    if choice not in CHOICES:
        raise SystemExit(f"{VARIABLE}={os.environ[VARIABLE]!r}: expected one of {', '.join(CHOICES)}")
    return choice


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, on uvloop unless the environment says asyncio."""
    try:
        choice = chosen()
    except SystemExit:
        main.close()  # never to run: no "coroutine was never awaited" on top of the message
        raise
    if choice == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def running() -> str:
    """The name of the loop running this coroutine (for the service's start-up log line)."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
