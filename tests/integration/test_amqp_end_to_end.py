"""exportd over the real RabbitMQ, end to end, with workers in processes of their own.

An upstream system that knows nothing of exportd but its wire contract publishes
a request as plain JSON; the tests follow the job through the public events to
the file in the storage.  Each test has a topology and a home folder of its own;
the engine runs in the test's process (watched: :class:`WatchedBus`) or in a
process of its own, the workers always in processes of their own.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from datetime import datetime
from typing import Any

import aio_pika
import msgspec
from aio_pika.abc import AbstractIncomingMessage

from exportd.bus.topology import Topology
from exportd.client import Client
from exportd.kernel.workarea import LOCK_SUFFIX
from exportd.messages import FileInfo
from exportd.workers.worker import SEQ_PER_DELIVERY
from tests.integration.processes import (
    ORG,
    Inbox,
    Processes,
    command,
    connection_name,
    count_request,
    counted_lines,
    stored,
    tuned,
    until,
    wait_for_consumers,
    watched_engine,
)
from tests.unit.datastore import MESSAGES, ROOM, WINDOW


def rooms_request(**changes: Any) -> dict[str, Any]:
    """A request for the logs of the test data store's room, as JSON-ready data."""
    return {
        "source": "rooms",
        "format": "csv",
        "params": {"room_id": ROOM, "type": "logs"},
        "interval": {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat()},
        "org_id": ORG,
        **changes,
    }


def room_message_ids() -> list[str]:
    """The ids of the room's messages sent within the window, as the csv file has them."""
    return [
        str(message["id"])
        for message in MESSAGES
        if message["room_id"] == ROOM
        and WINDOW.start <= datetime.fromisoformat(message["sent_at"]) < WINDOW.end
    ]


def events_about(job_id: str, messages: list[AbstractIncomingMessage]) -> list[dict[str, Any]]:
    """The public events among ``messages`` about ``job_id``, as JSON, with their routing key."""
    events = []
    for message in messages:
        event = json.loads(message.body)
        if event["job"]["id"] == job_id:
            events.append({**event, "routing_key": message.routing_key})
    return events


