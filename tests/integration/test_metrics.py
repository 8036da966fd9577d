"""The metrics of real ``exportd engine``, ``exportd worker`` and ``exportd serve``
processes, scraped over HTTP during and after real exports and read with
prometheus-client's parser; and the worker's liveness answer, ``/healthz``.

Every test runs ``python -m exportd`` with EXPORTD_HOME in its own folder and a
topology of its own on the test broker (deleted afterwards); the worker serves its
metrics on a free port (``worker.metrics_listen = 127.0.0.1:0``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import aio_pika
import httpx
import msgspec
import pytest

from exportd.client import Client
from exportd.data.demo import DemoSummary, generate_demo_data
from exportd.messages import JobSnapshot, StatusUpdate
from tests.broker import OnThePrivateNode, PrivateBroker
from tests.integration.commands import WAIT, Deployment, Process, make_deployment, run_exportd
from tests.integration.processes import broker_settings
from tests.integration.test_cli_runtime import fields_of
from tests.metrics import Scrape, scrape
from tests.unit.datastore import ORG, ROOM, WINDOW

T = TypeVar("T")

LISTENING = {"EXPORTD_WORKER__METRICS_LISTEN": "127.0.0.1:0"}
"""Every worker of these tests serves its metrics, on a free port."""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    """Demo data with a room big enough for an xlsx export to take seconds."""
    return generate_demo_data(tmp_path_factory.mktemp("demo") / "data.db", messages=200_000)


@pytest.fixture
def slow_deployment(tmp_path: Path, demo: DemoSummary, broker_url: str) -> Iterator[Deployment]:
    """The demo data in a fresh EXPORTD_HOME, small batches and frequent progress, the
    worker's metrics listener on."""
    shutil.copy(demo.path, tmp_path / "data.db")
    yield from make_deployment(
        tmp_path,
        broker_url,
        EXPORTD_BATCH_SIZE="100",
        EXPORTD_WORKER__PROGRESS_INTERVAL="0.2",
        EXPORTD_WORKER__SHUTDOWN_GRACE="60",
        **LISTENING,
    )


@pytest.fixture
def deployment(tmp_path: Path, datastore: Path, broker_url: str) -> Iterator[Deployment]:
    """The test data store in a fresh EXPORTD_HOME, the worker's metrics listener on."""
    shutil.copy(datastore, tmp_path / "data.db")
    yield from make_deployment(tmp_path, broker_url, **LISTENING)


def url_in(process: Process, text: str) -> str:
    """The first URL of the line of ``process``'s log that holds ``text``."""
    found = re.search(r"(http://[^\s/]+)", process.wait_for(text))
    assert found is not None
    return found[1]


def engine_and_worker(deployment: Deployment) -> tuple[str, Process, str]:
    """Start ``exportd engine`` and ``exportd worker``; the engine's HTTP URL, the worker
    and its metrics listener's URL."""
    engine = deployment.start("engine", ready="engine running")
    worker = deployment.start("worker", ready="taking tasks")
    return url_in(engine, "HTTP API at"), worker, url_in(worker, "metrics at")


def eventually(get: Callable[[], T], ok: Callable[[T], object] = bool) -> T:
    """What ``get`` returns once ``ok`` holds for it (it is true, by default), asking
    every 50 ms for up to :data:`WAIT` seconds."""
    deadline = time.monotonic() + WAIT
    while not ok(value := get()):
        assert time.monotonic() < deadline, f"never came; the last: {value}"
        time.sleep(0.05)
    return value


def worker_name(worker: Process) -> str:
    """The name ``exportd worker`` gives itself: host and process id."""
    return f"{socket.gethostname()}:{worker.popen.pid}"


def started_slow_export(client: Client, demo: DemoSummary) -> JobSnapshot:
    """Submit the demo room's month as xlsx (seconds of work); the job once rows are
    written."""
    request = {
        "source": "rooms",
        "format": "xlsx",
        "params": {"room_id": demo.room_id, "type": "logs"},
        "interval": {"start": demo.start.isoformat(), "end": demo.end.isoformat()},
    }
    job = client.submit(request)
    return eventually(lambda: client.get(job.id), lambda found: found.progress.rows > 0)


