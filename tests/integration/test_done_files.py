"""A finished job's files stay the ones it describes, however often its tasks come again.

A task may be delivered, and run, more than once: published twice, its acknowledgement
lost when the broker stops, its worker's connection closed under it.  Whatever the fault,
each job is done once, with exactly one file per part in the storage, whose size and
SHA-256 are the job's, and no healthy job fails.  Real processes on real RabbitMQ: the
tests that stop the broker or close connections run on private nodes (see
:mod:`tests.broker`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import aio_pika
import msgspec
import pytest

from exportd.bus.topology import Topology
from exportd.config import Settings
from exportd.engine.store import part_key
from exportd.messages import ExportTask, FileInfo, JobEvent, JobSnapshot
from tests.broker import OnThePrivateNode, PrivateBroker
from tests.integration.processes import (
    Processes,
    WatchedBus,
    count_request,
    counted_lines,
    stored,
    until,
    wait_for_consumers,
    watched_engine,
)
from tests.integration.runtime import Runtime
from tests.integration.test_amqp_end_to_end import rooms_request
from tests.integration.test_faults import events_of, outside_listener
from tests.work import partial_files

FORMATS = ("csv", "xlsx", "txt", "html", "json", "json_bulk")


def task_of(job: JobSnapshot) -> ExportTask:
    """The task the engine dispatched for a done one-part job, as it published it."""
    file = job.parts[0].file
    assert file is not None
    return ExportTask(
        job_id=job.id,
        part=0,
        part_count=1,
        attempt=job.attempt,
        request=job.request,
        key=part_key(job.id, job.attempt, 0, file.name),
        created_at=job.created_at,
    )


def files_of(settings: Settings, job_id: str) -> list[Path]:
    """Every file the local storage keeps for ``job_id``."""
    return sorted(path for path in (settings.files_path / job_id).rglob("*") if path.is_file())


def check_files(runtime: Runtime, settings: Settings, done: JobSnapshot) -> list[FileInfo]:
    """``done``'s files, each whole in the storage, and alone there: the one the job
    describes, as a download reads it (it sends ``file.size`` as its Content-Length)."""
    files = [part.file for part in done.parts if part.file is not None]
    assert len(files) == done.part_count
    for file in files:
        stored(settings, file)
        with runtime.engine.storage.open(file.key) as reader:
            download = reader.read()
        assert (len(download), hashlib.sha256(download).hexdigest()) == (file.size, file.sha256)
    assert files_of(settings, done.id) == sorted(settings.files_path / f.key for f in files)
    return files


def outcomes(seen: list[JobEvent], job_id: str) -> list[JobEvent]:
    """The ``job.done`` and ``job.failed`` events about ``job_id`` among ``seen``."""
    return events_of(seen, job_id, "job.done") + events_of(seen, job_id, "job.failed")


def done_once(seen: list[JobEvent], job_id: str) -> JobSnapshot:
    """The job of the one ``job.done`` event about ``job_id``, which did not fail."""
    done = events_of(seen, job_id, "job.done")
    assert len(done) == 1, f"{len(done)} done events for job {job_id}"
    assert events_of(seen, job_id, "job.failed") == []
    assert done[0].job is not None
    return done[0].job


async def test_a_task_published_again_after_its_job_is_done_is_acknowledged_without_running(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    processes.start("worker")
    async with (
        watched_engine(processes.settings, topology) as (runtime, bus),
        await aio_pika.connect(broker_url) as connection,
    ):
        await wait_for_consumers(broker_url, runtime.bus.topology.tasks, 1)
        jobs = [await runtime.submit(**rooms_request(format=name)) for name in FORMATS]
        finished = [await runtime.events.wait_for(job.id, "job.done") for job in jobs]
        done = [event.job for event in finished if event.job is not None]
        files = {job.id: files_of(processes.settings, job.id) for job in done}
        inodes = {job_id: [path.stat().st_ino for path in paths] for job_id, paths in files.items()}
        heard = len(bus.updates)

        channel = await connection.channel()
        for job in done:
            body = msgspec.json.encode(task_of(job))
            for _ in range(2):
                message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await channel.default_exchange.publish(message, runtime.bus.topology.tasks)
        # Queued behind the copies: once the one worker has done it, it has settled them.
        last = await runtime.submit(**rooms_request())
        await runtime.events.wait_for(last.id, "job.done")
        await asyncio.sleep(0.3)  # time for a late update, were there one

        assert {seen.update.job_id for seen in bus.updates[heard:]} == {last.id}  # none ran
        for job in done:
            assert runtime.events.of(job.id)[-1].type == "job.done"
            assert [event.type for event in runtime.events.of(job.id)].count("job.done") == 1
            check_files(runtime, processes.settings, job)
            assert [path.stat().st_ino for path in files[job.id]] == inodes[job.id]  # not replaced


@asynccontextmanager
async def two_workers(
    processes: Processes, topology: Topology, broker_url: str
) -> AsyncIterator[tuple[Runtime, WatchedBus, list[JobEvent]]]:
    """Two workers of three tasks each, the engine and a listener of its events (on a
    durable queue of its own, so that it misses none while the broker is away)."""
    for _ in range(2):
        processes.start("worker", concurrency=3)
    async with (
        watched_engine(processes.settings, topology) as (runtime, bus),
        outside_listener(broker_url, topology) as seen,
    ):
        await wait_for_consumers(broker_url, topology.tasks, 2)
        yield runtime, bus, seen


def stamped(rows: int, **params: Any) -> dict[str, Any]:
    """A request for ``count_request(rows, **params)`` whose every run writes other bytes."""
    return {**count_request(rows, **params), "format_options": {"stamp": True}}


async def check_done_once(
    runtime: Runtime, seen: list[JobEvent], jobs: list[JobSnapshot], rows: int
) -> None:
    """Each of ``jobs`` (of the count source, or of the rooms one) ends done, once, with its
    own files, the ones its size and SHA-256 describe; none fails."""
    for job in jobs:
        await until(partial(outcomes, seen, job.id), timeout=60)
    await asyncio.sleep(0.5)  # time for a second done event, were there one
    for job in jobs:
        (file,) = check_files(runtime, runtime.settings, done_once(seen, job.id))
        if job.request.source == "count":
            assert stored(runtime.settings, file).startswith(counted_lines(rows))
    # the runs that lost stop at their attempt's cancel signal and remove their partial files
    await until(lambda: not partial_files(runtime.settings), timeout=15)


class TestOnANodeOfItsOwn:
    """Stopping a broker for 20 s would stop it for everyone: this test has a node that
    nobody else uses."""

    @pytest.fixture
    def broker_url(self, stoppable_broker: PrivateBroker) -> str:
        """The test's own node, for the test and its fixtures."""
        return stoppable_broker.url

    async def test_the_broker_stopped_for_20_s_mid_export_leaves_every_job_done_once(
        self,
        processes: Processes,
        topology: Topology,
        broker_url: str,
        stoppable_broker: PrivateBroker,
    ) -> None:
        async with two_workers(processes, topology, broker_url) as (runtime, bus, seen):
            jobs = [await runtime.submit(**stamped(6, pause=0.3)) for _ in range(6)]
            jobs += [await runtime.submit(**rooms_request(format=name)) for name in FORMATS]
            await until(lambda: all(bus.first(job.id, "processing") for job in jobs[:4]))
            await asyncio.to_thread(stoppable_broker.stop_app)
            await asyncio.sleep(20)
            await asyncio.to_thread(stoppable_broker.start_app)
            await check_done_once(runtime, seen, jobs, 6)


class TestOnASharedPrivateNode(OnThePrivateNode):
    """Closing every connection of the shared broker would close other people's too."""

    async def test_connections_closed_eight_times_during_21_jobs_fail_none_and_finish_each_once(
        self,
        processes: Processes,
        topology: Topology,
        broker_url: str,
        private_broker: PrivateBroker,
    ) -> None:
        async with two_workers(processes, topology, broker_url) as (runtime, _, seen):
            # 30 s: in hand through every drop, so delivered more often than the task
            # queue's limit (RabbitMQ 3.x counts each drop as a delivery); no poison for it
            jobs = [await runtime.submit(**stamped(6, pause=5.0))]
            # 6 s each, 6 at a time: most in hand through a drop or two, the last ones late
            jobs += [await runtime.submit(**stamped(6, pause=1.0)) for _ in range(20)]
            for _ in range(8):
                await asyncio.sleep(3)
                await asyncio.to_thread(private_broker.close_all_connections)
            await check_done_once(runtime, seen, jobs, 6)
