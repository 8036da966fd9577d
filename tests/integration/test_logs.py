"""What the services log, as real processes: ``log.format = "json"`` lines parsed back,
``log.level``, the HTTP access log, and a forced disconnect and a restart of a RabbitMQ node
of the test's own (one WARNING line, one INFO line, the traceback only at DEBUG)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.broker import PrivateBroker
from tests.integration.commands import WAIT, Deployment, Process, done_over_http, run_exportd
from tests.unit.datastore import ORG, ROOM, WINDOW

SERVE = ["serve", "--workers", "1", "--http", "127.0.0.1:0"]
RECORD_FIELDS = {"time", "level", "logger", "message"}
ACCESS_FIELDS = {"method", "route", "status", "duration_ms", "org"}


@pytest.fixture
def home(tmp_path: Path, datastore: Path) -> Path:
    shutil.copy(datastore, tmp_path / "data.db")
    return tmp_path


def environment(home: Path, **variables: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    return {**inherited, "EXPORTD_HOME": str(home), **variables}


def fields_of(stdout: str) -> dict[str, str]:
    """The ``key: value`` lines of ``exportd orgs|users|tokens create``."""
    return dict(line.split(": ", 1) for line in stdout.splitlines())


def token_of_a_new_tenant(env: dict[str, str], home: Path) -> tuple[str, str]:
    """The data store's org, a user of it and a token of theirs, made by the command line:
    the org's id and the token."""
    org = fields_of(run_exportd(["orgs", "create", "Acme", "--id", ORG], env, home).stdout)
    user = fields_of(run_exportd(["users", "create", org["id"], "Ann"], env, home).stdout)
    token = fields_of(run_exportd(["tokens", "create", user["id"]], env, home).stdout)
    return org["id"], token["token"]


@pytest.fixture
def served(home: Path) -> Iterator[Process]:
    """``exportd serve`` logging JSON lines at INFO."""
    serve = Process(SERVE, environment(home, EXPORTD_LOG__FORMAT="json"), home)
    try:
        yield serve
    finally:
        serve.popen.kill()
        serve.popen.wait(WAIT)


def test_json_lines_carry_their_fields_the_jobs_id_and_an_access_line_per_request(
    home: Path, served: Process
) -> None:
    env = environment(home)
    org_id, token = token_of_a_new_tenant(env, home)
    found = re.search(r"HTTP API at (http://[^ \"]+)", served.wait_for("HTTP API at"))
    assert found is not None
    request = {
        "source": "rooms",
        "format": "csv",
        "params": {"room_id": ROOM, "type": "logs"},
        "interval": {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat()},
    }
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=found[1], headers=headers, timeout=WAIT) as http:
        job = done_over_http(http, request)
        job_id = job["id"]
        assert http.get("/v1/nowhere").status_code == 404
    [link] = job["files"]
    assert httpx.get(link["url"], timeout=WAIT).status_code == 200  # signed: no token
    signature = httpx.URL(link["url"]).params["signature"]
    served.wait_for("GET /v1/files/")
    assert served.stop() == 0

    lines = [json.loads(line) for line in served.lines["stderr"]]  # each line one object
    assert lines, "nothing logged"
    for line in lines:
        assert line.keys() >= RECORD_FIELDS, line
        assert datetime.fromisoformat(line["time"]).utcoffset() == timedelta(0), line
        assert line["level"] == "INFO", line
    of_the_job = [line for line in lines if line.get("job_id") == job_id]
    loggers = {line["logger"] for line in of_the_job}
    assert {"exportd", "exportd.workers.worker"} <= loggers, of_the_job  # events, the worker
    worker_lines = [line for line in of_the_job if line["logger"] == "exportd.workers.worker"]
    assert all(line["part"] == 0 and line["attempt"] == 1 for line in worker_lines)

    access = [line for line in lines if line["logger"] == "exportd.http.access"]
    seen = {(line["method"], line["route"], line["status"]) for line in access}
    assert ("POST", "/v1/jobs", 201) in seen
    assert ("GET", "/v1/jobs/{job_id}", 200) in seen
    assert ("GET", "unmatched", 404) in seen
    assert ("GET", "/v1/files/{job_id}/{part}", 200) in seen
    for line in access:
        assert line.keys() >= ACCESS_FIELDS, line
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert line["org"] == (org_id if line["route"].startswith("/v1/jobs") else "-"), line
    text = "\n".join(served.lines["stderr"])
    assert token not in text and signature not in text and "signature" not in text


