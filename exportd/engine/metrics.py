"""The engine's metrics: jobs created and finished, their durations and rows, the
outbox, the workers' updates the job store dropped, and the workers heard from
(``docs/operations.md``, "Metrics").

Jobs are counted as the engine changes them, once per change (never per row); the
outbox and the dropped updates are read from the job store, and the workers from the
engine's registry, when the metrics are scraped (:meth:`EngineMetrics.store_figures`,
:meth:`EngineMetrics.worker_figures`).
"""

from __future__ import annotations

from collections import Counter as Counter_
from collections.abc import Iterable, Iterator
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from exportd.engine.lifecycle import Change
from exportd.messages import JobSnapshot, WorkerSnapshot
from exportd.metrics.process import DURATION_BUCKETS, ROWS_BUCKETS, ProcessMetrics


class DroppedUpdates(Collector):
    """``exportd_status_updates_dropped_total``: the job store's own counts of dropped
    updates, by reason, kept in its file (so they survive restarts, as a counter may:
    Prometheus takes a lower value for a reset)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        """The counts last read from the store."""
        family = CounterMetricFamily(
            "exportd_status_updates_dropped",
            "Workers' status updates the engine did not apply, by reason (stale_attempt, "
            "duplicate, backwards, job_finished, ...: see docs/operations.md).",
            labels=["reason"],
        )
        for reason, count in sorted(self.counts.items()):
            family.add_metric([reason], count)
        yield family


class EngineMetrics:
    """The engine's families, in a process's registry."""

    def __init__(self, process: ProcessMetrics) -> None:
        registry = process.registry
        self.process = process
        self.jobs_created = Counter(
            "exportd_jobs_created",
            "Jobs created, and restarted (each attempt counts once), by source and format.",
            ["source", "format"],
            registry=registry,
        )
        self.jobs_finished = Counter(
            "exportd_jobs_finished",
            "Attempts of jobs that ended, by source, format and final status (done, "
            "failed, canceled, deleted).",
            ["source", "format", "status"],
            registry=registry,
        )
        self.job_duration = Histogram(
            "exportd_job_duration_seconds",
            "Seconds from a job's creation to the end of its attempt, by source, format and "
            "final status.",
            ["source", "format", "status"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.job_rows = Histogram(
            "exportd_job_rows",
            "Rows of the jobs that are done, by source and format.",
            ["source", "format"],
            buckets=ROWS_BUCKETS,
            registry=registry,
        )
        self.outbox_messages = Gauge(
            "exportd_outbox_messages",
            "Messages the engine recorded and has not yet had confirmed by the broker "
            "(tasks, events, cancel signals).",
            registry=registry,
        )
        self.outbox_oldest_age = Gauge(
            "exportd_outbox_oldest_age_seconds",
            "Age of the oldest message waiting in the outbox; 0 when it is empty.",
            registry=registry,
        )
        self.dropped_updates = DroppedUpdates()
        registry.register(self.dropped_updates)
        self.workers = Gauge(
            "exportd_workers",
            "Workers heard from, by state: live (a heartbeat within engine.worker_timeout) "
            "or lost (silent longer, and not yet forgotten).",
            ["state"],
            registry=registry,
        )
        self.jobs_without_worker = Counter(
            "exportd_jobs_without_worker",
            "Jobs created or restarted that no live worker could run (it lacks the "
            "source or the format, or none is live), by source and format.",
            ["source", "format"],
            registry=registry,
        )

    def created(self, job: JobSnapshot) -> None:
        """Count a new job (or a new attempt of one)."""
        self.jobs_created.labels(job.request.source, job.request.format).inc()

    def changed(self, change: Change) -> None:
        """Count what ``change`` did: a restart begins an attempt, an attempt that ends
        is finished (its duration and, done, its rows observed)."""
        job = change.job
        if change.event == "job.created":
            self.created(job)
        if not change.ended:
            return
        source, format_ = job.request.source, job.request.format
        self.jobs_finished.labels(source, format_, job.status).inc()
        if job.completed_at is not None:
            seconds = (job.completed_at - job.created_at).total_seconds()
            self.job_duration.labels(source, format_, job.status).observe(seconds)
        if job.status == "done":
            self.job_rows.labels(source, format_).observe(job.progress.rows)

    def worker_figures(self, workers: Iterable[WorkerSnapshot]) -> None:
        """Take the registry's workers: how many are live, how many lost."""
        states = Counter_(worker.state for worker in workers)
        for state in ("live", "lost"):
            self.workers.labels(state).set(states[state])

    def store_figures(
        self, outbox: int, oldest: datetime | None, dropped: dict[str, int], now: datetime
    ) -> None:
        """Take the figures read from the job store: the outbox's size and its oldest
        message's time, and the counts of dropped updates."""
        self.outbox_messages.set(outbox)
        self.outbox_oldest_age.set(0.0 if oldest is None else (now - oldest).total_seconds())
        self.dropped_updates.counts = dropped
