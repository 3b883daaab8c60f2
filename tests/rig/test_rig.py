"""The local rig as a newcomer uses it: up --detach, status --json, a service restarted, down. On
the sample service alone (`--only sample`): the real services' own journeys are tests/flows'."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from raccrochage_rig.nats import NatsServer, nats_server_binary
from raccrochage_rig.testing.servers import Servers

SAMPLE = Path(__import__("raccrochage_rig.testing", fromlist=["x"]).__file__).parent
CLI = [sys.executable, "-m", "raccrochage_platform.cli"]


def rig_env(folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "RACCROCHAGE_PG_ADMIN_URL")}
    env.update(
        RACCROCHAGE_RIG_DIR=str(folder),
        RACCROCHAGE_TOPOLOGY=str(SAMPLE / "sample_topology.toml"),
        RACCROCHAGE_EXTRA_SERVICES="raccrochage_rig.testing.sample_service:spec",
        **extra,
    )
    return env


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=360)
    if check and result.returncode != 0:
        raise AssertionError(f"raccrochage {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def status(env: dict[str, str]) -> dict:
    return json.loads(cli(env, "status", "--json").stdout)


def processes_under(folder: Path) -> list[str]:
    """Command lines of live processes that mention the rig folder (services, nats, postgres)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if state != "Z" and (str(folder) in cmdline or str(folder).encode() in environ):
            found.append(f"{proc.name}: {cmdline}")
    return found


def wait_for(probe, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met after {timeout}s")
        time.sleep(0.2)


def counter(http: str, name: str) -> int:
    return httpx.get(f"{http}/counters/{name}", timeout=5).json()["value"]


def test_rig_up_status_restart_down_and_up_again(server_tmp_path: Path) -> None:
    folder = server_tmp_path / "rig"
    env = rig_env(folder)
    cli(env, "up", "--detach", "--only", "sample")
    try:
        report = status(env)
        assert report["nats"]["healthy"] and report["postgres"]["healthy"]
        sample = report["services"]["sample"]
        assert sample["healthy"], report
        assert report["consumers"]["sample_counter"]["pending"] == 0
        assert report["dead_letters"] == 0
        rig_json = json.loads((folder / "rig.json").read_text())
        assert rig_json["status"] == "up" and rig_json["nats_url"] == report["nats"]["url"]

        # Events flow: HTTP -> outbox -> relay -> JetStream -> consumer -> database.
        httpx.post(f"{sample['http']}/counters/visits", params={"by": 3}, timeout=5).raise_for_status()
        wait_for(lambda: counter(sample["http"], "visits") == 3)
        metrics = httpx.get(f"{sample['http']}/metrics", timeout=5).text
        assert (
            'raccrochage_events_handled_total{consumer="sample_counter",type="sample.counter.incremented.v1"} 1.0'
            in metrics
        )
        assert 'raccrochage_consumer_pending{consumer="sample_counter"} 0.0' in metrics
        assert 'raccrochage_outbox_backlog{service="sample"} 0.0' in metrics
        assert json.loads(cli(env, "dlq", "list", "--json").stdout) == []

        # A second `up` on a running rig refuses and says why.
        again = cli(env, "up", "--detach", "--only", "sample", check=False)
        assert again.returncode != 0 and "already runs" in (again.stdout + again.stderr)

        # A service that dies is restarted.
        os.kill(sample["pid"], signal.SIGKILL)
        restarted = wait_for(
            lambda: (s := status(env)["services"]["sample"])["healthy"] and s["restarts"] == 1 and s
        )
        assert restarted["pid"] != sample["pid"]

        # Servers that die are started again on their ports; the services reconnect.
        nats_pid = json.loads((folder / "rig.json").read_text())["nats_pid"]
        os.kill(nats_pid, signal.SIGKILL)
        wait_for(lambda: json.loads((folder / "rig.json").read_text())["nats_pid"] != nats_pid, 60)
        postmaster = int((folder / "postgres" / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGKILL)
        wait_for(
            lambda: (
                (r := status(env))["nats"]["healthy"]
                and r["postgres"]["healthy"]
                and r["services"]["sample"]["healthy"]
            ),
            120,
        )
        httpx.post(f"{restarted['http']}/counters/visits", timeout=5).raise_for_status()
        wait_for(lambda: counter(restarted["http"], "visits") == 4, 60)
    finally:
        cli(env, "down")
    left = processes_under(folder)
    assert left == [], f"`raccrochage down` returned with processes still running: {left}"

    # A nats-server started by hand on the rig's store: `up` refuses to start a second one on
    # it, `down` stops it.
    conf = (folder / "nats" / "nats.conf").read_text()
    passwords = {name: "by-hand" for name in re.findall(r"\$(\w+)", conf)}  # the users' passwords
    by_hand = subprocess.Popen(
        [nats_server_binary(), "-c", "nats.conf"],
        cwd=folder / "nats",
        env={**os.environ, **passwords},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: NatsServer(folder / "nats").strangers() == [by_hand.pid])
    refused = cli(env, "up", "--detach", "--only", "sample", check=False)
    assert refused.returncode != 0 and f"pid {by_hand.pid}" in refused.stdout + refused.stderr
    cli(env, "down")
    assert by_hand.wait(30) is not None

    # Up again: the data is kept.
    cli(env, "up", "--detach", "--only", "sample")
    try:
        http = status(env)["services"]["sample"]["http"]
        assert counter(http, "visits") == 4
        # The supervisor crashes: the next `up` cleans its leftovers and starts cleanly.
        supervisor = json.loads((folder / "rig.json").read_text())["supervisor_pid"]
        os.kill(supervisor, signal.SIGKILL)
        wait_for(
            lambda: (
                not Path(f"/proc/{supervisor}").exists()
                or Path(f"/proc/{supervisor}/stat").read_text().split(")")[-1].split()[0] == "Z"
            )
        )
        cli(env, "up", "--detach", "--only", "sample")
        report = status(env)
        assert report["services"]["sample"]["healthy"] and report["nats"]["healthy"]
    finally:
        cli(env, "down")
    assert processes_under(folder) == []


def test_up_only_names_a_service_that_is_not_installed(tmp_path: Path) -> None:
    refused = cli(
        rig_env(tmp_path / "rig"), "up", "--detach", "--only", "sample", "--only", "nope", check=False
    )
    assert refused.returncode == 2
    assert "--only nope: no such service (installed: " in refused.stderr and "sample" in refused.stderr
    assert not (tmp_path / "rig").exists()


def test_rig_uses_external_servers_when_named(server_tmp_path: Path, servers: Servers) -> None:
    folder = server_tmp_path / "rig-external"
    env = rig_env(folder, NATS_URL=servers.nats_url, RACCROCHAGE_PG_ADMIN_URL=servers.pg_admin_url)
    cli(env, "up", "--detach", "--only", "sample")
    try:
        report = status(env)
        assert report["nats"]["url"] == servers.nats_url and report["nats"]["healthy"]
        assert report["postgres"]["healthy"] and report["services"]["sample"]["healthy"]
        assert not (folder / "nats").exists() and not (folder / "postgres").exists()
    finally:
        cli(env, "down")
        # Leave the shared server as we found it: the sample stream would overlap other tests'.
        import asyncio

        import nats

        async def drop_sample_stream() -> None:
            nc = await nats.connect(servers.nats_url)
            await nc.jetstream().delete_stream("SAMPLE")
            await nc.close()

        asyncio.run(drop_sample_stream())
