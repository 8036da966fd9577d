"""``exportd queues`` and ``exportd dead``, as an operator runs them, against real
``exportd engine`` and ``exportd worker`` processes on the test broker: what is refused
lands in its dead-letter queue with why, and can be listed, shown, replayed and dropped;
dead-letter queues keep ``broker.dead_letter_max`` messages."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from exportd.bus.amqp import AmqpBus
from exportd.bus.base import Message
from exportd.bus.topology import DEFAULT_EXCHANGE, ENGINE_DELIVERY_LIMIT, Topology
from exportd.config.settings import BrokerSettings
from exportd.errors import ExportError
from tests.broker import delete_topology
from tests.integration.commands import Deployment, make_deployment
from tests.integration.test_cli_runtime import logs_request, one_error_line, wait_for_status

CSV_BLOCKED = "exportd.plugins.formats.csv"


@pytest.fixture
def deployment(tmp_path: Path, datastore: Path, broker_url: str) -> Iterator[Deployment]:
    """The test data store in a fresh EXPORTD_HOME, on a topology of its own."""
    shutil.copy(datastore, tmp_path / "data.db")
    yield from make_deployment(tmp_path, broker_url)


def listed(deployment: Deployment, *argv: str) -> list[dict[str, Any]]:
    """What ``exportd dead list --json`` prints, parsed."""
    result = deployment.run("dead", "list", "--json", *argv)
    assert result.returncode == 0, result.stderr
    messages: list[dict[str, Any]] = json.loads(result.stdout)
    return messages


def queues(deployment: Deployment) -> dict[str, dict[str, Any]]:
    """What ``exportd queues --json`` prints, by queue name."""
    result = deployment.run("queues", "--json")
    assert result.returncode == 0, result.stderr
    return {queue["name"]: queue for queue in json.loads(result.stdout)}


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that must succeed."""
    assert result.returncode == 0, result.stderr
    return result.stdout


