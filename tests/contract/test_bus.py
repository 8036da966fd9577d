"""The bus contract: every test runs on the in-process bus and on RabbitMQ.

Each test gets a started bus on a topology of its own (see ``conftest.py``).
Every wait is bounded by :data:`WAIT`; "nothing more arrives" is checked over
:data:`QUIET`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable

import aio_pika
import pytest
from yarl import URL

from exportd.bus.amqp import AmqpBus
from exportd.bus.base import Bus, BusError, Message, Unroutable
from exportd.bus.topology import (
    DEFAULT_EXCHANGE,
    ENGINE_DELIVERY_LIMIT,
    PIECE_DELIVERY_LIMIT,
    TASK_DELIVERY_LIMIT,
    Topology,
)
from exportd.config.settings import BrokerSettings
from tests.broker import PrivateBroker
from tests.contract.conftest import Implementation, connection_name

WAIT = 5.0
"""Seconds any single wait may take before the test fails."""
QUIET = 0.3
"""Seconds over which nothing more may arrive."""


class Inbox:
    """A handler that keeps every message it receives, unsettled, for the test to settle."""

    def __init__(self) -> None:
        self._messages: asyncio.Queue[Message] = asyncio.Queue()

    async def __call__(self, message: Message) -> None:
        self._messages.put_nowait(message)

    async def get(self, timeout: float = WAIT) -> Message:
        """The next message, within ``timeout`` seconds."""
        return await asyncio.wait_for(self._messages.get(), timeout)

    async def get_all(self, count: int) -> list[Message]:
        """The next ``count`` messages."""
        return [await self.get() for _ in range(count)]

    async def stays_empty(self) -> bool:
        """Whether nothing more arrives within :data:`QUIET`."""
        await asyncio.sleep(QUIET)
        return self._messages.empty()


async def publish_to(bus: Bus, queue: str, *bodies: bytes) -> None:
    """Publish each body to ``queue`` through the default exchange."""
    for body in bodies:
        await bus.publish(DEFAULT_EXCHANGE, queue, body)


def bodies(messages: list[Message]) -> list[bytes]:
    """The messages' bodies."""
    return [message.body for message in messages]


async def test_round_trip_keeps_body_reply_to_and_correlation_id(bus: Bus) -> None:
    requests = bus.topology.requests
    await bus.publish(
        DEFAULT_EXCHANGE, requests, b'{"source": "rooms"}', reply_to="replies", correlation_id="c-1"
    )
    inbox = Inbox()
    await bus.consume(requests, inbox, prefetch=1)

    message = await inbox.get()
    assert message.body == b'{"source": "rooms"}'
    assert message.routing_key == requests
    assert (message.reply_to, message.correlation_id) == ("replies", "c-1")
    assert (message.redelivered, message.delivery_count) == (False, 0)
    await message.ack()


async def test_the_bus_keeps_a_copy_of_the_body(bus: Bus) -> None:
    body = bytearray(b"as published")
    await bus.publish(DEFAULT_EXCHANGE, bus.topology.status, body)  # type: ignore[arg-type]
    body[:] = b"changed after"
    inbox = Inbox()
    await bus.consume(bus.topology.status, inbox, prefetch=1)

    message = await inbox.get()
    assert message.body == b"as published"
    assert isinstance(message.body, bytes)


async def test_messages_published_before_a_consumer_starts_wait_for_it(bus: Bus) -> None:
    await publish_to(bus, bus.topology.tasks, b"1", b"2", b"3")
    inbox = Inbox()
    await bus.consume(bus.topology.tasks, inbox, prefetch=10)
    assert bodies(await inbox.get_all(3)) == [b"1", b"2", b"3"]


