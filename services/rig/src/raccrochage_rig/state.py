"""The rig's folder: rig.json (endpoints, pids), secrets.json (passwords, keys), logs."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from raccrochage_platform.topology import Topology


def rig_dir() -> Path:
    return Path(os.environ.get("RACCROCHAGE_RIG_DIR", ".rig")).resolve()


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0): look at its state.
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return status != "Z"
    except (OSError, IndexError):
        return True


@dataclass
class ServiceState:
    pid: int | None = None
    http: str | None = None
    restarts: int = 0
    log: str | None = None


@dataclass
class NatsNodeState:
    """A node of `up --cluster N`, as the supervisor last started it."""

    url: str
    monitor: str
    pid: int | None = None
    restarts: int = 0  # by the supervisor, since `up`
    log: str | None = None


@dataclass
class RigState:
    status: str = "down"  # starting | up | stopping | down
    supervisor_pid: int | None = None
    nats_url: str | None = None
    nats_monitor: str | None = None
    nats_pid: int | None = None
    nats_nodes: dict[str, NatsNodeState] = field(default_factory=dict)  # `up --cluster N`, by name
    nats_external: bool = False
    pg_host: str | None = None
    pg_port: int | None = None
    pg_external: bool = False
    services: dict[str, ServiceState] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> RigState:
        path = folder / "rig.json"
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text(encoding="utf-8"))
        services = {k: ServiceState(**v) for k, v in raw.pop("services", {}).items()}
        nodes = {k: NatsNodeState(**v) for k, v in raw.pop("nats_nodes", {}).items()}
        known = {f.name for f in fields(cls)}  # a rig.json written by another version of the rig
        return cls(**{k: v for k, v in raw.items() if k in known}, services=services, nats_nodes=nodes)

    def save(self, folder: Path) -> None:
        path = folder / "rig.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        tmp.replace(path)


def load_secrets(folder: Path, topology: Topology) -> dict:
    """Generated once per rig, kept with mode 600: passwords and keys never enter git or logs."""
    path = folder / "secrets.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data.setdefault("pg_admin_password", secrets.token_urlsafe(24))
    data.setdefault("youth_id_key", secrets.token_hex(32))
    data.setdefault("token_key", secrets.token_hex(32))
    roles = data.setdefault("pg_roles", {})
    for name in topology.services:
        roles.setdefault(name, secrets.token_urlsafe(24))
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.chmod(path, 0o600)
    return data


def service_environment(folder: Path, service: str) -> dict[str, str]:
    """The environment the rig gives a service process, for commands that act as that service
    (`raccrochage ingest` writes to repérage's database). Variables already set win."""
    from urllib.parse import quote, urlsplit

    from raccrochage_platform.topology import load_topology

    topology = load_topology()
    secrets = load_secrets(folder, topology)
    state = RigState.load(folder)
    env = {
        "RACCROCHAGE_SERVICE": service,
        "RACCROCHAGE_YOUTH_ID_KEY": secrets["youth_id_key"],
        "RACCROCHAGE_TOKEN_KEY": secrets["token_key"],
    }
    if state.nats_url or os.environ.get("NATS_URL"):
        env["NATS_URL"] = os.environ.get("NATS_URL") or state.nats_url
    admin = os.environ.get("RACCROCHAGE_PG_ADMIN_URL")
    host, port = (
        (urlsplit(admin).hostname, urlsplit(admin).port or 5432) if admin else (state.pg_host, state.pg_port)
    )
    if host and port:
        role, password = f"svc_{service}", quote(secrets["pg_roles"][service], safe="")
        env["DATABASE_URL"] = (
            f"postgresql://{role}:{password}@{host}:{port}/{topology.services[service].database}"
        )
    return {**env, **{k: os.environ[k] for k in env if k in os.environ}}


def local_environment(service: str | None = None) -> dict[str, str]:
    """The `raccrochage.environment` entry point: what a command run beside this rig needs and
    the environment does not say. For a service, its whole environment (`raccrochage ingest`
    acts as repérage); otherwise the rig's NATS URL while it runs, and its token key. A rig
    that crashed gives no URL: `up` would take it for an external server."""
    folder = rig_dir()
    if service is not None:
        return service_environment(folder, service)
    env = {}
    state = RigState.load(folder)
    if state.status == "up" and state.nats_url and pid_alive(state.supervisor_pid):
        env["NATS_URL"] = state.nats_url
    path = folder / "secrets.json"
    if path.exists():
        env["RACCROCHAGE_TOKEN_KEY"] = json.loads(path.read_text(encoding="utf-8"))["token_key"]
    return env
