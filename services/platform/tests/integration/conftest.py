"""Fixtures of the platform's integration tests, beside those of raccrochage_rig.testing.fixtures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import pytest
import pytest_asyncio
from nats.aio.client import Client
from raccrochage_rig.testing import sample_service
from sqlalchemy.ext.asyncio import AsyncEngine


class Stored(NamedTuple):
    """A message as the stream holds it."""

    seq: int
    subject: str
    headers: dict[str, str]
    event: dict[str, Any]


@pytest_asyncio.fixture(loop_scope="session")
async def counters(service_engine: AsyncEngine) -> AsyncEngine:
    """The service database with the sample service's `counters` table."""
    async with service_engine.begin() as conn:
        await conn.run_sync(sample_service.metadata.create_all)
    return service_engine


@pytest.fixture
def stored(nc: Client) -> Callable[[str], Awaitable[list[Stored]]]:
    """Every message of a stream, oldest first."""

    async def read(stream: str) -> list[Stored]:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        found: list[Stored] = []
        if info.state.messages == 0:
            return found
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            raw = await js.get_msg(stream, seq)
            found.append(Stored(raw.seq, raw.subject, dict(raw.headers or {}), json.loads(raw.data)))
        return found

    return read


@pytest.fixture
def eventually() -> Callable[..., Awaitable[Any]]:
    """Poll `probe` (an async callable) until it returns `expected`; the timeout only guards
    against a hang."""

    async def wait(probe: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 15.0) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            got = await probe()
            if got == expected:
                return got
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"got {got!r}, expected {expected!r} after {timeout}s")
            await asyncio.sleep(0.05)

    return wait