async def test_an_acked_message_is_gone(bus: Bus) -> None:
    status = bus.topology.status
    await publish_to(bus, status, b"acked")
    inbox = Inbox()
    subscription = await bus.consume(status, inbox, prefetch=1)
    await (await inbox.get()).ack()
    await subscription.cancel()

    await publish_to(bus, status, b"next")
    await bus.consume(status, inbox, prefetch=1)
    assert (await inbox.get()).body == b"next"
    assert await inbox.stays_empty()


async def test_settling_twice_is_an_error(bus: Bus) -> None:
    await publish_to(bus, bus.topology.status, b"once")
    inbox = Inbox()
    await bus.consume(bus.topology.status, inbox, prefetch=1)
    message = await inbox.get()
    await message.ack()
    with pytest.raises(BusError):
        await message.ack()


async def test_a_requeued_task_comes_back_redelivered_and_counted(bus: Bus) -> None:
    await publish_to(bus, bus.topology.tasks, b"task")
    inbox = Inbox()
    await bus.consume(bus.topology.tasks, inbox, prefetch=1)

    first = await inbox.get()
    assert (first.redelivered, first.delivery_count) == (False, 0)
    await first.reject(requeue=True)
    second = await inbox.get()
    assert (second.body, second.redelivered, second.delivery_count) == (b"task", True, 1)
    await second.ack()
    assert await inbox.stays_empty()


async def test_a_classic_queue_redelivers_without_counting(bus: Bus) -> None:
    """As RabbitMQ: only quorum queues count deliveries; a classic one only flags them."""
    classic = bus.topology.requests_dead
    await publish_to(bus, classic, b"request")
    inbox = Inbox()
    await bus.consume(classic, inbox, prefetch=1)

    await (await inbox.get()).reject(requeue=True)
    again = await inbox.get()
    assert (again.body, again.redelivered, again.delivery_count) == (b"request", True, 0)
    await again.ack()


CONSUMED = [
    ("requests", "requests_dead", ENGINE_DELIVERY_LIMIT),
    ("control", "control_dead", ENGINE_DELIVERY_LIMIT),
    ("status", "status_dead", ENGINE_DELIVERY_LIMIT),
    ("tasks", "tasks_dead", TASK_DELIVERY_LIMIT),
    ("pieces", "pieces_dead", PIECE_DELIVERY_LIMIT),
]
"""Every queue exportd consumes, its dead-letter queue and its delivery limit (names of
:class:`Topology` properties)."""


def test_every_queue_exportd_consumes_has_a_delivery_limit_and_a_dead_letter_queue() -> None:
    topology = Topology(prefix="any.")
    specs = {spec.name: spec for spec in topology.queues()}
    dead_letter_queues = {spec.dead_letter for spec in specs.values() if spec.dead_letter}
    consumed = {name for name in specs if name not in dead_letter_queues}
    assert consumed == {getattr(topology, queue) for queue, _, _ in CONSUMED}
    for queue, dead, limit in CONSUMED:
        spec = specs[getattr(topology, queue)]
        assert (spec.delivery_limit, spec.dead_letter) == (limit, getattr(topology, dead))


@pytest.mark.parametrize(("queue", "dead", "limit"), CONSUMED)
async def test_a_rejected_message_is_dead_lettered(
    bus: Bus, queue: str, dead: str, limit: int
) -> None:
    topology = bus.topology
    await bus.publish(
        DEFAULT_EXCHANGE, getattr(topology, queue), b"bad", reply_to="replies", correlation_id="c-9"
    )
    consumed, dead_letters = Inbox(), Inbox()
    await bus.consume(getattr(topology, queue), consumed, prefetch=1)
    await (await consumed.get()).reject(requeue=False)

    await bus.consume(getattr(topology, dead), dead_letters, prefetch=1)
    message = await dead_letters.get()
    assert (message.body, message.reply_to, message.correlation_id) == (b"bad", "replies", "c-9")
    await message.ack()
    assert await consumed.stays_empty()