async def test_a_plain_json_request_gets_its_job_on_reply_to_and_one_done_event(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    processes.start("engine", toy=False)
    processes.start("worker", toy=False)
    await wait_for_consumers(broker_url, topology.requests, 1)
    await wait_for_consumers(broker_url, topology.tasks, 1)
    async with await aio_pika.connect(broker_url) as connection:
        channel = await connection.channel()
        replies, events = Inbox(), Inbox()
        reply_queue = await channel.declare_queue(exclusive=True)
        await replies.consume(reply_queue)
        events_queue = await channel.declare_queue(exclusive=True)
        await events_queue.bind(topology.events, "#")
        await events.consume(events_queue)

        request = aio_pika.Message(
            json.dumps(rooms_request()).encode(),
            content_type="application/json",
            reply_to=reply_queue.name,
            correlation_id="request-1",
        )
        await channel.default_exchange.publish(request, routing_key=topology.requests)

        reply = await replies.next()
        assert reply.correlation_id == "request-1"
        answer = json.loads(reply.body)
        assert answer["ok"] is True
        job_id = answer["job"]["id"]
        assert answer["job"]["status"] == "created"

        seen: list[dict[str, Any]] = []
        while not any(event["type"] == "job.done" for event in seen):
            seen += events_about(job_id, [await events.next()])
        await asyncio.sleep(0.5)  # time for a second done event, were there one
        seen += events_about(job_id, events.drain())

    types = [event["type"] for event in seen]
    assert types[0] == "job.created"
    assert types.count("job.done") == 1
    done = next(event for event in seen if event["type"] == "job.done")
    assert done["routing_key"] == f"{ORG}.rooms.done"
    file = msgspec.convert(done["job"]["parts"][0]["file"], FileInfo)
    content = stored(processes.settings, file)
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert [row["message_id"] for row in rows] == room_message_ids()
    assert file.rows == len(rows)


async def test_the_client_submits_and_waits_for_the_finished_job(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    processes.start("worker", toy=False)
    async with watched_engine(processes.settings, topology, toy=False) as (runtime, _):
        name = connection_name(topology)
        with Client(broker_url, topology=topology, timeout=10, name=name) as client:
            job = await asyncio.to_thread(client.submit, rooms_request(format="json_bulk"), wait=30)
        assert job.status == "done"
        await runtime.events.wait_for(job.id, "job.done")
        await asyncio.sleep(0.3)  # time for a second done event, were there one
        assert [event.type for event in runtime.events.of(job.id)].count("job.done") == 1
    file = job.parts[0].file
    assert file is not None
    rows = [json.loads(line) for line in stored(processes.settings, file).splitlines() if line]
    assert [str(row["message_id"]) for row in rows] == room_message_ids()


async def test_two_worker_processes_share_a_batch_and_run_each_job_once(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    processes.start("worker")
    processes.start("worker")
    async with watched_engine(processes.settings, topology) as (runtime, bus):
        await wait_for_consumers(broker_url, topology.tasks, 2)
        jobs = [await runtime.submit(**count_request(3, pause=0.05)) for _ in range(20)]
        finals = [await runtime.events.wait_for(job.id, "job.done") for job in jobs]
        await asyncio.sleep(0.3)  # time for a late duplicate, were there one
        for job, final in zip(jobs, finals, strict=True):
            assert [event.type for event in runtime.events.of(job.id)].count("job.done") == 1
            updates = bus.of(job.id)
            assert [update.status for update in updates].count("done") == 1
            assert len({update.worker for update in updates}) == 1
            assert all(update.seq < SEQ_PER_DELIVERY for update in updates)  # one delivery
            assert final.job is not None and final.job.parts[0].file is not None
            assert stored(processes.settings, final.job.parts[0].file) == counted_lines(3)
    workers = {u.worker for job in jobs for u in bus.of(job.id) if u.status == "done"}
    assert len(workers) == 2


async def test_cancel_over_amqp_stops_the_worker_within_a_second_and_leaves_no_file(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    processes.start("worker")
    async with watched_engine(processes.settings, topology) as (runtime, bus):
        job = await runtime.submit(**count_request(9, pause=0.5))
        await until(lambda: bus.rows(job.id) >= 1)
        asked = time.monotonic()
        reply = await command(broker_url, topology, op="cancel", job_id=job.id)
        assert reply["ok"] is True and reply["job"]["status"] == "canceled"
        stopped = await until(lambda: bus.first(job.id, "canceled"))
        assert stopped.at - asked < 1.0
        canceled = await runtime.events.wait_for(job.id, "job.canceled")
        assert canceled.job is not None and canceled.job.parts[0].file is None
    settings = processes.settings
    # the running worker's lock file stays; no partial export file does
    left = [path for path in settings.work_path.rglob("*") if path.is_file()]
    assert [path.suffix for path in left] == [LOCK_SUFFIX]
    assert not [path for path in settings.files_path.rglob("*") if path.is_file()]


async def test_a_done_job_expires_and_its_file_is_deleted(
    processes: Processes, topology: Topology
) -> None:
    processes.settings = tuned(
        processes.settings, engine={"file_lifetime": 1.0, "sweep_interval": 0.2}
    )
    processes.start("worker")
    async with watched_engine(processes.settings, topology) as (runtime, _):
        job = await runtime.submit(**count_request(3))
        done = await runtime.events.wait_for(job.id, "job.done")
        assert done.job is not None and done.job.expires_at is not None
        file = done.job.parts[0].file
        assert file is not None
        assert stored(processes.settings, file) == counted_lines(3)
        expired = await runtime.events.wait_for(job.id, "job.expired", timeout=5)
        assert expired.job is not None and expired.job.status == "expired"
        assert expired.job.parts[0].file is None
        assert expired.occurred_at >= done.job.expires_at
        path = processes.settings.files_path / file.key
        await until(lambda: not path.exists(), timeout=1)
        assert (await runtime.engine.get(job.id)).status == "expired"


async def test_a_failed_job_restarted_over_amqp_reaches_done(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    failing = processes.settings.home_path / "failing"
    failing.touch()
    processes.start("worker")
    async with watched_engine(processes.settings, topology) as (runtime, _):
        job = await runtime.submit(**count_request(4, fail_while=str(failing)))
        failed = await runtime.events.wait_for(job.id, "job.failed")
        assert failed.job is not None and failed.job.error is not None
        assert f"failing while {failing} exists" in failed.job.error.message
        failing.unlink()
        reply = await command(broker_url, topology, op="restart", job_id=job.id)
        assert reply["ok"] is True
        assert (reply["job"]["status"], reply["job"]["attempt"]) == ("created", 2)
        done = await runtime.events.wait_for(job.id, "job.done")
        assert done.job is not None and done.job.attempt == 2
        file = done.job.parts[0].file
        assert file is not None and file.key.startswith(f"{job.id}/2/")
        assert stored(processes.settings, file) == counted_lines(4)
