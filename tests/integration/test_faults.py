"""What exportd survives on the real RabbitMQ: killed workers, dropped connections, poison
tasks, malformed requests, and exports longer than the broker's acknowledgement timeout.

Workers run in processes of their own and are killed for real; the engine runs in the
test's process (:func:`watched_engine`), which shows the status updates it receives.
Each test has a topology of its own, on the shared broker unless it closes connections or
needs a short acknowledgement timeout: those run on private nodes (see :mod:`tests.broker`).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import aio_pika
import msgspec
import pytest
from yarl import URL

from exportd.bus.topology import TASK_DELIVERY_LIMIT, Topology
from exportd.kernel.validation import MAX_NESTING
from exportd.messages import JobEvent
from exportd.workers.worker import SEQ_PER_DELIVERY
from tests.broker import ACK_TIMEOUT, OnThePrivateNode, PrivateBroker, message_count
from tests.http.server import nested_too_deep
from tests.integration.processes import (
    Inbox,
    Processes,
    command,
    count_request,
    counted_lines,
    stored,
    tuned,
    until,
    wait_for_consumers,
    watched_engine,
)


@asynccontextmanager
async def outside_listener(url: str, topology: Topology) -> AsyncIterator[list[JobEvent]]:
    """Every public event, as a subscriber on a connection of its own sees them.

    Its queue is durable and outlives its connection, and the connection reconnects
    (within 0.5 s): when the broker closes every connection, or stops, the events
    published meanwhile wait, and one delivered but not acknowledged comes again (kept
    once, as any subscriber would).
    """
    seen: list[JobEvent] = []
    robust = URL(url).update_query(reconnect_interval="0.5")
    async with await aio_pika.connect_robust(str(robust)) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{topology.prefix}test.outside", durable=True)
        await queue.bind(topology.events, "#")

        async def keep(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            event = msgspec.json.decode(message.body, type=JobEvent)
            if event.id not in {earlier.id for earlier in seen}:  # not a redelivery
                seen.append(event)
            await message.ack()

        await queue.consume(keep)
        try:
            yield seen
        finally:
            await queue.delete(if_unused=False, if_empty=False)


def events_of(seen: list[JobEvent], job_id: str, type_: str) -> list[JobEvent]:
    """The events of ``type_`` about ``job_id`` among ``seen``."""
    return [e for e in seen if e.type == type_ and e.job is not None and e.job.id == job_id]


def worker_pid(worker: str) -> int:
    """The process id in a worker's name (``HOST:PID:RANDOM``)."""
    return int(worker.split(":")[1])


async def test_a_worker_killed_mid_export_loses_nothing(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    # Both workers wait before the job exists, so that the kill comes mid-export however
    # slowly a second worker would start on a busy machine.
    workers = {worker.pid: worker for worker in (processes.start("worker") for _ in range(2))}
    async with watched_engine(processes.settings, topology) as (runtime, bus):
        await wait_for_consumers(broker_url, topology.tasks, 2)
        job = await runtime.submit(**count_request(9, pause=0.3))
        await until(lambda: bus.rows(job.id) >= 2)
        doomed = workers[worker_pid(bus.of(job.id)[0].worker)]
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=5)

        done = await runtime.events.wait_for(job.id, "job.done")
        await asyncio.sleep(0.3)  # time for a second done event, were there one
        assert [event.type for event in runtime.events.of(job.id)].count("job.done") == 1
    updates = bus.of(job.id)
    killed = updates[0].worker
    finals = [update for update in updates if update.status == "done"]
    assert len(finals) == 1
    assert finals[0].worker != killed
    assert finals[0].seq > SEQ_PER_DELIVERY  # the task's second delivery
    assert done.job is not None and done.job.parts[0].file is not None
    assert done.job.parts[0].file.rows == 9
    assert stored(processes.settings, done.job.parts[0].file) == counted_lines(9)


