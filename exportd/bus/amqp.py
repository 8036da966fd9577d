"""The RabbitMQ bus, on aio-pika.

One robust connection (it reconnects and restores channels, queues, bindings
and consumers on its own), one channel with publisher confirms for publishing,
and one channel per consumer so that each has its own prefetch.  Publishes are
persistent; a publish to a queue is ``mandatory``, so a missing queue is an
error rather than a lost message.  A publish to a fanout or topic exchange is
not: nobody listening is normal for events and cancel signals.

After the broker drops the connection, aio-pika retries every
``reconnect_interval`` seconds (5 unless the URL says otherwise, e.g.
``amqp://host/?reconnect_interval=1``).  Publishes made meanwhile wait for the
reconnect within the confirm timeout; deliveries in hand when the connection
dropped can no longer be settled (the broker redelivers them).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import (
    AMQPError,
    AuthenticationError,
    ChannelInvalidStateError,
    ChannelPreconditionFailed,
    ProbableAuthenticationError,
    PublishError,
)

from exportd.bus.base import (
    LOGIN_REFUSED,
    Bus,
    BusError,
    Consumer,
    Handler,
    Message,
    Subscription,
    Unroutable,
    cannot_connect,
    connect_reason,
    redacted,
)
from exportd.bus.connection_log import ConnectionLog
from exportd.bus.topology import (
    DEFAULT_EXCHANGE,
    ERROR_HEADER,
    QUEUE_HEADER,
    REFUSED_AT_HEADER,
    REFUSED_BY_HEADER,
    QueueSpec,
    Topology,
)
from exportd.config.settings import BrokerSettings

log = logging.getLogger(__name__)

DeadLetter = Callable[[AbstractIncomingMessage, str], Awaitable[None]]
"""How a consumer's messages are dead-lettered with the reason they were refused."""
BROKER_SET_HEADERS = ("x-delivery-count",)
"""Headers the broker sets on delivery, which a copy of the message must not carry."""

BROKER_ERRORS = (AMQPError, ChannelInvalidStateError, OSError)
"""What aio-pika and the socket raise when the broker fails a call."""


@contextlib.contextmanager
def connect_errors(url: str) -> Iterator[None]:
    """Turn a failed connection to ``url`` into the one line every client gives."""
    try:
        yield
    except (AuthenticationError, ProbableAuthenticationError) as exc:
        raise cannot_connect(url, LOGIN_REFUSED) from exc
    except (*BROKER_ERRORS, TimeoutError) as exc:
        raise cannot_connect(url, connect_reason(exc)) from exc


@contextlib.contextmanager
def _as_bus_error(doing: str) -> Iterator[None]:
    """Turn aio-pika's and the socket's errors into :class:`BusError`."""
    try:
        yield
    except BROKER_ERRORS as exc:
        raise BusError(f"{doing}: {exc!r}") from exc


def _queue_arguments(spec: QueueSpec) -> dict[str, str | int]:
    arguments: dict[str, str | int] = {}
    if spec.quorum:
        arguments["x-queue-type"] = "quorum"
    if spec.delivery_limit is not None:
        arguments["x-delivery-limit"] = spec.delivery_limit
    if spec.dead_letter is not None:
        arguments["x-dead-letter-exchange"] = DEFAULT_EXCHANGE
        arguments["x-dead-letter-routing-key"] = spec.dead_letter
    if spec.max_length is not None:
        # The newest refusals are the ones an operator replays after a fix; the oldest
        # were logged when they were refused.
        arguments["x-max-length"] = spec.max_length
        arguments["x-overflow"] = "drop-head"
    return arguments


async def _declare_queue(channel: AbstractRobustChannel, spec: QueueSpec) -> AbstractQueue:
    """Declare ``spec``'s queue.  One that exists with other arguments (as an older
    exportd declared it) is a :class:`BusError` naming it; the broker closes the channel."""
    arguments = _queue_arguments(spec)
    try:
        return await channel.declare_queue(spec.name, durable=True, arguments=arguments)
    except ChannelPreconditionFailed as exc:
        raise BusError(
            f"the queue {spec.name!r} exists with other arguments than the ones this exportd "
            f"declares ({arguments}); see 'Queues declared by an older exportd' in "
            f"docs/runtime.md. RabbitMQ says: {exc.args[-1] if exc.args else exc!r}"
        ) from exc


