"""`status` and `dlq list` say NATS is down, and end, when nothing listens at its address."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "raccrochage_platform.cli"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free once closed: nothing listens there


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("RACCROCHAGE_PG_ADMIN_URL",)},
        "RACCROCHAGE_RIG_DIR": str(tmp_path),
        "NATS_URL": f"nats://127.0.0.1:{_closed_port()}",
    }
    # nats-py reads max_reconnect_attempts=0 as "retry forever": without a bound here this hung
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def test_status_reports_nats_down(tmp_path: Path) -> None:
    result = _run(tmp_path, "status", "--json")
    report = json.loads(result.stdout)
    assert report["nats"]["healthy"] is False and report["nats"]["error"]
    assert "Traceback" not in result.stderr


def test_dlq_list_says_nats_is_down(tmp_path: Path) -> None:
    result = _run(tmp_path, "dlq", "list")
    assert result.returncode != 0
    assert "NATS" in result.stderr and "down" in result.stderr
    assert "Traceback" not in result.stderr