class TestOnAPrivateNode(OnThePrivateNode):
    """Closing every connection of the shared broker would close other people's too: these
    tests have a RabbitMQ node of their own."""

    async def test_after_the_broker_closes_every_connection_all_reconnect_and_every_job_finishes(
        self,
        processes: Processes,
        topology: Topology,
        broker_url: str,
        private_broker: PrivateBroker,
    ) -> None:
        processes.start("worker")
        processes.start("worker")
        async with (
            watched_engine(processes.settings, topology) as (runtime, bus),
            outside_listener(broker_url, topology) as seen,
        ):
            await wait_for_consumers(broker_url, topology.tasks, 2)
            jobs = [await runtime.submit(**count_request(6, pause=0.2)) for _ in range(6)]
            await until(lambda: bus.first(jobs[1].id, "processing"))
            closed = await asyncio.to_thread(private_broker.close_all_connections)
            assert closed >= 4  # the engine's, the two workers' and the listener's at least

            for job in jobs:
                done = (await until(partial(events_of, seen, job.id, "job.done")))[0]
                assert done.job is not None and done.job.parts[0].file is not None
                assert stored(processes.settings, done.job.parts[0].file) == counted_lines(6)
            await wait_for_consumers(broker_url, topology.tasks, 2)
            reply = await command(broker_url, topology, op="get", job_id=jobs[0].id)
            assert reply["ok"] is True and reply["job"]["status"] == "done"
            await asyncio.sleep(0.3)  # time for a second done event, were there one
            for job in jobs:
                assert len(events_of(seen, job.id, "job.done")) == 1


