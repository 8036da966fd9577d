"""An S3 server down when a worker hands over its file: on the real RabbitMQ, with the
worker in a process of its own and the ``s3`` storage on a moto server of the test's
own (see :mod:`tests.objectstore` for why moto), stopped and started again."""

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

DOWN_FOR = 3.0
"""Seconds the server stays down once the worker found it down."""


async def test_a_file_stored_while_the_server_is_down_is_stored_once_when_it_is_back(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    server = MotoServer()  # not started: down
    bucket = "exportd-outage"
    processes.settings = msgspec.structs.replace(
        processes.settings, storage="s3", plugins={"s3": server.config(bucket, prefix="x")}
    )
    processes.start("worker")
    try:
        async with watched_engine(processes.settings, topology) as (runtime, bus):
            await wait_for_consumers(broker_url, topology.tasks, 1)
            job = await runtime.submit(**count_request(5))
            await until(lambda: bus.first(job.id, "uploading"), timeout=30)
            await asyncio.sleep(DOWN_FOR)  # tries and back-off meanwhile
            assert (await runtime.engine.get(job.id)).status == "uploading"
            server.start()
            client = server.client()
            client.create_bucket(Bucket=bucket)

            done = await runtime.events.wait_for(job.id, "job.done", timeout=60)
            await asyncio.sleep(0.5)  # time for a second done event, were there one
            assert [event.type for event in runtime.events.of(job.id)].count("job.done") == 1
            assert done.job is not None
            [part] = done.job.parts
            assert part.file is not None
            assert object_keys(client, bucket) == [f"x/{part.file.key}"]
            [content] = runtime.file_bytes(done.job)
            assert content == counted_lines(5)
            assert hashlib.sha256(content).hexdigest() == part.file.sha256
            assert not [u for u in bus.of(job.id) if u.status == "failed"]
    finally:
        if server.process is not None:
            server.remove_bucket(bucket)
        server.stop()
    assert "the s3 storage failed" in "".join(
        log.read_text() for log in processes.logs.glob("worker-*.log")
    )
