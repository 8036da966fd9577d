"""exportd's engine and workers in processes of their own, for the tests against RabbitMQ.

Run one::

    python -m tests.integration.processes worker --home H --prefix P [--concurrency N]
        [--toy-plugins]

It reads its settings from ``EXPORTD_*`` variables, as exportd does (``--home`` and
``--concurrency`` win), and runs an engine or a worker on RabbitMQ over the topology
of prefix ``P`` until SIGTERM (then it shuts down gracefully) or until it is killed.
``--toy-plugins`` registers :mod:`tests.unit.toy_plugins` too: the slow ``count``
source and the ``lines`` format.

The rest is the tests' side: the fixtures ``topology`` and ``processes`` (which
starts processes and kills whatever is left at the end), an engine in the test's
own process that shows the status updates it receives (:func:`watched_engine`),
and small helpers to talk AMQP as an outsider would.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import aio_pika
import msgspec
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import ChannelClosed

from exportd.bus.amqp import AmqpBus
from exportd.bus.base import Handler, Message, Subscription
from exportd.bus.topology import Topology
from exportd.config import Settings, load_settings
from exportd.config.loading import variable_name
from exportd.config.settings import BrokerSettings, EngineSettings, WorkerSettings
from exportd.engine.service import Engine
from exportd.errors import InvalidRequest
from exportd.kernel.validation import decode_json
from exportd.messages import FileInfo, PartStatus, StatusUpdate
from exportd.plugins.manager import Plugins
from exportd.workers.worker import SEQ_PER_DELIVERY, Worker
from tests.broker import delete_topology
from tests.integration.runtime import Runtime, running
from tests.unit import toy_plugins
from tests.unit.datastore import ORG

Role = Literal["engine", "worker"]
T = TypeVar("T")

REPOSITORY = Path(__file__).resolve().parents[2]


def connection_name(topology: Topology) -> str:
    """The name every connection of one test gives itself (``rabbitmqctl list_connections
    client_properties`` shows it)."""
    return f"exportd-test {topology.prefix}"


def plugins_for(settings: Settings, *, toy: bool) -> Plugins:
    """exportd's plugins, and the toy ones if asked for."""
    return Plugins(settings=settings, extra=[toy_plugins] if toy else [])


def tuned(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with some values changed; a section takes a mapping of its keys:
    ``tuned(settings, batch_size=10, worker={"ack_deadline": 1.0})``."""
    replaced = {
        name: msgspec.structs.replace(getattr(settings, name), **value)
        if isinstance(value, Mapping)
        else value
        for name, value in changes.items()
    }
    return msgspec.structs.replace(settings, **replaced)


# -- the launcher -------------------------------------------------------------------------


async def serve(role: Role, settings: Settings, topology: Topology, *, toy: bool) -> None:
    """Run an engine or a worker until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    plugins = plugins_for(settings, toy=toy)
    async with AmqpBus(settings.broker, topology, name=connection_name(topology)) as bus:
        if role == "engine":
            await Engine(bus, plugins, settings).run(stop)
        else:
            await Worker(bus, plugins, settings).run(stop)


def main(argv: list[str] | None = None) -> None:
    """The launcher's command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m tests.integration.processes")
    parser.add_argument("role", choices=["engine", "worker"])
    parser.add_argument("--home", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--toy-plugins", action="store_true")
    args = parser.parse_args(argv)
    settings = tuned(load_settings(), home=args.home)
    if args.concurrency is not None:
        settings = tuned(settings, worker={"concurrency": args.concurrency})
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    asyncio.run(serve(args.role, settings, Topology(prefix=args.prefix), toy=args.toy_plugins))


# -- starting processes ---------------------------------------------------------------------


def settings_variables(settings: Settings) -> dict[str, str]:
    """The ``EXPORTD_*`` variables that give a process ``settings``."""
    variables: dict[str, str] = {}

    def add(key: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for name, inner in value.items():
                add(f"{key}.{name}" if key else name, inner)
        else:
            variables[variable_name(key)] = (
                ",".join(value) if isinstance(value, list) else str(value)
            )

    add("", msgspec.to_builtins(settings))
    return variables


@dataclass
class Processes:
    """Engines and workers started for one test, on its topology and its home folder.

    A test may change ``settings`` before it starts a process.  Each process's
    output goes to ``<home>/logs/<role>-<n>.log``.
    """

    settings: Settings
    topology: Topology
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def logs(self) -> Path:
        """The folder of the processes' logs."""
        return self.settings.home_path / "logs"

    def start(
        self, role: Role, *, concurrency: int | None = None, toy: bool = True
    ) -> subprocess.Popen[bytes]:
        """Start an engine or a worker (with the toy plugins unless ``toy`` is false)."""
        command = [sys.executable, "-m", "tests.integration.processes", role]
        command += ["--home", self.settings.home, "--prefix", self.topology.prefix]
        if concurrency is not None:
            command += ["--concurrency", str(concurrency)]
        if toy:
            command.append("--toy-plugins")
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
        environment = {
            **inherited,
            **settings_variables(self.settings),
            "PYTHONPATH": str(REPOSITORY),
        }
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{role}-{len(self.started)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                command, env=environment, cwd=self.settings.home, stdout=output, stderr=output
            )
        self.started.append(process)
        return process

    def kill_all(self) -> None:
        """Kill every process still running, and reap them all."""
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)

    def print_logs(self) -> None:
        """Show every process's log (pytest shows it when the test fails)."""
        for log in sorted(self.logs.glob("*.log")):
            print(f"---- {log.name}\n{log.read_text(errors='replace')}")


