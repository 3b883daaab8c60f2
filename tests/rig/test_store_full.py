"""`status` says NATS is not healthy when a stream is full: its publishes are refused (the
events wait in the outboxes), though the server still answers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import nats
import pytest
from nats.js.errors import APIError
from raccrochage_platform.topology import declare, load_topology
from raccrochage_rig.nats import NatsServer
from raccrochage_rig.state import RigState
from raccrochage_rig.status import nearly_full

TOPOLOGY = """
[streams.TINY]
subjects = ["tiny.>"]
max_gigabytes = 0.00001  # about 10 KB
"""


def test_nearly_full_means_95_percent_of_a_limit_and_never_without_one() -> None:
    assert nearly_full(95, 100) and not nearly_full(94, 100)
    assert not nearly_full(10**12, -1) and not nearly_full(10**12, 0) and not nearly_full(None, 100)


def test_status_says_a_full_stream_refuses_publishes(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", partner_users=False)
    server.start()
    topology = tmp_path / "topology.toml"
    topology.write_text(TOPOLOGY)
    try:

        async def fill() -> None:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await declare(js, load_topology(topology))
            with pytest.raises(APIError, match="maximum bytes"):
                for _ in range(100):
                    await js.publish("tiny.event", b"x" * 1000)
            await nc.close()

        asyncio.run(fill())
        RigState(status="up", nats_url=server.url).save(tmp_path)
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("NATS_URL", "RACCROCHAGE_PG_ADMIN_URL")},
            "RACCROCHAGE_RIG_DIR": str(tmp_path),
            "RACCROCHAGE_TOPOLOGY": str(topology),
        }
        status = [sys.executable, "-m", "raccrochage_platform.cli", "status"]
        report = json.loads(
            subprocess.run([*status, "--json"], env=env, capture_output=True, text=True, timeout=60).stdout
        )
        assert report["nats"]["healthy"] is False
        assert "stream TINY" in report["nats"]["error"] and "wait in the outboxes" in report["nats"]["error"]
        said = subprocess.run(status, env=env, capture_output=True, text=True, timeout=60).stdout
        assert "JetStream full: stream TINY" in " ".join(said.split())
    finally:
        server.stop()
