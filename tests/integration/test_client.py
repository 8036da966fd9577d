"""exportd.client against the real RabbitMQ, with a stand-in for the engine.

Each test gets a topology of its own, declared by exportd's own AMQP bus as the
engine declares it, and deleted afterwards, on the shared broker (on a private
node for the tests that drop the connection).  :class:`Engine` plays the engine's
part on the broker, as any AMQP peer could: it takes requests off the requests
queue, replies to ``reply_to`` with the ``correlation_id``, and publishes job
events.  The client under test is the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from kombu.connection import Connection
from kombu.entity import Queue
from kombu.message import Message
from kombu.messaging import Consumer, Producer

from exportd.bus.amqp import AmqpBus
from exportd.bus.base import BusError
from exportd.bus.topology import Topology, event_routing_key
from exportd.client import Client, Timeout
from exportd.config.settings import BrokerSettings
from exportd.errors import (
    Conflict,
    ErrorBody,
    ExportError,
    ExportFailed,
    FieldError,
    InvalidRequest,
    NotFound,
    NotImplementedFeature,
)
from exportd.messages import (
    ExportRequest,
    Interval,
    JobEvent,
    JobSnapshot,
    JobStatus,
    Progress,
    RequestReply,
)
from tests import broker

REQUEST: dict[str, Any] = {
    "source": "rooms",
    "format": "csv",
    "params": {"room_id": "r1"},
    "interval": {"start": "2024-05-01", "end": "2024-05-02"},
    "org_id": "org1",
}
PARSED = msgspec.convert(REQUEST, ExportRequest)

NEEDS_RABBITMQCTL = broker.NEEDS_RABBITMQCTL


def snapshot(
    request: ExportRequest, status: JobStatus = "created", job_id: str = "job-1"
) -> JobSnapshot:
    """A job as the engine would describe it."""
    now = datetime.now(UTC)
    return JobSnapshot(
        id=job_id,
        status=status,
        request=request,
        attempt=1,
        part_count=1,
        parts=[],
        progress=Progress(),
        created_at=now,
        updated_at=now,
    )


def publish_event(producer: Producer, topology: Topology, job: JobSnapshot) -> None:
    """Announce ``job`` on the events exchange, as the engine does."""
    event = JobEvent(
        id=uuid.uuid4().hex, type=f"job.{job.status}", occurred_at=job.updated_at, job=job
    )
    producer.publish(
        msgspec.json.encode(event),
        exchange=topology.events,
        routing_key=event_routing_key(job.request.org_id, job.request.source, job.status),
        content_type="application/json",
        content_encoding="utf-8",
    )


@dataclass
class Delivery:
    """A request as the engine received it."""

    request: ExportRequest
    correlation_id: str
    reply_to: str
    delivery_mode: int
    content_type: str


Answer = Callable[["Engine", Delivery], None]


class Engine:
    """Plays the engine in a thread: each request taken off the queue goes to ``answer``,
    which replies and publishes events through :meth:`reply` and :meth:`announce`."""

    def __init__(self, url: str, topology: Topology, answer: Answer) -> None:
        self.topology = topology
        self.answer = answer
        self.deliveries: list[Delivery] = []
        self.error: BaseException | None = None
        self._connection = Connection(url)
        self._producer = Producer(self._connection, auto_declare=False)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Engine:
        """Start taking requests."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop, and raise what went wrong in the thread, if anything."""
        self._stopping.set()
        self._thread.join(timeout=5)
        self._connection.release()
        if self.error is not None:
            raise self.error

    def reply(self, delivery: Delivery, reply: RequestReply, correlation_id: str = "") -> None:
        """Answer ``delivery`` (with another ``correlation_id`` if given)."""
        self._producer.publish(
            msgspec.json.encode(reply),
            exchange="",
            routing_key=delivery.reply_to,
            content_type="application/json",
            content_encoding="utf-8",
            correlation_id=correlation_id or delivery.correlation_id,
        )

    def announce(self, *jobs: JobSnapshot) -> None:
        """Publish an event for each of ``jobs``."""
        for job in jobs:
            publish_event(self._producer, self.topology, job)

    def _run(self) -> None:
        try:
            queue = Queue(self.topology.requests, no_declare=True)
            with Consumer(self._connection.channel(), [queue], on_message=self._on_request):
                while not self._stopping.is_set():
                    with contextlib.suppress(TimeoutError):
                        self._connection.drain_events(timeout=0.05)
        except BaseException as exc:
            self.error = exc

    def _on_request(self, message: Message) -> None:
        properties = message.properties
        delivery = Delivery(
            request=msgspec.json.decode(message.body, type=ExportRequest),
            correlation_id=properties["correlation_id"],
            reply_to=properties["reply_to"],
            delivery_mode=properties["delivery_mode"],
            content_type=message.content_type,
        )
        self.deliveries.append(delivery)
        self.answer(self, delivery)
        message.ack()


