"""The rig's supervision without a rig: the restart backoff, and finding a second nats-server
on a JetStream store."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from raccrochage_rig.nats import NatsServer, healthy, nats_server_binary, servers_using
from raccrochage_rig.runner import HEALTHY_RUN_SECONDS, RestartPolicy, RigError, refuse_second_server


def test_the_delay_doubles_while_a_process_keeps_crashing_and_stops_at_30_seconds() -> None:
    policy = RestartPolicy()
    assert [policy.delay_after(ran_for=2.0) for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_the_delay_starts_again_at_one_second_after_a_healthy_run() -> None:
    policy = RestartPolicy()
    for _ in range(6):
        policy.delay_after(ran_for=1.0)
    assert policy.delay_after(ran_for=HEALTHY_RUN_SECONDS) == 1
    assert policy.delay_after(ran_for=1.0) == 2


def wait_until(probe, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"not true after {timeout}s"
        time.sleep(0.05)


@pytest.fixture
def rig_nats(tmp_path: Path):
    server = NatsServer(tmp_path / "nats", partner_users=False)
    server.start()
    yield server
    server.stop()


def test_a_server_started_by_hand_on_the_store_is_found_and_refused(rig_nats: NatsServer, tmp_path) -> None:
    assert rig_nats.strangers() == []
    assert servers_using(rig_nats.store, rig_nats.conf) == [rig_nats.process.pid]
    rig_nats.stop()
    # Someone starts the rig's server again by hand, from the rig's folder with a relative path.
    by_hand = subprocess.Popen(
        [nats_server_binary(), "-c", "nats.conf"],
        cwd=rig_nats.data_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: healthy(rig_nats.monitor_url) or by_hand.poll() is not None)
        fresh = NatsServer(rig_nats.data_dir, partner_users=False)
        assert fresh.strangers() == [by_hand.pid]
        with pytest.raises(RigError, match=f"pid {by_hand.pid}.*corrupt it.*raccrochage down"):
            refuse_second_server(fresh)
    finally:
        by_hand.terminate()
        by_hand.wait(10)
    assert NatsServer(rig_nats.data_dir).strangers() == []
