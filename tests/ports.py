"""Free TCP ports on 127.0.0.1, for the servers the tests start (RabbitMQ nodes, SMTP,
S3, HTTP)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