def created(engine: Engine, delivery: Delivery) -> None:
    """The engine's usual answer: the job, created."""
    engine.reply(delivery, RequestReply(ok=True, job=snapshot(delivery.request)))


def declare(url: str, topology: Topology) -> None:
    """Declare ``topology`` as the engine does when it starts."""

    async def start_and_close() -> None:
        async with AmqpBus(BrokerSettings(url=url), topology):
            pass

    asyncio.run(start_and_close())


@pytest.fixture
def bare_topology(broker_url: str) -> Iterator[Topology]:
    """A topology no other test shares, not declared (no engine ever started), deleted after."""
    topology = Topology(prefix=f"test-{uuid.uuid4().hex[:12]}.")
    yield topology
    asyncio.run(broker.delete_topology(broker_url, topology))


@pytest.fixture
def topology(broker_url: str, bare_topology: Topology) -> Topology:
    """A topology no other test shares, declared as by a started engine."""
    declare(broker_url, bare_topology)
    return bare_topology


@pytest.fixture
def client(broker_url: str, topology: Topology) -> Iterator[Client]:
    """A client of ``topology``, its connection named after it."""
    with Client(broker_url, topology=topology, timeout=5, name=f"client {topology.prefix}") as c:
        yield c


@pytest.fixture
def start_engine(broker_url: str, topology: Topology) -> Iterator[Callable[[Answer], Engine]]:
    """Start an :class:`Engine` that answers with the given function; stopped after the test."""
    engines: list[Engine] = []

    def start(answer: Answer) -> Engine:
        engines.append(Engine(broker_url, topology, answer).start())
        return engines[-1]

    yield start
    for engine in engines:
        engine.stop()


@pytest.fixture
def producer(broker_url: str) -> Iterator[Producer]:
    """A producer of its own connection, to publish events from the test."""
    with Connection(broker_url) as connection:
        yield Producer(connection, auto_declare=False)


def queued(url: str, queue: str) -> int:
    """How many messages wait in ``queue`` on the broker at ``url``."""
    with Connection(url) as connection:
        _, messages, _ = connection.default_channel.queue_declare(queue, passive=True)
        return int(messages)


# submit


def test_submit_sends_a_persistent_request_and_returns_the_job(
    client: Client, start_engine: Callable[[Answer], Engine]
) -> None:
    engine = start_engine(created)

    job = client.submit(REQUEST)

    assert (job.id, job.status) == ("job-1", "created")
    assert msgspec.to_builtins(job.request) == msgspec.to_builtins(PARSED)
    [delivery] = engine.deliveries
    assert msgspec.to_builtins(delivery.request) == msgspec.to_builtins(job.request)
    assert delivery.delivery_mode == 2
    assert delivery.content_type == "application/json"
    assert delivery.correlation_id
    assert delivery.reply_to