def test_engine_and_worker_metrics_during_and_after_an_export(
    slow_deployment: Deployment, demo: DemoSummary
) -> None:
    deployment = slow_deployment
    engine_url, worker, worker_url = engine_and_worker(deployment)
    name = worker_name(worker)
    labels = {"source": "rooms", "format": "xlsx"}
    with deployment.client() as client:
        job = started_slow_export(client, demo)

        during = scrape(worker_url)
        assert during.value("exportd_tasks_in_progress", worker=name) == 1
        assert during.matching("exportd_export_duration_seconds_count") == []
        engine_during = scrape(engine_url)
        assert engine_during.value("exportd_jobs_created_total", **labels) == 1
        assert engine_during.matching("exportd_jobs_finished_total") == []
        # The worker's heartbeats, as the engine heard them.
        assert engine_during.value("exportd_workers", state="live") == 1
        assert engine_during.value("exportd_workers", state="lost") == 0

        done = eventually(lambda: client.get(job.id), lambda found: found.status == "done")
    [part] = done.parts
    assert part.file is not None and part.file.rows > 10_000

    after = scrape(worker_url)
    assert after.value("exportd_tasks_in_progress", worker=name) == 0
    assert after.value("exportd_rows_written_total", **labels) == part.file.rows
    assert after.value("exportd_bytes_written_total", **labels) == part.file.size
    assert after.value("exportd_export_rows_count", **labels) == 1
    assert after.value("exportd_export_rows_sum", **labels) == part.file.rows
    ran = after.value("exportd_export_duration_seconds_count", **labels, status="done")
    assert ran == 1
    took = after.value("exportd_export_duration_seconds_sum", **labels, status="done")
    assert took is not None and 0 < took < WAIT

    assert httpx.get(f"{engine_url}/v1/jobs/{job.id}", timeout=WAIT).status_code == 401
    engine_after = eventually(
        lambda: scrape(engine_url), lambda found: found.value("exportd_outbox_messages") == 0
    )
    assert engine_after.value("exportd_jobs_finished_total", **labels, status="done") == 1
    assert engine_after.value("exportd_job_rows_count", **labels) == 1
    assert engine_after.value("exportd_job_rows_sum", **labels) == part.file.rows
    lasted = engine_after.value("exportd_job_duration_seconds_sum", **labels, status="done")
    assert done.completed_at is not None
    assert lasted == pytest.approx((done.completed_at - done.created_at).total_seconds())
    assert engine_after.value("exportd_outbox_oldest_age_seconds") == 0
    route = {"method": "GET", "route": "/v1/jobs/{job_id}"}
    assert engine_after.value("exportd_http_requests_total", **route, status="401") == 1
    assert engine_after.value("exportd_http_request_duration_seconds_count", **route) == 1
    assert engine_after.value("exportd_broker_reconnects_total") == 0
    assert after.value("exportd_broker_reconnects_total") == 0


async def publish(broker_url: str, queue: str, *bodies: bytes) -> None:
    """Publish ``bodies`` to ``queue`` as an outsider would."""
    async with await aio_pika.connect(broker_url) as connection:
        channel = await connection.channel()
        for body in bodies:
            await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue)


def test_dead_letters_and_dropped_updates_are_counted(deployment: Deployment) -> None:
    engine_url, _, worker_url = engine_and_worker(deployment)
    topology = deployment.topology
    room_logs = {
        "source": "rooms",
        "format": "csv",
        "params": {"room_id": ROOM, "type": "logs"},
        "interval": {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat()},
        "org_id": ORG,
    }
    with deployment.client() as client:
        job = client.submit(room_logs)
        eventually(lambda: client.get(job.id).status == "done")
    late = [
        StatusUpdate(job_id=job.id, part=0, attempt=2, seq=9, status="processing"),  # stale
        StatusUpdate(job_id=job.id, part=0, attempt=1, seq=9, status="failed"),  # finished
        StatusUpdate(job_id="no-such-job", part=0, attempt=1, seq=1, status="done"),
    ]
    updates = [msgspec.json.encode(update) for update in late]
    asyncio.run(publish(deployment.broker_url, topology.status, b"{not json", *updates))
    asyncio.run(publish(deployment.broker_url, topology.tasks, b"[1, 2]", b"{}"))

    def all_dropped(found: Scrape) -> bool:
        return sum(s.value for s in found.matching("exportd_status_updates_dropped_total")) == 3

    engine = eventually(lambda: scrape(engine_url), all_dropped)
    for reason in ("stale_attempt", "job_finished", "unknown_job"):
        assert engine.value("exportd_status_updates_dropped_total", reason=reason) == 1
    dead = "exportd_messages_dead_lettered_total"
    assert engine.value(dead, queue=topology.status) == 1
    eventually(lambda: scrape(worker_url).value(dead, queue=topology.tasks) == 2)


def healthz(url: str, timeout: float = WAIT) -> httpx.Response:
    """``GET url/healthz``."""
    return httpx.get(f"{url}/healthz", timeout=timeout)


