"""The contract every bus implements, and what a consumer receives.

A bus moves bytes: publishers encode their msgspec Structs, consumers decode.
Both implementations (:mod:`exportd.bus.amqp` on RabbitMQ, :mod:`exportd.bus.local`
in-process) pass the same contract tests (``tests/contract/test_bus.py``).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

from exportd.bus.topology import Topology

log = logging.getLogger(__name__)


LOGIN_REFUSED = "the broker refused the user name or password (ACCESS_REFUSED)"
"""Why a connection failed when the broker refused its credentials, whatever the library."""


class BusError(Exception):
    """The bus could not do what was asked: no broker, no confirm in time, a closed channel."""


class Unroutable(BusError):
    """A message published to the default exchange found no queue of its routing key's
    name: that queue does not exist (a private queue whose consumer is gone, say).  Unlike
    other bus errors it does not pass with a reconnect."""


def redacted(url: str) -> str:
    """``url`` as given, with its password hidden: ``amqp://guest:**@host:5672/``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    credentials, _, address = parts.netloc.rpartition("@")
    user = credentials.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:**@{address}"))


def cannot_connect(url: str, reason: str) -> BusError:
    """The error of a connection to the broker at ``url`` that failed for ``reason``: the
    same line from every client and process, the password hidden."""
    return BusError(f"cannot connect to RabbitMQ at {redacted(url)}: {reason}")


def connect_reason(error: BaseException) -> str:
    """Why a connection failed, from a library's ``error``: the system's words for a
    network error behind it (``Connection refused``), else the error's own."""
    cause = error if isinstance(error, OSError) else error.__cause__
    if isinstance(cause, OSError) and cause.errno is not None and cause.errno > 0:
        return os.strerror(cause.errno)  # asyncio words it "Connect call failed (...)"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror  # a name that does not resolve: a negative errno
    return str(error) or repr(error)


class Message(abc.ABC):
    """One delivered message.  Settle it exactly once: :meth:`ack` or :meth:`reject`."""

    body: bytes
    routing_key: str
    reply_to: str | None
    correlation_id: str | None
    redelivered: bool
    delivery_count: int
    """How many times this message was delivered before (0 the first time).

    Quorum queues (every queue exportd consumes) count; classic ones (dead-letter
    queues, subscriptions) always say 0."""

    @abc.abstractmethod
    async def ack(self) -> None:
        """Done with it: the broker forgets it."""

    @abc.abstractmethod
    async def reject(self, *, requeue: bool) -> None:
        """Give it back (``requeue``) or drop it, which dead-letters it where the queue has
        a dead-letter queue."""

    async def dead_letter(self, reason: str) -> None:
        """Refuse it for good: to the dead-letter queue, with ``reason`` where the bus keeps
        headers (RabbitMQ's ``x-exportd-error``; the in-process bus keeps none)."""
        await self.reject(requeue=False)


Handler = Callable[[Message], Awaitable[None]]


class Subscription(abc.ABC):
    """A running consumer; :meth:`cancel` stops deliveries (unsettled ones are requeued)."""

    queue_name: str
    """The queue it consumes: for a :meth:`Bus.private_queue`, the name that a publish to
    the default exchange routes to (a ``reply_to``)."""

    @abc.abstractmethod
    async def cancel(self) -> None:
        """Stop deliveries at once.  Handler calls in flight go on (they may still settle
        their messages, and publish); once none is left, whatever is still unsettled
        goes back to the queue.  Returns without waiting for them."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Cancel, and wait until every handler call in flight has returned and everything
        unsettled is given back."""


