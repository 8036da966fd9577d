"""The in-process bus of the embedded mode: RabbitMQ's semantics, on asyncio alone.

It keeps what exportd relies on: queues per the topology and the default
exchange (``routing_key`` names a queue), fanout and topic exchanges routing to
subscriptions, an unroutable publish as an error, prefetch, round-robin between
the consumers of a queue, requeue with ``redelivered`` and (on quorum queues) a
delivery count, dead-lettering on reject and past the delivery limit (without
the reason: it keeps no headers), maximum lengths dropping the oldest, and
unsettled messages going back to their queue when a consumer stops.

Messages live as long as the :class:`LocalBus` object, across ``close`` and
``start``, as they would on a broker.  There is no persistence.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from exportd.bus.base import (
    Bus,
    BusError,
    Consumer,
    Handler,
    Message,
    Subscription,
    Unroutable,
)
from exportd.bus.topology import DEFAULT_EXCHANGE, ExchangeSpec, QueueSpec, Topology
from exportd.config.settings import BrokerSettings

_SUBSCRIBE_PREFETCH = BrokerSettings().prefetch


@dataclass(slots=True)
class _Stored:
    """A message at rest in a queue."""

    body: bytes
    routing_key: str
    reply_to: str | None
    correlation_id: str | None
    redelivered: bool = False
    delivery_count: int = 0


class _Queue:
    """Ready messages, and the consumers they go to in turn."""

    def __init__(self, spec: QueueSpec, dead_letter: _Queue | None = None) -> None:
        self.spec = spec
        self.dead_letter_queue = dead_letter
        self.ready: deque[_Stored] = deque()
        self.consumers: list[_Consumer] = []
        self._turn = 0

    def put(self, stored: _Stored) -> None:
        """Append a message and deliver what can be delivered; past the queue's maximum
        length, the oldest ready message is dropped (RabbitMQ's ``drop-head``)."""
        self.ready.append(stored)
        limit = self.spec.max_length
        if limit is not None and len(self.ready) > limit:
            self.ready.popleft()
        self.dispatch()

    def give_back(self, *returned: _Stored) -> None:
        """Requeue messages, or dead-letter those past the delivery limit.

        As RabbitMQ 3.10 does: a classic queue puts them back in front, a quorum
        queue at the back, counting the delivery.
        """
        kept = []
        for stored in returned:
            stored.redelivered = True
            if self.spec.quorum:
                stored.delivery_count += 1
            limit = self.spec.delivery_limit
            if limit is not None and stored.delivery_count > limit:
                self.dead_letter(stored)
            else:
                kept.append(stored)
        if self.spec.quorum:
            self.ready.extend(kept)
        else:
            self.ready.extendleft(reversed(kept))

    def dead_letter(self, stored: _Stored) -> None:
        """Move a refused message to the dead-letter queue, or drop it if there is none."""
        dead = self.dead_letter_queue
        if dead is not None:
            dead.put(_Stored(stored.body, dead.spec.name, stored.reply_to, stored.correlation_id))

    def dispatch(self) -> None:
        """Deliver ready messages, round-robin, to the consumers below their prefetch."""
        while self.ready:
            consumer = self._next_consumer()
            if consumer is None:
                return
            consumer.receive(self.ready.popleft())

    def _next_consumer(self) -> _Consumer | None:
        for _ in range(len(self.consumers)):
            self._turn = (self._turn + 1) % len(self.consumers)
            consumer = self.consumers[self._turn]
            if consumer.has_room:
                return consumer
        return None


class _Exchange:
    """A fanout or topic exchange and the queues bound to it."""

    def __init__(self, spec: ExchangeSpec) -> None:
        self.spec = spec
        self._bindings: list[tuple[list[str], _Queue]] = []

    def bind(self, pattern: str, queue: _Queue) -> None:
        """Route to ``queue`` what ``pattern`` matches (every message, on a fanout)."""
        self._bindings.append((pattern.split("."), queue))

    def unbind(self, queue: _Queue) -> None:
        """Remove every binding of ``queue``."""
        self._bindings = [binding for binding in self._bindings if binding[1] is not queue]

    def route(self, routing_key: str) -> list[_Queue]:
        """The queues a message with ``routing_key`` goes to, each once."""
        if self.spec.type == "fanout":
            queues = [queue for _, queue in self._bindings]
        else:
            words = routing_key.split(".")
            queues = [queue for pattern, queue in self._bindings if topic_matches(pattern, words)]
        return list(dict.fromkeys(queues))


def topic_matches(pattern: list[str], words: list[str]) -> bool:
    """AMQP topic matching on dot-separated words: ``*`` is one word, ``#`` zero or more."""
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(topic_matches(rest, words[skip:]) for skip in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and topic_matches(rest, words[1:])


class _LocalMessage(Message):
    """A delivery from a :class:`_Queue` to one consumer."""

    def __init__(self, stored: _Stored, consumer: _Consumer) -> None:
        self.body = stored.body
        self.routing_key = stored.routing_key
        self.reply_to = stored.reply_to
        self.correlation_id = stored.correlation_id
        self.redelivered = stored.redelivered
        self.delivery_count = stored.delivery_count
        self._stored = stored
        self._queue = consumer.queue
        self._consumer: _Consumer | None = consumer

    async def ack(self) -> None:
        """Done with it: the message is gone."""
        self.settle()
        self._queue.dispatch()

    async def reject(self, *, requeue: bool) -> None:
        """Back to its queue (``requeue``), or to the dead-letter queue."""
        stored = self.settle()
        if requeue:
            self._queue.give_back(stored)
        else:
            self._queue.dead_letter(stored)
        self._queue.dispatch()

    def settle(self) -> _Stored:
        """Let go of the message (its consumer no longer holds it); returns it as stored."""
        consumer = self._consumer
        if consumer is None:
            raise BusError("this message was settled already, or its consumer stopped")
        del consumer.unsettled[self]
        self._consumer = None
        return self._stored


class _Consumer(Consumer):
    """One consumer of a :class:`_Queue`, with at most ``prefetch`` unsettled messages."""

    def __init__(
        self,
        queue: _Queue,
        handler: Handler,
        prefetch: int,
        registry: set[Consumer],
        on_give_back: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(handler, queue.spec.name, registry)
        self.queue = queue
        self.unsettled: dict[_LocalMessage, None] = {}  # an ordered set
        self._prefetch = prefetch
        self._on_give_back = on_give_back
        queue.consumers.append(self)
        queue.dispatch()

    @property
    def has_room(self) -> bool:
        """Whether one more message may be delivered."""
        return len(self.unsettled) < self._prefetch

    def receive(self, stored: _Stored) -> None:
        """Hold a message from the queue and hand it to the handler."""
        message = _LocalMessage(stored, self)
        self.unsettled[message] = None
        self.deliver(message)

    async def _stop_deliveries(self) -> None:
        self.queue.consumers.remove(self)

    async def _give_back(self) -> None:
        self.queue.give_back(*(message.settle() for message in tuple(self.unsettled)))
        self.queue.dispatch()
        if self._on_give_back is not None:
            self._on_give_back()


class LocalBus(Bus):
    """An in-process :class:`Bus` for the embedded mode; one event loop, no broker.

    ``prefetch`` applies to :meth:`subscribe`; :meth:`consume` takes its own.
    Its messages live as long as the process (``durable`` is false).
    """

    durable = False

    def __init__(
        self, topology: Topology | None = None, *, prefetch: int = _SUBSCRIBE_PREFETCH
    ) -> None:
        super().__init__(topology)
        self._prefetch = prefetch
        self._queues: dict[str, _Queue] = {}
        self._exchanges: dict[str, _Exchange] = {}
        self._consumers: set[Consumer] = set()
        self._open = False

    async def start(self) -> None:
        """Declare the topology (what exists already, messages included, stays)."""
        for spec in self.topology.queues():  # dead-letter queues come first
            if spec.name not in self._queues:
                dead = self._queues[spec.dead_letter] if spec.dead_letter else None
                self._queues[spec.name] = _Queue(spec, dead)
        for exchange in self.topology.exchanges():
            self._exchanges.setdefault(exchange.name, _Exchange(exchange))
        self._open = True

    async def close(self) -> None:
        """Stop every consumer (their unsettled messages go back), then refuse new work.

        Handler calls in flight may still publish while they finish.
        """
        try:
            await asyncio.gather(*(consumer.stop() for consumer in tuple(self._consumers)))
        finally:
            self._open = False

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        reply_to: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        """Route a copy of ``body`` to its queues; an unknown queue or exchange is an error.

        An exchange that routes the message nowhere drops it, as RabbitMQ does.
        """
        self._check_open()
        if exchange == DEFAULT_EXCHANGE:
            queue = self._queues.get(routing_key)
            if queue is None:
                raise Unroutable(f"no queue named {routing_key!r}: the message cannot be routed")
            queues = [queue]
        else:
            queues = self._exchange(exchange).route(routing_key)
        body = bytes(body)
        for queue in queues:
            queue.put(_Stored(body, routing_key, reply_to, correlation_id))
        # A publish is a suspension point on RabbitMQ too: let consumers run.
        await asyncio.sleep(0)

    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> Subscription:
        """Deliver the messages of ``queue`` to ``handler``."""
        self._check_open()
        found = self._queues.get(queue)
        if found is None:
            raise BusError(f"no queue named {queue!r}")
        return _Consumer(found, handler, prefetch, self._consumers)

    async def private_queue(self, handler: Handler) -> Subscription:
        """Consume a new private queue, reached by its name through the default exchange."""
        return self._private(handler, None)

    async def subscribe(self, exchange: str, pattern: str, handler: Handler) -> Subscription:
        """Bind a private queue to ``exchange`` with ``pattern`` and consume it."""
        return self._private(handler, (self._exchange(exchange), pattern))

    def _private(self, handler: Handler, binding: tuple[_Exchange, str] | None) -> Subscription:
        """Consume a new private queue, bound to ``binding``'s exchange with its pattern."""
        self._check_open()
        queue = _Queue(QueueSpec(f"amq.gen-{uuid.uuid4().hex}"))
        self._queues[queue.spec.name] = queue
        if binding is not None:
            binding[0].bind(binding[1], queue)

        def delete_queue() -> None:
            if binding is not None:
                binding[0].unbind(queue)
            del self._queues[queue.spec.name]

        return _Consumer(queue, handler, self._prefetch, self._consumers, delete_queue)

    def _check_open(self) -> None:
        if not self._open:
            raise BusError("the bus is not started")

    def _exchange(self, name: str) -> _Exchange:
        exchange = self._exchanges.get(name)
        if exchange is None:
            raise BusError(f"no exchange named {name!r}")
        return exchange
