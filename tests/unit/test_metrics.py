"""The metrics of a process (:mod:`exportd.metrics.process`) and the worker's small
listener (:mod:`exportd.metrics.listener`), over real sockets; the whole processes'
metrics are tested in ``tests/integration/test_metrics.py``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest

from exportd.config import Settings
from exportd.deliveries.metrics import DeliveryMetrics
from exportd.engine import lifecycle
from exportd.engine.metrics import EngineMetrics
from exportd.errors import ConfigError
from exportd.messages import Interval, RequestFields, StatusUpdate
from exportd.metrics.listener import HEAD_TIMEOUT, listen_address, serving_metrics
from exportd.metrics.process import CONTENT_TYPE, ProcessMetrics
from exportd.workers.metrics import WorkerMetrics
from tests.metrics import Scrape


def test_each_process_metrics_has_a_registry_of_its_own() -> None:
    first, second = ProcessMetrics(), ProcessMetrics()
    first.dead_lettered.labels("q").inc()
    assert first.part(EngineMetrics) is first.part(EngineMetrics)  # made once per registry
    assert first.part(EngineMetrics) is not second.part(EngineMetrics)
    first.part(WorkerMetrics)  # beside the engine's families, as in exportd serve

    one, two = asyncio.run(first.exposition()), asyncio.run(second.exposition())
    assert Scrape.parse(one.decode()).value("exportd_messages_dead_lettered_total", queue="q") == 1
    assert (
        Scrape.parse(two.decode()).value("exportd_messages_dead_lettered_total", queue="q") is None
    )
    assert b"# TYPE exportd_tasks_in_progress gauge" in one
    assert b"exportd_tasks_in_progress" not in two


def test_a_refresh_that_fails_is_logged_and_the_rest_is_exposed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    process = ProcessMetrics()
    engine = process.part(EngineMetrics)

    async def failing() -> None:
        raise OSError("the job store is locked")

    async def working() -> None:
        engine.outbox_messages.set(7)

    process.on_scrape(failing)
    stop = process.on_scrape(working)
    with caplog.at_level(logging.WARNING):
        scraped = Scrape.parse(asyncio.run(process.exposition()).decode())
    assert scraped.value("exportd_outbox_messages") == 7
    assert "metrics not refreshed: the job store is locked" in caplog.text
    stop()
    engine.outbox_messages.set(1)
    assert (
        Scrape.parse(asyncio.run(process.exposition()).decode()).value("exportd_outbox_messages")
        == 1
    )


def test_pending_deliveries_of_a_method_with_none_left_are_zero() -> None:
    process = ProcessMetrics()
    deliveries = process.part(DeliveryMetrics)
    deliveries.pending_now({"email": 2, "webhook": 1})
    deliveries.pending_now({"webhook": 3})
    scraped = Scrape.parse(asyncio.run(process.exposition()).decode())
    assert scraped.value("exportd_deliveries_pending", method="email") == 0
    assert scraped.value("exportd_deliveries_pending", method="webhook") == 3


@pytest.mark.parametrize("value", ["9464", ":9464", "host:", "host:port", "host:70000"])
def test_a_bad_listen_address_is_a_config_error_naming_the_setting(value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        listen_address(value, "worker.metrics_listen")
    assert [field.name for field in raised.value.fields] == ["worker.metrics_listen"]


def test_the_metrics_listen_setting_is_host_port_or_empty() -> None:
    settings = msgspec.convert({"worker": {"metrics_listen": "[::1]:9464"}}, Settings)
    assert listen_address(settings.worker.metrics_listen, "x") == ("::1", 9464)
    assert Settings().worker.metrics_listen == ""  # off by default
    with pytest.raises(msgspec.ValidationError, match=r"worker\.metrics_listen"):
        msgspec.convert({"worker": {"metrics_listen": "9464"}}, Settings)


class Liveness:
    """What the listener's ``/healthz`` asks: a reason not to be live, or None."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self) -> str | None:
        return self.reason


@asynccontextmanager
async def listener(process: ProcessMetrics, health: Liveness) -> AsyncIterator[httpx.AsyncClient]:
    """The listener on a free port, and a client of it."""
    async with (
        serving_metrics("127.0.0.1:0", "worker.metrics_listen", process, health) as url,
        httpx.AsyncClient(base_url=str(url), timeout=5) as client,
    ):
        yield client


