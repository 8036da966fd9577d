"""``engine.job_retention``: the engine's sweep removes the jobs over from the job store,
with their parts, labels and delivery records; running and recent jobs stay.  The engine,
its delivery service and a worker run as ``exportd serve`` runs them (on the in-process
bus), on real SQLite files; and a real ``exportd serve`` process removes a job past its
retention."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import pytest

from exportd.cli.serve import embedded
from exportd.config import Settings
from exportd.deliveries.ledger import Ledger
from exportd.deliveries.service import LEDGER_FILE
from exportd.engine.service import Engine
from exportd.errors import NotFound
from exportd.messages import ExportRequest, JobSnapshot
from exportd.plugins.manager import Plugins
from tests.integration.commands import WAIT, Process, done_over_http
from tests.integration.runtime import settings_in
from tests.integration.test_logs import SERVE, environment, token_of_a_new_tenant
from tests.unit import toy_plugins
from tests.unit.datastore import ROOM, WINDOW

RETENTION = 2.0
QUICK = {"file_lifetime": 1.0, "job_retention": RETENTION, "sweep_interval": 0.2}
TABLES = {"jobs": "id", "parts": "job_id", "labels": "job_id"}
CSV_REQUEST = {
    "source": "rooms",
    "format": "csv",
    "params": {"room_id": ROOM, "type": "logs"},
    "interval": {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat()},
}


@pytest.fixture
def home(tmp_path: Path, datastore: Path) -> Path:
    shutil.copy(datastore, tmp_path / "data.db")
    return tmp_path


def quick_settings(home: Path) -> Settings:
    return settings_in(home, engine=QUICK, worker={"shutdown_grace": 1.0, "concurrency": 3})


async def submit(engine: Engine, **params: object) -> JobSnapshot:
    request = {
        "source": "count",
        "format": "lines",
        "params": params,
        "interval": {"start": "2024-01-01", "end": "2024-01-02"},
        "labels": {"team": "ops"},
    }
    return await engine.submit(msgspec.convert(request, ExportRequest))


async def until(check: Callable[[], object], timeout: float = 20.0) -> None:
    """Wait until ``check()`` is true."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def status(engine: Engine, job_id: str) -> str | None:
    """The job's status; None once it is gone from the store."""
    try:
        return (await engine.get(job_id)).status
    except NotFound:
        return None


async def wait_status(engine: Engine, job_id: str, wanted: set[str | None]) -> None:
    deadline = time.monotonic() + 20
    while await status(engine, job_id) not in wanted:
        assert time.monotonic() < deadline, f"job {job_id} never {wanted}"
        await asyncio.sleep(0.05)


def rows_of(home: Path, job_ids: list[str]) -> dict[str, int]:
    """How many rows of the jobs each table of the job store and the ledger holds."""
    marks = ", ".join("?" * len(job_ids))
    counts = {}
    with sqlite3.connect(home / "jobs.db") as db:
        for table, column in TABLES.items():
            query = f"select count(*) from {table} where {column} in ({marks})"
            counts[table] = db.execute(query, job_ids).fetchone()[0]
    with sqlite3.connect(home / LEDGER_FILE) as db:
        query = f"select count(*) from deliveries where job_id in ({marks})"
        counts["deliveries"] = db.execute(query, job_ids).fetchone()[0]
    return counts


def record_deliveries(home: Path, jobs: list[JobSnapshot]) -> None:
    """Record a delivery of each job in the ledger, as the delivery service records those
    its done jobs' requests ask for (its own run is not woken: the rows just wait)."""
    ledger = Ledger(home / LEDGER_FILE)
    try:
        for job in jobs:
            assert ledger.add(job.id, job.attempt, "email")
    finally:
        ledger.close()


