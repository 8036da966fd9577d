"""The runtime commands as real processes: ``exportd engine``, ``worker``, ``serve``,
``watch``, ``jobs`` and ``export --broker``, against the real RabbitMQ.

Every test runs ``python -m exportd`` with EXPORTD_HOME in its own folder and a
topology of its own (``EXPORTD_BROKER__PREFIX``), deleted afterwards; processes
still running at the end are killed.  ``exportd serve`` runs for real too, with
jobs submitted through its HTTP API and ``jobs`` and ``watch`` reaching it through
its control socket; its core, :func:`exportd.cli.serve.embedded`, is also tested
in-process.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec
import openpyxl
import pytest

from exportd.bus.topology import Topology
from exportd.cli.serve import embedded
from exportd.cli.text import human_size
from exportd.cli.watch import LiveView
from exportd.client import Client, Timeout
from exportd.data.demo import DemoSummary, generate_demo_data
from exportd.engine.service import Engine
from exportd.engine.store import JobStore
from exportd.messages import (
    ExportRequest,
    Interval,
    JobEvent,
    JobSnapshot,
    JobStatus,
    Progress,
    RequestFields,
)
from exportd.plugins.manager import Plugins
from tests.broker import message_count
from tests.integration.commands import (
    WAIT,
    Deployment,
    Process,
    done_over_http,
    make_deployment,
    run_exportd,
)
from tests.integration.runtime import settings_in
from tests.loaded import HTTP, JOB_STORE, among, recorded
from tests.unit import toy_plugins
from tests.unit.datastore import BIG_CHANNEL, FOREIGN_ROOM, ORG, OTHER_ORG, ROOM, WINDOW

UNREACHABLE = "amqp://guest:secret@127.0.0.1:1/"
INTERVAL = ["--start", WINDOW.start.isoformat(), "--end", WINDOW.end.isoformat()]
ROOM_LOGS = ["rooms", "-p", f"room_id={ROOM}", "-p", "type=logs", *INTERVAL]


@pytest.fixture
def deployment(tmp_path: Path, datastore: Path, broker_url: str) -> Iterator[Deployment]:
    """The test data store in a fresh EXPORTD_HOME, on a topology of its own."""
    shutil.copy(datastore, tmp_path / "data.db")
    yield from make_deployment(tmp_path, broker_url)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    """Demo data with a room big enough for an xlsx export to take seconds."""
    return generate_demo_data(tmp_path_factory.mktemp("demo") / "data.db", messages=200_000)


@pytest.fixture
def slow_deployment(tmp_path: Path, demo: DemoSummary, broker_url: str) -> Iterator[Deployment]:
    """The demo data in a fresh EXPORTD_HOME; small batches, frequent progress, and
    running exports given back at once on SIGTERM."""
    shutil.copy(demo.path, tmp_path / "data.db")
    yield from make_deployment(
        tmp_path,
        broker_url,
        EXPORTD_BATCH_SIZE="100",
        EXPORTD_WORKER__PROGRESS_INTERVAL="0.2",
        EXPORTD_WORKER__SHUTDOWN_GRACE="0.1",
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command printed on stderr."""
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("exportd: error: "), result.stderr
    return result.stderr.rstrip("\n")


def reported(stdout: str) -> list[tuple[Path, str]]:
    """(path, ``rows, size, sha256`` line) of each file an export reported."""
    lines = stdout.splitlines()
    return [(Path(path), details) for path, details in zip(lines[::2], lines[1::2], strict=True)]


def logs_request(**changes: object) -> ExportRequest:
    """The chat logs of the test data store's room, as csv, for its org."""
    fields: dict[str, object] = {
        "source": "rooms",
        "format": "csv",
        "params": {"room_id": ROOM, "type": "logs"},
        "interval": {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat()},
        "org_id": ORG,
        **changes,
    }
    return msgspec.convert(fields, ExportRequest)


def rows_and_size(job: JobSnapshot) -> str:
    """The rows and size of a done job's files, as the commands print them."""
    files = [part.file for part in job.parts if part.file is not None]
    return f"{sum(f.rows for f in files):,} rows, {human_size(sum(f.size for f in files))}"


