"""A service as its own process, as the rig runs it, for integration and cross-service tests."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen
    url: str  # the HTTP base URL
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, and a wait of `timeout` seconds for a clean exit. A process still there is
        a shutdown that hangs: SIGABRT makes it write every thread's stack to its log
        (faulthandler, on in every process spawned here) before it dies."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGABRT)
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)


def spawn_service(name: str, env: dict[str, str], folder: Path, *, tag: str = "") -> ServiceProcess:
    """Start `raccrochage serve NAME` with `env` (HTTP_PORT=0 is set for it) and return at once,
    its `url` still empty: for a process that may die before it listens (a crash test's victim).
    Its log is `folder/NAME[-tag].log`, its port file `folder/NAME[-tag].port`."""
    label = f"{name}-{tag}" if tag else name
    port_file = folder / f"{label}.port"
    port_file.unlink(missing_ok=True)
    log_path = folder / f"{label}.log"
    env = {**env, "HTTP_PORT": "0", "RACCROCHAGE_PORT_FILE": str(port_file), "PYTHONFAULTHANDLER": "1"}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "raccrochage_platform.cli", "serve", name],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ServiceProcess(name, process, "", log_path)


def listening(running: ServiceProcess, folder: Path, *, tag: str = "", timeout: float = 60) -> ServiceProcess:
    """Wait until a spawned service's HTTP server listens (its port file written) and set its
    `url`; RuntimeError with its log's end when it dies first or `timeout` seconds pass."""
    label = f"{running.name}-{tag}" if tag else running.name
    port_file = folder / f"{label}.port"
    deadline = time.monotonic() + timeout
    while not port_file.exists() or not port_file.read_text().strip():
        if running.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{label} did not start:\n{running.log_text()[-4000:]}")
        time.sleep(0.1)
    running.url = f"http://127.0.0.1:{port_file.read_text().strip()}"
    return running


@contextlib.contextmanager
def service_process(
    name: str, env: dict[str, str], folder: Path, *, tag: str = ""
) -> Iterator[ServiceProcess]:
    """Start `raccrochage serve NAME` with `env` (HTTP_PORT=0 is set for it); yields once its HTTP
    server listens, and stops it after. Its log is `folder/NAME[-tag].log`."""
    label = f"{name}-{tag}" if tag else name
    (folder / f"{label}.log").unlink(missing_ok=True)
    running = spawn_service(name, env, folder, tag=tag)
    try:
        yield listening(running, folder, tag=tag)
    finally:
        running.stop()
