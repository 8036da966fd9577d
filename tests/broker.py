"""The RabbitMQ the tests talk to, and the cleanup after them.

Two kinds of broker:

* The shared one, :func:`broker_url`: ``amqp://guest:guest@127.0.0.1:5672/`` unless
  ``EXPORTD_TEST_BROKER_URL`` says otherwise.  Other people may be using it at the same
  time, so a test on it only declares names of its own (a topology prefix nobody else
  has), deletes them afterwards, and never closes a connection or changes a setting.
* Private nodes, :func:`private_broker` and :func:`ack_timeout_broker`: a RabbitMQ node
  of the session's own (:class:`PrivateBroker`), started the first time a test asks for
  it and stopped at the end of the session.  Tests that cut connections, or need
  settings of the broker's own, run there.  A test that stops the broker has a node of
  its own, :func:`stoppable_broker`, started for it and removed after it.

``tests/conftest.py`` registers the fixtures, once: a session fixture imported into two
``conftest.py`` files would be two fixtures, and start two nodes.  Without a broker (the
shared one unreachable, or ``rabbitmq-server`` not installed for a private one) the test
is skipped, except under ``CI=true``, where it fails: CI must not pass by skipping.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import pytest
from amqp.exceptions import AMQPError
from kombu.connection import Connection
from yarl import URL

from exportd.bus.topology import Topology
from tests.needs import missing
from tests.ports import free_port

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"

NEEDS_RABBITMQCTL = pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None and os.environ.get("CI") != "true",
    reason="needs rabbitmqctl (under CI=true its absence fails the test instead)",
)
"""For tests that look at the shared broker with rabbitmqctl (its connections, its bindings)."""

PACKAGED_SCRIPTS = Path("/usr/lib/rabbitmq/bin")
"""Where Debian's and Fedora's packages keep RabbitMQ's own scripts: the ones on the PATH
there are wrappers that switch to the ``rabbitmq`` user, whose node could not use our
folders and whose Erlang cookie is not ours."""

STARTUP_TIMEOUT = 60
"""Seconds a private node may take to start."""


def broker_address() -> str:
    """The AMQP URL of the shared test broker."""
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
    """The shared test broker's URL; skips the test (fails it under ``CI=true``) without one."""
    url = broker_address()
    reason = _unreachable(url)
    if reason is not None:
        missing(f"{reason} (start it: ./scripts/broker)")
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


