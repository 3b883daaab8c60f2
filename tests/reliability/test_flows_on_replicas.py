"""The flow tests (tests/flows) with two processes of every service, as `raccrochage up --replicas 2`
runs them: `RACCROCHAGE_REPLICAS=2` is `up`'s `--replicas` for the flows that start the rig, and
the number of processes of each service for those that start the services themselves
(`raccrochage_rig.testing.flows.service_processes`). `make test-flows-replicas` runs the same.
`make test-reliability` only (`reliability` mark): the flows run once more, on twice the processes,
each flow given 900 s before pytest-timeout calls it a hang (12 processes start where 6 did)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.reliability
@pytest.mark.timeout(3600)
def test_the_flow_tests_pass_with_two_processes_of_every_service(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/flows",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "timeout=900",
            f"--basetemp={tmp_path}",
        ],
        cwd=ROOT,
        env={**os.environ, "RACCROCHAGE_REPLICAS": "2"},
        capture_output=True,
        text=True,
        timeout=3500,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