async def publish(url: str, queue: str, *bodies: bytes, ids: Sequence[str] = ()) -> None:
    """Publish each body to ``queue``, as an outsider does, with confirms (and the
    message ids ``ids``, if given)."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        for body, message_id in itertools.zip_longest(bodies, ids):
            message = aio_pika.Message(body, message_id=message_id)
            await channel.default_exchange.publish(message, routing_key=queue)


async def reject_until_dead(url: str, queue: str, body: bytes) -> None:
    """Publish ``body`` to ``queue`` and reject it with requeue past the delivery limit, so
    that RabbitMQ dead-letters it (with its ``x-death``)."""
    await publish(url, queue, body)
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        source = await channel.get_queue(queue)
        for _ in range(ENGINE_DELIVERY_LIMIT + 1):
            message = None
            while message is None:
                message = await source.get(fail=False)
                await asyncio.sleep(0.05)
            await message.reject(requeue=True)


def test_a_refused_request_is_listed_with_its_error_replayed_after_the_fix_and_runs(
    deployment: Deployment,
) -> None:
    deployment.env["EXPORTD_DISABLE_PLUGINS"] = CSV_BLOCKED
    engine = deployment.engine()
    with deployment.client() as client, pytest.raises(ExportError):
        client.submit(logs_request())  # no csv format: refused

    [dead] = listed(deployment)
    topology = deployment.topology
    assert (dead["queue"], dead["position"], dead["source"]) == (
        topology.requests_dead,
        1,
        topology.requests,
    )
    assert "csv" in dead["reason"] and dead["reason"].startswith("invalid_request: ")
    assert dead["headers"]["x-exportd-refused-by"].startswith("exportd engine")
    assert dead["job_id"] is None and dead["refused_at"]
    table = succeeded(deployment.run("dead", "list")).splitlines()
    assert table[0].split() == ["QUEUE", "POS", "ID", "REFUSED", "AT", "JOB", "REASON"]
    assert table[1].split()[:3] == [topology.requests_dead, "1", dead["id"][:12]]
    shown = json.loads(succeeded(deployment.run("dead", "show", dead["id"][:8], "--json")))
    assert (shown["body"]["source"], shown["body"]["format"]) == ("rooms", "csv")
    assert "reply_to" in shown["properties"]

    engine.stop()  # the fix: an engine and a worker with the csv format
    del deployment.env["EXPORTD_DISABLE_PLUGINS"]
    deployment.engine()
    deployment.worker()
    replayed = succeeded(deployment.run("dead", "replay", dead["id"][:8]))
    assert replayed == (
        f"replayed {dead['id']} from {topology.requests_dead} to {topology.requests}\n"
    )
    assert listed(deployment) == []
    with deployment.client() as client:
        [job] = client.list_jobs()[0]
        assert wait_for_status(client, job.id, "done").request.format == "csv"


def test_dead_messages_are_dropped_by_id_or_all_and_a_wrong_id_fails(
    deployment: Deployment,
) -> None:
    deployment.engine()
    bad = [b"not json", b'{"source": "nope"}', b"[]"]
    asyncio.run(publish(deployment.broker_url, deployment.topology.requests, *bad))
    dead = listed(deployment, "--queue", "requests")
    while len(dead) < len(bad):
        dead = listed(deployment, "--queue", "requests")
    assert [m["position"] for m in dead] == [1, 2, 3]

    # An id that names no message drops nothing, not even the others given.
    assert one_error_line(deployment.run("dead", "drop", dead[1]["id"], "nothing-like-it")) == (
        "exportd: error: ID: no dead message with the id 'nothing-like-it'"
    )
    assert len(listed(deployment)) == 3
    dropped = succeeded(deployment.run("dead", "drop", dead[1]["id"]))
    assert dropped == f"dropped {dead[1]['id']} from {dead[1]['queue']}\n"
    assert [m["id"] for m in listed(deployment)] == [dead[0]["id"], dead[2]["id"]]
    assert one_error_line(deployment.run("dead", "drop")) == (
        "exportd: error: ID: give the ids of the messages, or --all (not both)"
    )
    assert len(succeeded(deployment.run("dead", "drop", "--all")).splitlines()) == 2
    assert listed(deployment) == []

    # The start of two messages' ids chooses neither, as an ambiguous job id does.
    ids = ["ambiguous-1", "ambiguous-2"]
    asyncio.run(publish(deployment.broker_url, deployment.topology.requests, *bad[:2], ids=ids))
    while len(listed(deployment)) < len(ids):
        pass
    ambiguous = "exportd: error: ID: 'ambiguous' starts the ids of 2 dead messages: give more of it"
    assert one_error_line(deployment.run("dead", "show", "ambiguous")) == ambiguous
    assert one_error_line(deployment.run("dead", "drop", "ambiguous")) == ambiguous
    assert succeeded(deployment.run("dead", "drop", "ambiguous-2")).startswith(
        "dropped ambiguous-2"
    )
    assert [m["id"] for m in listed(deployment)] == ["ambiguous-1"]


def test_a_replay_that_cannot_be_routed_keeps_the_message(deployment: Deployment) -> None:
    deployment.engine().stop()  # declares the topology
    url, topology = deployment.broker_url, deployment.topology
    asyncio.run(reject_until_dead(url, topology.status, b'{"poison": true}'))
    [dead] = listed(deployment)
    assert (dead["queue"], dead["source"]) == (topology.status_dead, topology.status)
    assert dead["reason"] == "RabbitMQ: delivery_limit (x1)"

    asyncio.run(delete_queue(url, topology.status))
    failed = deployment.run("dead", "replay", "--all")
    assert one_error_line(failed) == (
        f"exportd: error: no queue named {topology.status!r}: the message cannot be replayed"
    )
    assert [m["id"] for m in listed(deployment)] == [dead["id"]]


async def delete_queue(url: str, name: str) -> None:
    """Delete the queue ``name``."""
    async with await aio_pika.connect(url) as connection:
        await (await connection.channel()).queue_delete(name)


def test_an_unreadable_task_is_dead_lettered_by_the_worker_with_why(
    deployment: Deployment,
) -> None:
    deployment.worker()
    topology = deployment.topology
    asyncio.run(publish(deployment.broker_url, topology.tasks, b'{"job_id": 7}'))
    dead = listed(deployment, "--queue", "tasks")
    while not dead:
        dead = listed(deployment, "--queue", "tasks")
    [task] = dead
    assert (task["queue"], task["source"]) == (topology.tasks_dead, topology.tasks)
    assert task["reason"].startswith("malformed task: ")
    assert task["headers"]["x-exportd-refused-by"].startswith("exportd worker")
    assert succeeded(deployment.run("dead", "drop", task["id"], "--queue", "tasks"))
    assert listed(deployment) == []


def test_queues_shows_depths_and_consumers_and_dead_letter_queues_keep_the_newest(
    deployment: Deployment,
) -> None:
    deployment.env["EXPORTD_BROKER__DEAD_LETTER_MAX"] = "3"
    topology = deployment.topology
    assert set(queues(deployment)[topology.tasks].values()) == {topology.tasks, None}

    deployment.engine()
    deployment.worker()
    asyncio.run(publish(deployment.broker_url, topology.tasks_dead, *[b"%d" % n for n in range(5)]))
    shown = queues(deployment)
    assert list(shown) == [
        name for queue in topology.consumed_queues() for name in (queue.name, queue.dead_letter)
    ]
    assert shown[topology.requests]["consumers"] == 1
    assert shown[topology.tasks]["consumers"] == 1
    assert shown[topology.tasks_dead] == {
        "name": topology.tasks_dead,
        "messages": 3,
        "consumers": 0,
    }
    bodies = [
        json.loads(succeeded(deployment.run("dead", "show", m["id"])))["body"]
        for m in listed(deployment)
    ]
    assert bodies == [2, 3, 4]
    table = succeeded(deployment.run("queues")).splitlines()
    assert table[0].split() == ["QUEUE", "READY", "CONSUMERS"]
    rows = {name: cells for name, *cells in (row.split() for row in table[1:])}
    assert (rows[topology.tasks_dead], rows[topology.tasks]) == (["3", "0"], ["0", "1"])


def test_a_dead_letter_queue_declared_without_a_limit_is_kept_with_one_warning(
    deployment: Deployment,
) -> None:
    asyncio.run(declare_plain(deployment.broker_url, deployment.topology.requests_dead))
    engine = deployment.engine()
    engine.stop()
    warnings = [line for line in engine.text().splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert deployment.topology.requests_dead in warnings[0] and "x-max-length 10000" in warnings[0]


async def declare_plain(url: str, name: str) -> None:
    """Declare ``name`` as an older exportd did: a classic queue without arguments."""
    async with await aio_pika.connect(url) as connection:
        await (await connection.channel()).declare_queue(name, durable=True)


def test_the_commands_say_in_one_line_when_the_broker_is_unreachable(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, "amqp://guest:secret@127.0.0.1:1/", topology=Topology())
    for argv in (["queues"], ["dead", "list"], ["dead", "replay", "--all"]):
        assert one_error_line(deployment.run(*argv)) == (
            "exportd: error: cannot connect to RabbitMQ at amqp://guest:**@127.0.0.1:1/: "
            "Connection refused"
        )


def test_the_commands_say_the_embedded_mode_has_no_broker(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, "amqp://guest:guest@127.0.0.1:1/", topology=Topology())
    with socket.socket(socket.AF_UNIX) as serve:  # where exportd serve listens
        serve.bind(str(tmp_path / "control.sock"))
        for argv in (["queues"], ["dead", "list"]):
            assert one_error_line(deployment.run(*argv)).startswith(
                "exportd: error: --broker: exportd serve runs here (EXPORTD_HOME/control.sock): "
                "the embedded mode has no broker"
            )


async def test_a_dead_letter_without_a_confirm_is_rejected_without_its_reason(
    broker_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    topology = Topology(prefix=f"test-{uuid.uuid4().hex[:12]}.")
    bus = AmqpBus(BrokerSettings(url=broker_url, confirm_timeout=5), topology, name="dl-test")
    try:
        async with bus:
            await delete_queue(broker_url, topology.requests_dead)  # the copy cannot be routed
            await bus.publish(DEFAULT_EXCHANGE, topology.requests, b"refused")
            delivered: asyncio.Queue[Message] = asyncio.Queue()

            async def keep(message: Message) -> None:
                delivered.put_nowait(message)

            await bus.consume(topology.requests, keep, prefetch=1)
            message = await asyncio.wait_for(delivered.get(), 10)
            with caplog.at_level(logging.WARNING, "exportd.bus.amqp"):
                await message.dead_letter("invalid_request: why")
            await asyncio.sleep(0.5)
            assert delivered.empty()  # settled: not delivered again
            [warning] = caplog.records
            assert "without its reason" in warning.getMessage()
    finally:
        await delete_topology(broker_url, topology)
