"""`raccrochage up` and `down`: start servers, provision, migrate, declare, supervise services."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import nats
from raccrochage_platform.settings import nats_servers
from raccrochage_platform.topology import Topology, declare, load_topology

from .nats import NatsCluster, NatsServer
from .ports import free_port
from .postgres import PostgresServer
from .provision import provision
from .state import NatsNodeState, RigState, ServiceState, load_secrets, pid_alive


class RigError(RuntimeError):
    pass


class RigAlreadyRunning(RigError):
    """Another supervisor owns this rig folder: leave it (and its rig.json) alone."""


# A process that ran this long before dying is not crash-looping: its next restart is quick again.
HEALTHY_RUN_SECONDS = 60.0


@dataclass
class RestartPolicy:
    """Backoff between restarts of one process: 1 s, 2 s, 4 s ... 30 s while it keeps crashing
    soon after each start, back to 1 s once it has run `HEALTHY_RUN_SECONDS` before dying."""

    streak: int = 0  # crashes in a row, each within HEALTHY_RUN_SECONDS of its start

    def delay_after(self, ran_for: float) -> float:
        if ran_for >= HEALTHY_RUN_SECONDS:
            self.streak = 0
        delay = min(30.0, 2.0 ** min(self.streak, 5))
        self.streak += 1
        return delay


@dataclass
class ServiceProcess:
    """One process of a service, restarted with backoff when it dies. Replica 1 is named after
    the service (`psad`), replica n > 1 `psad-n`: its own HTTP port, port file and log; every
    replica pulls from the same durable consumers (JetStream shares their messages) and relays
    the same outbox (rows are leased to one relay at a time)."""

    name: str
    env: dict[str, str]
    folder: Path
    replica: int = 1
    process: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    http: str | None = None

    @property
    def label(self) -> str:
        return self.name if self.replica == 1 else f"{self.name}-{self.replica}"

    @property
    def port_file(self) -> Path:
        return self.folder / "run" / f"{self.label}.port"

    @property
    def log_path(self) -> Path:
        return self.folder / "logs" / f"{self.label}.log"

    def start(self) -> None:
        self.port_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        env = {**os.environ, **self.env, "RACCROCHAGE_PORT_FILE": str(self.port_file)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "raccrochage_platform.cli", "serve", self.name],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.started_at = time.monotonic()
        self.http = None

    def poll(self, say) -> None:
        if self.process is None:
            return
        if self.http is None and self.port_file.exists():
            self.http = f"http://127.0.0.1:{self.port_file.read_text().strip()}"
        code = self.process.poll()
        if code is None:
            return
        now = time.monotonic()
        if self.next_start == 0.0:
            delay = self.policy.delay_after(now - self.started_at)
            self.next_start = now + delay
            say(f"service {self.label} exited with {code}; restarting in {delay:.0f}s (see {self.log_path})")
        elif now >= self.next_start:
            self.restarts += 1
            self.next_start = 0.0
            self.start()

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def stop(self, grace: float = 15.0) -> None:
        self.terminate()
        if self.process is not None:
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Rig:
    folder: Path
    say: object = print
    topology: Topology = field(default_factory=load_topology)
    nats_server: NatsServer | None = None
    nats_cluster: NatsCluster | None = None
    pg_server: PostgresServer | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    state: RigState = field(default_factory=RigState)

    # --- up ---------------------------------------------------------------------------------
    def up(self, *, only: set[str] | None = None, replicas: int = 1, cluster: int = 1) -> None:
        """`replicas` processes of every service; with `cluster` > 1, that many JetStream nodes on
        loopback (in `nats-cluster/`, apart from the single node's store) and every stream
        replicated on each of them."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.clean_stale()
        secrets = load_secrets(self.folder, self.topology)
        self.state = RigState(status="starting", supervisor_pid=os.getpid())
        self.state.save(self.folder)
        if cluster > 1:
            self.topology = replicated(self.topology, cluster)
        nats_url = self._start_cluster(cluster) if cluster > 1 else self._start_nats()
        admin_url = self._start_postgres(secrets)
        database_urls = asyncio.run(provision(admin_url, self.topology, secrets["pg_roles"]))
        self.say(f"databases ready: {', '.join(sorted(database_urls))}")
        from raccrochage_platform.migrations import upgrade
        from raccrochage_platform.service import installed_services

        specs = {n: s for n, s in installed_services().items() if only is None or n in only}
        for name, spec in specs.items():
            self.say(f"migrating {name}")
            upgrade(spec.migrations, database_urls[name])
        asyncio.run(_declare(nats_url, self.topology, set(specs)))
        self.say(f"streams declared: {', '.join(self.topology.streams)}")
        for name, spec in specs.items():
            env = self._service_env(spec, nats_url, database_urls[name], secrets)
            for replica in range(1, replicas + 1):
                process = ServiceProcess(name, env, self.folder, replica=replica)
                self.services[process.label] = process
                process.start()
        self._wait_services(timeout=180.0 * replicas)  # every process starts at once
        self.state.status = "up"
        self._save()
        self.say(f"rig up in {self.folder} ({len(specs)} services, {replicas} process(es) each)")

    def _start_nats(self) -> str:
        external = os.environ.get("NATS_URL")
        if external:
            self.state.nats_url, self.state.nats_external = external, True
            self.say(f"using NATS at {external} (NATS_URL)")
            return external
        previous = RigState.load(self.folder)
        self.nats_server = NatsServer(self.folder / "nats", port=0)
        refuse_second_server(self.nats_server)
        # Reuse the ports of the previous run when they are free: bookmarks keep working.
        if previous.nats_url:
            self.nats_server.port = int(previous.nats_url.rsplit(":", 1)[1])
        self.nats_server.start()
        self.state.nats_url, self.state.nats_monitor = self.nats_server.url, self.nats_server.monitor_url
        self.state.nats_pid = self.nats_server.process.pid
        self._save()
        self.say(f"nats-server with JetStream on {self.nats_server.url}")
        return self.nats_server.url

    def _start_cluster(self, size: int) -> str:
        for server in cluster_stores(self.folder):
            refuse_second_server(server)
        self.nats_cluster = NatsCluster(self.folder / "nats-cluster", size=size)
        self.nats_cluster.start()
        # Every node: a service (re)started while one is down connects to another.
        self.state.nats_url = ",".join(self.nats_cluster.urls)
        self.state.nats_monitor = self.nats_cluster.nodes[0].monitor_url
        self.state.nats_nodes = {
            node.server_name: NatsNodeState(
                url=node.url,
                monitor=node.monitor_url,
                pid=node.process.pid,
                log=str(node.data_dir / "nats.log"),
            )
            for node in self.nats_cluster.nodes
        }
        self._save()
        self.say(f"{size} nats-server nodes clustered with JetStream on {', '.join(self.nats_cluster.urls)}")
        return self.state.nats_url

    def _start_postgres(self, secrets: dict) -> str:
        external = os.environ.get("RACCROCHAGE_PG_ADMIN_URL")
        if external:
            url = urlsplit(external)
            self.state.pg_host, self.state.pg_port, self.state.pg_external = (
                url.hostname,
                url.port or 5432,
                True,
            )
            self.say(f"using PostgreSQL at {url.hostname}:{url.port or 5432} (RACCROCHAGE_PG_ADMIN_URL)")
            return external
        previous = RigState.load(self.folder)
        self.pg_server = PostgresServer(
            self.folder / "postgres",
            port=previous.pg_port or 0,
            admin_password=secrets["pg_admin_password"],
            say=self.say,
        )
        self.pg_server.start()
        self.state.pg_host, self.state.pg_port = self.pg_server.host, self.pg_server.port
        self._save()
        self.say(
            f"PostgreSQL on {self.pg_server.host}:{self.pg_server.port} (data in {self.pg_server.cluster})"
        )
        return self.pg_server.admin_url

    def _service_env(self, spec, nats_url: str, database_url: str, secrets: dict) -> dict[str, str]:
        return {
            "RACCROCHAGE_SERVICE": spec.name,
            "NATS_URL": nats_url,
            "DATABASE_URL": database_url,
            "HTTP_PORT": "0",
            "RACCROCHAGE_RIG_DIR": str(self.folder),
            "RACCROCHAGE_YOUTH_ID_KEY": secrets["youth_id_key"],
            "RACCROCHAGE_TOKEN_KEY": secrets["token_key"],
        }

    def _wait_services(self, timeout: float = 180.0) -> None:
        # Seven Python processes importing at once on two busy cores can take over a minute.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for service in self.services.values():
                service.poll(self.say)
            if all(s.http for s in self.services.values()):
                return
            time.sleep(0.2)
        missing = [n for n, s in self.services.items() if not s.http]
        raise RigError(
            f"services not listening after {timeout}s: {', '.join(missing)} (see {self.folder}/logs)"
        )

    def _save(self) -> None:
        self.state.services = {
            n: ServiceState(
                pid=s.process.pid if s.process else None,
                http=s.http,
                restarts=s.restarts,
                log=str(s.log_path),
            )
            for n, s in self.services.items()
        }
        self.state.save(self.folder)

    # --- supervise --------------------------------------------------------------------------
    def supervise(self, stop: list[bool]) -> None:
        """Restart services and servers that die until `stop[0]` is set (by a signal handler)."""
        last = None
        watches = self._server_watches()
        while not stop[0]:
            for watch in watches:
                watch.poll(self.say)
            for service in self.services.values():
                service.poll(self.say)
            snapshot = [
                (s.process.pid if s.process else None, s.http, s.restarts) for s in self.services.values()
            ]
            if snapshot != last:
                self._save()
                last = snapshot
            time.sleep(0.5)

    def _server_watches(self) -> list[ServerWatch]:
        """The servers this rig started (not external ones), each restarted on its own ports:
        the single nats-server, or every node of the cluster (on its store, rejoining the others)."""
        watches = []
        if self.nats_server is not None:
            watches.append(self._nats_watch(self.nats_server, "nats-server"))
        if self.nats_cluster is not None:
            watches += [self._nats_watch(n, f"nats-server {n.server_name}") for n in self.nats_cluster.nodes]
        if self.pg_server is not None:
            pg_server = self.pg_server

            def restart_postgres() -> None:
                keep_port(pg_server.port, "PostgreSQL")
                pg_server.start()

            watches.append(
                ServerWatch(
                    "PostgreSQL",
                    alive=lambda: pg_server.running_pid() is not None,
                    restart=restart_postgres,
                    log=pg_server.data_dir / "postgres.log",
                )
            )
        return watches

    def _nats_watch(self, server: NatsServer, name: str) -> ServerWatch:
        def restart() -> None:
            try:
                restart_in_place(server, name)
            finally:  # a process launched but slow to answer is ours to stop too
                node = self.state.nats_nodes.get(server.server_name)  # None: the single server
                if node is None:
                    self.state.nats_pid = server.process.pid
                elif node.pid != server.process.pid:
                    node.pid, node.restarts = server.process.pid, node.restarts + 1
                self._save()

        return ServerWatch(
            name,
            alive=lambda: server.process is not None and server.process.poll() is None,
            restart=restart,
            log=server.data_dir / "nats.log",
        )

    # --- down -------------------------------------------------------------------------------
    def stop_all(self) -> None:
        self.state.status = "stopping"
        self._save()
        for service in self.services.values():  # all at once, then wait for each
            service.terminate()
        for service in self.services.values():
            service.stop()
        if self.pg_server is not None:
            self.pg_server.stop()
        if self.nats_server is not None:
            self.nats_server.stop()
        if self.nats_cluster is not None:
            self.nats_cluster.stop()
        forget_pids(self.state)
        self.state.save(self.folder)
        self.say("rig stopped")

    def clean_stale(self, *, stop_strangers: bool = False) -> None:
        """After a crash: stop what the dead supervisor left, forget its pids. With
        `stop_strangers` (`down`), also a nats-server started by hand on the rig's store."""
        previous = RigState.load(self.folder)
        if (
            previous.supervisor_pid
            and pid_alive(previous.supervisor_pid)
            and previous.supervisor_pid != os.getpid()
        ):
            raise RigAlreadyRunning(
                f"a rig already runs from {self.folder} (pid {previous.supervisor_pid}); "
                "`raccrochage down` first"
            )
        leftovers = [s.pid for s in previous.services.values() if s.pid] + [
            previous.nats_pid,
            *(node.pid for node in previous.nats_nodes.values()),
        ]
        if stop_strangers:
            for server in [NatsServer(self.folder / "nats"), *cluster_stores(self.folder)]:
                leftovers += server.strangers()
        stopped = [pid for pid in leftovers if pid and _terminate_if_ours(pid)]
        pg = PostgresServer(self.folder / "postgres", say=self.say)
        if pg.initialised() and pg.running_pid():
            pg.stop()
            stopped.append(-1)
        if (stopped or previous.status not in ("down",)) and previous.supervisor_pid:
            self.say(f"cleaned up after a rig that did not stop cleanly ({len(stopped)} processes stopped)")


@dataclass
class ServerWatch:
    """A server of the rig, started again with backoff when it dies (killed, out of memory):
    the services reconnect to it by themselves."""

    name: str
    alive: Callable[[], bool]
    restart: Callable[[], None]  # raises when it cannot start
    log: Path
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    started_at: float = field(default_factory=time.monotonic)
    next_start: float = 0.0

    def poll(self, say) -> None:
        if self.next_start == 0.0:
            if self.alive():
                return
            delay = self.policy.delay_after(time.monotonic() - self.started_at)
            self.next_start = time.monotonic() + delay
            say(f"{self.name} is down; starting it again in {delay:.0f}s (see {self.log})")
        elif time.monotonic() >= self.next_start:
            self.started_at, self.next_start = time.monotonic(), 0.0
            try:
                self.restart()
                say(f"{self.name} started again")
            except (RigError, RuntimeError, OSError) as error:
                say(f"{self.name} did not start again: {error}")


def refuse_second_server(server: NatsServer) -> None:
    strangers = server.strangers()
    if strangers:
        raise RigError(
            f"a nats-server the rig did not start (pid {', '.join(map(str, strangers))}) uses the "
            f"JetStream store {server.store}; a second server on it would corrupt it. "
            "`raccrochage down` stops it."
        )


def cluster_stores(folder: Path) -> list[NatsServer]:
    """The nodes' stores a previous `up --cluster N` left in `folder` (to find strangers on them)."""
    return [NatsServer(node) for node in sorted((folder / "nats-cluster").glob("node-*"))]


def restart_in_place(server: NatsServer, name: str) -> None:
    """Start a dead nats-server of the rig again on its store and its ports (client, monitor and,
    for a cluster node, route: the other nodes' routes point to it), or not at all."""
    refuse_second_server(server)
    for port in (server.port, server.http_port, server.cluster_port):
        if port:
            keep_port(port, name)
    server.launch(server.data_dir / "nats.log")
    server.wait_ready(timeout=60)


def forget_pids(state: RigState) -> None:
    """A stopped rig's state: no supervisor, no process."""
    state.status, state.supervisor_pid, state.nats_pid = "down", None, None
    for process in [*state.services.values(), *state.nats_nodes.values()]:
        process.pid = None


def keep_port(port: int, name: str) -> None:
    """The services know the server by its port: start it again there or not at all."""
    if free_port(port) != port:
        raise RigError(f"port {port} of {name} is taken by another process")


def _terminate_if_ours(pid: int) -> bool:
    """SIGTERM `pid` if it still is one of our processes (pids are reused)."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    if b"raccrochage" not in cmdline and b"nats-server" not in cmdline:
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def replicated(topology: Topology, replicas: int) -> Topology:
    """`topology` with every stream kept on `replicas` nodes."""
    streams = {name: dataclasses.replace(s, replicas=replicas) for name, s in topology.streams.items()}
    return dataclasses.replace(topology, streams=streams)


async def _declare(nats_url: str, topology: Topology, services: set[str]) -> None:
    nc = await nats.connect(nats_servers(nats_url), connect_timeout=5, max_reconnect_attempts=3)
    try:
        await declare(nc.jetstream(), topology, services=services)
    finally:
        await nc.close()


def down(folder: Path, say=print, timeout: float = 60.0) -> bool:
    """Stop a detached rig: signal its supervisor, or clean up after it if it died."""
    state = RigState.load(folder)
    if state.supervisor_pid and pid_alive(state.supervisor_pid):
        os.kill(state.supervisor_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(state.supervisor_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(state.supervisor_pid):
            os.kill(state.supervisor_pid, signal.SIGKILL)
    rig = Rig(folder, say=say)
    rig.clean_stale(stop_strangers=True)
    final = RigState.load(folder)
    forget_pids(final)
    final.save(folder)
    return True