@pytest.mark.parametrize(("queue", "dead", "limit"), CONSUMED)
async def test_a_message_dead_lettered_for_a_reason_reaches_its_dead_letter_queue(
    bus: Bus, queue: str, dead: str, limit: int
) -> None:
    topology = bus.topology
    await bus.publish(DEFAULT_EXCHANGE, getattr(topology, queue), b"bad", correlation_id="c-1")
    consumed, dead_letters = Inbox(), Inbox()
    await bus.consume(getattr(topology, queue), consumed, prefetch=1)
    await (await consumed.get()).dead_letter("invalid_request: why")

    await bus.consume(getattr(topology, dead), dead_letters, prefetch=1)
    message = await dead_letters.get()
    assert (message.body, message.correlation_id) == (b"bad", "c-1")
    await message.ack()
    assert await consumed.stays_empty()


async def test_a_dead_letter_queue_keeps_its_newest_messages(
    implementation: Implementation,
) -> None:
    topology = Topology(prefix=f"test-{uuid.uuid4().hex}.", dead_letter_max=3)
    try:
        async with implementation.make(topology) as bus:
            await publish_to(bus, topology.tasks_dead, b"1", b"2", b"3", b"4", b"5")
            inbox = Inbox()
            await bus.consume(topology.tasks_dead, inbox, prefetch=10)
            assert bodies(await inbox.get_all(3)) == [b"3", b"4", b"5"]
            assert await inbox.stays_empty()
    finally:
        await implementation.clean(topology)


async def test_a_rejected_message_without_dead_letter_queue_is_dropped(bus: Bus) -> None:
    dead = bus.topology.requests_dead  # a dead-letter queue has none of its own
    await publish_to(bus, dead, b"dropped", b"kept")
    inbox = Inbox()
    await bus.consume(dead, inbox, prefetch=1)
    await (await inbox.get()).reject(requeue=False)
    assert (await inbox.get()).body == b"kept"


@pytest.mark.parametrize(("queue", "dead", "limit"), CONSUMED)
async def test_a_message_past_the_delivery_limit_is_dead_lettered(
    bus: Bus, queue: str, dead: str, limit: int
) -> None:
    topology = bus.topology
    await publish_to(bus, getattr(topology, queue), b"poison")
    consumed, dead_letters = Inbox(), Inbox()
    await bus.consume(getattr(topology, queue), consumed, prefetch=1)

    counts = []
    for _ in range(limit + 1):
        message = await consumed.get()
        counts.append(message.delivery_count)
        await message.reject(requeue=True)
    assert counts == list(range(limit + 1))

    await bus.consume(getattr(topology, dead), dead_letters, prefetch=1)
    assert (await dead_letters.get()).body == b"poison"
    assert await consumed.stays_empty()


async def test_a_consumer_holds_at_most_prefetch_unsettled(bus: Bus) -> None:
    status = bus.topology.status
    await publish_to(bus, status, b"1", b"2", b"3", b"4", b"5")
    inbox = Inbox()
    await bus.consume(status, inbox, prefetch=2)

    held = await inbox.get_all(2)
    assert await inbox.stays_empty()
    await held.pop(0).ack()
    held.append(await inbox.get())
    assert await inbox.stays_empty()
    assert bodies(held) == [b"2", b"3"]
    for message in held:
        await message.ack()
    rest = await inbox.get_all(2)
    assert bodies(rest) == [b"4", b"5"]


async def test_two_consumers_share_a_queue(bus: Bus) -> None:
    tasks = bus.topology.tasks
    first, second = Inbox(), Inbox()
    await bus.consume(tasks, first, prefetch=1)
    await bus.consume(tasks, second, prefetch=1)
    await publish_to(bus, tasks, b"a", b"b")

    one, other = await first.get(), await second.get()
    assert {one.body, other.body} == {b"a", b"b"}
    await one.ack()
    await other.ack()
    await publish_to(bus, tasks, b"c", b"d")
    assert {(await first.get()).body, (await second.get()).body} == {b"c", b"d"}


