"""The RabbitMQ the tests talk to, and the cleanup after them.

Tests that need RabbitMQ use the :func:`broker_url` fixture (import it into a
``conftest.py``).  The broker is ``amqp://guest:guest@127.0.0.1:5672/`` unless
``EXPORTD_TEST_BROKER_URL`` says otherwise.  When it is unreachable the test is
skipped, except under ``CI=true``, where it fails: CI must not pass by
skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import aio_pika
import pytest
from yarl import URL

from exportd.bus.topology import Topology

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"

NEEDS_RABBITMQCTL = pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None and os.environ.get("CI") != "true",
    reason="needs rabbitmqctl (under CI=true its absence fails the test instead)",
)
"""For tests that drive the broker with rabbitmqctl (closing connections, settings)."""


def broker_address() -> str:
    """The AMQP URL of the test broker."""
    return os.environ.get("EXPORTD_TEST_BROKER_URL", DEFAULT_BROKER_URL)


def _unreachable(url: str) -> str | None:
    """Why nothing listens at ``url``, or None when something does."""
    parsed = URL(url)
    host, port = parsed.host or "127.0.0.1", parsed.port or 5672
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return f"RabbitMQ is unreachable at {host}:{port} ({exc})"


@pytest.fixture(scope="session")
def broker_url() -> str:
    """The test broker's URL; skips the test (fails it under ``CI=true``) without one."""
    url = broker_address()
    reason = _unreachable(url)
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI needs it (start it: rabbitmq-server -detached)")
        pytest.skip(reason)
    return url


async def delete_topology(url: str, topology: Topology) -> None:
    """Delete ``topology``'s queues and exchanges from the broker at ``url``."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for queue in topology.queues():
            await channel.queue_delete(queue.name)
        for exchange in topology.exchanges():
            await channel.exchange_delete(exchange.name)


def close_all_connections() -> int:
    """Have the broker close every client's connection (``rabbitmqctl
    close_all_connections``): not only this test's, so run no other client of this
    broker meanwhile.  Returns how many there were."""
    table = _rabbitmqctl("list_connections", "--no-table-headers", "pid")
    _rabbitmqctl("close_all_connections", "closed by a test")
    return len(table.split())


def close_connections_named(name: str) -> int:
    """Have the broker close every connection whose client calls itself ``name``
    (as ``rabbitmqctl close_all_connections`` would, sparing other clients).
    Returns how many it closed."""
    # Only the JSON listing shows client properties, only the table a PID that
    # close_connection takes; the connection's name (its addresses) joins them.
    properties = json.loads(
        _rabbitmqctl("list_connections", "name", "client_properties", "--formatter=json")
    )
    names = {
        row["name"]
        for row in properties
        if ["connection_name", "longstr", name] in row["client_properties"]
    }
    table = _rabbitmqctl("list_connections", "--no-table-headers", "pid", "name")
    pids = [
        pid
        for pid, address in (line.split("\t") for line in table.splitlines())
        if address in names
    ]
    for pid in pids:
        _rabbitmqctl("close_connection", pid, "closed by a test")
    return len(pids)


def _rabbitmqctl(*arguments: str) -> str:
    return subprocess.run(
        ["rabbitmqctl", "-q", *arguments], check=True, capture_output=True, text=True, timeout=30
    ).stdout