async def test_the_listener_serves_metrics_and_liveness() -> None:
    process, health = ProcessMetrics(), Liveness()
    process.part(WorkerMetrics).tasks_in_progress.labels("w").set(2)
    async with listener(process, health) as client:
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"] == CONTENT_TYPE
        assert Scrape.parse(metrics.text).value("exportd_tasks_in_progress", worker="w") == 2
        live = await client.get("/healthz?verbose")
        assert (live.status_code, live.text) == (200, "ok\n")
        health.reason = "shutting down"
        dead = await client.get("/healthz")
        assert (dead.status_code, dead.text) == (503, "shutting down\n")
        assert (await client.get("/")).status_code == 404
        assert (await client.post("/metrics")).status_code == 405


async def test_an_answer_that_fails_is_a_500_logged_and_the_listener_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> str | None:
        raise RuntimeError("a bug in health")

    async with (
        serving_metrics("127.0.0.1:0", "x", ProcessMetrics(), broken) as url,
        httpx.AsyncClient(base_url=str(url), timeout=5) as client,
    ):
        with caplog.at_level(logging.ERROR):
            assert (await client.get("/healthz")).status_code == 500
        assert "the metrics listener failed to answer" in caplog.text
        assert "a bug in health" in caplog.text
        assert (await client.get("/metrics")).status_code == 200


async def test_the_listener_cuts_a_head_that_does_not_come_and_goes_on() -> None:
    async with listener(ProcessMetrics(), Liveness()) as client:
        host, port = client.base_url.host, client.base_url.port
        assert port is not None
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # and never the end of the head
        async with asyncio.timeout(HEAD_TIMEOUT + 5):
            assert await reader.read() == b""  # closed unanswered
        writer.close()
        assert (await client.get("/healthz")).status_code == 200


async def test_a_listener_on_an_address_in_use_is_a_config_error() -> None:
    async with listener(ProcessMetrics(), Liveness()) as client:
        taken = f"127.0.0.1:{client.base_url.port}"
        with pytest.raises(ConfigError, match=r"worker\.metrics_listen.*cannot listen on"):
            async with serving_metrics(
                taken, "worker.metrics_listen", ProcessMetrics(), Liveness()
            ):
                pass


async def test_no_listener_without_an_address() -> None:
    async with serving_metrics("", "worker.metrics_listen", ProcessMetrics(), Liveness()) as url:
        assert url is None


def test_the_engine_counts_attempts_that_end_not_other_changes() -> None:
    process = ProcessMetrics()
    engine = process.part(EngineMetrics)
    start = datetime(2024, 1, 1, tzinfo=UTC)

    def at(seconds: float) -> datetime:
        return start + timedelta(seconds=seconds)

    day = Interval("2024-01-01", "2024-01-02")
    request = RequestFields(source="count", format="lines", interval=day)
    created = lifecycle.create("j", request, 1, now=at(0))
    engine.created(created.job)
    update = StatusUpdate(job_id="j", part=0, attempt=1, seq=1, status="done")
    done = lifecycle.apply_update(created.state, update, now=at(3), lifetime=timedelta(hours=1))
    assert isinstance(done, lifecycle.Change)
    expired = lifecycle.expire(done.state, now=at(7200))
    restarted = lifecycle.restart(expired.state, now=at(9000))
    changes = [
        done,
        expired,  # after its attempt ended: not counted again
        lifecycle.delete(done.state, now=at(7200)),  # nor is a delete of a finished job
        restarted,  # a new attempt
        lifecycle.cancel(restarted.state, now=at(9001)),
    ]
    for change in changes:
        engine.changed(change)
    scraped = Scrape.parse(asyncio.run(process.exposition()).decode())
    labels = {"source": "count", "format": "lines"}
    assert scraped.value("exportd_jobs_created_total", **labels) == 2
    assert scraped.value("exportd_jobs_finished_total", **labels, status="done") == 1
    assert scraped.value("exportd_jobs_finished_total", **labels, status="canceled") == 1
    assert scraped.value("exportd_jobs_finished_total", **labels, status="deleted") is None
    assert scraped.value("exportd_job_duration_seconds_sum", **labels, status="done") == 3
    assert scraped.value("exportd_job_rows_count", **labels) == 1
