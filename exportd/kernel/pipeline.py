"""Run one export plan into one file: read, write (hashing on the way), rename into place.

This is the whole job of a worker once it holds a task, of ``exportd export``
on the command line, and of the HTTP API's synchronous exports.  The file
appears at its final path only when it is complete; a failed or canceled
export leaves nothing behind.

The format writes into a buffered stream that exportd owns: each block the buffer
passes on to the disk is hashed and counted on its way (:class:`_Measured`), so
the finished file is never read back.  The stream does not seek (a format streams:
``zipfile`` then writes its sizes after each entry), and ``tell()`` counts the
bytes written.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

from exportd.errors import Cancelled, ExportFailed
from exportd.kernel import batches
from exportd.kernel import slices as sliced
from exportd.kernel.guard import call_plugin
from exportd.kernel.pieces import Join, Pieces, ThreadedJoin, encode_slicing, piece_count
from exportd.kernel.plan import ExportPlan
from exportd.kernel.slices import read_slices, slice_count
from exportd.messages import FileInfo, Progress
from exportd.plugins.api import WHOLE, Batch, Piece, ReadContext, RowWriter

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

BUFFER_SIZE = 1 << 18
"""Bytes the format's stream gathers before they go to the disk (and the hash)."""
T = TypeVar("T")


@dataclass(frozen=True)
class Written:
    """What an export measured of the file it wrote."""

    rows: int
    size: int
    sha256: str
    media_type: str

    def file(self, key: str, name: str) -> FileInfo:
        """The file's description, kept under ``key`` and downloaded as ``name``."""
        return FileInfo(
            key=key,
            name=name,
            media_type=self.media_type,
            size=self.size,
            sha256=self.sha256,
            rows=self.rows,
        )


