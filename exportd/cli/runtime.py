"""What the commands that talk to a broker or run a service share: clients (of
RabbitMQ, or of the control socket of ``exportd serve``) and buses built from the
settings, logging, and signal handling."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec

from exportd.bus.amqp import AmqpBus
from exportd.bus.base import Bus, Message, Subscription
from exportd.bus.inspection import BrokerInspector
from exportd.bus.topology import Topology
from exportd.cli.arguments import with_broker
from exportd.cli.text import event_line
from exportd.client import Client
from exportd.config import Settings
from exportd.config.settings import LogSettings
from exportd.control import SocketClient, socket_path
from exportd.errors import InvalidRequest
from exportd.logs.handler import log_to_stderr
from exportd.messages import JobEvent

if TYPE_CHECKING:  # loaded only by the commands that serve metrics, not by `jobs`, `watch`
    from exportd.metrics.process import ProcessMetrics

log = logging.getLogger("exportd")

REPLY_TIMEOUT = 10.0
"""Seconds a command waits for the engine's reply."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
NOISE = {
    # Each failed connection attempt, which the bus raises (at start) or aio-pika
    # logs again (while it reconnects).
    "aiormq.connection": "error when creating transport",
    # A message that arrived while the client closed its channel (after Ctrl-C, say).
    "amqp": "Received method %s during closing channel",
}
"""Logger name: the start of the messages of it to leave out."""


def topology(settings: Settings) -> Topology:
    """The queue and exchange names of the deployment ``settings`` describe."""
    return Topology(prefix=settings.broker.prefix, dead_letter_max=settings.broker.dead_letter_max)


def connect(settings: Settings) -> Client:
    """A client of the engine at ``settings.broker``."""
    quiet_library_noise()
    return Client(
        settings.broker.url,
        topology=topology(settings),
        timeout=REPLY_TIMEOUT,
        name="exportd command line",
    )


def engine_client(settings: Settings, broker: str | None) -> Client | SocketClient:
    """A client of the engine for the job commands and ``watch``: that of ``exportd
    serve`` through its control socket when there is one in EXPORTD_HOME and no
    ``--broker`` is given, else the engine on RabbitMQ (``--broker``, or the
    ``broker.url`` setting)."""
    path = socket_path(settings)
    if broker is None and path.is_socket():
        return SocketClient(path, timeout=REPLY_TIMEOUT)
    return connect(with_broker(settings, broker))


def amqp_bus(settings: Settings, name: str, metrics: ProcessMetrics) -> AmqpBus:
    """The RabbitMQ bus of ``settings``, its connection called ``name`` on the broker, its
    reconnects counted in ``metrics``."""
    return AmqpBus(
        settings.broker,
        topology(settings),
        name=name,
        on_reconnect=metrics.broker_reconnects.inc,
    )


def run_until_stopped(
    service: Callable[[asyncio.Event], Awaitable[None]], settings: LogSettings
) -> int:
    """Log to stderr as ``settings`` say and run ``service`` until SIGINT or SIGTERM sets
    its stop event, then let it stop gracefully; the exit status.

    A second signal ends the process at once (the broker delivers its unsettled
    messages again).
    """
    log_to_stderr(settings)
    quiet_library_noise()
    asyncio.run(_until_signalled(service))
    log.info("stopped")
    return 0


def quiet_library_noise() -> None:
    """Leave out the library warnings that say nothing to a user (see :data:`NOISE`)."""
    for name in NOISE:
        logging.getLogger(name).addFilter(_not_noise)  # once: the same filter is kept once


def _not_noise(record: logging.LogRecord) -> bool:
    noise = NOISE.get(record.name)
    return noise is None or not str(record.msg).startswith(noise)


async def _until_signalled(service: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(number: signal.Signals) -> None:
        log.info("%s: stopping (again to stop at once)", number.name)
        stop.set()
        for other in STOP_SIGNALS:
            loop.remove_signal_handler(other)
            signal.signal(other, signal.SIG_DFL)

    for number in STOP_SIGNALS:
        loop.add_signal_handler(number, on_signal, number)
    await service(stop)


def interrupt_on_signals() -> None:
    """Have SIGINT and SIGTERM raise :class:`KeyboardInterrupt`, even if the parent
    process had them ignored (as a shell does for background jobs)."""
    for number in STOP_SIGNALS:
        signal.signal(number, signal.default_int_handler)


async def log_job_changes(bus: Bus) -> Subscription:
    """Log a line for every change of a job's status that the bus announces (the engine
    logs refused requests itself)."""

    async def on_event(message: Message) -> None:
        try:
            event = msgspec.json.decode(message.body, type=JobEvent)
        except msgspec.DecodeError as exc:
            log.warning("an event that is not a JobEvent: %s", exc)
        else:
            if event.job is not None and event.type != "job.progress":
                fields = {"job_id": event.job.id, "attempt": event.job.attempt}
                log.info("%s", event_line(event), extra=fields)
        await message.ack()

    return await bus.subscribe(bus.topology.events, "#", on_event)


def inspector(settings: Settings, broker: str | None) -> BrokerInspector:
    """A connection to the broker for ``exportd queues`` and ``exportd dead`` (``--broker``,
    or the ``broker.url`` setting).  Where ``exportd serve`` runs (its control socket is
    in EXPORTD_HOME) and no ``--broker`` is given, a clear error: the embedded mode has no
    broker, its queues live in that process."""
    if broker is None and socket_path(settings).is_socket():
        raise InvalidRequest.field(
            "--broker",
            "exportd serve runs here (EXPORTD_HOME/control.sock): the embedded mode has no "
            "broker, its queues live in memory in that process; give --broker URL to look "
            "at the queues of a deployment on RabbitMQ",
        )
    settings = with_broker(settings, broker)
    quiet_library_noise()
    return BrokerInspector(
        settings.broker.url,
        topology(settings),
        name="exportd command line",
        timeout=settings.broker.confirm_timeout,
    )