async def _declare_dead_letter_queue(connection: AbstractRobustConnection, spec: QueueSpec) -> None:
    """Declare a dead-letter queue on a channel of its own.  One that exists with other
    arguments (no length limit: an older exportd declared it; another limit) is used as
    it is, with one WARNING telling the operator how to change it: it only holds what
    was refused, so nothing is wrong with it but its length."""
    arguments = _queue_arguments(spec)
    channel = await connection.channel()
    try:
        await channel.declare_queue(spec.name, durable=True, arguments=arguments)
    except ChannelPreconditionFailed as exc:
        channel = await connection.channel()  # the broker closed the other
        await channel.declare_queue(spec.name, passive=True)
        log.warning(
            "the dead-letter queue %r exists without the length limit this exportd declares "
            "(x-max-length %s): it keeps its own. To limit it, once it holds nothing you "
            "need (exportd dead list), delete it (rabbitmqctl delete_queue %s) and restart "
            "exportd, or set a RabbitMQ policy (see 'Dead letters' in docs/operations.md). "
            "RabbitMQ says: %s",
            *(spec.name, spec.max_length, spec.name, exc.args[-1] if exc.args else exc),
        )
    finally:
        with contextlib.suppress(*BROKER_ERRORS):
            await channel.close()


def dead_letter_copy(
    incoming: AbstractIncomingMessage, headers: dict[str, Any]
) -> aio_pika.Message:
    """A persistent copy of ``incoming`` (body, properties) with ``headers`` instead of its
    own, without the broker's own headers."""
    kept = {k: v for k, v in headers.items() if k not in BROKER_SET_HEADERS}
    return aio_pika.Message(
        incoming.body,
        headers=kept,
        content_type=incoming.content_type,
        content_encoding=incoming.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        correlation_id=incoming.correlation_id,
        reply_to=incoming.reply_to,
        message_id=incoming.message_id,
        timestamp=incoming.timestamp,
        type=incoming.type,
        app_id=incoming.app_id,
    )


class _AmqpMessage(Message):
    """A delivery from RabbitMQ."""

    def __init__(self, incoming: AbstractIncomingMessage, dead_letter: DeadLetter) -> None:
        self.body = incoming.body
        self.routing_key = incoming.routing_key or ""
        self.reply_to = incoming.reply_to
        self.correlation_id = incoming.correlation_id
        self.redelivered = bool(incoming.redelivered)
        # Quorum queues count deliveries in this header; classic queues do not.
        count = incoming.headers.get("x-delivery-count", 0)
        self.delivery_count = count if isinstance(count, int) else 0
        self._incoming = incoming
        self._dead_letter = dead_letter

    async def ack(self) -> None:
        """Done with it: the broker forgets it."""
        with _as_bus_error("cannot ack"):
            await self._incoming.ack()

    async def reject(self, *, requeue: bool) -> None:
        """Give it back, or dead-letter it (or drop it, where the queue has no dead-letter)."""
        with _as_bus_error("cannot reject"):
            await self._incoming.reject(requeue=requeue)

    async def dead_letter(self, reason: str) -> None:
        """Refuse it for ``reason``, which its copy in the dead-letter queue carries in the
        ``x-exportd-error`` header (see :meth:`AmqpBus._dead_letter`)."""
        await self._dead_letter(self._incoming, reason)