class _Measured(io.RawIOBase):
    """A file being written, below the format's buffer: hashes and counts every byte that
    reaches it.  It does not seek; ``tell()`` is the bytes written so far."""

    def __init__(self, raw: io.FileIO) -> None:
        super().__init__()
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: WriteableBuffer, /) -> int:
        written = self._raw.write(data) or 0  # the buffer above writes the rest again
        with memoryview(data) as view:
            self.digest.update(view[:written])
        self.size += written
        return written

    def tell(self) -> int:
        return self.size

    def sync(self) -> None:
        """Have what was written reach the disk.  (There is no ``fileno``: a write past
        this stream would miss the hash.)"""
        os.fsync(self._raw.fileno())

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def run_export(
    plan: ExportPlan,
    target: Path,
    *,
    batch_size: int = 5000,
    on_progress: Callable[[Progress], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    part: int = 0,
    part_count: int = 1,
    slices: int = 1,
    piece: Piece = WHOLE,
    slicing: Any = None,
    join: Join | None = None,
) -> Written:
    """Export ``plan`` into ``target``; what it measured of the finished file.

    A large export of a source that can slice is split: given a ``join``, into pieces
    that the join has written elsewhere and appends; else (or if it is too small for the
    join's pieces), in a format that joins, into
    up to ``slices`` pieces written at once by threads (:class:`ThreadedJoin`); else its
    reading alone, into up to ``slices`` slices read at once (see
    :mod:`exportd.kernel.pieces` and :mod:`exportd.kernel.slices`).  ``piece`` writes one
    piece alone, with the ``slicing`` of its export.

    ``on_progress`` is called after every batch; ``cancelled`` is checked before
    every batch and stops the export with :class:`Cancelled`.  A source or
    format that raises fails the export with :class:`ExportFailed` naming it; so
    does a source's row without one value per column, and a format that closes the
    file it writes into.
    """

    def context(**slice_of: Any) -> ReadContext:
        return plan.context(
            batch_size=batch_size,
            part=part,
            part_count=part_count,
            cancelled=slice_of.pop("cancelled", cancelled),
            **slice_of,
        )

    ctx = context(slice=piece.index, slice_count=piece.count, slicing=slicing)
    total = None if piece != WHOLE else _estimate(plan, ctx)
    count = 1
    if piece == WHOLE:
        if join is None or piece_count(plan, total, join) <= 1:
            # Too small for the given join's pieces (other workers'), an export may
            # still be worth pieces on this host's cores.
            join = ThreadedJoin(slices, sliced.SLICE_ROWS, target.parent)
        count = piece_count(plan, total, join)
    _check_target(plan, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    unfinished = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    split: Join | None = None
    try:
        if join is not None and count > 1:
            slicing = call_plugin(
                plan.source_label,
                lambda: plan.source.slicing(plan.params, context(slice_count=count)),
            )
            piece, split = Piece(0, count), join
            failed = split.failure
            ctx = context(
                slice=0,
                slice_count=count,
                slicing=slicing,
                cancelled=lambda: cancelled() or failed() is not None,
            )

            def write_piece(
                index: int,
                file: BinaryIO,
                stop: Callable[[], bool],
                on_rows: Callable[[int], None] | None,
            ) -> int:
                piece_ctx = context(
                    slice=index,
                    slice_count=count,
                    slicing=slicing,
                    cancelled=lambda: cancelled() or stop(),
                )
                report = None if on_rows is None else (lambda done: on_rows(done.rows))
                return _write_piece(
                    plan,
                    piece_ctx,
                    file,
                    Piece(index, count),
                    total=None,
                    on_progress=report,
                    slices=1,
                    unfinished=unfinished,
                )

            split.start(Pieces(count, partial(encode_slicing, plan, slicing), write_piece))
        with _measured(unfinished) as (file, measured):
            read_in = slice_count(plan, total, slices) if piece == WHOLE else 1
            rows = _write_piece(
                plan,
                ctx,
                file,
                piece,
                total=total,
                on_progress=on_progress,
                slices=read_in,
                unfinished=unfinished,
            )
            if split is not None:

                def progressed(written: int) -> None:
                    if on_progress is not None:
                        on_progress(Progress(rows=written, bytes=file.tell(), total=total))

                rows += split.finish(file, rows, progressed)
            file.flush()
            measured.sync()
        os.replace(unfinished, target)
    except BaseException as exc:
        if split is not None:
            failure = split.failure()
            split.abandon()
            if failure is not None and isinstance(exc, Cancelled):
                raise failure from None
        if isinstance(exc, OSError):
            raise _about(exc, target) from exc
        raise
    finally:
        unfinished.unlink(missing_ok=True)
    return Written(rows, measured.size, measured.digest.hexdigest(), plan.format.media_type)


def _estimate(plan: ExportPlan, ctx: ReadContext) -> int | None:
    """The rows the source expects to read for ``plan``, within its limit, if it says."""
    total = call_plugin(plan.source_label, lambda: plan.source.estimate(plan.params, ctx))
    if plan.request.limit is not None and total is not None:
        total = min(total, plan.request.limit)
    return total


def _write_piece(
    plan: ExportPlan,
    ctx: ReadContext,
    file: BinaryIO,
    piece: Piece,
    *,
    total: int | None,
    on_progress: Callable[[Progress], None] | None,
    slices: int,
    unfinished: Path,
) -> int:
    """Write ``piece`` of ``plan``'s file into ``file``, the ``unfinished`` file (the format
    opened for it, the rows of ``ctx``'s read, in up to ``slices`` slices spooled beside
    it, the format closed); its row count."""
    writer = _format_call(
        plan, file, lambda: plan.format.open(file, plan.columns, plan.options, plan.info(piece))
    )
    try:
        read = _reader(plan, ctx, slices, unfinished.parent)
        rows = _copy_rows(plan, ctx, read, writer, file, total, on_progress)
        _format_call(plan, file, writer.close)
    except BaseException:
        with suppress(Exception):
            writer.abort()
        raise
    return rows


@contextmanager
def _measured(path: Path) -> Iterator[tuple[BinaryIO, _Measured]]:
    """A new file at ``path``, as the stream a format writes into, and what measures it."""
    measured = _Measured(io.FileIO(path, "wb"))
    with io.BufferedWriter(measured, BUFFER_SIZE) as file:
        yield cast(BinaryIO, file), measured


def _reader(plan: ExportPlan, ctx: ReadContext, count: int, folder: Path) -> Iterator[Any]:
    """The source's batches: one read, or ``count`` slices read at once (spooled in
    ``folder``), which agree on what the source's ``slicing`` said once."""
    if count == 1:
        read = iter(call_plugin(plan.source_label, lambda: plan.source.read(plan.params, ctx)))
        return _guarded(plan.source_label, read)

    def context(index: int, slicing: Any = None) -> ReadContext:
        return plan.context(
            batch_size=ctx.batch_size,
            part=ctx.part,
            part_count=ctx.part_count,
            cancelled=ctx.cancelled,
            slice=index,
            slice_count=count,
            slicing=slicing,
        )

    slicing = call_plugin(plan.source_label, lambda: plan.source.slicing(plan.params, context(0)))
    return read_slices(plan, lambda index: context(index, slicing), count, folder)


def _guarded(label: str, batches: Iterator[Any]) -> Iterator[Any]:
    """``batches``, each step of the source labelled ``label`` guarded by
    :func:`call_plugin` (the slices' threads guard their own)."""
    with _closing(batches):
        while (batch := call_plugin(label, lambda: next(batches, None))) is not None:
            yield batch


def _copy_rows(  # noqa: PLR0917 (one call site)
    plan: ExportPlan,
    ctx: ReadContext,
    read: Iterator[Any],
    writer: RowWriter,
    file: BinaryIO,
    total: int | None,
    on_progress: Callable[[Progress], None] | None,
) -> int:
    """Move batches from the source to the writer, up to the limit; return the row count."""
    rows = 0
    remaining = plan.request.limit
    with _closing(read):
        while remaining is None or remaining > 0:
            if ctx.cancelled():
                raise Cancelled("the export was canceled")
            batch = next(read, None)
            if batch is None:
                break
            batch = _checked(plan, batch, rows)
            if remaining is not None:
                batch = batch[:remaining]
                remaining -= len(batch)
            batch = batches.in_form(batch, plan.format.form, plan.columns)
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


def _checked(plan: ExportPlan, batch: Any, before: int) -> Any:
    """``batch``, as the source yielded it after ``before`` rows, checked against the
    plan's columns (an Arrow batch cast to their types): the source's failure if not."""
    if plan.source.form == "arrow":
        return batches.conform(batch, plan.columns, plan.source_label)
    _check_rows(plan, batch, before)
    return batch


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
    if plan.data.path is not None and target.resolve() == plan.data.path.resolve():
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
