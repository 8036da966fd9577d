"""exportd's log lines in one process: the JSON form, the job context, the levels, and the
AMQP client's lines at DEBUG only."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from exportd.config.settings import LogSettings
from exportd.logs.context import JobFields, current_job, job_context
from exportd.logs.handler import ServiceHandler, log_to_stderr
from exportd.logs.json_lines import JsonFormatter

log = logging.getLogger("exportd.test")


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """The root and exportd loggers as they were, without the handler a test installed."""
    root, own = logging.getLogger(), logging.getLogger("exportd")
    levels = root.level, own.level
    yield
    for handler in [h for h in root.handlers if isinstance(h, ServiceHandler)]:
        root.removeHandler(handler)
    root.setLevel(levels[0])
    own.setLevel(levels[1])


def logged(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def log_a_failed_task(error: str) -> None:
    """Log "task j1 failed" with the traceback of a ``ValueError(error)``, in the context
    of job j1's part 2, attempt 3."""
    with job_context("j1", part=2, attempt=3):
        try:
            raise ValueError(error)
        except ValueError:
            log.exception("task %s failed", "j1")


def test_a_json_line_has_its_fields_the_jobs_and_the_traceback_as_one_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log_to_stderr(LogSettings(format="json"))
    log_a_failed_task("bad\nvalue")
    log.info("no job", extra={"route": "/v1/jobs", "status": 201})
    first, second = (json.loads(line) for line in logged(capsys))  # two lines, two objects
    assert first["level"] == "ERROR" and first["logger"] == "exportd.test"
    assert first["message"] == "task j1 failed"
    assert (first["job_id"], first["part"], first["attempt"]) == ("j1", 2, 3)
    assert first["exception"].startswith("Traceback (most recent call last)")
    assert first["exception"].endswith("ValueError: bad\nvalue")
    assert datetime.fromisoformat(first["time"]).utcoffset() == timedelta(0)
    assert second["route"] == "/v1/jobs" and second["status"] == 201
    assert "job_id" not in second and "exception" not in second


def test_a_text_line_ends_with_its_jobs_fields_before_the_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log_to_stderr(LogSettings(format="text"))
    log_a_failed_task("bad value")
    with job_context("j2"):
        log.warning("a job's change")
    log.info("no job")
    first, *traceback, second, third = logged(capsys)
    assert first.endswith(" ERROR task j1 failed job_id=j1 part=2 attempt=3")
    assert datetime.strptime(first[:23], "%Y-%m-%d %H:%M:%S,%f")  # local time first
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-1] == "ValueError: bad value"
    assert second.endswith(" WARNING a job's change job_id=j2")
    assert third.endswith(" INFO no job")


def test_fields_given_by_the_call_win_over_the_context() -> None:
    record = logging.LogRecord("exportd", logging.INFO, "", 0, "m", None, None)
    record.job_id = "given"
    with job_context("context", part=1):
        JobFields().filter(record)
    assert (getattr(record, "job_id", None), getattr(record, "part", None)) == ("given", 1)
    assert not hasattr(record, "attempt")


async def test_the_context_is_each_tasks_and_threads_started_from_it_share_it() -> None:
    async def one(job_id: str) -> tuple[str | None, str | None]:
        with job_context(job_id):
            await asyncio.sleep(0.01)
            in_thread = await asyncio.to_thread(current_job)
            here = current_job()
            return here and here.job_id, in_thread and in_thread.job_id

    assert list(await asyncio.gather(one("a"), one("b"))) == [("a", "a"), ("b", "b")]
    assert current_job() is None


def test_log_level_filters_exportd_and_libraries_stay_at_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log_to_stderr(LogSettings(level="WARNING"))
    log.info("left out")
    log.warning("kept")
    log_to_stderr(LogSettings(level="DEBUG"))  # replaces the first handler
    log.debug("shown")
    logging.getLogger("uvicorn.error").info("a library's info")
    assert [line.split(" ", 2)[2] for line in logged(capsys)] == ["WARNING kept", "DEBUG shown"]


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_the_amqp_clients_lines_are_debug_lines(
    capsys: pytest.CaptureFixture[str], level: str
) -> None:
    log_to_stderr(LogSettings(level=level))  # type: ignore[arg-type]
    try:
        raise ConnectionError("gone")
    except ConnectionError:
        logging.getLogger("aiormq.connection").exception("Unexpected connection close")
    logging.getLogger("aio_pika.robust_connection").warning("Connection attempt failed")
    lines = logged(capsys)
    if level == "INFO":
        assert lines == []
    else:
        assert " DEBUG Unexpected connection close" in lines[0]
        assert "Traceback (most recent call last):" in lines
        assert lines[-1].endswith(" DEBUG Connection attempt failed")


def test_the_formatter_writes_a_type_json_lacks_as_its_text() -> None:
    record = logging.LogRecord("exportd", logging.INFO, "", 0, "m", None, None)
    record.path = Path("/x")
    assert json.loads(JsonFormatter().format(record))["path"] == "/x"