async def test_jobs_over_for_the_retention_are_removed_with_every_row_of_theirs(
    home: Path,
) -> None:
    settings = quick_settings(home)
    plugins = Plugins(settings=settings, extra=[toy_plugins])
    async with embedded(settings, plugins) as engine:
        running = await submit(engine, rows=10_000_000, pause=0.05)
        done = await submit(engine, rows=3)
        failed = await submit(engine, rows=3, explode_at=1)
        await wait_status(engine, done.id, {"done", "expired"})
        await wait_status(engine, failed.id, {"failed"})
        await wait_status(engine, running.id, {"processing"})
        record_deliveries(home, [done, failed, running])
        over = [done.id, failed.id]
        assert rows_of(home, over) == {"jobs": 2, "parts": 2, "labels": 2, "deliveries": 2}

        # done: expired after file_lifetime, then removed RETENTION after it finished.
        for job_id in over:
            await wait_status(engine, job_id, {None})
        assert rows_of(home, over) == {"jobs": 0, "parts": 0, "labels": 0, "deliveries": 0}
        kept = [running.id]
        parts = running.part_count
        assert rows_of(home, kept) == {"jobs": 1, "parts": parts, "labels": 1, "deliveries": 1}
        assert await status(engine, running.id) == "processing"

        recent = await submit(engine, rows=3, explode_at=1)
        await wait_status(engine, recent.id, {"failed"})
        await asyncio.sleep(RETENTION / 2)  # a few sweeps, all before its time
        assert await status(engine, recent.id) == "failed"
        await engine.cancel(running.id)


async def test_a_sweep_that_fails_is_logged_and_the_next_one_removes_the_jobs(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = quick_settings(home)
    plugins = Plugins(settings=settings, extra=[toy_plugins])
    caplog.set_level(logging.ERROR, logger="exportd.supervision")
    async with embedded(settings, plugins) as engine:
        job = await submit(engine, rows=3, explode_at=1)
        await wait_status(engine, job.id, {"failed"})
        # Another connection holds the write lock past the store's busy timeout (5 s).
        with sqlite3.connect(home / "jobs.db", isolation_level=None) as locker:
            locker.execute("begin immediate")
            await until(lambda: "exportd sweeper failed" in caplog.text, timeout=30)
            assert await status(engine, job.id) == "failed"  # readers read on
            locker.execute("rollback")
        await wait_status(engine, job.id, {None})
    failures = [r for r in caplog.records if r.getMessage().startswith("exportd sweeper failed")]
    assert len(failures) == 1
    assert "the job store is locked" in failures[0].getMessage()


def test_a_real_serve_removes_a_job_past_its_retention_and_keeps_a_recent_one(
    home: Path,
) -> None:
    """``exportd serve`` as a process: its first job expires (a second's file lifetime)
    and, two seconds after, is gone from the API; the job made after it stays."""
    env = environment(
        home,
        EXPORTD_ENGINE__FILE_LIFETIME="1",
        EXPORTD_ENGINE__JOB_RETENTION=str(RETENTION),
        EXPORTD_ENGINE__SWEEP_INTERVAL="0.2",
    )
    _, token = token_of_a_new_tenant(env, home)
    serve = Process(SERVE, env, home)
    try:
        url = re.search(r"HTTP API at (http://[^ \"]+)", serve.wait_for("HTTP API at"))
        assert url is not None
        with httpx.Client(base_url=url[1], headers={"Authorization": f"Bearer {token}"}) as http:
            old = done_over_http(http, CSV_REQUEST)["id"]
            deadline = time.monotonic() + WAIT
            while http.get(f"/v1/jobs/{old}").status_code != 404:
                assert time.monotonic() < deadline, http.get(f"/v1/jobs/{old}").json()
                time.sleep(0.1)
            recent = done_over_http(http, CSV_REQUEST)["id"]
            assert http.get(f"/v1/jobs/{recent}").json()["status"] == "done"
        serve.wait_for("removed 1 job(s) finished before")
        assert serve.stop() == 0
    finally:
        serve.popen.kill()
        serve.popen.wait(WAIT)
