"""A worker's metrics: its tasks in progress, and what its runs wrote
(``docs/operations.md``, "Metrics").  Counted once per run of a task, never per row or
batch: the export's thread is not involved."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from exportd.messages import ExportTask, FileInfo
from exportd.metrics.process import DURATION_BUCKETS, ROWS_BUCKETS, ProcessMetrics


class WorkerMetrics:
    """The workers' families, in a process's registry."""

    def __init__(self, process: ProcessMetrics) -> None:
        registry = process.registry
        self.process = process
        self.tasks_in_progress = Gauge(
            "exportd_tasks_in_progress",
            "Tasks (parts of jobs) a worker is running now, by worker.",
            ["worker"],
            registry=registry,
        )
        self.export_duration = Histogram(
            "exportd_export_duration_seconds",
            "Seconds a worker's run of a task took, to its outcome, by source, format and "
            "outcome (done, failed, canceled).",
            ["source", "format", "status"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.export_rows = Histogram(
            "exportd_export_rows",
            "Rows of the files of the runs that are done, by source and format.",
            ["source", "format"],
            buckets=ROWS_BUCKETS,
            registry=registry,
        )
        self.rows_written = Counter(
            "exportd_rows_written",
            "Rows the workers' done runs wrote to files, by source and format.",
            ["source", "format"],
            registry=registry,
        )
        self.bytes_written = Counter(
            "exportd_bytes_written",
            "Bytes of the files the workers' done runs stored, by source and format.",
            ["source", "format"],
            registry=registry,
        )

    def ran(self, task: ExportTask, status: str, seconds: float, file: FileInfo | None) -> None:
        """Count a run of ``task`` that ended with ``status`` after ``seconds``, and the
        ``file`` it stored if it is done."""
        source, format_ = task.request.source, task.request.format
        self.export_duration.labels(source, format_, status).observe(seconds)
        if file is not None:
            self.export_rows.labels(source, format_).observe(file.rows)
            self.rows_written.labels(source, format_).inc(file.rows)
            self.bytes_written.labels(source, format_).inc(file.size)
