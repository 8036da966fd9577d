"""Hosts that share nothing but RabbitMQ, PostgreSQL and an S3-compatible object store.

One engine and two workers run as ``exportd engine`` and ``exportd worker`` processes,
each with an EXPORTD_HOME of its own.  Each worker runs in a mount namespace of its own
in which an empty tmpfs covers the other processes' homes, so that it cannot see them,
as if it ran on another machine; the first test checks that through the worker's own
view of the file system (``/proc/PID/root``).  The data are the demo data, loaded into
a database of the test's own on this machine's PostgreSQL; the files go to a bucket of
the test's own on a moto S3 server (no real S3-compatible server installs from this
machine's registries: PyPI's ``minio`` is only a client, and Debian's radosgw needs a
Ceph cluster); the bus is the test broker, on a topology of the test's own.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import shlex
import shutil
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest

from exportd.config.loading import variable_name
from exportd.data.demo import DemoData, load_demo_data
from tests.integration.commands import WAIT, Deployment, Process
from tests.integration.processes import ask
from tests.needs import missing
from tests.objectstore import MotoServer
from tests.postgres import scratch_database

LONG_WAIT = WAIT * 4
"""The most seconds an export of the demo's busiest room may take on a loaded machine."""


def isolated(hidden: list[Path]) -> list[str]:
    """A command prefix: the command runs in a mount namespace of its own, with an empty
    tmpfs over each of ``hidden`` (what the other hosts keep on their disks)."""
    mounts = " && ".join(
        f"mount -t tmpfs -o size=1m,mode=0700 elsewhere {shlex.quote(str(folder))}"
        for folder in hidden
    )
    command = f'{mounts} && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", command, "isolated"]


def seen_by(process: Process, path: Path) -> Path:
    """``path`` in the file system as ``process`` sees it (its mount namespace)."""
    return Path(f"/proc/{process.popen.pid}/root{path}")


class Hosts:
    """An engine host and two worker hosts: three homes, one topology, and the same
    variables naming the shared services for every process."""

    def __init__(self, root: Path, broker_url: str, shared: dict[str, str]) -> None:
        self.homes = [root / name for name in ("engine", "worker-1", "worker-2")]
        for home in self.homes:
            home.mkdir()
        self.engine_host = Deployment(self.homes[0], broker_url, **shared)
        self.worker_hosts = [
            Deployment(
                home,
                broker_url,
                topology=self.engine_host.topology,
                wrapper=isolated([other for other in self.homes if other != home]),
                **shared,
            )
            for home in self.homes[1:]
        ]
        self.workers: list[Process] = []
        self.http_url = ""
        self.token = ""

    def start(self) -> None:
        """The engine with its HTTP API and a user's token, then a worker on each
        worker host."""
        engine = self.engine_host.start("engine", "--http", "127.0.0.1:0", ready="engine running")
        found = re.search(r"HTTP API at (http://\S+)", engine.wait_for("HTTP API at"))
        assert found is not None
        self.http_url = found[1]
        self.workers = [host.worker() for host in self.worker_hosts]

    def sign_in(self, org_id: str) -> httpx.Client:
        """An HTTP client of the engine for a user of ``org_id`` (made on the engine's host)."""
        host = self.engine_host
        assert host.run("orgs", "create", "Demo", "--id", org_id).returncode == 0
        user = fields_of(host.run("users", "create", org_id, "Ann").stdout)
        made = host.run("tokens", "create", user["id"], "--permission", "reports")
        headers = {"Authorization": f"Bearer {fields_of(made.stdout)['token']}"}
        return httpx.Client(base_url=self.http_url, headers=headers, timeout=WAIT)

    def running(self, job_id: str) -> list[Process]:
        """The workers that have started a run of ``job_id`` so far."""
        return [
            worker
            for worker in self.workers
            if any(f"runs task {job_id}" in line for line in worker.lines["stderr"])
        ]

    def close(self) -> None:
        """Kill what still runs; the engine's host deletes the topology."""
        for host in (*self.worker_hosts, self.engine_host):
            host.close()


