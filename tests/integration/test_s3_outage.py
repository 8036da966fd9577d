"""An S3 server down when a worker hands over its file: on the real RabbitMQ, with the
worker in a process of its own and the ``s3`` storage on the session's moto server (see
:mod:`tests.objectstore` for why moto), in a bucket of the test's own, behind a TCP
relay of the test's that refuses connections while the server is "down" (moto keeps
its buckets in memory: a moto stopped and started again would come back empty)."""

from __future__ import annotations

import asyncio
import hashlib

import msgspec

from exportd.bus.topology import Topology
from tests.integration.processes import (
    Processes,
    count_request,
    counted_lines,
    until,
    wait_for_consumers,
    watched_engine,
)
from tests.objectstore import MotoServer, object_keys
from tests.relay import Relay

DOWN_FOR = 3.0
"""Seconds the server stays down once the worker found it down."""


async def test_a_file_stored_while_the_server_is_down_is_stored_once_when_it_is_back(
    processes: Processes,
    topology: Topology,
    broker_url: str,
    s3_server: MotoServer,
    s3_bucket: str,
) -> None:
    relay = Relay(s3_server.port)  # not up: the server is down
    table = {
        **s3_server.config(s3_bucket, prefix="x"),
        "endpoint_url": f"http://127.0.0.1:{relay.port}",
    }
    processes.settings = msgspec.structs.replace(
        processes.settings, storage="s3", plugins={"s3": table}
    )
    processes.start("worker")
    client = s3_server.client()
    try:
        async with watched_engine(processes.settings, topology) as (runtime, bus):
            await wait_for_consumers(broker_url, topology.tasks, 1)
            job = await runtime.submit(**count_request(5))
            await until(lambda: bus.first(job.id, "uploading"), timeout=30)
            await asyncio.sleep(DOWN_FOR)  # tries and back-off meanwhile
            assert (await runtime.engine.get(job.id)).status == "uploading"
            await relay.up()

            done = await runtime.events.wait_for(job.id, "job.done", timeout=60)
            await asyncio.sleep(0.5)  # time for a second done event, were there one
            assert [event.type for event in runtime.events.of(job.id)].count("job.done") == 1
            assert done.job is not None
            [part] = done.job.parts
            assert part.file is not None
            assert object_keys(client, s3_bucket) == [f"x/{part.file.key}"]
            # Straight from moto: the engine's storage goes through the relay, which runs
            # in this event loop, and a blocking read here would stop it.
            stored = client.get_object(Bucket=s3_bucket, Key=f"x/{part.file.key}")
            content = stored["Body"].read()
            assert stored["Metadata"] == {"sha256": part.file.sha256}
            assert content == counted_lines(5)
            assert hashlib.sha256(content).hexdigest() == part.file.sha256
            assert not [u for u in bus.of(job.id) if u.status == "failed"]
    finally:
        await relay.down()
    assert "the s3 storage failed" in "".join(
        log.read_text() for log in processes.logs.glob("worker-*.log")
    )
