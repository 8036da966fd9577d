"""What an operator's commands read and change on the broker, beside the bus: the
depth and consumers of exportd's queues (passive declares: the management API may
be off), and the messages of its dead-letter queues, to list, replay or drop.

No message is lost if a command dies midway: a dead message is taken without an
acknowledgement, replayed with a publisher confirm, and only then acknowledged;
whatever is left unacknowledged when the connection ends goes back to its queue,
in its place.  A command that dies between the confirm and the acknowledgement
leaves the message in both queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import ChannelClosed, ChannelNotFoundEntity, PublishError

from exportd.bus.amqp import BROKER_ERRORS, BROKER_SET_HEADERS, connect_errors, dead_letter_copy
from exportd.bus.base import BusError
from exportd.bus.topology import ERROR_HEADER, QUEUE_HEADER, REFUSED_AT_HEADER, Topology

DEATH_HEADERS = (
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-last-death-exchange",
)
"""Headers RabbitMQ adds when it dead-letters a message."""

Chosen = Callable[["DeadMessage"], bool]
"""Which messages of a dead-letter queue a command acts on."""
Done = Callable[["DeadMessage"], None]
"""Called with each message once it is replayed or dropped."""
Each = Callable[["DeadMessage", AbstractIncomingMessage], Awaitable[None]]
"""What to do with each message taken from a queue (settle it, or leave it)."""


@dataclass(frozen=True)
class QueueDepth:
    """A queue's ready messages and consumers; both ``None`` when it does not exist."""

    name: str
    messages: int | None
    consumers: int | None


@dataclass(frozen=True)
class DeadMessage:
    """A message of a dead-letter queue, as it lies there."""

    queue: str
    position: int
    """Its place in the queue, from 1 (the oldest)."""
    id: str
    """Its ``message_id`` (every exportd publish has one), else a digest of its body
    and the time it was refused."""
    body: bytes
    headers: dict[str, Any]
    """Its headers, with values made plain (times in ISO 8601, bytes as text)."""
    properties: dict[str, Any]
    """Its AMQP properties that are set (content_type, correlation_id, reply_to...)."""

    @property
    def deaths(self) -> list[dict[str, Any]]:
        """RabbitMQ's ``x-death`` entries, the latest first."""
        deaths = self.headers.get("x-death")
        return [d for d in deaths if isinstance(d, dict)] if isinstance(deaths, list) else []

    @property
    def source(self) -> str | None:
        """The queue it was refused from: exportd's header, else RabbitMQ's."""
        for name in (QUEUE_HEADER, "x-first-death-queue"):
            if isinstance(self.headers.get(name), str):
                return str(self.headers[name])
        deaths = self.deaths
        return str(deaths[-1].get("queue")) if deaths else None

    @property
    def refused_at(self) -> str | None:
        """When it was refused (ISO 8601), if the message says."""
        if isinstance(self.headers.get(REFUSED_AT_HEADER), str):
            return str(self.headers[REFUSED_AT_HEADER])
        deaths = self.deaths
        return str(deaths[0]["time"]) if deaths and "time" in deaths[0] else None

    @property
    def reason(self) -> str:
        """Why it was refused: the error exportd gave, else RabbitMQ's reason
        (``rejected``, ``delivery_limit``, ``expired``...) and how often."""
        error = self.headers.get(ERROR_HEADER)
        if isinstance(error, str):
            return error
        deaths = self.deaths
        if deaths:
            count = deaths[0].get("count", 1)
            return f"RabbitMQ: {deaths[0].get('reason', 'unknown')} (x{count})"
        return "unknown: no x-exportd-error nor x-death header"

    @property
    def job_id(self) -> str | None:
        """The job it is about, when its body is one of exportd's messages on a job."""
        try:
            body = json.loads(self.body)
        except ValueError:
            return None
        if isinstance(body, dict) and isinstance(body.get("task"), dict):
            body = body["task"]  # a PieceTask
        job_id = body.get("job_id") if isinstance(body, dict) else None
        return job_id if isinstance(job_id, str) else None


