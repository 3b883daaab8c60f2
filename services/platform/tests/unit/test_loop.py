"""The event loop a process runs on, as the environment chooses it."""

from __future__ import annotations

import pytest
from raccrochage_platform import loop


async def _which() -> str:
    return loop.running()


def test_uvloop_unless_the_environment_says_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(loop.VARIABLE, raising=False)
    assert loop.run(_which()) == "uvloop"
    monkeypatch.setenv(loop.VARIABLE, "asyncio")
    assert loop.run(_which()) == "asyncio"
    monkeypatch.setenv(loop.VARIABLE, " UVLOOP ")
    assert loop.run(_which()) == "uvloop"


def test_an_unknown_loop_stops_with_what_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loop.VARIABLE, "trio")
    with pytest.raises(SystemExit, match=r"RACCROCHAGE_EVENT_LOOP='trio': expected one of uvloop, asyncio"):
        loop.run(_which())