class _AmqpConsumer(Consumer):
    """A consumer on a channel of its own; closing the channel gives back what is unsettled."""

    def __init__(
        self,
        channel: AbstractRobustChannel,
        queue: AbstractQueue,
        handler: Handler,
        registry: set[Consumer],
        *,
        broker_timeout: float,
        dead_letter: DeadLetter,
    ) -> None:
        super().__init__(handler, queue.name, registry)
        self._channel = channel
        self._dead_letter = dead_letter
        self._queue = queue
        self._broker_timeout = broker_timeout
        self._tag: str | None = None

    async def start(self) -> None:
        """Start consuming with manual acks."""

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            self.deliver(_AmqpMessage(incoming, self._dead_letter))

        with _as_bus_error(f"cannot consume {self._queue.name}"):
            self._tag = await self._queue.consume(on_message, no_ack=False)

    async def _stop_deliveries(self) -> None:
        if self._tag is not None:
            # Without a broker to answer, closing the channel stops deliveries anyway.
            with contextlib.suppress(*BROKER_ERRORS):
                async with asyncio.timeout(self._broker_timeout):
                    await self._queue.cancel(self._tag)

    async def _give_back(self) -> None:
        with contextlib.suppress(*BROKER_ERRORS):
            await self._channel.close()


class AmqpBus(Bus):
    """A :class:`Bus` on RabbitMQ.

    ``name`` is the connection name the broker shows (``rabbitmqctl
    list_connections client_properties``, the management UI); ``on_reconnect`` is
    called each time aio-pika restored the connection after it dropped (the process's
    metrics count them).
    """

    def __init__(
        self,
        settings: BrokerSettings | None = None,
        topology: Topology | None = None,
        *,
        name: str = "exportd",
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(topology)
        self.settings = settings or BrokerSettings()
        self.name = name
        self._on_reconnect = on_reconnect
        self._queue_specs = {spec.name: spec for spec in self.topology.queues()}
        self._exchange_names = {spec.name for spec in self.topology.exchanges()}
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._consumers: set[Consumer] = set()
        self._connection_log: ConnectionLog | None = None

    async def start(self) -> None:
        """Connect, open the publishing channel and declare the topology."""
        url = self.settings.url
        with connect_errors(url):
            self._connection = await aio_pika.connect_robust(
                url, client_properties={"connection_name": self.name}
            )
        watch = self._connection_log = ConnectionLog(redacted(url))
        self._connection.close_callbacks.add(watch.lost)
        self._connection.reconnect_callbacks.add(watch.back)
        if self._on_reconnect is not None:
            on_reconnect = self._on_reconnect
            self._connection.reconnect_callbacks.add(lambda _connection: on_reconnect())
        try:
            with _as_bus_error("cannot declare the topology"):
                self._publisher = channel = await self._connection.channel(on_return_raises=True)
                self._exchanges[DEFAULT_EXCHANGE] = channel.default_exchange
                for exchange in self.topology.exchanges():
                    self._exchanges[exchange.name] = await channel.declare_exchange(
                        exchange.name, aio_pika.ExchangeType(exchange.type), durable=True
                    )
                for dead in self.topology.dead_letter_queues():
                    await _declare_dead_letter_queue(self._connection, dead)
                for queue in self.topology.consumed_queues():
                    await _declare_queue(channel, queue)
        except BusError:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop every consumer (handler calls in flight finish first), then disconnect."""
        connection = self._connection
        if connection is None:
            return
        try:
            await asyncio.gather(*(consumer.stop() for consumer in tuple(self._consumers)))
        finally:
            self._connection = self._publisher = None
            self._exchanges = {}
            if self._connection_log is not None:
                self._connection_log.closing = True
            await connection.close()

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        reply_to: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        """Publish persistently, with a new message id, and wait for the broker's confirm."""
        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            reply_to=reply_to,
            correlation_id=correlation_id,
            message_id=uuid.uuid4().hex,
        )
        await self._publish(exchange, routing_key, message)

    async def _publish(self, exchange: str, routing_key: str, message: aio_pika.Message) -> None:
        if self._publisher is None:
            raise BusError("the bus is not started")
        target = self._exchanges.get(exchange)
        if target is None:
            raise BusError(f"no exchange named {exchange!r}")
        timeout = self.settings.confirm_timeout
        try:
            async with asyncio.timeout(timeout):
                await self._publisher.ready()  # a reconnect in progress
                await target.publish(message, routing_key, mandatory=exchange == DEFAULT_EXCHANGE)
        except TimeoutError as exc:
            raise BusError(f"RabbitMQ did not confirm the publish within {timeout} s") from exc
        except PublishError as exc:
            raise Unroutable(
                f"no queue named {routing_key!r}: the message cannot be routed"
            ) from exc
        except BROKER_ERRORS as exc:
            raise BusError(
                f"cannot publish to {exchange!r} with key {routing_key!r}: {exc!r}"
            ) from exc

    async def _dead_letter(
        self, queue: str, incoming: AbstractIncomingMessage, reason: str
    ) -> None:
        """Dead-letter ``incoming``, from ``queue``, with ``reason``: publish a copy to its queue's
        dead-letter queue with the ``x-exportd-*`` headers (RabbitMQ's own dead-lettering
        cannot add a header), then acknowledge it.  When the copy is not confirmed,
        RabbitMQ dead-letters the message itself, without the reason (which the log
        line keeps); a crash between the two leaves both (the message comes again)."""
        spec = self._queue_specs.get(queue)
        if spec is not None and spec.dead_letter is not None:
            headers = {
                **incoming.headers,
                ERROR_HEADER: reason,
                QUEUE_HEADER: queue,
                REFUSED_AT_HEADER: datetime.now(UTC).isoformat(timespec="seconds"),
                REFUSED_BY_HEADER: self.name,
            }
            try:
                await self._publish(
                    DEFAULT_EXCHANGE, spec.dead_letter, dead_letter_copy(incoming, headers)
                )
            except BusError as exc:
                log.warning("dead-letters a message of %s without its reason: %s", queue, exc)
            else:
                with _as_bus_error("cannot ack"):
                    await incoming.ack()
                return
        with _as_bus_error("cannot reject"):
            await incoming.reject(requeue=False)

    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> Subscription:
        """Consume a topology queue on a channel of its own with ``prefetch``."""
        spec = self._queue_specs.get(queue)
        if spec is None:
            raise BusError(f"no queue named {queue!r}")

        async def declare(channel: AbstractRobustChannel) -> AbstractQueue:
            return await _declare_queue(channel, spec)

        return await self._consume_on_new_channel(declare, handler, prefetch)

    async def private_queue(self, handler: Handler) -> Subscription:
        """Consume a private queue (exclusive, auto-delete) bound to nothing but the default
        exchange.  aio-pika names it, and declares it again after a reconnect (what was
        published to it meanwhile fails, or is lost with the queue)."""

        async def declare(channel: AbstractRobustChannel) -> AbstractQueue:
            return await channel.declare_queue(exclusive=True, auto_delete=True)

        return await self._consume_on_new_channel(declare, handler, self.settings.prefetch)

    async def subscribe(self, exchange: str, pattern: str, handler: Handler) -> Subscription:
        """Consume a private queue (exclusive, auto-delete) bound to ``exchange``.

        aio-pika names the queue itself so that it can redeclare it, bindings and
        all, after a reconnect.
        """
        if exchange not in self._exchange_names:
            raise BusError(f"no exchange named {exchange!r}")

        async def declare(channel: AbstractRobustChannel) -> AbstractQueue:
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            await queue.bind(exchange, pattern)
            return queue

        return await self._consume_on_new_channel(declare, handler, self.settings.prefetch)

    async def _consume_on_new_channel(
        self,
        declare: Callable[[AbstractRobustChannel], Awaitable[AbstractQueue]],
        handler: Handler,
        prefetch: int,
    ) -> Subscription:
        if self._connection is None:
            raise BusError("the bus is not started")
        with _as_bus_error("cannot open a consumer channel"):
            channel = await self._connection.channel()
        try:
            with _as_bus_error("cannot set up the consumer"):
                await channel.set_qos(prefetch_count=prefetch)
                queue = await declare(channel)
        except BusError:
            with contextlib.suppress(*BROKER_ERRORS):
                await channel.close()
            raise
        consumer = _AmqpConsumer(
            channel,
            queue,
            handler,
            self._consumers,
            broker_timeout=self.settings.confirm_timeout,
            dead_letter=functools.partial(self._dead_letter, queue.name),
        )
        try:
            await consumer.start()
        except BusError:
            await consumer.stop()  # closes the channel
            raise
        return consumer
