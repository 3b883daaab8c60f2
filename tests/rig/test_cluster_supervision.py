"""`raccrochage up --cluster 3` supervised: a node killed (SIGKILL) is started again by the
supervisor on its store and its ports, rejoins the cluster and its stream replicas become
current; `status` shows each node; `down` stops every node, the restarted one included.

The rig's test is marked `reliability` (a 3-node cluster and the sample service); the
status's rules for a node are checked without servers, in `make test`."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest
from raccrochage_rig.nats import NatsServer, meta_leader
from raccrochage_rig.runner import down
from raccrochage_rig.state import RigState
from raccrochage_rig.status import node_state, replicas

from .test_rig import cli, counter, processes_under, rig_env, status, wait_for

NODES = ["raccrochage-rig-1", "raccrochage-rig-2", "raccrochage-rig-3"]


def all_current(env: dict[str, str]) -> dict | None:
    """The status's nodes once every node is up with its replicas current."""
    nodes = status(env)["nats"]["nodes"]
    ready = all(n["state"] == "up" and n["replicas_current"] for n in nodes.values())
    return nodes if ready else None


@pytest.mark.reliability  # 90 to 125 s on the shared machine: a rig of 7 services on 3 nodes
@pytest.mark.timeout(600)
def test_a_killed_node_is_restarted_on_its_store_and_ports_and_down_stops_every_node(
    server_tmp_path: Path,
) -> None:
    folder = server_tmp_path / "rig"
    env = rig_env(folder)
    cli(env, "up", "--detach", "--only", "sample", "--cluster", "3")
    try:
        before = wait_for(lambda: all_current(env), 60)
        assert sorted(before) == NODES
        # The first node: the one in rig.json's URL, which the services and `status` reach first.
        victim = NODES[0]
        os.kill(before[victim]["pid"], signal.SIGKILL)
        after = wait_for(
            lambda: (nodes := all_current(env)) and nodes[victim]["restarts"] == 1 and nodes, 120
        )
        assert after[victim]["pid"] != before[victim]["pid"]
        assert after[victim]["url"] == before[victim]["url"]  # its own ports: the others' routes
        assert [after[n]["restarts"] for n in NODES[1:]] == [0, 0]
        monitor = json.loads((folder / "rig.json").read_text())["nats_nodes"][victim]["monitor"]
        assert meta_leader(monitor) in NODES  # it rejoined: it knows the cluster's meta leader

        # The service, moved to another node while the first was down, still handles events.
        sample = wait_for(lambda: (s := status(env)["services"]["sample"])["healthy"] and s, 60)
        httpx.post(f"{sample['http']}/counters/visits", timeout=5).raise_for_status()
        wait_for(lambda: counter(sample["http"], "visits") == 1, 60)
    finally:
        cli(env, "down")
    assert processes_under(folder) == []
    for node in NODES:
        assert NatsServer(folder / "nats-cluster" / f"node-{node[-1]}").strangers() == []
    assert all(n["pid"] is None for n in json.loads((folder / "rig.json").read_text())["nats_nodes"].values())


def test_a_node_is_restarting_only_while_a_supervisor_runs() -> None:
    assert node_state(alive=True, answering=True, supervised=True) == "up"
    assert node_state(alive=False, answering=False, supervised=True) == "restarting"
    assert node_state(alive=False, answering=False, supervised=False) == "down"
    assert node_state(alive=True, answering=False, supervised=True) == "down"  # paused: not restarted


def test_a_node_is_behind_where_the_leader_says_its_replica_is_not_current() -> None:
    streams = {
        "A": {"leader": "n1", "replicas": {"n2": True, "n3": False}},
        "B": {"leader": "n3", "replicas": {"n1": True, "n2": True}},
        "C": {"missing": True},
    }
    assert replicas("n1", streams) == {"replicas_current": True, "replicas_behind": []}
    assert replicas("n3", streams) == {"replicas_current": False, "replicas_behind": ["A"]}
    electing = {**streams, "D": {"error": "TimeoutError"}}  # D's leader died: no answer yet
    assert replicas("n1", electing)["replicas_current"] is None
    assert replicas("n3", electing) == {"replicas_current": False, "replicas_behind": ["A"]}
    assert replicas("n1", {})["replicas_current"] is None  # NATS not reached


def test_down_after_a_supervisor_crash_stops_a_node_left_on_a_cluster_store(tmp_path: Path) -> None:
    node = NatsServer(tmp_path / "nats-cluster" / "node-2", partner_users=False)
    node.start()
    try:
        down(tmp_path, say=lambda _message: None)  # rig.json knows no pid of it
        assert node.process.wait(30) is not None
    finally:
        node.stop()


def test_a_rig_json_written_by_another_version_still_loads(tmp_path: Path) -> None:
    (tmp_path / "rig.json").write_text(
        json.dumps({"status": "down", "nats_cluster_pids": [], "services": {}})
    )
    assert RigState.load(tmp_path).status == "down"