async def test_a_cancelled_consumer_gives_its_unsettled_messages_back(bus: Bus) -> None:
    tasks = bus.topology.tasks
    leaving, staying = Inbox(), Inbox()
    subscription = await bus.consume(tasks, leaving, prefetch=1)
    await publish_to(bus, tasks, b"held")
    held = await leaving.get()

    await bus.consume(tasks, staying, prefetch=1)
    await subscription.cancel()
    again = await staying.get()
    assert (again.body, again.redelivered) == (b"held", True)
    with pytest.raises(BusError):
        await held.ack()


class Held:
    """A handler that signals each delivery and holds it, unsettled, until released."""

    def __init__(self) -> None:
        self.received = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        self.received.set()
        await self.release.wait()

    async def wait_received(self) -> None:
        """Until a message arrives, within :data:`WAIT`."""
        await asyncio.wait_for(self.received.wait(), WAIT)


async def test_cancel_returns_at_once_and_a_handler_in_flight_still_settles(bus: Bus) -> None:
    status = bus.topology.status
    held, acked = Held(), asyncio.Event()

    async def slow_ack(message: Message) -> None:
        await held(message)
        await message.ack()
        acked.set()

    subscription = await bus.consume(status, slow_ack, prefetch=1)
    await publish_to(bus, status, b"slow")
    await held.wait_received()
    await asyncio.wait_for(subscription.cancel(), QUIET)

    held.release.set()
    await asyncio.wait_for(acked.wait(), WAIT)
    inbox = Inbox()
    await bus.consume(status, inbox, prefetch=1)
    assert await inbox.stays_empty()


async def test_what_a_handler_in_flight_leaves_unsettled_goes_back_when_it_returns(
    bus: Bus,
) -> None:
    status = bus.topology.status
    held, inbox = Held(), Inbox()
    subscription = await bus.consume(status, held, prefetch=1)
    await publish_to(bus, status, b"left")
    await held.wait_received()
    await subscription.cancel()
    await bus.consume(status, inbox, prefetch=1)
    assert await inbox.stays_empty()

    held.release.set()
    again = await inbox.get()
    assert (again.body, again.redelivered) == (b"left", True)


async def test_close_waits_for_the_handlers_in_flight(bus: Bus) -> None:
    status = bus.topology.status
    held = Held()

    async def slow_ack(message: Message) -> None:
        await held(message)
        await message.ack()

    await bus.consume(status, slow_ack, prefetch=1)
    await publish_to(bus, status, b"slow")
    await held.wait_received()
    closing = asyncio.create_task(bus.close())
    await asyncio.sleep(QUIET)
    assert not closing.done()
    held.release.set()
    await asyncio.wait_for(closing, WAIT)

    await bus.start()
    inbox = Inbox()
    await bus.consume(status, inbox, prefetch=1)
    assert await inbox.stays_empty()


async def test_cancelling_close_aborts_the_handlers_in_flight(
    bus: Bus,
) -> None:
    status = bus.topology.status
    held = Held()
    await bus.consume(status, held, prefetch=1)
    await publish_to(bus, status, b"stuck")
    await held.wait_received()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bus.close(), QUIET)

    await bus.start()
    inbox = Inbox()
    await bus.consume(status, inbox, prefetch=1)
    assert (await inbox.get()).body == b"stuck"


async def test_a_handler_that_raises_requeues_its_message_and_the_consumer_goes_on(
    bus: Bus,
) -> None:
    seen: list[tuple[bytes, bool]] = []
    acked: list[bytes] = []
    both = asyncio.Event()

    async def fragile(message: Message) -> None:
        seen.append((message.body, message.redelivered))
        if message.body == b"boom" and not message.redelivered:
            raise RuntimeError("a handler's bug")
        await message.ack()
        acked.append(message.body)
        if len(acked) == 2:
            both.set()

    await bus.consume(bus.topology.status, fragile, prefetch=1)
    await publish_to(bus, bus.topology.status, b"boom", b"after")
    await asyncio.wait_for(both.wait(), WAIT)
    assert sorted(seen) == [(b"after", False), (b"boom", False), (b"boom", True)]