def wait_for_status(client: Client, job_id: str, status: str) -> JobSnapshot:
    """The job once it has ``status``, asking the engine every tenth of a second."""
    deadline = time.monotonic() + WAIT
    while (job := client.get(job_id)).status != status:
        assert time.monotonic() < deadline, f"job {job_id} stays {job.status}, not {status}"
        time.sleep(0.1)
    return job


# the distributed mode


@pytest.mark.parametrize(
    "source",
    [ROOM_LOGS, ["qna", "-p", f"channel_id={BIG_CHANNEL}", *INTERVAL]],
    ids=["one part", "three parts"],
)
def test_an_export_through_the_engine_gives_the_files_of_a_local_export(
    deployment: Deployment, broker_url: str, source: list[str]
) -> None:
    engine = deployment.engine()
    worker = deployment.worker()

    for folder in ("remote", "local"):
        (deployment.home / folder).mkdir()  # -o FOLDER/ must exist
    remote = deployment.run("export", *source, "--broker", broker_url, "-o", "remote/")
    local = deployment.run("export", *source, "-o", "local/")

    assert (remote.returncode, remote.stderr) == (0, "")
    remote_files, local_files = reported(remote.stdout), reported(local.stdout)
    assert len(remote_files) == (1 if source is ROOM_LOGS else 3)
    # The engine names files after the parameters with their defaults: compare in order.
    assert [details for _, details in remote_files] == [details for _, details in local_files]
    for (remote_path, details), (local_path, _) in zip(remote_files, local_files, strict=True):
        assert remote_path.parent == Path("remote")
        content = (deployment.home / remote_path).read_bytes()
        assert content == (deployment.home / local_path).read_bytes()
        assert details.endswith(f"sha256 {hashlib.sha256(content).hexdigest()}")
    assert (engine.stop(), worker.stop()) == (0, 0)
    assert " done: " in engine.text()
    assert "Traceback" not in engine.text() + worker.text()


def test_an_export_through_the_engine_as_json_gives_its_files_and_its_job(
    deployment: Deployment, broker_url: str
) -> None:
    engine, worker = deployment.engine(), deployment.worker()
    exported = deployment.run("export", *ROOM_LOGS, "--broker", broker_url, "--json")
    assert (exported.returncode, exported.stderr) == (0, "")
    answer = json.loads(exported.stdout)
    [file] = answer["files"]
    content = (deployment.home / file["path"]).read_bytes()
    assert (file["size"], file["sha256"]) == (len(content), hashlib.sha256(content).hexdigest())
    job = msgspec.convert(answer["job"], JobSnapshot)
    assert job.status == "done" and job.parts[0].file is not None
    assert job.parts[0].file.sha256 == file["sha256"]
    assert (engine.stop(), worker.stop()) == (0, 0)


def test_a_worker_that_ran_an_export_loaded_no_http_nor_job_store(
    deployment: Deployment, broker_url: str
) -> None:
    deployment.engine()
    record = deployment.home / "worker-modules"
    worker = deployment.start("worker", ready="taking tasks", record=record)
    result = deployment.run("export", *ROOM_LOGS, "--broker", broker_url, "-o", "logs.csv")
    assert result.returncode == 0, result.stderr
    assert worker.stop() == 0
    modules = recorded(record)
    assert {"exportd.workers.worker", "exportd.kernel.pipeline", "aio_pika"} <= modules
    assert among(modules, (*HTTP, *JOB_STORE)) == []


def test_export_through_the_engine_reports_bad_input_in_one_line(
    deployment: Deployment, broker_url: str
) -> None:
    deployment.engine()

    typo = deployment.run("export", *ROOM_LOGS, "-p", "type=lgos", "--broker", broker_url)
    unknown_room = deployment.run(
        "export", "rooms", "-p", "room_id=nope", "-p", "type=logs", "--broker", broker_url
    )

    assert one_error_line(typo).startswith("exportd: error: params.type: ")
    assert one_error_line(unknown_room) == "exportd: error: params.room_id: no room with id 'nope'"
    assert not (deployment.home / "files").exists()


