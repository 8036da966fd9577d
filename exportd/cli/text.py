"""Sizes, times, errors, jobs and job events as the commands print them: one line each;
and aligned tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from exportd.errors import error_line
from exportd.messages import JobEvent, JobSnapshot

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def local_time(moment: datetime) -> str:
    """``moment`` in this machine's time zone, to the second."""
    return moment.astimezone().strftime(TIME_FORMAT)


def aligned(rows: Sequence[Sequence[str]]) -> str:
    """``rows`` (the header first) as a table: columns left-aligned, two spaces apart."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def human_size(size: int) -> str:
    """``size`` bytes as people read it: ``512 bytes``, ``1.5 KiB``, ``3.2 MiB``."""
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def job_line(job: JobSnapshot) -> str:
    """``job ID STATUS: SOURCE to FORMAT, org ORG, attempt N; OUTCOME``, the org and
    attempt only if there are any, the outcome only once there is one."""
    request = job.request
    line = f"job {job.id} {job.status}: {request.source} to {request.format}"
    if request.org_id is not None:
        line += f", org {request.org_id}"
    if job.attempt > 1:
        line += f", attempt {job.attempt}"
    files = [part.file for part in job.parts if part.file is not None]
    if job.status == "done" and files:
        count = f" in {len(files)} files" if len(files) > 1 else ""
        rows, size = sum(f.rows for f in files), sum(f.size for f in files)
        line += f"; {rows:,} rows, {human_size(size)}{count}"
    elif job.error is not None:
        line += f"; {job.error.code}: {error_line(job.error)}"
    return line


def event_line(event: JobEvent) -> str:
    """What a job event says: the job's line, or why a request was rejected."""
    if event.job is not None:
        return job_line(event.job)
    reason = f": {error_line(event.error)}" if event.error is not None else ""
    return f"request rejected{reason}"