def broker_settings(url: str) -> BrokerSettings:
    """Settings for a test's connections: quick reconnects, a short confirm timeout."""
    separator = "&" if "?" in url else "?"
    return BrokerSettings(url=f"{url}{separator}reconnect_interval=0.5", confirm_timeout=5.0)


@pytest.fixture
async def topology(broker_url: str) -> AsyncIterator[Topology]:
    """A topology no other test shares, deleted from the broker afterwards."""
    topology = Topology(prefix=f"test-{uuid.uuid4().hex[:12]}.")
    yield topology
    await delete_topology(broker_url, topology)


@pytest.fixture
def processes(
    tmp_path: Path, datastore: Path, broker_url: str, topology: Topology
) -> Iterator[Processes]:
    """Starts processes for the test; kills what is left, and shows their logs, at the end.

    Their settings: a home of the test's own with the test data store, and quick
    timings (batches of one row, progress every 0.2 s, a heartbeat every second).
    """
    shutil.copy(datastore, tmp_path / "data.db")
    settings = Settings(
        home=str(tmp_path),
        batch_size=1,
        broker=broker_settings(broker_url),
        worker=WorkerSettings(progress_interval=0.2, heartbeat_interval=1.0, shutdown_grace=2.0),
        engine=EngineSettings(sweep_interval=0.5),
    )
    started = Processes(settings, topology)
    try:
        yield started
    finally:
        started.kill_all()
        started.print_logs()


# -- watching ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeenUpdate:
    """A status update as the engine received it, and when (monotonic seconds)."""

    at: float
    update: StatusUpdate


class WatchedBus(AmqpBus):
    """An :class:`AmqpBus` that keeps every status update its engine receives."""

    def __init__(self, settings: BrokerSettings, topology: Topology) -> None:
        super().__init__(settings, topology, name=connection_name(topology))
        self.updates: list[SeenUpdate] = []

    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> Subscription:
        """Consume as the :class:`AmqpBus` does, noting the status updates on the way."""
        if queue != self.topology.status:
            return await super().consume(queue, handler, prefetch=prefetch)

        async def watching(message: Message) -> None:
            try:
                update = decode_json(message.body, StatusUpdate)
            except InvalidRequest:
                pass  # the engine's to refuse
            else:
                self.updates.append(SeenUpdate(time.monotonic(), update))
            await handler(message)

        return await super().consume(queue, watching, prefetch=prefetch)

    def of(self, job_id: str) -> list[StatusUpdate]:
        """The updates received about ``job_id``, in order."""
        return [seen.update for seen in self.updates if seen.update.job_id == job_id]

    def rows(self, job_id: str) -> int:
        """The most rows any update about ``job_id`` reported written so far."""
        return max((u.progress.rows for u in self.of(job_id) if u.progress), default=0)

    def first(self, job_id: str, status: PartStatus, *, delivery: int = 0) -> SeenUpdate | None:
        """The first update received about ``job_id`` with ``status`` from the ``delivery``-th
        delivery (counted from 0) of its task or a later one, if any yet."""
        return next(
            (
                seen
                for seen in self.updates
                if (seen.update.job_id, seen.update.status) == (job_id, status)
                and seen.update.seq > delivery * SEQ_PER_DELIVERY
            ),
            None,
        )