def fields_of(stdout: str) -> dict[str, str]:
    """The ``key: value`` lines of ``exportd orgs|users|tokens create``."""
    return dict(line.split(": ", 1) for line in stdout.splitlines())


@pytest.fixture(scope="module")
def postgres_demo() -> Iterator[DemoData]:
    """The demo data, with a room big enough for an xlsx export to take seconds, in a
    PostgreSQL database of the module's own."""
    with scratch_database("share_nothing") as url:
        yield load_demo_data(url, messages=200_000)


@pytest.fixture
def s3_variables(s3_server: MotoServer, s3_bucket: str) -> dict[str, str]:
    """The variables that have a process keep its files in the test's bucket."""
    config = s3_server.config(s3_bucket)
    return {
        "EXPORTD_STORAGE": "s3",
        **{variable_name(f"plugins.s3.{key}"): str(value) for key, value in config.items()},
    }


@pytest.fixture
def hosts(
    tmp_path: Path, broker_url: str, postgres_demo: DemoData, s3_variables: dict[str, str]
) -> Iterator[Hosts]:
    """Three hosts on the demo data in PostgreSQL and a bucket of the test's own."""
    if shutil.which("unshare") is None:
        missing("needs unshare (util-linux) for a mount namespace per worker")
    shared = {
        "EXPORTD_DATA__URL": postgres_demo.url,
        "EXPORTD_BATCH_SIZE": "100",
        "EXPORTD_WORKER__PROGRESS_INTERVAL": "0.2",
        "EXPORTD_HTTP__SECRET": "the same secret on every engine of this deployment",
        **s3_variables,
    }
    made = Hosts(tmp_path, broker_url, shared)
    try:
        yield made
    finally:
        made.close()


def room_logs(demo: DemoData, **changes: Any) -> dict[str, Any]:
    """A request for the logs of the demo's busiest room over its whole period, as xlsx."""
    return {
        "source": "rooms",
        "format": "xlsx",
        "params": {"room_id": demo.room_id, "type": "logs"},
        "interval": {"start": demo.start.isoformat(), "end": demo.end.isoformat()},
        **changes,
    }


def finished(http: httpx.Client, job_id: str) -> dict[str, Any]:
    """The job once it is done, polled through the HTTP API."""
    deadline = time.monotonic() + LONG_WAIT
    while (job := http.get(f"/v1/jobs/{job_id}").json())["status"] != "done":
        assert job["status"] not in {"failed", "canceled", "deleted", "expired"}, job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def downloaded(job: dict[str, Any]) -> list[bytes]:
    """Each file of ``job`` through the engine's signed URL, checked against its sha256."""
    contents = []
    for link in job["files"]:
        answer = httpx.get(link["url"], timeout=WAIT)
        assert answer.status_code == 200, answer.text
        assert hashlib.sha256(answer.content).hexdigest() == link["sha256"]
        contents.append(answer.content)
    return contents


def test_a_worker_sees_neither_the_engines_home_nor_the_other_workers(hosts: Hosts) -> None:
    hosts.start()
    engine_home, *worker_homes = hosts.homes
    assert (engine_home / "jobs.db").is_file()  # as the test sees it
    for worker, own, other in zip(hosts.workers, worker_homes, worker_homes[::-1], strict=True):
        assert not seen_by(worker, engine_home / "jobs.db").exists()
        assert list(seen_by(worker, engine_home).iterdir()) == []
        assert not seen_by(worker, other / "work").exists()
        assert seen_by(worker, own / "work").is_dir()
        with pytest.raises(FileNotFoundError):
            seen_by(worker, engine_home / "http-secret").read_bytes()