def test_log_level_warning_leaves_out_the_info_lines(home: Path) -> None:
    serve = Process(SERVE, environment(home, EXPORTD_LOG__LEVEL="WARNING"), home)
    try:
        deadline = time.monotonic() + WAIT
        while not (home / "control.sock").is_socket():
            assert time.monotonic() < deadline, serve.lines
            time.sleep(0.05)
        assert serve.stop() == 0
    finally:
        serve.popen.kill()
        serve.popen.wait(WAIT)
    assert serve.lines["stderr"] == []


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("EXPORTD_LOG__FORMAT", "yaml", "log.format"),
        ("EXPORTD_LOG__LEVEL", "LOUD", "log.level"),
    ],
)
def test_a_bad_log_setting_is_one_error_line_naming_it(
    home: Path, variable: str, value: str, expected: str
) -> None:
    result = run_exportd(["serve"], environment(home, **{variable: value}), home)
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("exportd: error: "), result.stderr
    assert expected in result.stderr, result.stderr


def broker_lines(process: Process) -> list[str]:
    """The lines about the broker connection, or warnings and worse, of ``process``."""
    return [
        line
        for line in process.lines["stderr"]
        if "RabbitMQ" in line or re.search(r" (WARNING|ERROR|CRITICAL) ", line)
    ]


def reconnected(process: Process, *, times: int) -> None:
    """Wait until ``process`` said it reconnected to RabbitMQ ``times`` times."""
    deadline = time.monotonic() + WAIT
    while process.text().count("reconnected to RabbitMQ") < times:
        assert time.monotonic() < deadline, process.text()
        time.sleep(0.1)


def test_a_lost_connection_is_one_warning_and_the_reconnect_one_info_line(
    tmp_path: Path, datastore: Path, stoppable_broker: PrivateBroker
) -> None:
    url = f"{stoppable_broker.url}?reconnect_interval=0.5"
    homes = [tmp_path / "info", tmp_path / "debug"]
    for home in homes:
        home.mkdir()
        shutil.copy(datastore, home / "data.db")
    quiet = Deployment(homes[0], url)
    loud = Deployment(homes[1], url, EXPORTD_LOG__LEVEL="DEBUG")
    try:
        processes = [quiet.engine(), quiet.worker(), loud.worker()]
        assert stoppable_broker.close_all_connections() >= 3
        for process in processes:
            reconnected(process, times=1)
        time.sleep(1)  # anything the libraries log after the reconnect
        for process in processes[:2]:
            said = broker_lines(process)
            assert len(said) == 2, said
            assert " WARNING lost the connection to RabbitMQ at amqp://guest:**@" in said[0]
            assert "CONNECTION_FORCED" in said[0]
            assert " INFO reconnected to RabbitMQ at " in said[1]
            assert "Traceback" not in process.text(), process.text()
        debug = processes[2].text()
        assert debug.count(" WARNING ") == 1, debug
        assert debug.count(" INFO reconnected to RabbitMQ") == 1, debug
        assert "Traceback (most recent call last)" in debug
        assert "DEBUG Unexpected connection close from remote" in debug  # aiormq's own
        assert not re.search(r" (ERROR|CRITICAL) ", debug), debug

        # A broker that restarts: reconnect attempts fail while it is down, quietly.
        stoppable_broker.stop_app()
        time.sleep(2)  # a few failed attempts, every 0.5 s
        stoppable_broker.start_app()
        for process in processes:
            reconnected(process, times=2)
        time.sleep(1)
        for process in processes[:2]:
            said = broker_lines(process)
            assert [line.split(" ")[2] for line in said] == ["WARNING", "INFO"] * 2, said
            assert "Traceback" not in process.text(), process.text()
        assert processes[2].text().count(" WARNING ") == 2
    finally:
        quiet.close()
        loud.close()