def plain(value: Any) -> Any:
    """A header value as JSON can hold it."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _dead_message(queue: str, position: int, incoming: AbstractIncomingMessage) -> DeadMessage:
    headers = {
        key: plain(value)
        for key, value in incoming.headers.items()
        if key not in BROKER_SET_HEADERS
    }
    properties = {
        name: plain(getattr(incoming, name))
        for name in (
            "content_type",
            "content_encoding",
            "correlation_id",
            "reply_to",
            "message_id",
            "timestamp",
            "type",
            "app_id",
        )
        if getattr(incoming, name) is not None
    }
    message_id = incoming.message_id
    if not message_id:
        refused_at = headers.get(REFUSED_AT_HEADER) or json.dumps(headers.get("x-death"))
        message_id = hashlib.sha256(incoming.body + str(refused_at).encode()).hexdigest()[:32]
    return DeadMessage(queue, position, message_id, incoming.body, headers, properties)


def _replay(incoming: AbstractIncomingMessage) -> aio_pika.Message:
    """``incoming`` as it was before it died: without the dead-lettering headers, and
    without ``reply_to`` (whoever waited for an answer stopped long ago)."""
    dead = (*DEATH_HEADERS, *(key for key in incoming.headers if key.startswith("x-exportd-")))
    headers = {key: value for key, value in incoming.headers.items() if key not in dead}
    copy = dead_letter_copy(incoming, headers)
    copy.reply_to = None
    return copy


class BrokerInspector:
    """A short-lived connection to RabbitMQ for the operator's commands over
    ``topology``.  ``async with BrokerInspector(url, topology):``; every broker failure
    is a :class:`BusError`."""

    def __init__(self, url: str, topology: Topology, *, name: str, timeout: float) -> None:
        self.url = url
        self.topology = topology
        self.name = name
        self.timeout = timeout
        self._connection: AbstractConnection | None = None

    async def __aenter__(self) -> BrokerInspector:
        with connect_errors(self.url):
            self._connection = await aio_pika.connect(
                self.url, client_properties={"connection_name": self.name}, timeout=self.timeout
            )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._connection is not None:
            with contextlib.suppress(*BROKER_ERRORS):
                await self._connection.close()

    @contextlib.asynccontextmanager
    async def _channel(self, doing: str) -> AsyncIterator[AbstractChannel]:
        """A channel of its own (a missing queue closes the channel that asks for it),
        closed at the end; what it holds unacknowledged then goes back to its queue."""
        if self._connection is None:
            raise BusError("not connected")
        try:
            channel = await self._connection.channel(on_return_raises=True)
        except BROKER_ERRORS as exc:
            raise BusError(f"cannot {doing}: {exc!r}") from exc
        try:
            yield channel
        except (ChannelClosed, *BROKER_ERRORS) as exc:
            if isinstance(exc, ChannelNotFoundEntity):
                raise
            raise BusError(f"cannot {doing}: {exc!r}") from exc
        finally:
            with contextlib.suppress(*BROKER_ERRORS):
                await channel.close()

    async def depths(self) -> list[QueueDepth]:
        """Every queue of the topology, each followed by its dead-letter queue, with its
        depth and consumers."""
        names = [
            name
            for spec in self.topology.consumed_queues()
            for name in (spec.name, spec.dead_letter)
            if name is not None
        ]
        return [await self._depth(name) for name in names]

    async def _depth(self, name: str) -> QueueDepth:
        try:
            async with self._channel(f"look at {name}") as channel:
                queue = await channel.declare_queue(name, passive=True)
        except ChannelNotFoundEntity:
            return QueueDepth(name, None, None)
        result = queue.declaration_result
        return QueueDepth(name, result.message_count, result.consumer_count)

    def dead_letter_queue(self, short: str) -> str:
        """The dead-letter queue of ``short`` (``requests``, ``tasks``...)."""
        return getattr(self.topology, f"{short}_dead")  # type: ignore[no-any-return]

    async def dead_messages(self, queue: str) -> list[DeadMessage]:
        """The messages of the dead-letter queue ``queue``, oldest first, left in place;
        none if it does not exist."""

        async def leave(_message: DeadMessage, _incoming: AbstractIncomingMessage) -> None:
            return

        return await self._take(queue, leave)

    async def replay(self, queue: str, chosen: Chosen, done: Done) -> None:
        """Publish each chosen message of ``queue`` back to the queue it was refused
        from, and remove it once the broker confirmed the publish.  The first failure
        stops: the message stays, and so do the ones after it."""
        async with self._channel("publish") as publisher:

            async def settle(message: DeadMessage, incoming: AbstractIncomingMessage) -> None:
                if chosen(message):
                    await self._confirmed(publisher, self._target(message), _replay(incoming))
                    await incoming.ack()
                    done(message)

            await self._take(queue, settle)

    async def drop(self, queue: str, chosen: Chosen, done: Done) -> None:
        """Remove each chosen message of ``queue``."""

        async def settle(message: DeadMessage, incoming: AbstractIncomingMessage) -> None:
            if chosen(message):
                await incoming.ack()
                done(message)

        await self._take(queue, settle)

    async def _take(self, queue: str, each: Each) -> list[DeadMessage]:
        """Take every message ``queue`` holds now, unacknowledged, passing each to ``each``
        (which may settle it); the rest go back when the channel closes.  The messages
        taken, none if the queue does not exist."""
        seen: list[DeadMessage] = []
        try:
            async with self._channel(f"read {queue}") as channel:
                source = await channel.declare_queue(queue, passive=True)
                for position in range(1, (source.declaration_result.message_count or 0) + 1):
                    incoming = await source.get(no_ack=False, fail=False, timeout=self.timeout)
                    if incoming is None:
                        break
                    message = _dead_message(queue, position, incoming)
                    seen.append(message)
                    await each(message, incoming)
        except ChannelNotFoundEntity:
            return []
        return seen

    def _target(self, message: DeadMessage) -> str:
        """Where ``message`` goes back to: the queue it was refused from, which must be
        the one whose dead letters its queue holds."""
        home = self.topology.source_of(message.queue)
        source = message.source or home
        if home is None or source != home:
            raise BusError(
                f"message {message.id} of {message.queue} says it came from {source!r}, "
                f"not {home!r}: not replayed"
            )
        return home

    async def _confirmed(
        self, channel: AbstractChannel, queue: str, message: aio_pika.Message
    ) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await channel.default_exchange.publish(message, queue, mandatory=True)
        except TimeoutError as exc:
            raise BusError(f"RabbitMQ did not confirm the replay within {self.timeout} s") from exc
        except PublishError as exc:
            raise BusError(f"no queue named {queue!r}: the message cannot be replayed") from exc
