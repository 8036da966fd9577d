"""Workers as the engine sees them, with real processes: ``exportd engine`` and two
``exportd worker`` on RabbitMQ (a topology of the test's own), and ``exportd serve``;
``exportd workers`` and ``GET /v1/workers`` list them.  Then the heartbeats' and the
engine's handling of failures, in-process on the in-process bus."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from exportd.bus.base import BusError
from exportd.bus.local import LocalBus
from exportd.engine.service import Engine
from exportd.messages import WorkerHeartbeat
from exportd.plugins.manager import Plugins
from exportd.supervision import Backoff, Loops
from exportd.version import __version__
from exportd.workers.heartbeats import Heartbeats
from tests.integration.commands import WAIT, Deployment, Process, make_deployment, run_exportd
from tests.integration.runtime import settings_in
from tests.integration.test_cli_runtime import fields_of, logs_request

HEARTBEAT = 0.3
TIMEOUT = 2.0
QUICK = {
    "EXPORTD_WORKER__HEARTBEAT_INTERVAL": str(HEARTBEAT),
    "EXPORTD_ENGINE__WORKER_TIMEOUT": str(TIMEOUT),
    "EXPORTD_ENGINE__SWEEP_INTERVAL": "0.5",
}
"""Heartbeats three times a second, a worker lost after 2 s of silence."""
NO_XLSX = "exportd.plugins.formats.xlsx"


@pytest.fixture
def deployment(tmp_path: Path, datastore: Path, broker_url: str) -> Iterator[Deployment]:
    """The test data store in a fresh EXPORTD_HOME, on a topology of its own, with quick
    heartbeats."""
    shutil.copy(datastore, tmp_path / "data.db")
    yield from make_deployment(tmp_path, broker_url, **QUICK)


def listed(env: dict[str, str], home: Path, *argv: str) -> list[dict[str, Any]]:
    """The workers ``exportd workers --json`` lists."""
    result = run_exportd(["workers", "--json", *argv], env, home)
    assert result.returncode == 0, result
    workers: list[dict[str, Any]] = json.loads(result.stdout)["workers"]
    return workers


def until_listed(
    env: dict[str, str], home: Path, states: dict[str, str], *, timeout: float = WAIT
) -> list[dict[str, Any]]:
    """The listing once it holds exactly the workers of ``states`` (name: state)."""
    deadline = time.monotonic() + timeout
    while True:
        workers = listed(env, home)
        seen = {worker["name"]: worker["state"] for worker in workers}
        if seen == states:
            return workers
        assert time.monotonic() < deadline, f"{seen} never became {states}"
        time.sleep(0.2)


def test_the_engine_lists_its_workers_loses_a_killed_one_and_forgets_a_stopped_one(
    deployment: Deployment,
) -> None:
    engine = deployment.engine()
    full = deployment.worker()
    lacking = Process(
        ["worker", "--concurrency", "2"],
        {**deployment.env, "EXPORTD_DISABLE_PLUGINS": NO_XLSX},
        deployment.home,
    )
    deployment.processes.append(lacking)
    lacking.wait_for("taking tasks")
    host = socket.gethostname()
    full_name, lacking_name = (f"{host}:{process.popen.pid}" for process in (full, lacking))
    env, home = deployment.env, deployment.home

    both = until_listed(env, home, {full_name: "live", lacking_name: "live"})
    by_name = {worker["name"]: worker for worker in both}
    for worker, concurrency in ((by_name[full_name], 1), (by_name[lacking_name], 2)):
        assert (worker["host"], worker["version"], worker["concurrency"]) == (
            *(host, __version__),
            concurrency,
        )
        assert worker["pid"] == int(worker["name"].rsplit(":", 1)[1])
        assert worker["tasks"] == []
        assert worker["heartbeat_interval"] == HEARTBEAT
        started = datetime.fromisoformat(worker["started_at"])
        last_seen = datetime.fromisoformat(worker["last_seen"])
        assert started <= last_seen <= datetime.now(UTC)
        assert datetime.now(UTC) - last_seen < timedelta(seconds=TIMEOUT)
        assert {"rooms", "workflows", "qna"} <= {p["name"] for p in worker["sources"]}
        assert {"local", "s3"} <= {p["name"] for p in worker["storages"]}
        rooms = next(p for p in worker["sources"] if p["name"] == "rooms")
        assert rooms == {
            "name": "rooms",
            "plugin": "exportd.plugins.sources.rooms",
            "package": f"exportd {__version__}",
        }
    assert "xlsx" in {p["name"] for p in by_name[full_name]["formats"]}
    assert "xlsx" not in {p["name"] for p in by_name[lacking_name]["formats"]}

    table = run_exportd(["workers"], env, home).stdout.splitlines()
    assert table[0].split() == [
        *("WORKER", "STATE", "HOST", "PID", "VERSION", "TASKS", "LAST", "SEEN"),
        *("SOURCES", "FORMATS"),
    ]
    rows = {line.split()[0]: line.split() for line in table[1:-1]}
    assert rows[lacking_name][1:6] == ["live", host, str(lacking.popen.pid), __version__, "0/2"]
    assert table[-1] == "2 live, 0 lost"

    full.popen.send_signal(signal.SIGKILL)
    full.popen.wait(WAIT)
    killed_at = time.monotonic()
    until_listed(env, home, {full_name: "lost", lacking_name: "live"})
    assert time.monotonic() - killed_at >= TIMEOUT - 0.5  # (the last heartbeat came first)
    engine.wait_for(f"WARNING worker {full_name} lost: not heard from for")

    with deployment.client() as client:
        job = client.submit(logs_request(format="xlsx"), wait=WAIT)
    warning = engine.wait_for(f"job {job.id} (rooms to xlsx)")
    assert " WARNING " in warning
    assert warning.endswith("no live worker has format xlsx")
    assert job.status == "failed"
    assert job.error is not None
    assert job.error.message == (
        f"worker {lacking_name} has no format 'xlsx': install the plugin that adds it on "
        "every worker, or leave it unblocked there; no live worker has format xlsx"
    )
    shown = run_exportd(["jobs", "show", job.id], env, home).stdout.splitlines()
    assert [line for line in shown if line.startswith("error:")] == [
        f"error:      export_failed: {job.error.message}"
    ]

    assert lacking.stop() == 0
    [lost] = listed(env, home)  # at once: it said goodbye
    assert (lost["name"], lost["state"]) == (full_name, "lost")
    engine.wait_for(f"worker {lacking_name} said goodbye")
    assert engine.stop() == 0


def test_serve_lists_its_worker_through_the_control_socket_and_to_admin_tokens(
    tmp_path: Path,
) -> None:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env = {**inherited, "EXPORTD_HOME": str(tmp_path), **QUICK}
    serve = Process(["serve", "--workers", "3", "--http", "127.0.0.1:0"], env, tmp_path)
    try:
        found = re.search(r"HTTP API at (http://\S+)", serve.wait_for("HTTP API at"))
        assert found is not None
        serve.wait_for("control socket at")
        [worker] = until_listed(env, tmp_path, {"embedded": "live"})
        assert (worker["pid"], worker["concurrency"]) == (serve.popen.pid, 3)
        assert "csv" in {p["name"] for p in worker["formats"]}
        assert run_exportd(["workers"], env, tmp_path).stdout.splitlines()[-1] == ("1 live, 0 lost")

        run_exportd(["orgs", "create", "Ops", "--id", "ops"], env, tmp_path)
        user = fields_of(run_exportd(["users", "create", "ops", "Ann"], env, tmp_path).stdout)
        tokens = {
            permission: fields_of(
                run_exportd(
                    ["tokens", "create", user["id"], "--permission", permission], env, tmp_path
                ).stdout
            )["token"]
            for permission in ("admin", "reports")
        }
        with httpx.Client(base_url=found[1], timeout=WAIT) as http:
            answer = http.get("/v1/workers", headers={"Authorization": f"Bearer {tokens['admin']}"})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert (body["live"], body["lost"]) == (1, 0)
            assert [(w["name"], w["state"]) for w in body["workers"]] == [("embedded", "live")]
            refused = http.get(
                "/v1/workers", headers={"Authorization": f"Bearer {tokens['reports']}"}
            )
            assert refused.status_code == 403
            assert refused.json()["message"] == "the token lacks the admin permission"
            assert http.get("/v1/workers").status_code == 401
        assert serve.stop() == 0
    finally:
        if serve.popen.poll() is None:
            serve.popen.kill()
            serve.popen.wait(WAIT)


async def test_heartbeats_go_on_after_the_broker_refused_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_in(tmp_path)
    bus = LocalBus()  # not started yet: every publish fails
    heard: asyncio.Queue[WorkerHeartbeat] = asyncio.Queue()
    heartbeats = Heartbeats(
        bus, Plugins(settings=settings), name="w", concurrency=1, interval=0.05, running=list
    )
    loops = Loops()
    beating = loops.keep_running("the heartbeats", heartbeats.beat, Backoff(first=0.05, cap=0.1))

    async def logged(text: str) -> None:
        async with asyncio.timeout(WAIT):
            while not any(text in record.getMessage() for record in caplog.records):
                await asyncio.sleep(0.01)

    try:
        await logged("the heartbeats failed, trying again with back-off")

        async def on_beat(message: Any) -> None:
            await heard.put(msgspec.json.decode(message.body, type=WorkerHeartbeat))
            await message.ack()

        async with bus:
            await bus.subscribe(bus.topology.workers, "", on_beat)
            async with asyncio.timeout(WAIT):
                beat = await heard.get()
            assert (beat.name, beat.leaving, beat.tasks) == ("w", False, [])
            await logged("the heartbeats works again")  # once its turn is over
            await loops.stop(beating)
            await heartbeats.say_goodbye()
            async with asyncio.timeout(WAIT):
                while not (await heard.get()).leaving:
                    pass
        caplog.clear()
        await heartbeats.say_goodbye()  # the bus is closed: logged, not raised
        assert [r.getMessage() for r in caplog.records] == [
            "worker w could not say goodbye: the bus is not started"
        ]
    finally:
        await loops.close()


async def test_waiting_for_the_engine_to_run_raises_what_stopped_its_start(
    tmp_path: Path,
) -> None:
    settings = settings_in(tmp_path)
    engine = Engine(LocalBus(), Plugins(settings=settings), settings)  # a bus never started
    running = asyncio.create_task(engine.run(asyncio.Event()))
    with pytest.raises(BusError, match="the bus is not started"):
        async with asyncio.timeout(WAIT):
            await engine.until_running(running)
    assert not engine.running
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        engine.store.ping()  # it closed its job store on the way out


async def test_the_engine_drops_a_heartbeat_it_cannot_read_and_hears_the_next(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = settings_in(tmp_path)
    plugins = Plugins(settings=settings)
    stop = asyncio.Event()
    async with LocalBus() as bus:
        engine = Engine(bus, plugins, settings)
        running = asyncio.create_task(engine.run(stop))
        try:
            async with asyncio.timeout(WAIT):
                await engine.until_running(running)
            exchange = bus.topology.workers
            await bus.publish(exchange, "", b'{"name": 1}')
            heartbeats = Heartbeats(
                bus, plugins, name="w", concurrency=1, interval=1.0, running=list
            )
            await bus.publish(exchange, "", msgspec.json.encode(heartbeats.heartbeat()))
            async with asyncio.timeout(WAIT):
                while engine.live_workers() != 1:
                    await asyncio.sleep(0.01)
            assert [w.name for w in engine.list_workers()] == ["w"]
            dropped = [r for r in caplog.records if "heartbeat it cannot read" in r.getMessage()]
            assert [r.levelname for r in dropped] == ["WARNING"]
            assert "name" in dropped[0].getMessage()
        finally:
            stop.set()
            await running


async def test_a_job_no_live_worker_can_run_is_a_warning_once_the_engine_has_settled(
    tmp_path: Path, datastore: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.copy(datastore, tmp_path / "data.db")
    settings = settings_in(tmp_path, worker={"heartbeat_interval": 0.5})
    stop = asyncio.Event()
    async with LocalBus() as bus:
        engine = Engine(bus, Plugins(settings=settings), settings)
        running = asyncio.create_task(engine.run(stop))
        try:
            early = await engine.submit(logs_request())  # too early to tell
            await asyncio.sleep(0.5)
            late = await engine.submit(logs_request(format="xlsx"))
        finally:
            stop.set()
            await running
    warned = [r for r in caplog.records if r.levelname == "WARNING" and " to " in r.getMessage()]
    assert [r.getMessage() for r in warned] == [
        f"job {late.id} (rooms to xlsx): no worker is live (none heard from within "
        "engine.worker_timeout)"
    ]
    assert early.id not in caplog.text
    without = engine.metrics.process.registry.get_sample_value(
        "exportd_jobs_without_worker_total", {"source": "rooms", "format": "xlsx"}
    )
    assert without == 1