@asynccontextmanager
async def watched_engine(
    settings: Settings, topology: Topology, *, toy: bool = True
) -> AsyncIterator[tuple[Runtime, WatchedBus]]:
    """An engine in this process on RabbitMQ, recording the events and the status updates."""
    bus = WatchedBus(settings.broker, topology)
    async with running(bus, settings, workers=0, plugins=plugins_for(settings, toy=toy)) as runtime:
        yield runtime, bus


async def until(found: Callable[[], T | None], timeout: float = 20) -> T:
    """What ``found`` returns once that is true (not None, not empty), polling for up to
    ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not (value := found()):
            await asyncio.sleep(0.02)
    return value


async def consumers(url: str, queue: str) -> int:
    """How many consumers ``queue`` has (0 while it does not exist)."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except ChannelClosed:  # no such queue yet
            return 0
        return int(declared.declaration_result.consumer_count or 0)


async def wait_for_consumers(url: str, queue: str, count: int, timeout: float = 20) -> None:
    """Wait until ``queue`` has ``count`` consumers (engines or workers up and taking)."""
    async with asyncio.timeout(timeout):
        while await consumers(url, queue) != count:
            await asyncio.sleep(0.1)


# -- requests, files and AMQP as an outsider speaks it ----------------------------------------


def count_request(rows: int, **params: Any) -> dict[str, Any]:
    """A request for the toy ``count`` source in the ``lines`` format (one part below 10 rows)."""
    return {
        "source": "count",
        "format": "lines",
        "params": {"rows": rows, **params},
        "interval": {"start": "2024-01-01", "end": "2024-01-02"},
        "org_id": ORG,
    }


def counted_lines(rows: int) -> bytes:
    """What the ``lines`` format writes for ``count_request(rows)``."""
    body = "".join(f"{n}|{n * n}|row {n}\n" for n in range(rows))
    return f"n|square|label\n{body}-- end\n".encode()


def stored(settings: Settings, file: FileInfo) -> bytes:
    """The content of a finished file in the local storage, checked against its description."""
    content = (settings.files_path / file.key).read_bytes()
    assert len(content) == file.size
    assert hashlib.sha256(content).hexdigest() == file.sha256
    return content


class Inbox:
    """The messages of a queue as they arrive (consumed without acks)."""

    def __init__(self) -> None:
        self.arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def consume(self, queue: AbstractQueue) -> None:
        """Start taking ``queue``'s messages."""
        await queue.consume(self.arrived.put, no_ack=True)

    async def next(self, timeout: float = 20) -> AbstractIncomingMessage:
        """The next message, waiting up to ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            return await self.arrived.get()

    def drain(self) -> list[AbstractIncomingMessage]:
        """The messages that arrived and were not taken yet."""
        messages = []
        while not self.arrived.empty():
            messages.append(self.arrived.get_nowait())
        return messages


async def ask(broker_url: str, queue: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Send ``body`` as plain JSON to ``queue``, with a queue for the reply, as an
    outsider that knows only the wire contract does; the reply."""
    async with await aio_pika.connect(broker_url) as connection:
        channel = await connection.channel()
        replies = Inbox()
        reply_queue = await channel.declare_queue(exclusive=True)
        await replies.consume(reply_queue)
        message = aio_pika.Message(
            json.dumps(body).encode(),
            content_type="application/json",
            reply_to=reply_queue.name,
            correlation_id="outsider",
        )
        await channel.default_exchange.publish(message, routing_key=queue)
        reply: dict[str, Any] = json.loads((await replies.next()).body)
        return reply


async def command(broker_url: str, topology: Topology, **fields: Any) -> dict[str, Any]:
    """Send a command to the engine's control queue as plain JSON; its reply."""
    return await ask(broker_url, topology.control, fields)


if __name__ == "__main__":
    main()
