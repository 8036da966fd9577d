"""A sliceable source's rows, read on several cores at once, in the order of one read.

A source that declares :attr:`~exportd.Source.sliceable` reads slice ``i`` of ``n``
when its context says so; the slices' rows, one slice after the other, are the
whole read's.  Each slice is read by a thread of its own (Arrow work and the data
store's drivers let go of the GIL).  Slice 0 streams to the format through a small
queue as it is read; each later slice is spooled meanwhile into Arrow IPC files of
its own, next to the export's file, and read back once the slices before it are
written.  Memory so holds a few batches a slice, whatever the export's size.

A failure in any slice stops every slice's thread at its next batch at once, and is
passed on when the writing reaches a slice cut short; a cancel or a failure of the
format stops them too.  The spool files are removed in every case.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import pyarrow as pa

from exportd.errors import Cancelled
from exportd.kernel import batches
from exportd.kernel.guard import call_plugin
from exportd.kernel.plan import ExportPlan
from exportd.plugins.api import ReadContext

SLICE_ROWS = 50_000
"""The fewest rows an estimate must promise a slice before exportd reads one more."""
QUEUED_BATCHES = 4
"""Batches of the slice being written that may wait, read, for the format."""
_END = object()


def slice_count(plan: ExportPlan, estimate: int | None, most: int) -> int:
    """How many slices to read ``plan``'s rows in: up to ``most``, one for each
    :data:`SLICE_ROWS` rows of the estimate, for an Arrow source that can slice and an
    export without a limit (which one slice after the other would overshoot)."""
    if not plan.source.sliceable or plan.source.form != "arrow" or plan.request.limit is not None:
        return 1
    return max(1, min(most, (estimate or 0) // SLICE_ROWS))


class _Slice:
    """One slice's reading thread, and what it leaves: batches queued (slice 0) or
    spool files, and the exception that ended it, if any."""

    def __init__(
        self, plan: ExportPlan, ctx: ReadContext, spool: Path | None, stop: threading.Event
    ) -> None:
        self.plan, self.ctx, self.spool, self.stop = plan, ctx, spool, stop
        self.queue: queue.Queue[Any] = queue.Queue(QUEUED_BATCHES)
        self.files: list[Path] = []
        self.error: BaseException | None = None
        self.finished = False
        """Whether the slice was read to its end (not stopped, not failed)."""
        self._writer: pa.RecordBatchStreamWriter | None = None
        self._sink: pa.OSFile | None = None
        self._schema: pa.Schema | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"exportd-slice-{ctx.slice}", daemon=True
        )

    def _run(self) -> None:
        plan, label = self.plan, self.plan.source_label
        try:
            with ExitStack() as stack:
                read = iter(call_plugin(label, lambda: plan.source.read(plan.params, self.ctx)))
                stack.callback(getattr(read, "close", lambda: None))
                while not (self.stop.is_set() or self.ctx.cancelled()):
                    batch = call_plugin(label, lambda: next(read, None))
                    if batch is None:
                        self.finished = True
                        break
                    checked = batches.conform(batch, plan.columns, label)
                    if self.spool is None:
                        self._put(checked)
                    else:
                        self._spooled(checked)
        except BaseException as exc:  # passed on to the thread that writes the file
            self.error = exc
            self.stop.set()  # every other slice's work is in vain now
        finally:
            self._close_spool_file()
            if self.spool is None:
                self._put(_END)

    def _spooled(self, batch: pa.RecordBatch) -> None:
        """Write ``batch`` to the slice's spool: a new file whenever its schema changes (a
        stray-text union comes or goes), since an IPC stream holds one schema."""
        if self._writer is None or self._schema != batch.schema:
            self._close_spool_file()
            assert self.spool is not None
            path = self.spool.with_name(f"{self.spool.name}.{len(self.files)}")
            self.files.append(path)
            self._sink = pa.OSFile(str(path), "wb")
            self._writer = pa.ipc.new_stream(self._sink, batch.schema)
            self._schema = batch.schema
        self._writer.write_batch(batch)

    def _close_spool_file(self) -> None:
        if self._writer is not None and self._sink is not None:
            self._writer.close()
            self._sink.close()
            self._writer = self._sink = None

    def _put(self, item: object) -> None:
        """Queue ``item`` for the writer, unless the export stops first."""
        while not self.stop.is_set():
            with suppress(queue.Full):
                self.queue.put(item, timeout=0.1)
                return

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The slice's batches, in order, once (waiting for the slice to be read); it
        ends early if the slice was stopped (see :attr:`finished`)."""
        if self.spool is None:
            while (item := self._next()) is not _END:
                yield item
        else:
            self.thread.join()
        if self.error is not None:
            raise self.error
        if not self.finished:
            return
        for path in self.files:
            # Read, not mapped: a mapped spool's pages would count in the process's
            # memory as they are touched, the whole slice by its end.
            with pa.OSFile(str(path)) as spooled, pa.ipc.open_stream(spooled) as reader:
                yield from reader
            path.unlink()

    def _next(self) -> Any:
        """The next batch queued, or :data:`_END` once the thread is gone (a stopped slice
        queues no end)."""
        while True:
            with suppress(queue.Empty):
                return self.queue.get(timeout=0.1)
            if not self.thread.is_alive() and self.queue.empty():
                return _END

    def end(self) -> None:
        """Wait for the thread (told to stop at its next batch), remove its spool files."""
        if self.thread.ident is not None:  # started
            self.thread.join()
        for path in self.files:
            with suppress(OSError):
                path.unlink(missing_ok=True)


def read_slices(
    plan: ExportPlan,
    context: Callable[[int], ReadContext],
    count: int,
    folder: Path,
) -> Iterator[pa.RecordBatch]:
    """The batches of ``count`` slices of ``plan``'s rows (``context(i)`` reads slice
    ``i``), read at once, spooled in ``folder``, yielded in order."""
    spool, stop = folder / f".slices.{uuid.uuid4().hex}", threading.Event()
    slices = [
        _Slice(plan, context(i), None if i == 0 else spool.with_name(f"{spool.name}.{i}"), stop)
        for i in range(count)
    ]
    try:
        for one in slices:
            one.thread.start()
        for one in slices:
            yield from one.batches()
            if not one.finished:  # stopped: by another slice's failure, or a cancel
                raise next((s.error for s in slices if s.error is not None), None) or Cancelled(
                    "the export was canceled"
                )
    finally:
        stop.set()
        for one in slices:
            one.end()