class Bus(abc.ABC):
    """Publish with confirms, consume with manual acks, over exportd's topology.

    ``async with bus:`` connects and declares the topology, and closes at the end.
    """

    durable: bool = True
    """Whether queued messages outlive the process (false for the in-process bus)."""

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
        """Stop every subscription, wait for their handler calls in flight (cancelling
        ``close`` cancels them), give back what is unsettled, and disconnect."""

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
        confirm does not come in time or the message cannot be routed: no such
        queue (:class:`Unroutable`) or exchange.  An exchange that routes it to no queue (nobody
        subscribed) drops it quietly.
        """

    @abc.abstractmethod
    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> Subscription:
        """Deliver the messages of a topology queue to ``handler``, ``prefetch`` unsettled
        at a time.  A handler that raises rejects its message with requeue (up to the
        queue's delivery limit: see :class:`Consumer`)."""

    @abc.abstractmethod
    async def private_queue(self, handler: Handler) -> Subscription:
        """Deliver the messages published to the default exchange with a new private
        queue's name (the subscription's :attr:`~Subscription.queue_name`) to ``handler``:
        a queue for replies, which lives as long as the subscription.  A publish to it
        once the subscription is cancelled fails (no such queue)."""

    @abc.abstractmethod
    async def subscribe(self, exchange: str, pattern: str, handler: Handler) -> Subscription:
        """Deliver what ``exchange`` routes to ``pattern`` (a topic pattern, or ``""`` for
        fanout) into a private queue that lives as long as the subscription."""


class Consumer(Subscription):
    """What both implementations' consumers share: each delivery runs the handler in a
    task of its own, so a slow call holds only its own message; a handler that raises
    is logged and its message rejected with requeue; a cancel waits for the calls in
    flight before giving back what is unsettled.

    A requeue is never for ever: every queue exportd consumes has a delivery limit,
    past which the broker dead-letters the message.  What each handler does with a
    message it cannot handle:

    * ``requests`` (the engine): nothing raises.  A request that cannot be read, that
      is invalid, or whose handling fails (a bug, the job store) is refused: the error
      on ``reply_to``, a ``request.rejected`` event, dead-lettered.  Only one the engine
      died holding comes again.
    * ``control`` (the engine): the same, without the event; a command refused on its
      merits (no such job) is answered and acknowledged.
    * ``status`` (the engine): an update that cannot be read (malformed, of a version
      the engine does not speak) is dead-lettered; one that fails to apply raises,
      and is tried again until the delivery limit: a transient failure passes, a
      lasting one ends in the dead-letter queue.
    * ``tasks`` (workers): a task that cannot be read is dead-lettered; one that comes
      at the delivery limit is acknowledged and run under the engine's lease, which
      fails it if its runs keep falling silent (poison); a failing export fails its job.

    ``registry`` holds the consumer from its creation until it has given everything
    back, so that the bus can :meth:`stop` them all when it closes.
    """

    def __init__(self, handler: Handler, queue: str, registry: set[Consumer]) -> None:
        self._handler = handler
        self.queue_name = queue
        self._registry = registry
        self._calls: set[asyncio.Task[None]] = set()
        self._finished: asyncio.Task[None] | None = None
        registry.add(self)

    @abc.abstractmethod
    async def _stop_deliveries(self) -> None:
        """Have no more messages delivered."""

    @abc.abstractmethod
    async def _give_back(self) -> None:
        """Return every message still unsettled to its queue, and let go of the queue."""

    def deliver(self, message: Message) -> None:
        """Hand ``message`` to the handler, in a task of its own."""
        call = asyncio.create_task(self._call(message))
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)

    async def _call(self, message: Message) -> None:
        try:
            await self._handler(message)
        except Exception:
            log.exception("The handler of %s failed; its message goes back", self.queue_name)
            # The handler settled it before raising, or its channel is gone (and with
            # it the delivery, which the broker requeues).
            with contextlib.suppress(BusError):
                await message.reject(requeue=True)

    async def cancel(self) -> None:
        """Stop deliveries now; give back what is unsettled once no handler call is in
        flight (at once, if none is)."""
        finished = await self._cancel()
        if not self._calls:
            await finished

    async def stop(self) -> None:
        """Cancel, and wait until everything is given back.  Cancelling this cancels
        the handler calls still in flight."""
        await (await self._cancel())

    async def _cancel(self) -> asyncio.Task[None]:
        """Stop deliveries (the first time) and return the task that finishes up."""
        if self._finished is None:
            try:
                await self._stop_deliveries()
            finally:
                self._finished = asyncio.create_task(self._finish())
        return self._finished

    async def _finish(self) -> None:
        try:
            while self._calls:
                await asyncio.wait(tuple(self._calls))
        finally:
            for call in self._calls:
                call.cancel()
            self._registry.discard(self)
            await self._give_back()