async def dead_letters(url: str, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take every message out of ``queue``."""
    taken = []
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        dead = await channel.get_queue(queue)
        while (message := await dead.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
    return taken


async def test_a_task_that_kills_every_worker_fails_its_job_after_its_lapses_and_others_go_on(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    """Five deliveries watched by the broker, then runs watched by the engine's lease: the
    sixth delivery and each dispatch after a lapse are acknowledged at once, and the part
    fails at its third lapse."""
    processes.settings = tuned(processes.settings, engine={"lease": 2.0, "sweep_interval": 0.2})
    lapses = processes.settings.engine.lapses
    async with watched_engine(processes.settings, topology) as (runtime, bus):
        poison = await runtime.submit(**count_request(3, crash=True))
        healthy = await runtime.submit(**count_request(3))
        async with asyncio.timeout(60):  # one worker at a time, another when it died
            while not [e for e in runtime.events.of(poison.id) if e.type == "job.failed"]:
                if all(process.poll() is not None for process in processes.started):
                    processes.start("worker")
                await asyncio.sleep(0.1)
        failed = await runtime.events.wait_for(poison.id, "job.failed")
        done = await runtime.events.wait_for(healthy.id, "job.done")

    # os._exit(70) in the toy source, at every delivery: five, then one per lapse
    crashes = TASK_DELIVERY_LIMIT + lapses
    assert [process.poll() for process in processes.started] == [70] * crashes + [None]
    detached = [update for update in bus.of(poison.id) if update.detached]
    assert len(detached) == lapses  # each run under the lease said so before it died
    assert failed.job is not None and failed.job.error is not None
    assert failed.job.error.code == "export_failed"
    assert f"its run fell silent {lapses} times" in failed.job.error.message
    assert await message_count(broker_url, topology.tasks_dead) == 0  # taken, not dead
    assert done.job is not None and done.job.parts[0].file is not None
    assert stored(processes.settings, done.job.parts[0].file) == counted_lines(3)


async def give_back(url: str, queue: str, times: int) -> int:
    """Take the first message of ``queue`` and give it back ``times`` times, as consumers
    whose connection dropped would (RabbitMQ 3.x counts each as a delivery); the delivery
    count (from 0) of the last of them."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        tasks = await channel.get_queue(queue)
        for _ in range(times):
            while (message := await tasks.get(no_ack=False, fail=False)) is None:
                await asyncio.sleep(0.05)
            await message.reject(requeue=True)
    count = message.headers.get("x-delivery-count", 0)
    assert isinstance(count, int)
    return count


async def test_a_task_at_its_delivery_limit_runs_to_done_on_a_worker_that_never_ran_it(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    """An export in hand through five dropped connections, then delivered to another
    worker: it is no poison, and its job is done (before, it failed with ``no worker
    finished this export in 5 tries``)."""
    async with watched_engine(processes.settings, topology) as (runtime, bus):
        job = await runtime.submit(**count_request(6, pause=0.1))
        count = await give_back(broker_url, topology.tasks, TASK_DELIVERY_LIMIT)
        assert count == TASK_DELIVERY_LIMIT - 1  # the next delivery is the one at the limit
        processes.start("worker")
        done = await runtime.events.wait_for(job.id, "job.done")
        await asyncio.sleep(0.3)  # time for a second done event, were there one
        assert [event.type for event in runtime.events.of(job.id)].count("job.done") == 1
    updates = bus.of(job.id)
    assert updates[0].detached  # acknowledged at once: the engine's lease watches it
    assert updates[0].seq > TASK_DELIVERY_LIMIT * SEQ_PER_DELIVERY
    assert [update.status for update in updates].count("done") == 1
    assert await message_count(broker_url, topology.tasks) == 0
    assert await message_count(broker_url, topology.tasks_dead) == 0
    assert done.job is not None and done.job.parts[0].file is not None
    assert stored(processes.settings, done.job.parts[0].file) == counted_lines(6)


async def test_a_worker_shut_down_gives_its_detached_part_back_for_another_at_once(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    """SIGTERM past the shutdown grace: the detached run says it gives its part back, and
    the engine dispatches it again without waiting out its lease (ten minutes here)."""
    processes.settings = tuned(
        processes.settings, worker={"ack_deadline": 0.3}, engine={"lease": 600.0}
    )
    leaving = processes.start("worker")
    await wait_for_consumers(broker_url, topology.tasks, 1)
    async with watched_engine(processes.settings, topology) as (runtime, bus):
        job = await runtime.submit(**count_request(8, pause=0.5))
        await until(lambda: [update for update in bus.of(job.id) if update.detached])
        leaving.send_signal(signal.SIGTERM)  # its run ends within shutdown_grace (2 s)
        assert await asyncio.to_thread(leaving.wait, 10) == 0
        processes.start("worker")
        done = await runtime.events.wait_for(job.id, "job.done", timeout=30)
    updates = bus.of(job.id)
    given_back = [update for update in updates if update.given_back]
    assert [update.worker for update in given_back] == [updates[0].worker]
    finals = [update for update in updates if update.status == "done"]
    assert len(finals) == 1 and finals[0].worker != updates[0].worker
    assert finals[0].seq < SEQ_PER_DELIVERY  # a new dispatch: its first delivery
    assert done.job is not None and done.job.parts[0].file is not None
    assert stored(processes.settings, done.job.parts[0].file) == counted_lines(8)


async def answers_to(
    channel: aio_pika.abc.AbstractChannel, sent: dict[str, tuple[str, bytes]]
) -> dict[str, Any]:
    """Publish each body of ``sent`` (by correlation id: the queue and the body) with a
    reply queue; the JSON answers, by correlation id."""
    replies = Inbox()
    reply_queue = await channel.declare_queue(exclusive=True)
    await replies.consume(reply_queue)
    for correlation_id, (queue, body) in sent.items():
        message = aio_pika.Message(body, reply_to=reply_queue.name, correlation_id=correlation_id)
        await channel.default_exchange.publish(message, routing_key=queue)
    answers = {}
    for _ in sent:
        reply = await replies.next()
        answers[str(reply.correlation_id)] = json.loads(reply.body)
    return answers


async def test_a_malformed_request_is_answered_announced_and_dead_lettered(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    processes.start("worker")
    async with (
        watched_engine(processes.settings, topology) as (runtime, _),
        outside_listener(broker_url, topology) as seen,
        await aio_pika.connect(broker_url) as connection,
    ):
        channel = await connection.channel()
        replies = Inbox()
        reply_queue = await channel.declare_queue(exclusive=True)
        await replies.consume(reply_queue)
        unknown_field = json.dumps({**count_request(3), "colour": "red"}).encode()
        for number, body in enumerate([b"{not json", unknown_field, b"[]"]):
            message = aio_pika.Message(
                body, reply_to=reply_queue.name, correlation_id=f"bad-{number}"
            )
            await channel.default_exchange.publish(message, routing_key=topology.requests)
        answers = {}
        for _ in range(3):
            reply = await replies.next()
            answers[reply.correlation_id] = json.loads(reply.body)
        assert all(answer["ok"] is False for answer in answers.values())
        assert answers["bad-0"]["error"]["code"] == "invalid_request"
        assert answers["bad-0"]["error"]["fields"][0]["name"] == "body"
        assert "not valid JSON" in answers["bad-0"]["error"]["fields"][0]["message"]
        assert answers["bad-1"]["error"]["fields"] == [
            {"name": "colour", "message": "unknown field"}
        ]

        good = json.dumps(count_request(3)).encode()
        message = aio_pika.Message(good, reply_to=reply_queue.name, correlation_id="good")
        await channel.default_exchange.publish(message, routing_key=topology.requests)
        reply = await replies.next()
        assert reply.correlation_id == "good"
        job_id = json.loads(reply.body)["job"]["id"]
        await runtime.events.wait_for(job_id, "job.done")

    rejected = [event for event in seen if event.type == "request.rejected"]
    assert len(rejected) == 3
    assert {event.error.fields[0].name for event in rejected if event.error} == {"body", "colour"}
    dead = await dead_letters(broker_url, topology.requests_dead)
    assert [message.body for message in dead] == [b"{not json", unknown_field, b"[]"]


def dead_letter_reason(message: aio_pika.abc.AbstractIncomingMessage) -> object:
    """The code of the error for which exportd dead-lettered ``message`` itself (its
    ``x-exportd-error`` header, ``invalid_request: ...``), with no ``x-death``: the
    broker did not move it."""
    error = message.headers.get("x-exportd-error")
    assert isinstance(error, str) and "x-death" not in message.headers, message.headers
    return error.partition(":")[0]


async def test_deeply_nested_requests_are_refused_and_a_good_one_is_answered_at_once(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    """Ten deeply nested requests fill the engine's prefetch (10): each is answered,
    announced and dead-lettered at its first delivery, and the next request goes through."""
    processes.start("worker")
    bad = [  # 2 KB each, nested 1,000 deep: past the JSON decoder's recursion limit
        nested_too_deep(count_request(3), "params" if number % 2 else "format_options")
        for number in range(10)
    ]
    assert all(len(body) > 2000 for body in bad)
    good_request = json.dumps(count_request(3)).encode()
    sent = {f"bad-{n}": (topology.requests, body) for n, body in enumerate(bad)}
    async with (
        watched_engine(processes.settings, topology) as (runtime, _),
        outside_listener(broker_url, topology) as seen,
        await aio_pika.connect(broker_url) as connection,
    ):
        started = time.monotonic()
        answers = await answers_to(
            await connection.channel(), {**sent, "good": (topology.requests, good_request)}
        )
        assert time.monotonic() - started < 1.0

        good = answers.pop("good")
        assert good["ok"] is True, good
        await runtime.events.wait_for(good["job"]["id"], "job.done")
        for answer in answers.values():
            assert answer["ok"] is False
            assert answer["error"]["code"] == "invalid_request"
            [field] = answer["error"]["fields"]
            assert field["name"] == "body"
            assert f"at most {MAX_NESTING} levels" in field["message"]

    rejected = [event for event in seen if event.type == "request.rejected"]
    assert len(rejected) == 10
    dead = await dead_letters(broker_url, topology.requests_dead)
    assert sorted(message.body for message in dead) == sorted(bad)
    assert {dead_letter_reason(message) for message in dead} == {"invalid_request"}


async def test_a_request_or_command_of_an_unknown_version_is_refused_naming_v(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    sent = {
        "request-2": (topology.requests, json.dumps({**count_request(3), "v": 2}).encode()),
        "request--1": (topology.requests, json.dumps({**count_request(3), "v": -1}).encode()),
        "command-2": (topology.control, b'{"op": "list", "v": 2}'),
        "command-deep": (topology.control, nested_too_deep({"op": "list"}, "user_id")),
    }
    async with (
        watched_engine(processes.settings, topology),
        await aio_pika.connect(broker_url) as connection,
    ):
        answers = await answers_to(await connection.channel(), sent)

    said = "must be 1, the version exportd speaks; got"
    for correlation_id, version in [("request-2", 2), ("request--1", -1), ("command-2", 2)]:
        answer = answers[correlation_id]
        assert answer["ok"] is False, answer
        assert answer["error"]["fields"] == [{"name": "v", "message": f"{said} {version}"}]
    assert answers["command-deep"]["error"]["fields"][0]["name"] == "body"
    dead = await dead_letters(broker_url, topology.control_dead)
    assert len(dead) == 2
    assert {dead_letter_reason(message) for message in dead} == {"invalid_request"}


async def test_a_status_update_the_engine_cannot_read_is_dead_lettered_and_others_go_on(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    processes.start("worker")
    unreadable = [
        b"{not json",
        json.dumps({"v": 2, "job_id": "j", "part": 0, "attempt": 1, "seq": 1}).encode(),
        b'{"job_id": ' + b"[" * 1000 + b"]" * 1000 + b"}",
    ]
    async with (
        watched_engine(processes.settings, topology) as (runtime, _),
        await aio_pika.connect(broker_url) as connection,
    ):
        channel = await connection.channel()
        for body in unreadable:
            await channel.default_exchange.publish(
                aio_pika.Message(body), routing_key=topology.status
            )
        job = await runtime.submit(**count_request(3))
        await runtime.events.wait_for(job.id, "job.done")
        async with asyncio.timeout(10):
            while await message_count(broker_url, topology.status_dead) < len(unreadable):
                await asyncio.sleep(0.05)

    dead = await dead_letters(broker_url, topology.status_dead)
    assert sorted(message.body for message in dead) == sorted(unreadable)
    assert {dead_letter_reason(message) for message in dead} == {"invalid_request"}


class TestOnANodeWithAShortAckTimeout:
    """RabbitMQ 3.10 has one ``consumer_timeout`` for the whole broker (and checks it once a
    minute by default): these tests have a node of their own where it is short."""

    @pytest.fixture
    def broker_url(self, ack_timeout_broker: PrivateBroker) -> str:
        """The node with the short timeout, for the test and its fixtures."""
        return ack_timeout_broker.url

    async def test_an_export_longer_than_the_ack_timeout_is_acknowledged_early_and_runs_once(
        self, processes: Processes, topology: Topology, broker_url: str
    ) -> None:
        processes.settings = tuned(processes.settings, worker={"ack_deadline": 1.0})
        processes.start("worker")
        await wait_for_consumers(broker_url, topology.tasks, 1)
        async with watched_engine(processes.settings, topology) as (runtime, bus):
            job = await runtime.submit(**count_request(9, pause=0.5))
            done = await runtime.events.wait_for(job.id, "job.done", timeout=30)
            await asyncio.sleep(0.5)  # time for a redelivery, were there one
        updates = bus.of(job.id)
        assert all(update.seq < SEQ_PER_DELIVERY for update in updates)  # delivered once
        assert len({update.worker for update in updates}) == 1
        assert [update.status for update in updates].count("done") == 1
        started = bus.first(job.id, "processing")
        detached = next(seen for seen in bus.updates if seen.update.detached)
        assert started is not None
        # acknowledged before the broker's timeout: ack_deadline after the start, which was a
        # progress_interval before the first update
        interval = processes.settings.worker.progress_interval
        assert 1.0 - interval <= detached.at - started.at < ACK_TIMEOUT
        assert done.job is not None and done.job.parts[0].file is not None
        assert stored(processes.settings, done.job.parts[0].file) == counted_lines(9)

    async def test_without_the_early_ack_the_broker_delivers_a_long_export_again(
        self, processes: Processes, topology: Topology, broker_url: str
    ) -> None:
        """The control for the test above: the short timeout is real.  The worker's run of
        the task takes the second delivery, rather than running the export twice."""
        processes.settings = tuned(processes.settings, worker={"ack_deadline": 600.0})
        processes.start("worker")
        await wait_for_consumers(broker_url, topology.tasks, 1)
        log = processes.logs / "worker-0.log"
        async with watched_engine(processes.settings, topology) as (runtime, bus):
            job = await runtime.submit(**count_request(9, pause=0.5))
            # the broker takes the task back after ACK_TIMEOUT and delivers it again
            await until(lambda: "delivered again (1) while its run goes on" in log.read_text())
            again = time.monotonic()
            await runtime.events.wait_for(job.id, "job.done", timeout=30)
        started = bus.first(job.id, "processing")
        assert started is not None and again - started.at >= ACK_TIMEOUT
        assert all(update.seq < SEQ_PER_DELIVERY for update in bus.of(job.id))  # one run
        # the broker took the task back once: the engine is to stop a run elsewhere too
        [outcome] = [update for update in bus.of(job.id) if update.status == "done"]
        assert not outcome.first_delivery
