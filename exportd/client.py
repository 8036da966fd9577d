"""The synchronous Python client of exportd, for upstream systems and event subscribers.

::

    from exportd.client import Client

    with Client("amqp://guest:guest@broker:5672/") as client:
        job = client.submit(
            {"source": "rooms", "format": "csv", "params": {"room_id": "r1"},
             "interval": {"start": "2024-05-01", "end": "2024-05-02"}},
            wait=600,
        )
        print(job.status, job.parts[0].file)

        for event in client.events("org1.rooms.*", timeout=60):
            print(event.type, event.job and event.job.progress)

It speaks the wire contract of :mod:`exportd.messages` over RabbitMQ:

* :meth:`Client.submit` publishes an :class:`~exportd.messages.ExportRequest` as JSON to
  the engine's requests queue (persistent, ``mandatory``, confirmed by the broker) with
  ``reply_to`` and ``correlation_id``, and returns the job from the engine's
  :class:`~exportd.messages.RequestReply`, or raises its error as an
  :class:`~exportd.errors.ExportError`.
* :meth:`Client.get`, :meth:`Client.list_jobs`, :meth:`Client.cancel`,
  :meth:`Client.restart`, :meth:`Client.delete` and :meth:`Client.workers` send a
  :class:`~exportd.messages.JobCommand` to the engine's control queue the same way,
  and return what its reply holds.  A command that no engine answers within
  ``timeout`` expires in the queue rather than run later, unexpectedly.
* :meth:`Client.events` follows the public :class:`~exportd.messages.JobEvent` stream by
  routing pattern (keys are ``<org_id>.<source>.<status>``).

The engine declares the requests queue when it first starts; from then on a request
waits there until an engine takes it.  A request to a broker that has never seen an
engine is refused with :class:`~exportd.bus.base.BusError` rather than lost.  The
events exchange the client declares itself, so that subscribers may start first.

One client holds one connection, for one thread at a time.  It opens a channel per
call and, for every answer it waits for, a private queue that goes with that channel.
A dropped connection is reconnected transparently while a call sets up and publishes
(up to :data:`RETRY_POLICY`): a request whose confirm was lost may then be sent twice,
so give requests an ``idempotency_key`` to make resending harmless.  A connection lost
while waiting for an answer raises :class:`~exportd.bus.base.BusError`.  Heartbeats are
off, as a synchronous client cannot answer them while the caller's code runs: bound
each wait with a timeout.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

import msgspec
from kombu.connection import Connection
from kombu.entity import Exchange, Queue, binding
from kombu.exceptions import OperationalError
from kombu.message import Message
from kombu.messaging import Consumer, Producer
from kombu.transport.pyamqp import Channel

from exportd.bus.base import LOGIN_REFUSED, BusError, cannot_connect, connect_reason
from exportd.bus.topology import Topology, event_routing_key
from exportd.config.settings import BrokerSettings
from exportd.control import JobCommands, Timeout, job_of
from exportd.errors import from_body
from exportd.kernel.validation import validated
from exportd.messages import (
    ExportRequest,
    JobCommand,
    JobEvent,
    JobSnapshot,
    JobStatus,
    RequestReply,
)

__all__ = ["DEFAULT_URL", "FINAL_STATUSES", "RETRY_POLICY", "Client", "EventStream", "Timeout"]

T = TypeVar("T")

DEFAULT_URL = BrokerSettings().url

FINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {"done", "failed", "canceled", "deleted", "expired"}
)
"""The statuses after which ``submit(..., wait=...)`` stops waiting."""

RETRY_POLICY: dict[str, float] = {
    "max_retries": 3,
    "interval_start": 0.2,
    "interval_step": 0.5,
    "interval_max": 2.0,
}
"""How often, and after what pauses, a dropped connection is reconnected (kombu's ``ensure``)."""

_PERSISTENT = 2
_ACCESS_REFUSED = 403
"""The AMQP reply code of a refused login."""


class Client(JobCommands):
    """A connection to exportd through RabbitMQ: submit export requests, run the job
    commands of :class:`~exportd.control.JobCommands`, follow job events.

    ``url`` is the broker's AMQP URL, ``topology`` the names of exportd's queues and
    exchanges (a prefix keeps deployments apart), ``timeout`` the seconds to wait for
    the broker and for the engine's reply, and ``name`` the connection name RabbitMQ
    shows.  The connection opens on first use; :meth:`close` (or the end of a ``with``
    block) closes it.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        topology: Topology | None = None,
        timeout: float = 30.0,
        name: str = "exportd.client",
    ) -> None:
        self.topology = topology or Topology()
        self.timeout = timeout
        self.url = url
        self._events = Exchange(self.topology.events, type="topic", durable=True)
        self._connection = Connection(
            url,
            connect_timeout=timeout,
            heartbeat=0,
            transport_options={
                "confirm_publish": True,
                "client_properties": {"connection_name": name},
            },
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection, and with it every event stream still open."""
        self._connection.release()

    def submit(
        self, request: ExportRequest | Mapping[str, Any], *, wait: bool | float = False
    ) -> JobSnapshot:
        """Ask the engine for an export and return the job it created (or, for a repeated
        ``idempotency_key``, the job it already has).

        ``request`` is checked first: a mistake raises :class:`~exportd.errors.InvalidRequest`
        naming the field, and nothing is sent.  An engine that refuses the request raises
        its error as the matching :class:`~exportd.errors.ExportError` subclass.  No reply
        within ``timeout`` raises :class:`Timeout` (the request stays queued).

        With ``wait`` the call goes on to wait for the job to reach a final status (see
        :data:`FINAL_STATUSES`) and returns that snapshot: ``True`` waits as long as it
        takes, a number at most that many seconds before it raises :class:`Timeout`.
        """
        request = validated(request, ExportRequest)
        final_keys = (
            [event_routing_key(request.org_id, request.source, s) for s in FINAL_STATUSES]
            if wait is not False
            else []
        )
        session, reply, finals = self._ask(self.topology.requests, request, final_keys)
        with session:
            job = job_of(reply)
            if wait is False or job.status in FINAL_STATUSES:
                return job
            return _final(session, finals, job.id, None if wait is True else float(wait))

    def events(self, pattern: str = "#", *, timeout: float | None = None) -> EventStream:
        """Follow the public job events whose routing key matches ``pattern``.

        Keys are ``<org_id>.<source>.<status>`` (``_`` for no org): ``"org1.rooms.*"``,
        ``"*.*.done"``, ``"#"`` for all.  The private queue is bound before this returns,
        so no event published afterwards is missed.  Iterating ends after ``timeout``
        seconds without an event, if given; close the stream (or use it in a ``with``
        block) to delete the queue.
        """
        session, inbox = self._retrying(lambda: self._subscribe(pattern))
        return EventStream(session, inbox, timeout)

    def task_consumers(self) -> int:
        """How many consumers (workers' channels) take tasks from the task queue now; 0
        while no engine or worker has declared it."""
        return self._retrying(self._task_consumers)

    def declared(self) -> bool:
        """Whether an engine or a worker has declared this topology on the broker (its
        events exchange exists): else no job's event can come."""
        return self._retrying(self._declared)

    def _task_consumers(self) -> int:
        with _Session(self._connection) as session:
            try:
                declared = session.channel.queue_declare(queue=self.topology.tasks, passive=True)
            except self._connection.channel_errors:  # no such queue: the channel closes
                return 0
            return int(declared.consumer_count)

    def _declared(self) -> bool:
        with _Session(self._connection) as session:
            try:
                session.channel.exchange_declare(self.topology.events, type="topic", passive=True)
            except self._connection.channel_errors:  # no such exchange
                return False
            return True

    def _retrying(self, operation: Callable[[], T]) -> T:
        """Run ``operation``; after a dropped connection, reconnect and run it again."""
        self._connect()
        # ensure() revives its first argument on the new connection; operations open
        # their own channels, so the connection itself is all there is to revive.
        ensured = self._connection.ensure(self._connection, operation, **RETRY_POLICY)
        try:
            result: T = ensured()
        except OperationalError as exc:
            raise cannot_connect(self.url, connect_reason(exc)) from exc
        return result

    def _connect(self) -> None:
        """Connect unless connected, retrying as :data:`RETRY_POLICY` says; a broker that
        cannot be reached or refuses the login raises :class:`~exportd.bus.base.BusError`
        in the words of every exportd process."""
        if self._connection.connected:
            return
        connection = self._connection
        try:
            connection.ensure_connection(**RETRY_POLICY)
        except (OperationalError, *connection.connection_errors, *connection.channel_errors) as exc:
            # py-amqp raises the broker's refusal as it is: AccessRefused, NotAllowed...
            if getattr(exc, "reply_code", None) == _ACCESS_REFUSED:
                raise cannot_connect(self.url, LOGIN_REFUSED) from exc
            reason = getattr(exc, "reply_text", None) or connect_reason(exc)
            raise cannot_connect(self.url, reason) from exc

    def _subscribe(self, pattern: str) -> tuple[_Session, deque[Message]]:
        """A new session with a private queue bound to the events exchange by ``pattern``."""
        session = _Session(self._connection)
        _, inbox = session.private_queue(self._events, [pattern])
        return session, inbox

    def _command(self, command: JobCommand) -> RequestReply:
        """The engine's reply to ``command``, through its control queue."""
        session, reply, _ = self._ask(self.topology.control, command)
        session.close()
        return reply

    def _ask(
        self, queue: str, message: ExportRequest | JobCommand, final_keys: Iterable[str] = ()
    ) -> tuple[_Session, RequestReply, deque[Message]]:
        """Send ``message`` to ``queue`` and wait for the engine's reply: the session
        (close it), the reply, and the events routed by ``final_keys`` so far."""
        correlation_id = uuid.uuid4().hex
        # Commands are worth doing only while someone waits for the answer; requests
        # wait in their queue for an engine (see the module's docstring).
        expiration = self.timeout if isinstance(message, JobCommand) else None
        session, replies, finals = self._retrying(
            lambda: self._send(queue, message, correlation_id, list(final_keys), expiration)
        )
        try:
            reply = self._reply(session, replies, correlation_id, queue)
        except BaseException:
            session.close()
            raise
        return session, reply, finals

    def _send(
        self,
        queue: str,
        message: ExportRequest | JobCommand,
        correlation_id: str,
        final_keys: list[str],
        expiration: float | None,
    ) -> tuple[_Session, deque[Message], deque[Message]]:
        """Publish ``message`` to ``queue`` in a new session and return once the broker
        has it: the session, the replies, and the events routed by ``final_keys``.

        Both private queues exist before the message leaves, so no answer can be missed.
        """
        session = _Session(self._connection)
        reply_to, replies = session.private_queue()
        finals = session.private_queue(self._events, final_keys)[1] if final_keys else deque()
        returned: list[object] = []
        producer = Producer(
            session.channel, auto_declare=False, on_return=lambda *r: returned.append(r)
        )
        producer.publish(
            msgspec.json.encode(message),
            exchange="",
            routing_key=queue,
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=_PERSISTENT,
            mandatory=True,
            confirm_timeout=self.timeout,
            reply_to=reply_to,
            correlation_id=correlation_id,
            expiration=expiration,
        )
        if returned:  # the broker returns a mandatory message before it confirms it
            session.close()
            raise BusError(
                f"the broker has no queue {queue!r}: start the exportd engine once to declare it"
            )
        return session, replies, finals

    def _reply(
        self, session: _Session, replies: deque[Message], correlation_id: str, queue: str
    ) -> RequestReply:
        """The engine's reply with ``correlation_id`` (others are dropped); its error,
        if it holds one, is raised."""
        deadline = time.monotonic() + self.timeout
        while (message := session.receive(replies, deadline)) is not None:
            if message.properties.get("correlation_id") != correlation_id:
                continue
            reply = msgspec.json.decode(message.body, type=RequestReply)
            if reply.error is not None:
                raise from_body(reply.error)
            return reply
        fate = (
            f"the request waits in {queue!r} until an engine takes it"
            if queue == self.topology.requests
            else "is an exportd engine running?"
        )
        raise Timeout(f"no reply from the engine within {self.timeout} s; {fate}")


class EventStream(Iterator[JobEvent]):
    """The public job events of one routing pattern, as :meth:`Client.events` returns them.

    Iterate to receive them; the iteration ends after the stream's timeout without an
    event, or once the stream is closed.  :meth:`close` (or the end of a ``with`` block,
    or of the iteration) deletes the stream's queue.
    """

    def __init__(self, session: _Session, inbox: deque[Message], timeout: float | None) -> None:
        self._session = session
        self._inbox = inbox
        self._timeout = timeout
        self._closed = False

    def __next__(self) -> JobEvent:
        if self._closed:
            raise StopIteration
        event = self.receive(self._timeout)
        if event is None:
            self.close()
            raise StopIteration
        return event

    def receive(self, timeout: float | None) -> JobEvent | None:
        """The next event, or ``None`` after ``timeout`` seconds without one (``None``
        waits as long as it takes); the stream stays open either way."""
        deadline = None if timeout is None else time.monotonic() + timeout
        message = self._session.receive(self._inbox, deadline)
        return None if message is None else msgspec.json.decode(message.body, type=JobEvent)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving events; the queue goes with the session."""
        self._closed = True
        self._session.close()


class _Session:
    """One channel of the client's connection, with private queues that go with it."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.channel: Channel = connection.channel()

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel, which deletes its queues; a lost channel is no error."""
        self.connection.maybe_close_channel(self.channel)

    def private_queue(
        self, exchange: Exchange | None = None, keys: Iterable[str] = ()
    ) -> tuple[str, deque[Message]]:
        """Declare and consume a queue of this session alone, bound to ``exchange`` by each
        of ``keys``: its name, and the deque its messages arrive in (see :meth:`receive`)."""
        queue = Queue(
            "",
            bindings=[binding(exchange, routing_key=key) for key in keys],
            exclusive=True,
            auto_delete=True,
            channel=self.channel,
        )
        queue.declare()
        inbox: deque[Message] = deque()
        consumer = Consumer(
            self.channel, [queue], no_ack=True, auto_declare=False, on_message=inbox.append
        )
        consumer.consume()
        name: str = queue.name
        return name, inbox

    def receive(self, inbox: deque[Message], deadline: float | None) -> Message | None:
        """The next message of ``inbox``, reading the connection until one arrives (messages
        for other queues go to their own deques); ``None`` at ``deadline`` (monotonic time,
        ``None`` for no limit)."""
        while not inbox:
            if not self.channel.is_open:  # closed by the broker, or by a reconnection since
                raise BusError("the channel to the broker was lost, and with it its queue")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            try:
                self.connection.drain_events(timeout=remaining)
            except TimeoutError:
                return None
            except self.connection.connection_errors as exc:
                raise BusError(f"lost the connection to the broker while waiting: {exc}") from exc
        return inbox.popleft()


def _final(
    session: _Session, finals: deque[Message], job_id: str, wait: float | None
) -> JobSnapshot:
    """The snapshot of job ``job_id`` from its first event in ``finals``."""
    deadline = None if wait is None else time.monotonic() + wait
    while (message := session.receive(finals, deadline)) is not None:
        event = msgspec.json.decode(message.body, type=JobEvent)
        if event.job is not None and event.job.id == job_id:
            return event.job
    raise Timeout(f"job {job_id} did not finish within {wait} s")