def test_requests_over_http_and_raw_amqp_finish_and_download_through_the_engine(
    hosts: Hosts, postgres_demo: DemoData, broker_url: str
) -> None:
    hosts.start()
    with hosts.sign_in(postgres_demo.org_id) as http:
        created = http.post("/v1/jobs", json=room_logs(postgres_demo, format="csv"))
        assert created.status_code == 201, created.text
        over_http = finished(http, created.json()["id"])
        [csv_file] = downloaded(over_http)
        assert csv_file.startswith(b"conversation_id,")

        upstream = room_logs(postgres_demo, format="json_bulk", org_id=postgres_demo.org_id)
        reply = await_reply(broker_url, hosts, upstream)
        assert reply["ok"] is True, reply
        over_amqp = finished(http, reply["job"]["id"])
        [bulk_file] = downloaded(over_amqp)
    assert over_amqp["progress"]["rows"] == over_http["progress"]["rows"] > 0
    assert len(bulk_file.splitlines()) == over_http["progress"]["rows"]


def await_reply(broker_url: str, hosts: Hosts, body: dict[str, Any]) -> dict[str, Any]:
    """The engine's reply to ``body`` sent on its requests queue over raw AMQP."""
    queue = hosts.engine_host.topology.requests
    return asyncio.run(ask(broker_url, queue, body))


def test_a_worker_killed_mid_export_is_replaced_by_the_other_and_the_job_is_done_once(
    hosts: Hosts, postgres_demo: DemoData
) -> None:
    hosts.start()
    with (
        hosts.sign_in(postgres_demo.org_id) as http,
        hosts.engine_host.client() as client,
        client.events(f"{postgres_demo.org_id}.rooms.*") as events,
    ):
        created = http.post("/v1/jobs", json=room_logs(postgres_demo))
        job_id = created.json()["id"]
        deadline = time.monotonic() + WAIT
        while not (runners := hosts.running(job_id)):
            assert time.monotonic() < deadline, "no worker started the export"
            time.sleep(0.02)
        [runner] = runners
        while (job := client.get(job_id)).progress.rows == 0:
            assert time.monotonic() < deadline, job
            time.sleep(0.02)
        assert job.parts[0].status == "processing"
        assert job.progress.rows < (job.progress.total or 0)
        runner.popen.send_signal(signal.SIGKILL)
        runner.popen.wait(WAIT)

        done = finished(http, job_id)
        [survivor] = [worker for worker in hosts.workers if worker is not runner]
        assert survivor in hosts.running(job_id)
        [content] = downloaded(done)
        time.sleep(1)  # time for a second done event, were there one
        types = [event.type for event in iter(lambda: events.receive(0.2), None)]
    assert [t for t in types if t == "job.done"] == ["job.done"]
    sheet = openpyxl.load_workbook(io.BytesIO(content), read_only=True).worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    assert next(rows)[0] == "conversation_id"
    assert sum(1 for _ in rows) == done["progress"]["rows"]


def test_the_parts_of_a_qna_export_run_on_both_workers_at_once(
    hosts: Hosts, postgres_demo: DemoData
) -> None:
    hosts.start()
    request = room_logs(
        postgres_demo, source="qna", params={"channel_id": postgres_demo.channel_id}
    )
    request["params"]["rooms_per_part"] = 5
    with hosts.sign_in(postgres_demo.org_id) as http:
        job_id = http.post("/v1/jobs", json=request).json()["id"]
        job = finished(http, job_id)
        files = downloaded(job)
    assert len(files) == 12
    first, second = (runs_of(worker, job_id) for worker in hosts.workers)
    assert first and second, "each worker ran parts"
    assert len(first) + len(second) == 12
    assert any(
        a_start < b_end and b_start < a_end for a_start, a_end in first for b_start, b_end in second
    ), (first, second)


RUN_LINE = re.compile(r"^(\S+ \S+) INFO worker \S+ (runs|ran) task (\S+) part (\d+)")
"""A worker's log line as a run of a task starts or ends, with its time."""


def runs_of(worker: Process, job_id: str) -> list[tuple[datetime, datetime]]:
    """When each run of a part of ``job_id`` started and ended on ``worker``, by its log."""
    started: dict[str, datetime] = {}
    runs = []
    for line in worker.lines["stderr"]:
        found = RUN_LINE.match(line)
        if found is None or found[3] != job_id:
            continue
        at = datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S,%f")
        if found[2] == "runs":
            started[found[4]] = at
        else:
            runs.append((started.pop(found[4]), at))
    return runs