def test_a_worker_is_live_while_it_takes_tasks_and_not_once_it_shuts_down(
    slow_deployment: Deployment, demo: DemoSummary
) -> None:
    deployment = slow_deployment
    _, worker, worker_url = engine_and_worker(deployment)
    live = healthz(worker_url)
    assert (live.status_code, live.text) == (200, "ok\n")

    worker.popen.send_signal(signal.SIGSTOP)  # its event loop does not turn: no answer
    try:
        with pytest.raises(httpx.ReadTimeout):
            healthz(worker_url, timeout=1.0)
    finally:
        worker.popen.send_signal(signal.SIGCONT)
    assert healthz(worker_url).status_code == 200

    with deployment.client() as client:
        job = started_slow_export(client, demo)
        worker.popen.send_signal(signal.SIGTERM)  # it finishes the export (60 s of grace)
        worker.wait_for("finishing 1 task(s)")
        stopping = healthz(worker_url)
        assert (stopping.status_code, stopping.text) == (503, "shutting down\n")
        assert client.get(job.id).status == "processing"
        assert worker.popen.wait(WAIT) == 0
        assert client.get(job.id).status == "done"
    with pytest.raises(httpx.ConnectError):
        healthz(worker_url)


def test_serve_shows_its_engine_and_its_worker_on_one_listener(
    tmp_path: Path, datastore: Path
) -> None:
    shutil.copy(datastore, tmp_path / "data.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env = {**env, "EXPORTD_HOME": str(tmp_path)}
    serve = Process(["serve", "--http", "127.0.0.1:0"], env, tmp_path)
    try:
        url = url_in(serve, "HTTP API at")  # it listens once the engine runs
        run_exportd(["orgs", "create", "Acme", "--id", ORG], env, tmp_path)
        user = fields_of(run_exportd(["users", "create", ORG, "Ann"], env, tmp_path).stdout)
        token = fields_of(run_exportd(["tokens", "create", user["id"]], env, tmp_path).stdout)
        headers = {"Authorization": f"Bearer {token['token']}"}
        request = {
            "source": "rooms",
            "format": "csv",
            "params": {"room_id": ROOM, "type": "logs"},
            "interval": {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat()},
        }
        with httpx.Client(base_url=url, headers=headers, timeout=WAIT) as http:
            created = http.post("/v1/jobs", json=request)
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]
            job = eventually(
                lambda: http.get(f"/v1/jobs/{job_id}").json(),
                lambda found: found["status"] == "done",
            )
        [file] = job["files"]
        scraped = scrape(url)
        assert serve.stop() == 0
    finally:
        if serve.popen.poll() is None:
            serve.popen.kill()
            serve.popen.wait(WAIT)
    labels = {"source": "rooms", "format": "csv"}
    assert scraped.value("exportd_jobs_created_total", **labels) == 1
    assert scraped.value("exportd_jobs_finished_total", **labels, status="done") == 1
    assert scraped.value("exportd_tasks_in_progress", worker="embedded") == 0
    assert scraped.value("exportd_rows_written_total", **labels) == file["rows"]
    assert scraped.value("exportd_bytes_written_total", **labels) == file["size"]
    posted = {"method": "POST", "route": "/v1/jobs", "status": "201"}
    assert scraped.value("exportd_http_requests_total", **posted) == 1


class TestReconnectsOnAPrivateNode(OnThePrivateNode):
    """Closing connections needs a RabbitMQ node of the test's session's own."""

    @pytest.fixture
    def deployment(
        self, tmp_path: Path, datastore: Path, private_broker: PrivateBroker
    ) -> Iterator[Deployment]:
        """The test data store, on the private node, reconnecting quickly."""
        shutil.copy(datastore, tmp_path / "data.db")
        url = broker_settings(private_broker.url).url
        yield from make_deployment(tmp_path, url, **LISTENING)

    def test_a_restored_connection_is_counted_by_engine_and_worker(
        self, deployment: Deployment, private_broker: PrivateBroker
    ) -> None:
        engine_url, worker, worker_url = engine_and_worker(deployment)
        closed = private_broker.close_connections_named(f"exportd worker {worker_name(worker)}")
        assert closed == 1
        reconnects = "exportd_broker_reconnects_total"
        eventually(lambda: scrape(worker_url).value(reconnects) == 1)
        assert scrape(engine_url).value(reconnects) == 0
        assert healthz(worker_url).status_code == 200  # a reconnect is no reason to restart


def test_a_worker_that_cannot_listen_stops_before_it_connects(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
        env |= {
            "EXPORTD_HOME": str(tmp_path),
            "EXPORTD_BROKER__URL": "amqp://guest:guest@127.0.0.1:1/",  # nobody: not asked
            "EXPORTD_WORKER__METRICS_LISTEN": f"127.0.0.1:{port}",
        }
        result = run_exportd(["worker"], env, tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"exportd: error: configuration key 'worker.metrics_listen': cannot listen on "
        f"127.0.0.1:{port}: "
    ), result.stderr
    assert result.stderr.count("\n") == 1
