"""How jobs and their parts map to the job store's rows, and back.

Times are kept as ISO 8601 text in UTC with microseconds, so that they sort as
text; structures (errors, files, the request) as JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from exportd.engine.lifecycle import JobState, total_progress
from exportd.errors import ErrorBody
from exportd.messages import FileInfo, JobSnapshot, PartSnapshot, Progress, RequestFields

T = TypeVar("T")


def job_columns(job: JobSnapshot) -> dict[str, Any]:
    """The columns of a job's row that change over its life."""
    return {
        "id": job.id,
        "status": job.status,
        "attempt": job.attempt,
        "error": _json(job.error),
        "updated_at": to_text(job.updated_at),
        "completed_at": _optional_text(job.completed_at),
        "expires_at": _optional_text(job.expires_at),
    }


def part_columns(job_id: str, part: PartSnapshot, seq: int, lapses: int) -> dict[str, Any]:
    """The columns of a part's row that change over its life."""
    return {
        "job_id": job_id,
        "part": part.part,
        "status": part.status,
        "last_seq": seq,
        "lapses": lapses,
        "progress_rows": part.progress.rows,
        "progress_bytes": part.progress.bytes,
        "progress_total": part.progress.total,
        "file": _json(part.file),
        "error": _json(part.error),
    }


def job_state(job: dict[str, Any], parts: Sequence[dict[str, Any]]) -> JobState:
    """A job and its parts, from their rows."""
    snapshots = [
        PartSnapshot(
            part=row["part"],
            status=row["status"],
            progress=Progress(row["progress_rows"], row["progress_bytes"], row["progress_total"]),
            file=_from_json(row["file"], FileInfo),
            error=_from_json(row["error"], ErrorBody),
        )
        for row in parts
    ]
    snapshot = JobSnapshot(
        id=job["id"],
        status=job["status"],
        request=msgspec.json.decode(job["request"], type=RequestFields),
        attempt=job["attempt"],
        part_count=job["part_count"],
        parts=snapshots,
        progress=total_progress(snapshots),
        error=_from_json(job["error"], ErrorBody),
        created_at=datetime.fromisoformat(job["created_at"]),
        updated_at=datetime.fromisoformat(job["updated_at"]),
        completed_at=_optional_time(job["completed_at"]),
        expires_at=_optional_time(job["expires_at"]),
    )
    return JobState(
        snapshot, tuple(row["last_seq"] for row in parts), tuple(row["lapses"] for row in parts)
    )


def to_text(moment: datetime) -> str:
    """A time as the store keeps it: ISO 8601 in UTC with microseconds, so that it sorts."""
    if moment.tzinfo is None:
        raise ValueError(f"the job store keeps timezone-aware times only, not {moment}")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _optional_text(moment: datetime | None) -> str | None:
    return None if moment is None else to_text(moment)


def _optional_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _json(value: msgspec.Struct | None) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


def _from_json(text: str | None, type_: type[T]) -> T | None:
    return None if text is None else msgspec.json.decode(text, type=type_)
