"""The contract every bus implements, and what a consumer receives.

A bus moves bytes: publishers encode their msgspec Structs, consumers decode.
Both implementations (:mod:`exportd.bus.amqp` on RabbitMQ, :mod:`exportd.bus.local`
in-process) pass the same contract tests (``tests/contract/test_bus.py``).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from types import TracebackType

from exportd.bus.topology import Topology


class BusError(Exception):
    """The bus could not do what was asked: no broker, no confirm in time, a closed channel."""


class Message(abc.ABC):
    """One delivered message.  Settle it exactly once: :meth:`ack` or :meth:`reject`."""

    body: bytes
    routing_key: str
    reply_to: str | None
    correlation_id: str | None
    redelivered: bool
    delivery_count: int
    """How many times this message was delivered before (0 the first time)."""

    @abc.abstractmethod
    async def ack(self) -> None:
        """Done with it: the broker forgets it."""

    @abc.abstractmethod
    async def reject(self, *, requeue: bool) -> None:
        """Give it back (``requeue``) or drop it, which dead-letters it where the queue has
        a dead-letter queue."""


Handler = Callable[[Message], Awaitable[None]]


class Subscription(abc.ABC):
    """A running consumer; :meth:`cancel` stops deliveries (unsettled ones are requeued)."""

    @abc.abstractmethod
    async def cancel(self) -> None:
        """Stop consuming."""


class Bus(abc.ABC):
    """Publish with confirms, consume with manual acks, over exportd's topology.

    ``async with bus:`` connects and declares the topology, and closes at the end.
    """

    def __init__(self, topology: Topology | None = None) -> None:
        self.topology = topology or Topology()

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and declare the topology."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop every subscription and disconnect."""

    @abc.abstractmethod
    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        reply_to: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        """Publish persistently and return once the broker confirmed it.

        ``exchange`` is ``""`` (the default exchange: ``routing_key`` names a queue)
        or one of the topology's exchanges.  Raises :class:`BusError` when the
        confirm does not come in time or the message cannot be routed.
        """

    @abc.abstractmethod
    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> Subscription:
        """Deliver the messages of a topology queue to ``handler``, ``prefetch`` unsettled
        at a time.  A handler that raises rejects its message with requeue."""

    @abc.abstractmethod
    async def subscribe(self, exchange: str, pattern: str, handler: Handler) -> Subscription:
        """Deliver what ``exchange`` routes to ``pattern`` (a topic pattern, or ``""`` for
        fanout) into a private queue that lives as long as the subscription."""