def test_submit_takes_an_export_request_struct(
    client: Client, start_engine: Callable[[Answer], Engine]
) -> None:
    engine = start_engine(created)
    request = ExportRequest(source="rooms", interval=Interval("2024-05-01", "2024-05-02"))

    assert client.submit(request).request.source == "rooms"
    assert engine.deliveries[0].request == request


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({**REQUEST, "fromat": "xlsx"}, "fromat"),
        ({k: v for k, v in REQUEST.items() if k != "source"}, "source"),
        ({**REQUEST, "interval": {"start": 20240501, "end": "2024-05-02"}}, "interval.start"),
        ({**REQUEST, "limit": 0}, "limit"),
        (ExportRequest(source="rooms", interval=Interval("a", "b"), limit=0), "limit"),
    ],
)
def test_an_invalid_request_is_refused_naming_the_field_before_anything_is_sent(
    broker_url: str,
    client: Client,
    topology: Topology,
    request_: dict[str, Any] | ExportRequest,
    field: str,
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        client.submit(request_)

    assert [f.name for f in caught.value.fields] == [field]
    assert queued(broker_url, topology.requests) == 0


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        ("invalid_request", InvalidRequest),
        ("not_found", NotFound),
        ("not_implemented", NotImplementedFeature),
        ("conflict", Conflict),
        ("export_failed", ExportFailed),
        ("something_new", ExportError),
    ],
)
def test_a_refusal_raises_the_error_of_its_code_with_its_fields(
    client: Client,
    start_engine: Callable[[Answer], Engine],
    code: str,
    error_class: type[ExportError],
) -> None:
    fields = [FieldError("params.room_id", "no room r1")]

    def refuse(engine: Engine, delivery: Delivery) -> None:
        error = ErrorBody(code=code, message="refused", fields=fields)
        engine.reply(delivery, RequestReply(ok=False, error=error))

    start_engine(refuse)

    with pytest.raises(ExportError) as caught:
        client.submit(REQUEST)

    assert type(caught.value) is error_class
    assert (caught.value.code, caught.value.message, caught.value.fields) == (
        code,
        "refused",
        fields,
    )


def test_replies_to_other_requests_are_ignored(
    client: Client, start_engine: Callable[[Answer], Engine]
) -> None:
    def confused(engine: Engine, delivery: Delivery) -> None:
        stray = RequestReply(ok=True, job=snapshot(delivery.request, job_id="someone-elses"))
        engine.reply(delivery, stray, correlation_id="someone-else")
        engine.reply(delivery, RequestReply(ok=True, job=snapshot(delivery.request)))

    start_engine(confused)

    assert client.submit(REQUEST).id == "job-1"


def test_no_reply_in_time_is_a_timeout_and_the_request_waits_for_an_engine(
    broker_url: str,
    client: Client,
    topology: Topology,
    start_engine: Callable[[Answer], Engine],
) -> None:
    client.timeout = 0.3
    with pytest.raises(Timeout, match=r"no reply from the engine within 0\.3 s"):
        client.submit(REQUEST)
    assert queued(broker_url, topology.requests) == 1

    engine = start_engine(created)
    client.timeout = 5
    assert client.submit(REQUEST).id == "job-1"
    assert len(engine.deliveries) == 2  # the first request waited in the queue


def test_a_broker_without_the_requests_queue_refuses_the_request(
    broker_url: str,
    bare_topology: Topology,
) -> None:
    with (
        Client(broker_url, topology=bare_topology, timeout=5) as client,
        pytest.raises(BusError, match=f"no queue '{bare_topology.requests}'"),
    ):
        client.submit(REQUEST)


def test_no_broker_is_an_error_that_hides_the_password() -> None:
    with (
        Client("amqp://guest:secret@127.0.0.1:1/", timeout=1) as client,
        pytest.raises(BusError, match="cannot connect to RabbitMQ at ") as caught,
    ):
        client.submit(REQUEST)
    assert "secret" not in str(caught.value)


# submit(wait=...)


@pytest.mark.parametrize("events_first", [False, True], ids=["reply-first", "events-first"])
def test_wait_returns_the_final_snapshot_of_the_job(
    client: Client, start_engine: Callable[[Answer], Engine], events_first: bool
) -> None:
    """The events come at once, before or after the reply: none may be missed."""

    def run(engine: Engine, delivery: Delivery) -> None:
        job = snapshot(delivery.request)
        statuses: list[JobStatus] = ["processing", "uploading", "done"]
        events = [msgspec.structs.replace(job, status=s) for s in statuses]
        other = snapshot(delivery.request, "failed", job_id="job-2")
        if events_first:
            engine.announce(other, *events)
        engine.reply(delivery, RequestReply(ok=True, job=job))
        if not events_first:
            engine.announce(other, *events)

    start_engine(run)

    job = client.submit(REQUEST, wait=5)

    assert (job.id, job.status) == ("job-1", "done")


