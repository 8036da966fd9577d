"""Run one export plan into one file: read, write, hash, rename into place.

This is the whole job of a worker once it holds a task, of ``exportd export``
on the command line, and of the HTTP API's synchronous exports.  The file
appears at its final path only when it is complete; a failed or canceled
export leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO, TypeVar

from exportd.errors import Cancelled, ExportFailed
from exportd.kernel.guard import call_plugin
from exportd.kernel.plan import ExportPlan
from exportd.messages import FileInfo
from exportd.plugins.api import Batch, ReadContext, RowWriter

HASH_CHUNK = 1 << 20
T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """How far an export has got: rows and bytes written, estimated total rows."""

    rows: int
    bytes: int
    total: int | None


def run_export(
    plan: ExportPlan,
    target: Path,
    *,
    batch_size: int = 5000,
    on_progress: Callable[[Progress], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    part: int = 0,
    part_count: int = 1,
) -> FileInfo:
    """Export ``plan`` into ``target`` and describe the finished file.

    ``on_progress`` is called after every batch; ``cancelled`` is checked before
    every batch and stops the export with :class:`Cancelled`.  A source or
    format that raises fails the export with :class:`ExportFailed` naming it; so
    does a source's row without one value per column, and a format that closes the
    file it writes into.
    """
    ctx = plan.context(batch_size=batch_size, part=part, part_count=part_count, cancelled=cancelled)
    total = call_plugin(plan.source_label, lambda: plan.source.estimate(plan.params, ctx))
    if plan.request.limit is not None and total is not None:
        total = min(total, plan.request.limit)
    _check_target(plan, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    unfinished = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        with unfinished.open("wb") as file:
            writer = _format_call(
                plan, file, lambda: plan.format.open(file, plan.columns, plan.options, plan.info())
            )
            try:
                rows = _copy_rows(plan, ctx, writer, file, total=total, on_progress=on_progress)
                _format_call(plan, file, writer.close)
            except BaseException:
                with suppress(Exception):
                    writer.abort()
                raise
            file.flush()
            os.fsync(file.fileno())
        digest, size = _sha256(unfinished)
        os.replace(unfinished, target)
    except OSError as exc:
        raise _about(exc, target) from exc
    finally:
        unfinished.unlink(missing_ok=True)
    return FileInfo(
        key=target.name,
        name=target.name,
        media_type=plan.format.media_type,
        size=size,
        sha256=digest,
        rows=rows,
    )


def _copy_rows(
    plan: ExportPlan,
    ctx: ReadContext,
    writer: RowWriter,
    file: BinaryIO,
    *,
    total: int | None,
    on_progress: Callable[[Progress], None] | None,
) -> int:
    """Move batches from the source to the writer, up to the limit; return the row count."""
    rows = 0
    remaining = plan.request.limit
    batches = iter(call_plugin(plan.source_label, lambda: plan.source.read(plan.params, ctx)))
    with _closing(batches):
        while remaining is None or remaining > 0:
            if ctx.cancelled():
                raise Cancelled("the export was canceled")
            batch = call_plugin(plan.source_label, lambda: next(batches, None))
            if batch is None:
                break
            if remaining is not None:
                batch = batch[:remaining]
                remaining -= len(batch)
            _check_rows(plan, batch, rows)
            _format_call(plan, file, partial(writer.write, batch))
            rows += len(batch)
            if on_progress is not None:
                on_progress(Progress(rows=rows, bytes=file.tell(), total=total))
    return rows


def _format_call(plan: ExportPlan, file: BinaryIO, step: Callable[[], T]) -> T:
    """``step()``, a call into the format writing ``file``: closing the file is the
    format's failure (exportd flushes, hashes and renames it afterwards)."""
    result = call_plugin(plan.format_label, step)
    if file.closed:
        raise ExportFailed(
            f"{plan.format_label} failed: it closed the file it writes into, which "
            "exportd owns (RowWriter.close must leave it open)"
        )
    return result


def _check_rows(plan: ExportPlan, batch: Batch, before: int) -> None:
    """Blame the source for a row of ``batch`` (which follows ``before`` rows) that does
    not hold one value per column; a whole batch costs one pass in C."""
    width = len(plan.columns)
    try:
        if set(map(len, batch)) <= {width}:
            return
    except TypeError:  # a row that is no sequence
        pass
    for number, row in enumerate(batch, start=before + 1):
        try:
            size = len(row)
        except TypeError:
            raise ExportFailed(
                f"{plan.source_label} failed: row {number} is {type(row).__name__}, not a "
                f"tuple of its {width} columns"
            ) from None
        if size != width:
            raise ExportFailed(
                f"{plan.source_label} failed: row {number} has {size} values for its "
                f"{width} columns"
            )


def _check_target(plan: ExportPlan, target: Path) -> None:
    """Refuse to replace anything but a regular file, and never the data store."""
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise ExportFailed(f"will not replace {target}: it is not a regular file")
    if target.resolve() == plan.data_path.resolve():
        raise ExportFailed(f"will not replace {target}: it is the data store")


def _about(error: OSError, target: Path) -> OSError:
    """``error`` (from writing the unfinished file, or renaming it) as one about
    ``target``: the unfinished file's name is exportd's business, never the user's."""
    if error.errno is None:
        return OSError(f"cannot write {target}: {error}")
    return OSError(error.errno, error.strerror, str(target))


@contextmanager
def _closing(batches: Iterator[object]) -> Iterator[None]:
    """Close a generator source early, so it releases its cursor and connection."""
    try:
        yield
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest(), path.stat().st_size
