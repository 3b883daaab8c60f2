"""Free loopback ports."""

from __future__ import annotations

import socket


def free_port(preferred: int | None = None) -> int:
    """`preferred` if it is free (returned as is), else a free port chosen by the kernel."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", preferred or 0))
        except OSError:
            if preferred is None:
                raise
            return free_port()
        return sock.getsockname()[1]