def test_wait_returns_a_job_that_is_already_final_at_once(
    client: Client, start_engine: Callable[[Answer], Engine]
) -> None:
    """A repeated idempotency key: the engine answers with the finished job."""

    def finished(engine: Engine, delivery: Delivery) -> None:
        engine.reply(delivery, RequestReply(ok=True, job=snapshot(delivery.request, "done")))

    start_engine(finished)

    assert client.submit(REQUEST, wait=True).status == "done"


def test_wait_gives_up_after_its_timeout(
    client: Client, start_engine: Callable[[Answer], Engine]
) -> None:
    def stuck(engine: Engine, delivery: Delivery) -> None:
        job = snapshot(delivery.request)
        engine.reply(delivery, RequestReply(ok=True, job=job))
        engine.announce(msgspec.structs.replace(job, status="processing"))

    start_engine(stuck)
    started = time.monotonic()

    with pytest.raises(Timeout, match=r"job job-1 did not finish within 0\.3 s"):
        client.submit(REQUEST, wait=0.3)
    assert 0.3 <= time.monotonic() - started < 2


# events


def test_events_follow_their_routing_patterns(
    client: Client, topology: Topology, producer: Producer
) -> None:
    replace = msgspec.structs.replace
    jobs = [
        snapshot(PARSED, "processing", "org1-rooms-processing"),
        snapshot(PARSED, "done", "org1-rooms-done"),
        snapshot(replace(PARSED, org_id="org2"), "done", "org2-rooms-done"),
        snapshot(replace(PARSED, source="qna"), "failed", "org1-qna-failed"),
        snapshot(replace(PARSED, org_id=None), "done", "no-org-rooms-done"),
    ]

    with (
        client.events("org1.rooms.*", timeout=0.3) as org1_rooms,
        client.events("*.*.done", timeout=0.3) as done,
    ):
        for job in jobs:
            publish_event(producer, topology, job)

        assert [_job_id(e) for e in org1_rooms] == ["org1-rooms-processing", "org1-rooms-done"]
        assert [_job_id(e) for e in done] == [
            "org1-rooms-done",
            "org2-rooms-done",
            "no-org-rooms-done",
        ]


def test_events_end_after_their_timeout_without_an_event(client: Client) -> None:
    started = time.monotonic()

    assert list(client.events(timeout=0.2)) == []
    assert 0.2 <= time.monotonic() - started < 2


@NEEDS_RABBITMQCTL
def test_closing_a_stream_deletes_its_queue(client: Client, topology: Topology) -> None:
    stream = client.events("org1.#")
    assert _bindings(topology.events) == ["org1.#"]

    stream.close()

    assert _bindings(topology.events) == []
    assert list(stream) == []


# a dropped connection


class TestOnAPrivateNode(broker.OnThePrivateNode):
    """The broker closes the client's connection: on a RabbitMQ node of the session's own,
    as closing connections of the shared one could close other people's."""

    def test_submit_reconnects_after_the_broker_drops_the_connection(
        self,
        client: Client,
        topology: Topology,
        start_engine: Callable[[Answer], Engine],
        private_broker: broker.PrivateBroker,
    ) -> None:
        start_engine(created)
        client.submit(REQUEST)

        assert private_broker.close_connections_named(f"client {topology.prefix}") == 1

        assert client.submit(REQUEST).id == "job-1"

    def test_a_stream_whose_connection_dropped_is_an_error(
        self, client: Client, topology: Topology, private_broker: broker.PrivateBroker
    ) -> None:
        stream = client.events(timeout=5)

        assert private_broker.close_connections_named(f"client {topology.prefix}") == 1

        with pytest.raises(BusError, match="lost the connection"):
            next(stream)


def _job_id(event: JobEvent) -> str:
    assert event.job is not None
    return event.job.id


def _bindings(exchange: str) -> list[str]:
    """The routing keys that bind queues to ``exchange``."""
    listing = broker.shared_rabbitmqctl(
        "list_bindings", "source_name", "routing_key", "--formatter=json"
    )
    return [row["routing_key"] for row in json.loads(listing) if row["source_name"] == exchange]