async def message_count(url: str, queue: str) -> int:
    """How many messages wait in ``queue``."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


def connections_named(rabbitmqctl: Callable[..., str], name: str) -> list[str]:
    """The PIDs of the connections whose client calls itself ``name``, as ``rabbitmqctl``
    (a function that runs it with the given arguments and returns its output) lists them."""
    # Only the JSON listing shows client properties, only the table a PID that
    # close_connection takes; the connection's name (its addresses) joins them.
    properties = json.loads(
        rabbitmqctl("list_connections", "name", "client_properties", "--formatter=json")
    )
    names = {
        row["name"]
        for row in properties
        if ["connection_name", "longstr", name] in row["client_properties"]
    }
    table = rabbitmqctl("list_connections", "--no-table-headers", "pid", "name")
    return [
        pid
        for pid, address in (line.split("\t") for line in table.splitlines())
        if address in names
    ]


@dataclass
class Outsider:
    """A client of the shared broker that is not the tests': a connection opened before
    the first test (with no heartbeat, so that idleness cannot close it), which every
    test must leave open.  ``connection`` is None when the broker was unreachable, and
    ``error`` says why."""

    name: str
    connection: Connection | None
    error: str = ""

    @classmethod
    def open(cls) -> Outsider:
        """Connect to the shared broker, the connection named after a new random name."""
        name = f"exportd-test outsider {secrets.token_hex(4)}"
        url = broker_address()
        reason = _unreachable(url)
        if reason is not None:
            return cls(name, None, reason)
        options = {"client_properties": {"connection_name": name}}
        connection = Connection(url, heartbeat=0, transport_options=options)
        try:
            connection.connect()
        except (OSError, AMQPError) as exc:
            return cls(name, None, f"cannot connect to {URL(url).with_password(None)}: {exc}")
        return cls(name, connection)


OUTSIDER = pytest.StashKey[Outsider]()
"""Where ``tests/conftest.py`` keeps the :class:`Outsider` it opened before the first test."""


@pytest.fixture(scope="session")
def outsider(pytestconfig: pytest.Config) -> Iterator[Outsider]:
    """The :class:`Outsider` of the session, closed at its end; skips the test (fails it
    under ``CI=true``) when it could not connect."""
    found = pytestconfig.stash[OUTSIDER]
    if found.connection is None:
        missing(found.error)
    with found.connection:
        yield found


def shared_rabbitmqctl(*arguments: str) -> str:
    """Run ``rabbitmqctl`` on this machine's default node (the shared broker); its output.

    Only to look: the shared broker is not ours to change."""
    return _run(["rabbitmqctl", "-q", *arguments])


def _run(command: list[str], environment: Mapping[str, str] | None = None) -> str:
    return subprocess.run(
        command, check=True, capture_output=True, text=True, timeout=90, env=environment
    ).stdout


def _scripts() -> Path | None:
    """The folder of ``rabbitmq-server`` and ``rabbitmqctl``, to run as the current user."""
    if (PACKAGED_SCRIPTS / "rabbitmq-server").exists():
        return PACKAGED_SCRIPTS
    found = shutil.which("rabbitmq-server")
    return Path(found).parent if found else None


@dataclass
class PrivateBroker:
    """A RabbitMQ node of the test session's own, beside the shared one.

    It has a node name, an AMQP port and a distribution port of its own (both on
    127.0.0.1), and keeps its data, logs, configuration, plugin list (empty: no
    management port) and Erlang cookie in ``folder``, which is also the ``HOME`` of the
    node and of the ``rabbitmqctl`` that drives it.  Make one with :meth:`start`.
    """

    folder: Path
    scripts: Path
    node: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    """``rabbitmq-server``, in a process group of its own."""

    @property
    def url(self) -> str:
        """Its AMQP URL."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @classmethod
    def start(
        cls,
        folder: Path,
        *,
        conf: Mapping[str, object] | None = None,
        advanced: Mapping[str, object] | None = None,
    ) -> PrivateBroker:
        """Start a node in ``folder`` and wait until it has started.

        ``conf`` holds ``rabbitmq.conf`` keys and their values; ``advanced`` settings of the
        ``rabbit`` application that only ``advanced.config`` takes (Erlang terms).  A node
        that does not start is stopped, and :class:`RuntimeError` says why.
        """
        scripts = _scripts()
        if scripts is None:
            raise FileNotFoundError("rabbitmq-server is not installed")
        broker = cls(folder, scripts, f"exportd-test-{secrets.token_hex(4)}@localhost", free_port())
        lines = "".join(f"{key} = {value}\n" for key, value in (conf or {}).items())
        (folder / "rabbitmq.conf").write_text(lines)
        rabbit = ", ".join(f"{{{key}, {value}}}" for key, value in (advanced or {}).items())
        (folder / "advanced.config").write_text(f"[{{rabbit, [{rabbit}]}}].\n")
        (folder / "enabled_plugins").write_text("[].\n")
        environment = {
            **broker._environment(),
            "RABBITMQ_NODENAME": broker.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(broker.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_PID_FILE": str(folder / "rabbitmq.pid"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        }
        with (folder / "output.log").open("wb") as output:
            broker.process = subprocess.Popen(
                [scripts / "rabbitmq-server"],
                cwd=folder,  # where a crash dump goes
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            broker._await_startup(broker.process)
        except RuntimeError as exc:
            broker.stop()
            raise RuntimeError(f"RabbitMQ node {broker.node} did not start: {exc}") from exc
        return broker

    def _environment(self) -> dict[str, str]:
        """The variables of the node's scripts: ours, but its own ``HOME`` (its cookie)."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        return {**inherited, "HOME": str(self.folder)}

    def _await_startup(self, process: subprocess.Popen[bytes]) -> None:
        """Wait until the node has started; ``await_startup`` fails at once while the node
        is not known yet, so it is tried again, as long as ``process`` runs."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                self.rabbitmqctl("await_startup", "--timeout", str(STARTUP_TIMEOUT))
                return
            except subprocess.SubprocessError as exc:
                if process.poll() is not None:
                    output = (self.folder / "output.log").read_text(errors="replace")
                    last = "\n".join(output.splitlines()[-5:])
                    raise RuntimeError(f"it exited ({process.returncode}):\n{last}") from exc
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not started in {STARTUP_TIMEOUT} s") from exc
                time.sleep(0.2)

    def rabbitmqctl(self, *arguments: str) -> str:
        """Run ``rabbitmqctl -q`` on this node; its output."""
        command = [str(self.scripts / "rabbitmqctl"), "-q", "-n", self.node, *arguments]
        return _run(command, self._environment())

    def stop(self) -> None:
        """Stop the node (kill its processes if it will not stop) and remove its folder."""
        if self.process is not None and self.process.poll() is None:
            try:
                self.rabbitmqctl("stop")
                self.process.wait(timeout=30)
            except subprocess.SubprocessError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def stop_app(self) -> None:
        """Stop RabbitMQ on the node, the Erlang node staying up: every connection drops and
        none is taken until :meth:`start_app`.  Durable queues and persistent messages stay."""
        self.rabbitmqctl("stop_app")

    def start_app(self) -> None:
        """Start RabbitMQ again on a node stopped by :meth:`stop_app`, and wait until it has."""
        self.rabbitmqctl("start_app")
        self.rabbitmqctl("await_startup", "--timeout", str(STARTUP_TIMEOUT))

    def close_all_connections(self) -> int:
        """Have the node close every client's connection; how many there were."""
        table = self.rabbitmqctl("list_connections", "--no-table-headers", "pid")
        self.rabbitmqctl("close_all_connections", "closed by a test")
        return len(table.split())

    def close_connections_named(self, name: str) -> int:
        """Have the node close every connection whose client calls itself ``name``;
        how many it closed."""
        pids = connections_named(self.rabbitmqctl, name)
        for pid in pids:
            self.rabbitmqctl("close_connection", pid, "closed by a test")
        return len(pids)


def _private_node(**settings: Mapping[str, object]) -> Iterator[PrivateBroker]:
    """A started :class:`PrivateBroker` in a new temporary folder, stopped afterwards;
    skips the test (fails it under ``CI=true``) when it cannot start."""
    folder = Path(tempfile.mkdtemp(prefix="exportd-test-rabbitmq-"))
    try:
        broker = PrivateBroker.start(folder, **settings)
    except (OSError, RuntimeError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        missing(f"no private RabbitMQ node: {exc}")
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def private_broker() -> Iterator[PrivateBroker]:
    """A RabbitMQ node of the session's own with the default settings, for tests that cut
    connections."""
    yield from _private_node()


class OnThePrivateNode:
    """A base for test classes whose tests, and the fixtures they use (``processes``,
    ``topology``, ``client``...), talk to the session's private node rather than the shared
    broker: tests that cut connections, which on the shared broker would cut other
    people's."""

    @pytest.fixture
    def broker_url(self, private_broker: PrivateBroker) -> str:
        """The private node's URL, in place of the shared broker's."""
        return private_broker.url


@pytest.fixture
def stoppable_broker() -> Iterator[PrivateBroker]:
    """A RabbitMQ node of the test's own, which it may stop and start again
    (:meth:`PrivateBroker.stop_app`): no other test shares it."""
    yield from _private_node()


ACK_TIMEOUT = 3.0
"""Seconds the :func:`ack_timeout_broker` lets a delivery go unacknowledged."""


@pytest.fixture(scope="session")
def ack_timeout_broker() -> Iterator[PrivateBroker]:
    """A RabbitMQ node of the session's own whose ``consumer_timeout`` is
    :data:`ACK_TIMEOUT` seconds, checked every 0.5 s (``channel_tick_interval``; a
    minute by default)."""
    yield from _private_node(
        conf={"consumer_timeout": int(ACK_TIMEOUT * 1000)},
        advanced={"channel_tick_interval": 500},
    )