async def test_close_gives_unsettled_messages_back(bus: Bus) -> None:
    tasks = bus.topology.tasks
    await publish_to(bus, tasks, b"unsettled")
    inbox = Inbox()
    await bus.consume(tasks, inbox, prefetch=1)
    held = await inbox.get()

    await bus.close()
    with pytest.raises(BusError):
        await publish_to(bus, tasks, b"after close")
    with pytest.raises(BusError):
        await held.ack()
    await bus.start()
    await bus.consume(tasks, inbox, prefetch=1)
    again = await inbox.get()
    assert (again.body, again.redelivered) == (b"unsettled", True)


@pytest.mark.parametrize(
    ("exchange", "routing_key"),
    [(DEFAULT_EXCHANGE, "no-such-queue"), ("no-such-exchange", "any")],
)
async def test_an_unroutable_publish_is_an_error(bus: Bus, exchange: str, routing_key: str) -> None:
    with pytest.raises(BusError) as raised:
        await bus.publish(exchange, routing_key, b"lost")
    # Only a missing queue is Unroutable: a piece's worker takes it as "not wanted".
    assert isinstance(raised.value, Unroutable) == (exchange == DEFAULT_EXCHANGE)
    # The bus works on.
    await publish_to(bus, bus.topology.status, b"routed")
    inbox = Inbox()
    await bus.consume(bus.topology.status, inbox, prefetch=1)
    assert (await inbox.get()).body == b"routed"


async def test_an_event_nobody_subscribed_to_is_dropped_quietly(bus: Bus) -> None:
    await bus.publish(bus.topology.events, "org1.rooms.done", b"nobody listens")
    await bus.publish(bus.topology.cancel, "", b"no worker listens")


async def test_a_fanout_reaches_every_subscriber(bus: Bus) -> None:
    inboxes = [Inbox(), Inbox(), Inbox()]
    for inbox in inboxes:
        await bus.subscribe(bus.topology.cancel, "", inbox)
    await bus.publish(bus.topology.cancel, "", b"cancel job 7")
    for inbox in inboxes:
        assert (await inbox.get()).body == b"cancel job 7"


async def test_topic_patterns_route_by_words(bus: Bus) -> None:
    keys = ["org1.rooms.done", "org1.rooms.failed", "org2.qna.done", "org1.qna.done.late", "org1"]
    expected = {
        "org1.rooms.*": ["org1.rooms.done", "org1.rooms.failed"],
        "#.done": ["org1.rooms.done", "org2.qna.done"],
        "*.qna.*": ["org2.qna.done"],
        "org1.#": ["org1.rooms.done", "org1.rooms.failed", "org1.qna.done.late", "org1"],
        "#": keys,
        "org3.#": [],
    }
    inboxes = {pattern: Inbox() for pattern in expected}
    for pattern, inbox in inboxes.items():
        await bus.subscribe(bus.topology.events, pattern, inbox)
    for key in keys:
        await bus.publish(bus.topology.events, key, key.encode())

    for pattern, inbox in inboxes.items():
        messages = await inbox.get_all(len(expected[pattern]))
        assert [message.routing_key for message in messages] == expected[pattern], pattern
        assert bodies(messages) == [key.encode() for key in expected[pattern]]
    assert all(await asyncio.gather(*(inbox.stays_empty() for inbox in inboxes.values())))


async def test_a_cancelled_subscription_receives_nothing_more(bus: Bus) -> None:
    inbox = Inbox()
    subscription = await bus.subscribe(bus.topology.events, "#", inbox)
    await subscription.cancel()
    await bus.publish(bus.topology.events, "org1.rooms.done", b"too late")
    assert await inbox.stays_empty()


