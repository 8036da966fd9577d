"""The engine's registry of workers, as pure code: every call is given the time."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from exportd.engine import lifecycle
from exportd.engine.worker_registry import Capabilities, WorkerRegistry
from exportd.messages import PluginInfo, RunningTask, WorkerHeartbeat
from tests.unit.test_lifecycle import LATER, applied, new_job, update

START = datetime(2024, 5, 1, 12, tzinfo=UTC)
TIMEOUT = 90.0
SETTLE = 30.0


def at(seconds: float) -> datetime:
    """``seconds`` after the engine started."""
    return START + timedelta(seconds=seconds)


def plugins(*names: str) -> list[PluginInfo]:
    """Built-in plugins of ``names``."""
    return [
        PluginInfo(name=name, plugin=f"exportd.plugins.{name}", package="exportd 0.1.0")
        for name in names
    ]


def beat(
    name: str,
    *,
    sources: tuple[str, ...] = ("rooms",),
    formats: tuple[str, ...] = ("csv", "xlsx"),
    leaving: bool = False,
    tasks: tuple[RunningTask, ...] = (),
) -> WorkerHeartbeat:
    """A heartbeat of the worker ``name``."""
    return WorkerHeartbeat(
        name=name,
        host="host-1",
        pid=4242,
        version="0.1.0",
        concurrency=2,
        heartbeat_interval=SETTLE,
        sources=plugins(*sources),
        formats=plugins(*formats),
        storages=plugins("local"),
        tasks=list(tasks),
        started_at=START,
        sent_at=START,
        leaving=leaving,
    )


@pytest.fixture
def registry() -> WorkerRegistry:
    """A registry of an engine started at :data:`START`."""
    return WorkerRegistry(timeout=TIMEOUT, settle=SETTLE, started=START)


def test_a_worker_is_live_until_its_timeout_then_lost_then_forgotten(
    registry: WorkerRegistry,
) -> None:
    running = RunningTask(job_id="j1", part=0, attempt=1)
    registry.heard(beat("w1", tasks=(running,)), at(1))
    [live] = registry.snapshot(at(1 + TIMEOUT))
    assert (live.name, live.state, live.last_seen, live.host, live.pid) == (
        *("w1", "live", at(1)),
        *("host-1", 4242),
    )
    assert (live.version, live.concurrency, live.tasks) == ("0.1.0", 2, [running])
    assert [p.name for p in live.formats] == ["csv", "xlsx"]
    assert [p.package for p in live.storages] == ["exportd 0.1.0"]
    assert registry.live_count(at(1 + TIMEOUT)) == 1
    [lost] = registry.snapshot(at(1.5 + TIMEOUT))
    assert (lost.state, lost.last_seen) == ("lost", at(1))
    assert registry.live_count(at(1.5 + TIMEOUT)) == 0
    assert len(registry.snapshot(at(1 + 10 * TIMEOUT))) == 1
    assert registry.snapshot(at(2 + 10 * TIMEOUT)) == []


def test_a_goodbye_forgets_the_worker_at_once(registry: WorkerRegistry) -> None:
    registry.heard(beat("w1"), at(1))
    registry.heard(beat("w2"), at(1))
    registry.heard(beat("w1", leaving=True), at(2))
    assert [worker.name for worker in registry.snapshot(at(2))] == ["w2"]
    registry.heard(beat("w3", leaving=True), at(3))  # one never heard of: nothing to forget
    assert [worker.name for worker in registry.snapshot(at(3))] == ["w2"]


def test_workers_are_listed_by_name_and_a_lost_one_that_beats_again_is_live(
    registry: WorkerRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "exportd.engine.worker_registry")
    registry.heard(beat("w2"), at(0))
    registry.heard(beat("w1"), at(0))
    registry.log_lost(at(TIMEOUT))
    registry.log_lost(at(TIMEOUT + 1))
    registry.log_lost(at(TIMEOUT + 2))  # each loss is logged once
    registry.heard(beat("w2"), at(TIMEOUT + 3))
    assert [(w.name, w.state) for w in registry.snapshot(at(TIMEOUT + 3))] == [
        ("w1", "lost"),
        ("w2", "live"),
    ]
    said = [(record.levelname, record.getMessage()) for record in caplog.records]
    joined = "exportd 0.1.0 on host-1 (pid 4242), 2 at once, 1 source(s), 2 format(s)"
    assert said == [
        ("INFO", f"worker w2 joined: {joined}"),
        ("INFO", f"worker w1 joined: {joined}"),
        ("WARNING", "worker w2 lost: not heard from for 91 s (engine.worker_timeout)"),
        ("WARNING", "worker w1 lost: not heard from for 91 s (engine.worker_timeout)"),
        ("INFO", "worker w2 is back after 93 s of silence"),
    ]


def test_nothing_is_missing_before_the_engine_has_heard_from_every_worker(
    registry: WorkerRegistry,
) -> None:
    assert registry.capabilities(at(SETTLE - 1)).missing("rooms", "csv") is None
    assert registry.capabilities(at(SETTLE)).missing("rooms", "csv") == (
        "no worker is live (none heard from within engine.worker_timeout)"
    )


def test_capabilities_name_what_no_live_worker_has(registry: WorkerRegistry) -> None:
    registry.heard(beat("w1", sources=("rooms",), formats=("csv",)), at(0))
    registry.heard(beat("w2", sources=("qna",), formats=("xlsx",)), at(0))
    registry.heard(beat("old", sources=("workflows",), formats=("html",)), at(-TIMEOUT))
    capabilities = registry.capabilities(at(SETTLE))
    assert capabilities.missing("rooms", "csv") is None
    assert capabilities.missing("qna", "xlsx") is None
    assert capabilities.missing("workflows", "csv") == "no live worker has source workflows"
    assert capabilities.missing("rooms", "html") == "no live worker has format html"
    assert capabilities.missing("workflows", "html") == (
        "no live worker has source workflows / format html"
    )
    assert capabilities.missing("rooms", "xlsx") == (
        "no live worker has both source rooms and format xlsx"
    )


def test_a_part_failed_at_its_lapse_limit_says_what_no_live_worker_has() -> None:
    state = applied(new_job(), update("processing", 5, detached=True))
    request = state.job.request
    capabilities = Capabilities(((frozenset({request.source}), frozenset()),))
    failed = lifecycle.lapse(state, 0, limit=1, now=LATER, no_worker=capabilities.missing)
    assert failed.job.error is not None
    assert failed.job.error.message.endswith(
        f"engine.lease); no live worker has format {request.format}"
    )
    healthy = Capabilities(((frozenset({request.source}), frozenset({request.format})),))
    alone = lifecycle.lapse(state, 0, limit=1, now=LATER, no_worker=healthy.missing)
    assert alone.job.error is not None and alone.job.error.message.endswith("engine.lease)")
