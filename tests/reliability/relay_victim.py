"""A relay that stops dead after its PubAcks, before marking rows published (the test SIGKILLs it)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import nats
from raccrochage_platform.db import make_engine
from raccrochage_platform.outbox import OutboxRelay


class StopsAfterPubAck(OutboxRelay):
    def __init__(self, *args, marker: Path, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.marker = marker

    async def _publish(self, rows):
        outcome = await super()._publish(rows)  # every row is PubAcked here
        self.marker.write_text(str(len(outcome[0])))
        await asyncio.sleep(3600)  # the transaction that would mark them never commits
        return outcome


async def main(database_url: str, nats_url: str, marker: str, lease_seconds: str) -> None:
    nc = await nats.connect(nats_url)
    relay = StopsAfterPubAck(
        make_engine(database_url), nc.jetstream(), marker=Path(marker), lease_seconds=float(lease_seconds)
    )
    await relay.drain()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