async def test_a_private_queue_takes_what_is_published_to_its_name_until_cancelled(
    bus: Bus,
) -> None:
    inbox, other = Inbox(), Inbox()
    replies = await bus.private_queue(inbox)
    await bus.private_queue(other)
    await bus.publish(DEFAULT_EXCHANGE, replies.queue_name, b"reply", correlation_id="c-1")
    message = await inbox.get()
    assert (message.body, message.correlation_id) == (b"reply", "c-1")
    await message.ack()
    assert await other.stays_empty()

    await replies.stop()
    with pytest.raises(BusError):
        await bus.publish(DEFAULT_EXCHANGE, replies.queue_name, b"nobody waits")


# RabbitMQ only.


@pytest.fixture
def amqp(broker_url: str) -> Implementation:
    """The AMQP implementation alone."""
    return Implementation("amqp", broker_url)


async def test_a_confirm_that_does_not_come_in_time_is_an_error(
    amqp: Implementation, topology: Topology
) -> None:
    """A timeout shorter than any round trip: the confirm cannot be in time."""
    hasty = amqp.make(topology, confirm_timeout=1e-6)
    try:
        async with hasty:
            with pytest.raises(BusError, match="did not confirm"):
                await publish_to(hasty, topology.status, b"hasty")
    finally:
        await amqp.clean(topology)


async def test_a_queue_declared_before_with_other_arguments_is_an_error_naming_it(
    amqp: Implementation, topology: Topology, broker_url: str
) -> None:
    """As an older exportd left it: a classic queue, where this one declares a quorum one."""
    async with await aio_pika.connect(broker_url) as connection:
        channel = await connection.channel()
        await channel.declare_queue(topology.requests, durable=True)
    bus = amqp.make(topology)
    try:
        with pytest.raises(BusError) as caught:
            await bus.start()
    finally:
        await amqp.clean(topology)
    said = str(caught.value)
    assert f"queue {topology.requests!r} exists with other arguments" in said
    assert "x-queue-type" in said and "docs/runtime.md" in said


async def test_no_broker_is_an_error_that_hides_the_password() -> None:
    bus = AmqpBus(BrokerSettings(url="amqp://guest:secret@127.0.0.1:1/"))
    with pytest.raises(BusError, match="cannot connect") as caught:
        await bus.start()
    assert "secret" not in str(caught.value)


async def until_received(inbox: Inbox, send: Callable[[], Awaitable[None]]) -> Message:
    """Call ``send`` until ``inbox`` receives something, within :data:`WAIT`.

    While the connection comes back a publish may fail, and what an exchange
    routes before a subscriber's queue is declared again reaches nobody.
    """
    deadline = time.monotonic() + WAIT
    while True:
        with contextlib.suppress(BusError):
            await send()
        try:
            return await inbox.get(timeout=0.2)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


async def test_the_connection_comes_back_after_the_broker_closes_it(
    private_broker: PrivateBroker, topology: Topology
) -> None:
    """On a node of the session's own: closing connections of the shared broker could close
    other people's."""
    amqp = Implementation("amqp", private_broker.url)
    url = str(URL(private_broker.url).update_query(reconnect_interval="0.2"))
    bus = AmqpBus(BrokerSettings(url=url), topology, name=connection_name(topology))
    tasks, events = Inbox(), Inbox()
    try:
        async with bus:
            await bus.consume(topology.tasks, tasks, prefetch=1)
            await bus.subscribe(topology.events, "#", events)
            assert await asyncio.to_thread(private_broker.close_connections_named, bus.name) == 1

            task = await until_received(tasks, lambda: publish_to(bus, topology.tasks, b"task"))
            assert task.body == b"task"
            await task.ack()
            event = await until_received(
                events, lambda: bus.publish(topology.events, "o.s.done", b"event")
            )
            assert event.body == b"event"
    finally:
        await amqp.clean(topology)
