"""What the engine survives when its job store fails under it, on the real RabbitMQ: the
store locked by another process for 20 s under load, the store's disk full, and a
background loop that ends anyway.

The engine and the workers run in processes of their own (:mod:`tests.integration.processes`,
or ``exportd engine`` itself); the test sends requests as any upstream system would, on a
connection of its own, and follows the public events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import msgspec
import pytest

from exportd.bus.topology import Topology
from exportd.cli.serve import embedded
from exportd.engine.schema import LOCKED
from exportd.http.app import serving_http
from exportd.messages import ExportRequest, JobEvent
from exportd.plugins.manager import Plugins
from exportd.supervision import DEFAULT_BACKOFF, LoopEnded
from tests.integration.processes import (
    REPOSITORY,
    Processes,
    count_request,
    settings_variables,
    tuned,
    until,
    wait_for_consumers,
)
from tests.integration.runtime import settings_in
from tests.needs import missing
from tests.unit import toy_plugins

FINAL_EVENTS = ("job.done", "job.failed")
LOCKED_FOR = 20.0
REQUESTS_PER_SECOND = 15


@dataclass
class Upstream:
    """An upstream system on a connection of its own: sends requests with a ``reply_to``,
    keeps the replies by correlation id, and sees every public event."""

    channel: aio_pika.abc.AbstractChannel
    topology: Topology
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[JobEvent] = field(default_factory=list)
    reply_queue: str = ""

    async def send(self, body: bytes) -> str:
        """Publish one request; its correlation id."""
        correlation_id = uuid.uuid4().hex
        message = aio_pika.Message(body, reply_to=self.reply_queue, correlation_id=correlation_id)
        await self.channel.default_exchange.publish(message, routing_key=self.topology.requests)
        return correlation_id

    def reply(self, correlation_id: str) -> dict[str, Any] | None:
        """The reply to a request, once it came."""
        return self.replies.get(correlation_id)

    async def replies_to(
        self, correlation_ids: list[str], timeout: float = 20
    ) -> list[dict[str, Any]]:
        """The replies to the requests sent with ``correlation_ids``, once they all came."""
        await until(lambda: all(c in self.replies for c in correlation_ids), timeout=timeout)
        return [self.replies[c] for c in correlation_ids]

    def seen(self, job_id: str, type_: str) -> bool:
        """Whether an event of ``type_`` about ``job_id`` came."""
        return any(
            e.type == type_ and e.job is not None and e.job.id == job_id for e in self.events
        )


@asynccontextmanager
async def upstream(url: str, topology: Topology) -> AsyncIterator[Upstream]:
    """An :class:`Upstream` on ``topology``; its queues go with its connection."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        talker = Upstream(channel, topology)
        replies = await channel.declare_queue(exclusive=True)
        talker.reply_queue = replies.name

        async def keep_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            assert message.correlation_id is not None
            talker.replies[message.correlation_id] = json.loads(message.body)

        await replies.consume(keep_reply, no_ack=True)
        events = await channel.declare_queue(exclusive=True)
        await events.bind(topology.events, "#")

        async def keep_event(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            talker.events.append(msgspec.json.decode(message.body, type=JobEvent))

        await events.consume(keep_event, no_ack=True)
        yield talker


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_a_store_locked_for_20_s_under_load_loses_no_job_and_every_loop_goes_on(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    """Another process holds the store's write lock for 20 s while 15 requests a second
    come: requests the store could not take in time are refused as ``unavailable``; every
    other one becomes a job that finishes and expires (the outbox relay and the sweeper
    survived), and each loop logged its failures once, not once a try."""
    # One request at a time: the sweeper's turns come between them (each waits its busy
    # timeout for the lock), and fail.
    processes.settings = tuned(
        processes.settings,
        engine={"file_lifetime": 1.0},
        broker={"prefetch": 1},
    )
    engine = processes.start("engine")
    processes.start("worker", concurrency=4)
    await wait_for_consumers(broker_url, topology.requests, 1)
    await wait_for_consumers(broker_url, topology.tasks, 1)
    body = json.dumps(count_request(1)).encode()
    async with upstream(broker_url, topology) as talker:
        sent: list[str] = []

        async def send_for(seconds: float) -> None:
            for _ in range(round(seconds * REQUESTS_PER_SECOND)):
                sent.append(await talker.send(body))
                await asyncio.sleep(1 / REQUESTS_PER_SECOND)

        await send_for(2)
        lock = sqlite3.connect(processes.settings.jobs_path, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            await send_for(LOCKED_FOR)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        released = time.monotonic()
        await send_for(2)

        replies = await talker.replies_to(sent, timeout=60)
        jobs = [reply["job"]["id"] for reply in replies if reply["ok"]]
        refused = [reply["error"] for reply in replies if not reply["ok"]]
        # each request the store kept waiting past its busy timeout (5 s, once at a time)
        assert len(refused) <= LOCKED_FOR / 5 + 1
        assert all(error["code"] == "unavailable" for error in refused), refused
        assert all(error["message"] == LOCKED for error in refused), refused
        await until(lambda: all(talker.seen(job, "job.done") for job in jobs), timeout=60)
        await until(lambda: all(talker.seen(job, "job.expired") for job in jobs), timeout=30)
        settled = time.monotonic() - released
    print(
        f"{len(sent)} requests, {len(refused)} refused; all done and expired {settled:.1f} s"
        " after the lock went"
    )
    assert engine.poll() is None
    log = (processes.logs / "engine-0.log").read_text()
    assert log.count("exportd sweeper failed") == 1, log  # one streak of failures, one line
    assert log.count("exportd sweeper works again") == 1, log


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of its own (unmounted at the end); skips the test where mounting is not
    permitted (fails it under ``CI=true``)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        missing(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(folder: Path) -> Path:
    """Write a file in ``folder`` until its disk has no space left; the file."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as file, contextlib.suppress(OSError):
        while True:
            file.write(bytes(65536))
    return filler


async def test_with_the_store_on_a_full_disk_requests_are_refused_at_once_and_the_engine_idles(
    small_disk: Path, processes: Processes, topology: Topology, broker_url: str
) -> None:
    """Every request is answered ``unavailable: no space left for the job store`` while the
    disk is full, the engine does not spin, and once space is back requests work again.

    (``small_disk`` comes first: it is unmounted after the processes are killed.)"""
    processes.logs.mkdir(parents=True)
    (small_disk / "logs").symlink_to(processes.logs)  # the logs stay off the small disk
    (small_disk / "data.db").write_bytes((processes.settings.home_path / "data.db").read_bytes())
    processes.settings = tuned(processes.settings, home=str(small_disk))
    engine = processes.start("engine")
    processes.start("worker")
    await wait_for_consumers(broker_url, topology.requests, 1)
    await wait_for_consumers(broker_url, topology.tasks, 1)
    async with upstream(broker_url, topology) as talker:
        running = await talker.send(json.dumps(count_request(4, pause=0.5)).encode())
        job_id = (await until(lambda: talker.reply(running)))["job"]["id"]
        await until(lambda: talker.seen(job_id, "job.created"))
        filler = fill(small_disk)  # its updates come while the disk is full
        started, cpu = time.monotonic(), cpu_seconds(engine.pid)
        sent = [await talker.send(json.dumps(count_request(1)).encode()) for _ in range(24)]
        replies = await talker.replies_to(sent, timeout=10)
        answered_in = time.monotonic() - started
        await asyncio.sleep(4)  # the job's updates cannot be applied meanwhile
        busy = (cpu_seconds(engine.pid) - cpu) / (time.monotonic() - started)
        print(
            f"24 requests answered in {answered_in:.2f} s, "
            f"{sum(not reply['ok'] for reply in replies)} refused; "
            f"the engine used {busy:.0%} of a core"
        )
        assert [reply["error"] for reply in replies] == [
            {"code": "unavailable", "message": "no space left for the job store", "fields": []}
        ] * 24
        assert busy < 0.3
        assert not any(talker.seen(job_id, final) for final in FINAL_EVENTS)

        filler.unlink()
        # The status handler retries with a jittered back-off that grew while the disk was
        # full: its next try may come as late as the back-off's cap.
        recovery = DEFAULT_BACKOFF.cap + 10
        await until(lambda: any(talker.seen(job_id, final) for final in FINAL_EVENTS), recovery)
        (reply,) = await talker.replies_to(
            [await talker.send(json.dumps(count_request(1)).encode())]
        )
        assert reply["ok"] is True, reply
        await until(lambda: talker.seen(reply["job"]["id"], "job.done"))
    assert engine.poll() is None
    log = (processes.logs / "engine-0.log").read_text()
    assert log.count(f"the handler of {topology.status} failed") == 1, log


def toy_plugins_installed(folder: Path) -> Path:
    """A folder that, on ``PYTHONPATH``, has the toy plugins installed as a third-party
    package is: a distribution whose ``exportd`` entry point names them."""
    info = folder / "exportd_toy-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: exportd-toy\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[exportd]\ntoy = tests.unit.toy_plugins\n")
    return folder


async def test_a_loop_that_ends_fails_readyz_and_exportd_engine_exits_non_zero(
    processes: Processes, topology: Topology, broker_url: str, tmp_path: Path
) -> None:
    """A storage plugin whose ``delete`` raises a ``BaseException`` (no failure to retry:
    what ends a program) ends the sweeper when it expires a job: ``exportd engine`` says
    so, stops answering ``/readyz`` with 200, and exits with a non-zero status."""
    processes.settings = tuned(processes.settings, storage="brittle", engine={"file_lifetime": 0.5})
    site = toy_plugins_installed(tmp_path / "site")
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")},
        **settings_variables(processes.settings),
        "EXPORTD_BROKER__PREFIX": topology.prefix,
        "PYTHONPATH": f"{site}{os.pathsep}{REPOSITORY}",
    }
    output = tmp_path / "engine.log"
    with output.open("wb") as log:
        engine = subprocess.Popen(
            [sys.executable, "-m", "exportd", "engine", "--http", "127.0.0.1:0"],
            env=environment,
            cwd=processes.settings.home,
            stdout=log,
            stderr=log,
        )
    try:
        address = await until(lambda: first_match(r"HTTP API at (\S+)", output.read_text()))
        processes.start("worker")
        await wait_for_consumers(broker_url, topology.tasks, 1)
        async with httpx.AsyncClient(base_url=address) as http:
            assert (await http.get("/readyz")).status_code == 200
            async with upstream(broker_url, topology) as talker:
                cid = await talker.send(json.dumps(count_request(1)).encode())
                reply = await until(lambda: talker.reply(cid))
                job_id = reply["job"]["id"]
                await until(lambda: talker.seen(job_id, "job.done"))
                status = await asyncio.wait_for(asyncio.to_thread(engine.wait), timeout=20)
        text = output.read_text()
        assert status != 0, text
        assert "exportd sweeper ended" in text, text
        assert "Abort: cannot delete" in text, text
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
        print(f"---- exportd engine\n{output.read_text(errors='replace')}")


async def test_in_one_process_a_loop_that_ends_fails_readyz_with_why_and_ends_serve(
    tmp_path: Path,
) -> None:
    """The same in the embedded mode (``exportd serve``), where ``/readyz`` can be asked
    once the loop ended: it answers 503 and says which loop ended and why."""
    settings = settings_in(
        tmp_path,
        storage="brittle",
        engine={"file_lifetime": 0.2, "sweep_interval": 0.1},
        http={"listen": "127.0.0.1:0"},
    )
    plugins = Plugins(settings=settings, extra=[toy_plugins])
    request = msgspec.convert(count_request(1), ExportRequest)
    with pytest.raises(LoopEnded, match="exportd sweeper ended: it raised Abort"):
        async with (
            embedded(settings, plugins) as engine,
            serving_http(engine, plugins, settings) as url,
            httpx.AsyncClient(base_url=str(url)) as http,
        ):
            assert (await http.get("/readyz")).status_code == 200
            await engine.submit(request)
            await until(lambda: engine.loops.ended)
            answer = await http.get("/readyz")
            assert answer.status_code == 503
            assert answer.json()["message"].startswith("exportd sweeper ended: it raised Abort")
            await engine.loops.wait(asyncio.Event())  # what exportd serve waits on


def first_match(pattern: str, text: str) -> str | None:
    """The first group of ``pattern``'s first match in ``text``, if any."""
    found = re.search(pattern, text)
    return found.group(1) if found else None