UNREACHABLE_LINE = "cannot connect to RabbitMQ at amqp://guest:**@127.0.0.1:1/: Connection refused"
BAD_COMMANDS = [
    (["engine", "--broker", UNREACHABLE], UNREACHABLE_LINE),
    (["worker", "--broker", UNREACHABLE], UNREACHABLE_LINE),
    (["watch", "--broker", UNREACHABLE], UNREACHABLE_LINE),
    (["jobs", "list", "--broker", UNREACHABLE], UNREACHABLE_LINE),
    (["export", *ROOM_LOGS, "--broker", UNREACHABLE], UNREACHABLE_LINE),
    (["jobs", "show", "x", "--broker", "http://host/"], "--broker: expected amqp://"),
    (["worker", "--concurrency", "0"], "--concurrency: must be at least 1"),
    (["serve", "--workers", "300"], "--workers: must be at most 256"),
]


def run_all(argvs: list[list[str]], env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """Run ``exportd ARGV...`` for each of ``argvs`` at once (each may spend seconds
    trying to reach a broker); their results, in order."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "exportd", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for argv in argvs
    ]
    try:
        results = []
        for argv, process in zip(argvs, processes, strict=True):
            stdout, stderr = process.communicate(timeout=WAIT)
            results.append(subprocess.CompletedProcess(argv, process.returncode, stdout, stderr))
        return results
    finally:
        for process in processes:
            process.kill()
            process.wait(WAIT)


def test_no_broker_or_bad_input_is_one_line_and_a_failure(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    results = run_all([argv for argv, _ in BAD_COMMANDS], {**env, "EXPORTD_HOME": str(tmp_path)})
    for (argv, error), result in zip(BAD_COMMANDS, results, strict=True):
        assert one_error_line(result).startswith(f"exportd: error: {error}"), argv
        assert "secret" not in result.stderr


def test_a_refused_login_is_the_same_line_from_every_command(
    tmp_path: Path, broker_url: str
) -> None:
    parts = urlsplit(broker_url)
    address = parts.netloc.rpartition("@")[2]
    wrong = urlunsplit(parts._replace(netloc=f"{parts.username or 'guest'}:wrong@{address}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env = {**env, "EXPORTD_HOME": str(tmp_path), "EXPORTD_BROKER__URL": wrong}
    commands = [["jobs", "list"], ["jobs", "show", "x"], ["watch"], ["worker"], ["engine"]]
    commands.append(["export", *ROOM_LOGS, "--broker", wrong])

    results = run_all(commands, env)

    shown = urlunsplit(parts._replace(netloc=f"{parts.username or 'guest'}:**@{address}"))
    expected = (
        f"exportd: error: cannot connect to RabbitMQ at {shown}: "
        "the broker refused the user name or password (ACCESS_REFUSED)"
    )
    assert [one_error_line(result) for result in results] == [expected] * len(commands)


def test_ctrl_c_cancels_an_export_through_the_engine(deployment: Deployment) -> None:
    deployment.engine()  # and no worker: the job waits
    export = deployment.start("export", *ROOM_LOGS, "--broker", deployment.broker_url, ctrl_c=True)
    with deployment.client() as client:
        deadline = time.monotonic() + WAIT
        while not (jobs := client.list_jobs()[0]):
            assert time.monotonic() < deadline, export.text()
            time.sleep(0.1)

        assert export.stop(signal.SIGINT) == 130
        # and, if that took seconds, the note that no worker takes the job
        assert export.text().splitlines()[-1] == "exportd: canceled"
        assert client.get(jobs[0].id).status == "canceled"


def test_ctrl_c_before_the_engine_answered_cancels_the_job_the_request_makes(
    deployment: Deployment,
) -> None:
    assert deployment.engine().stop() == 0  # the topology is declared, and no engine runs
    export = deployment.start("export", *ROOM_LOGS, "--broker", deployment.broker_url, ctrl_c=True)
    requests = deployment.topology.requests
    deadline = time.monotonic() + WAIT
    while not asyncio.run(message_count(deployment.broker_url, requests)):
        assert time.monotonic() < deadline, export.text()
        time.sleep(0.1)

    export.popen.send_signal(signal.SIGINT)  # no reply yet: the job's id is not known
    deployment.engine()
    assert export.popen.wait(WAIT) == 130
    assert export.text().splitlines()[-1] == "exportd: canceled"
    with deployment.client() as client:
        [job] = client.list_jobs()[0]  # one job: the request sent again had the same key
        assert job.status == "canceled"


def test_an_export_through_the_engine_says_when_no_worker_takes_it(
    deployment: Deployment,
) -> None:
    deployment.engine()
    export = deployment.start("export", *ROOM_LOGS, "--broker", deployment.broker_url)
    note = export.wait_for("no worker")
    assert note == (
        f"no worker is taking tasks from {deployment.topology.tasks}; waiting "
        "(start one with exportd worker)"
    )

    deployment.worker()
    assert export.popen.wait(WAIT) == 0
    assert export.text() == note
    assert reported(export.text("stdout"))


def test_watch_says_when_no_engine_has_declared_its_topology(deployment: Deployment) -> None:
    watch = deployment.start("watch", ready="watching job events")
    assert watch.stop(signal.SIGINT) == 0
    assert watch.text().splitlines()[0] == (
        f"no engine or worker has declared the events exchange {deployment.topology.events} "
        "on this broker (is EXPORTD_BROKER__PREFIX right?); waiting for one"
    )


def test_jobs_commands_list_show_cancel_restart_and_delete(deployment: Deployment) -> None:
    deployment.engine()
    with deployment.client() as client:
        other = client.submit(logs_request(source="rooms", format="json"))
        job = client.submit(logs_request())  # no worker yet: they wait

        listing = deployment.run("jobs", "list")
        as_json = json.loads(deployment.run("jobs", "list", "--json", "--limit", "1").stdout)
        shown = deployment.run("jobs", "show", job.id[:8])  # as the commands print it
        canceled = deployment.run("jobs", "cancel", job.id[:8])
        restarted = deployment.run("jobs", "restart", job.id)

        header, first, second, footer = listing.stdout.splitlines()
        assert header.split() == ["ID", "STATUS", "SOURCE", "FORMAT", "ORG", "CREATED", "ROWS"]
        assert first.split()[:5] == [job.id, "created", "rooms", "csv", ORG]
        assert second.split()[:5] == [other.id, "created", "rooms", "json", ORG]
        assert footer == "jobs 1-2 of 2"
        assert ([j["id"] for j in as_json["jobs"]], as_json["total"]) == ([job.id], 2)
        shown_fields = {
            name: value.strip()
            for name, _, value in (line.partition(":") for line in shown.stdout.splitlines())
            if not name.startswith(" ")
        }
        assert shown_fields["job"] == job.id
        assert shown_fields["status"] == "created (attempt 1)"
        assert (shown_fields["org"], shown_fields["part 1/1"]) == (ORG, "created")
        assert canceled.stdout == f"job {job.id} canceled: rooms to csv, org {ORG}\n"
        assert restarted.stdout == f"job {job.id} created: rooms to csv, org {ORG}, attempt 2\n"

        deployment.worker()
        done = wait_for_status(client, job.id, "done")
        [content] = deployment.stored(done)
        assert content.startswith(b"conversation_id,")

        assert one_error_line(deployment.run("jobs", "restart", job.id)) == (
            "exportd: error: cannot restart a job that is done"
        )
        assert one_error_line(deployment.run("jobs", "show", "nope")) == (
            "exportd: error: job_id: no job 'nope'"
        )
        assert one_error_line(deployment.run("jobs", "show", job.id[:3])) == (
            f"exportd: error: job_id: {job.id[:3]!r} is too short to stand for a job id: "
            "give at least 6 characters"
        )
        assert one_error_line(deployment.run("jobs", "list", "--limit", "0")).startswith(
            "exportd: error: limit: "
        )
        deleted = deployment.run("jobs", "delete", job.id)
        assert deleted.stdout == f"job {job.id} deleted: rooms to csv, org {ORG}, attempt 2\n"
        assert not list((deployment.home / "files").rglob("*.csv"))
        assert deployment.run("jobs", "list", "--status", "canceled").stdout == "no jobs\n"
        assert client.list_jobs(status="deleted") == ([client.get(job.id)], 1)


def test_a_command_no_engine_answers_times_out_and_expires(deployment: Deployment) -> None:
    engine = deployment.engine()
    with deployment.client() as client:
        job = client.submit(logs_request())  # no worker: it waits
        assert engine.stop() == 0

        client.timeout = 0.3
        with pytest.raises(Timeout, match="is an exportd engine running"):
            client.cancel(job.id)
        time.sleep(0.5)  # the command expires

        deployment.engine()
        client.timeout = WAIT
        assert client.get(job.id).status == "created"


def test_watch_prints_a_line_per_status_change_until_ctrl_c(deployment: Deployment) -> None:
    deployment.engine()
    deployment.worker()
    watch = deployment.start("watch", f"{ORG}.rooms.*", ready="watching job events")
    with deployment.client() as client:
        job = client.submit(logs_request(), wait=WAIT)
        foreign = {"room_id": FOREIGN_ROOM, "type": "logs"}
        client.submit(logs_request(org_id=OTHER_ORG, params=foreign), wait=WAIT)

    watch.wait_for(f"job {job.id} done", stream="stdout")
    assert watch.stop(signal.SIGINT) == 0
    lines = watch.text("stdout").splitlines()
    # a small export ends within the worker's first progress interval: it reports only
    # its outcome, so the job goes from created to done
    assert [line.split()[3] for line in lines] == ["created:", "done:"]
    assert all(f"job {job.id} " in line for line in lines)
    assert lines[-1].endswith(f"done: rooms to csv, org {ORG}; {rows_and_size(job)}")
    assert watch.text() == f"watching job events matching '{ORG}.rooms.*'; Ctrl-C to stop"


def test_watch_as_json_prints_a_job_event_a_line(deployment: Deployment) -> None:
    deployment.engine()
    deployment.worker()
    watch = deployment.start("watch", "--json", ready="watching job events")
    with deployment.client() as client:
        job = client.submit(logs_request(), wait=WAIT)

    watch.wait_for('"type":"job.done"', stream="stdout")
    assert watch.stop(signal.SIGINT) == 0
    events = [msgspec.json.decode(line, type=JobEvent) for line in watch.text("stdout").split("\n")]
    assert [(event.type, event.job and event.job.id) for event in events] == [
        ("job.created", job.id),
        ("job.done", job.id),
    ]
    assert events[-1].job == job


def job_event(job_id: str, type_: str, rows: int = 0) -> JobEvent:
    """An event about a job of 100 rows, ``rows`` of them written."""
    status = "processing" if type_ == "job.progress" else type_.removeprefix("job.")
    moment = datetime(2024, 5, 1, 12, tzinfo=UTC)
    job = JobSnapshot(
        id=job_id,
        status=msgspec.convert(status, JobStatus),
        request=RequestFields(source="rooms", interval=Interval("2024-05-01", "2024-05-02")),
        attempt=1,
        part_count=1,
        parts=[],
        progress=Progress(rows=rows, total=100),
        created_at=moment,
        updated_at=moment,
    )
    return JobEvent(id=uuid.uuid4().hex, type=type_, occurred_at=moment, job=job)


def screen(output: str) -> list[str]:
    """The lines a terminal shows after ``output``: bars erased are gone."""
    lines: list[str] = []
    for piece in re.split(r"(\x1b\[\d+A\r\x1b\[J)", output):
        if erase := re.fullmatch(r"\x1b\[(\d+)A\r\x1b\[J", piece):
            del lines[-int(erase[1]) :]
        else:
            lines += piece.splitlines()
    return lines


def test_watch_on_a_terminal_keeps_a_bar_per_running_job_under_the_lines() -> None:
    output = io.StringIO()
    view = LiveView(output, bars=True)
    at = datetime(2024, 5, 1, 12, tzinfo=UTC).astimezone().strftime("%H:%M:%S")
    one = f"{at}  job one-1234 processing: rooms to csv"
    two = f"{at}  job two-5678 processing: rooms to csv"

    view.show(job_event("one-1234", "job.processing"))
    view.show(job_event("one-1234", "job.progress", rows=50))
    assert screen(output.getvalue()) == [
        one,
        "one-1234 rooms to csv  [############------------]  50%  50/100 rows",
    ]

    view.show(job_event("two-5678", "job.processing", rows=10))
    view.show(job_event("one-1234", "job.done", rows=100))
    assert screen(output.getvalue()) == [
        one,
        two,
        f"{at}  job one-1234 done: rooms to csv",
        "two-5678 rooms to csv  [##----------------------]  10%  10/100 rows",
    ]

    view.close()
    assert screen(output.getvalue())[-1] == f"{at}  job one-1234 done: rooms to csv"


def test_sigterm_gives_a_running_export_back_for_the_next_worker(
    slow_deployment: Deployment, demo: DemoSummary
) -> None:
    deployment = slow_deployment
    deployment.engine()
    first = deployment.worker()
    watch = deployment.start("watch", ready="watching job events")
    request = {
        "source": "rooms",
        "format": "xlsx",
        "params": {"room_id": demo.room_id, "type": "logs"},
        "interval": {"start": demo.start.isoformat(), "end": demo.end.isoformat()},
    }
    with deployment.client() as client:
        job = client.submit(request)
        watch.wait_for(f"job {job.id} processing", stream="stdout")
        # The whole month of the room takes seconds; stop as soon as rows are written.
        deadline = time.monotonic() + WAIT
        while not client.get(job.id).progress.rows:
            assert time.monotonic() < deadline
            time.sleep(0.05)

        assert first.stop() == 0
        assert "finishing 1 task(s)" in first.text()
        assert client.get(job.id).status == "processing"

        deployment.worker()
        watch.wait_for(f"job {job.id} done", stream="stdout")
        time.sleep(1)  # time for a second done, which must not come
        done = client.get(job.id)

    assert watch.text("stdout").count(" done: ") == 1
    [part] = done.parts
    assert part.file is not None
    [content] = deployment.stored(done)
    assert (len(content), hashlib.sha256(content).hexdigest()) == (part.file.size, part.file.sha256)
    path = deployment.home / "files" / part.file.key
    with closing(openpyxl.load_workbook(path, read_only=True)) as workbook:
        rows = sum(1 for sheet in workbook.worksheets for _ in sheet.iter_rows(values_only=True))
    assert rows == part.file.rows + 1  # and a header row


# the HTTP API of the distributed mode


def fields_of(stdout: str) -> dict[str, str]:
    """The ``key: value`` lines of ``exportd orgs|users|tokens create``."""
    return dict(line.split(": ", 1) for line in stdout.splitlines())


def test_the_engine_serves_http_with_tenants_made_by_the_cli_and_a_worker_apart(
    deployment: Deployment,
) -> None:
    engine = deployment.start("engine", "--http", "127.0.0.1:0", ready="engine running")
    url = re.search(r"HTTP API at (http://\S+)", engine.wait_for("HTTP API at"))
    assert url is not None
    deployment.worker()
    org = fields_of(deployment.run("orgs", "create", "Acme", "--id", ORG).stdout)
    assert (org["id"], org["active"], org["benefits"]) == (ORG, "True", "")
    user = fields_of(deployment.run("users", "create", ORG, "Ann", "--email", "a@b.example").stdout)
    made = deployment.run("tokens", "create", user["id"], "--permission", "reports")
    token = fields_of(made.stdout)
    assert (token["user_id"], token["org_id"], token["permissions"]) == (user["id"], ORG, "reports")
    assert one_error_line(deployment.run("tokens", "create", "nobody")).startswith(
        "exportd: error: user_id: no user 'nobody'"
    )

    headers = {"Authorization": f"Bearer {token['token']}"}
    body = msgspec.to_builtins(logs_request(org_id=None))
    with httpx.Client(base_url=url[1], headers=headers, timeout=WAIT) as http:
        job = done_over_http(http, body)
        [link] = job["files"]
        download = httpx.get(link["url"], timeout=WAIT)  # the signed URL is the credential
    assert hashlib.sha256(download.content).hexdigest() == link["sha256"]
    assert download.content.startswith(b"conversation_id,")
    assert job["request"]["user_id"] == user["id"]


# the embedded mode


def test_serve_starts_and_stops_cleanly_on_sigterm(tmp_path: Path, datastore: Path) -> None:
    shutil.copy(datastore, tmp_path / "data.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env = {**env, "EXPORTD_HOME": str(tmp_path)}
    serve = Process(["serve", "--workers", "2", "--http", "127.0.0.1:0"], env, tmp_path)
    try:
        serve.wait_for("taking tasks")
        serve.wait_for("serving in one process")
        assert serve.stop() == 0
    finally:
        serve.popen.kill()
        serve.popen.wait(WAIT)
    log = serve.text().splitlines()
    assert all(" INFO " in line for line in log), log
    [running] = [n for n, line in enumerate(log) if " INFO engine running: jobs in " in line]
    [api] = [n for n, line in enumerate(log) if " INFO HTTP API at " in line]
    assert re.search(r"INFO HTTP API at http://127\.0\.0\.1:\d+ \(OpenAPI: ", log[api])
    assert running < api  # it listens once the engine runs
    assert any("2 export(s) at once" in line for line in log), log
    assert any(
        line.endswith(
            f"control socket at {tmp_path / 'control.sock'} (exportd jobs, exportd watch)"
        )
        for line in log
    ), log
    assert any(" INFO worker embedded joined: exportd " in line for line in log), log
    assert [line.split(" INFO ")[1] for line in log[-3:]] == [
        "SIGTERM: stopping (again to stop at once)",
        "worker embedded said goodbye: it shut down",  # its engine forgets it at once
        "stopped",
    ]


def test_jobs_and_watch_reach_serve_through_its_control_socket(
    tmp_path: Path, demo: DemoSummary
) -> None:
    shutil.copy(demo.path, tmp_path / "data.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env = {**env, "EXPORTD_HOME": str(tmp_path), "EXPORTD_BATCH_SIZE": "20"}
    serve = Process(["serve", "--workers", "1", "--http", "127.0.0.1:0"], env, tmp_path)
    watch: Process | None = None
    try:
        found = re.search(r"HTTP API at (http://\S+)", serve.wait_for("HTTP API at"))
        assert found is not None
        serve.wait_for("control socket at")
        control = tmp_path / "control.sock"
        assert stat.S_IMODE(control.stat().st_mode) == 0o600
        assert one_error_line(run_exportd(["serve"], env, tmp_path)) == (
            f"exportd: error: another exportd serve answers on {control}: run one per EXPORTD_HOME"
        )
        watch = Process(["watch", f"{demo.org_id}.rooms.*"], env, tmp_path)
        watch.wait_for("watching job events")

        run_exportd(["orgs", "create", "Demo", "--id", demo.org_id], env, tmp_path)
        user = run_exportd(["users", "create", demo.org_id, "Ann"], env, tmp_path)
        made = run_exportd(["tokens", "create", fields_of(user.stdout)["id"]], env, tmp_path)
        headers = {"Authorization": f"Bearer {fields_of(made.stdout)['token']}"}
        request = {
            "source": "rooms",
            "params": {"room_id": demo.room_id, "type": "logs"},
            "interval": {"start": "2024-10-02", "end": "2024-10-08"},
        }
        with httpx.Client(base_url=found[1], headers=headers, timeout=WAIT) as http:
            # one worker: the small csv waits for the xlsx, which takes seconds
            whole = {"start": demo.start.isoformat(), "end": demo.end.isoformat()}
            slow_request = {**request, "format": "xlsx", "interval": whole}
            slow = http.post("/v1/jobs", json=slow_request).json()["id"]
            queued = http.post("/v1/jobs", json={**request, "format": "csv"}).json()["id"]

        listing = run_exportd(["jobs", "list", "--json"], env, tmp_path)
        assert [job["id"] for job in json.loads(listing.stdout)["jobs"]] == [queued, slow]
        canceled = run_exportd(["jobs", "cancel", queued[:8]], env, tmp_path)
        assert canceled.stdout == f"job {queued} canceled: rooms to csv, org {demo.org_id}\n"
        stopped = run_exportd(["jobs", "cancel", slow, "--json"], env, tmp_path)
        assert stopped.returncode == 0, (stopped, serve.text())  # the xlsx still runs
        assert (json.loads(stopped.stdout)["id"], json.loads(stopped.stdout)["status"]) == (
            slow,
            "canceled",
        )
        shown = run_exportd(["jobs", "show", slow[:8]], env, tmp_path)
        assert shown.stdout.splitlines()[:2] == [
            f"job:        {slow}",
            "status:     canceled (attempt 1)",
        ]
        assert one_error_line(run_exportd(["jobs", "show", "0000000"], env, tmp_path)) == (
            "exportd: error: job_id: no job '0000000'"
        )

        watch.wait_for(f"job {slow} canceled", stream="stdout")
        assert watch.stop(signal.SIGINT) == 0
        lines = [line.split(maxsplit=1)[1] for line in watch.text("stdout").splitlines()]
        assert [line.split(":")[0] for line in lines if queued in line] == [
            f"job {queued} created",
            f"job {queued} canceled",
        ]
        assert lines[-1].startswith(f"job {slow} canceled: rooms to xlsx")
        assert serve.stop() == 0
        assert not control.exists()
    finally:
        for process in (serve, watch):
            if process is not None and process.popen.poll() is None:
                process.popen.kill()
                process.popen.wait(WAIT)


def count_request(**params: object) -> ExportRequest:
    """An export of the toy ``count`` source."""
    fields = {
        "source": "count",
        "format": "lines",
        "params": params,
        "interval": {"start": "2024-01-01", "end": "2024-01-02"},
    }
    return msgspec.convert(fields, ExportRequest)


async def wait_until(engine: Engine, job_id: str, status: str) -> JobSnapshot:
    """The job once it has ``status``, looking every 50 ms."""
    async with asyncio.timeout(WAIT):
        while (job := await engine.get(job_id)).status != status:
            await asyncio.sleep(0.05)
    return job


async def test_embedded_runs_jobs_and_logs_each_change_of_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_in(tmp_path, batch_size=3)
    plugins = Plugins(settings=settings, extra=[toy_plugins])
    caplog.set_level(logging.INFO, logger="exportd")

    async with embedded(settings, plugins) as engine:
        await engine.ready()  # it runs once it is handed over
        job = await engine.submit(count_request(rows=20))  # two parts of 10 rows
        done = await wait_until(engine, job.id, "done")

    part_lines = ["n|square|label", *(f"{n}|{n * n}|row {n}" for n in range(10)), "-- end"]
    for part in done.parts:
        assert part.file is not None
        with engine.storage.open(part.file.key) as file:
            assert file.read().decode().splitlines() == part_lines
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("job ")]
    assert logged[0] == f"job {job.id} created: count to lines"
    assert f"job {job.id} processing: count to lines" in logged
    assert logged[-1] == f"job {job.id} done: count to lines; {rows_and_size(done)} in 2 files"


async def test_embedded_lets_running_exports_finish_when_it_stops(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, batch_size=2, worker={"progress_interval": 0.1})
    plugins = Plugins(settings=settings, extra=[toy_plugins])

    async with embedded(settings, plugins) as engine:
        job = await engine.submit(count_request(rows=8, pause=0.2))  # one part, 0.8 s
        await wait_until(engine, job.id, "processing")

    with JobStore(settings.jobs_path, Topology()) as store:
        assert store.get(job.id).status == "done"
