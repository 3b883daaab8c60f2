"""The rig's servers start even when the port chosen for them is taken before they bind it.

A port found free is taken meanwhile now and then: outgoing connections get their ephemeral
ports from the same range. The server then starts again on another port instead of failing.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from raccrochage_rig import nats as rig_nats
from raccrochage_rig import postgres as rig_postgres


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port held by a listening socket for the whole test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def hand_out_first(monkeypatch: pytest.MonkeyPatch, module, port: int) -> None:
    """`free_port` in `module` answers `port` once (as if it were free), then as usual."""
    real = module.free_port
    handed = []

    def free_port(preferred: int | None = None) -> int:
        if not handed:
            handed.append(port)
            return port
        return real(preferred)

    monkeypatch.setattr(module, "free_port", free_port)


def test_nats_starts_on_another_port_when_its_port_was_taken(
    server_tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    hand_out_first(monkeypatch, rig_nats, taken_port)
    server = rig_nats.NatsServer(server_tmp_path / "nats")
    server.start()
    try:
        assert server.port != taken_port
        assert rig_nats.healthy(server.monitor_url)
        assert "address already in use" in (server_tmp_path / "nats" / "nats.log").read_text()
    finally:
        server.stop()


def test_postgres_starts_on_another_port_when_its_port_was_taken(
    server_tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    hand_out_first(monkeypatch, rig_postgres, taken_port)
    server = rig_postgres.PostgresServer(server_tmp_path / "pg", say=lambda *_: None)
    server.start()
    try:
        assert server.port not in (0, taken_port)
        assert server.running_pid() is not None
    finally:
        server.stop()
