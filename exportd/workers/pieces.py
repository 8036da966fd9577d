"""Pieces of one task's file, written by several workers at once and joined by one.

With ``worker.pieces`` above 1, the run of a large task whose source slices and whose
format joins (see :mod:`exportd.kernel.pieces`) is split: the run (the *joining run*)
publishes pieces 1 to n-1 as :class:`~exportd.messages.PieceTask` s on
``exportd.pieces``, writes piece 0 into the task's file itself, then appends the
other pieces in order, each as soon as it and those before it are there.  Any
worker, the joining one too, takes pieces from the queue, writes each into a file
of its own, stores it, and says so (:class:`~exportd.messages.PieceNews`) to the
joining run's private queue, every ``progress_interval`` while it writes too.  The
joining run appends a stored piece (its SHA-256 checked) and deletes it.

The joining run stays the task's one run as the engine knows it: it reports,
heartbeats and settles the task as any run does, so the engine's lifecycle, its
lease and its exactly-one outcome do not change.  What happens when something fails:

* A piece that nobody has taken when the joining run needs it, or whose worker has
  been silent for ``worker.piece_silence`` (it died, or lost the broker), is written
  by the joining run itself, in place (work stealing).  A worker acknowledges a piece
  when it ends (or past ``worker.ack_deadline``), so the broker delivers the piece of a
  worker that died to another, whose news the joining run takes if it has not written
  the piece already.  Pieces run in a thread pool of their own, never in a thread that
  a joining run may hold while it waits for them.
* A piece that the joining run wrote itself stays queued on ``exportd.pieces`` (a
  queued message cannot be taken back).  A worker that takes it once the run has
  ended acknowledges it unwritten (below); one that takes it while the run still
  appends later pieces cannot tell, and writes and stores it in vain: the run, which
  has the piece, deletes the stored file when the news comes (or the worker does, if
  the run ended meanwhile).  The waste is one piece's work at most, for each piece
  written twice; telling that worker sooner would take a reply queue per piece.
* A piece that its worker could not write for a reason of its own (its data store or
  storage away, a shutdown, a cancel) is dropped, and the joining run writes it.
* A piece that fails for a reason of the export's (the source or format raised) fails
  the joining run, and so the task, with that error, as soon as its news comes.
* A joining run that ends (done, failed, canceled, its worker killed) loses its
  private queue: a piece taken after that is acknowledged unwritten, and one that
  ends after it deletes its own stored file.  A piece whose news was still queued
  when the run ended leaves its stored file behind, under the task's key; the run
  deletes every stored piece it heard of and did not append.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import queue
import shutil
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import msgspec

from exportd.bus.base import BusError, Message, Subscription, Unroutable
from exportd.errors import (
    Cancelled,
    ErrorBody,
    ExportError,
    ExportFailed,
    Unavailable,
    from_body,
)
from exportd.kernel.datastores import data_store
from exportd.kernel.pieces import Join, Pieces, PieceWriter, decode_slicing
from exportd.kernel.pipeline import run_export
from exportd.kernel.plan import ExportPlan, plan_task
from exportd.messages import ExportTask, FileInfo, PieceNews, PieceStatus, PieceTask, Progress
from exportd.plugins.api import PASSING_FAILURES, Piece

if TYPE_CHECKING:
    from exportd.workers.worker import Worker

log = logging.getLogger(__name__)

T = TypeVar("T")
NEWS_WAIT = 0.2
"""Seconds the joining run waits for news before it looks at the cancel and the clock."""
COPY_CHUNK = 1 << 20
FETCH_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)
"""The waits between tries at fetching a stored piece from a storage that failed; after
the last, the joining run writes the piece itself."""


def piece_key(run_key: str, piece: int) -> str:
    """Where a worker stores its file of ``piece`` of the joining run whose own file's key
    is ``run_key`` (:func:`~exportd.workers.worker.run_key`): beside it, in a folder
    unique to this writing of the piece."""
    folder, _, name = run_key.rpartition("/")
    own = f"{folder or 'run'}.piece{piece}.{uuid.uuid4().hex[:8]}"
    return f"{own}/{name}"


@dataclass
class _Heard:
    """What the joining run knows of one piece."""

    since: float | None = None
    """When its worker last said it runs (``None``: nobody took it yet)."""
    rows: int = 0
    file: FileInfo | None = None
    news: PieceNews | None = None
    """Its last news, once it ended (done, failed or dropped)."""


class JoiningRun(Join):
    """The :class:`~exportd.kernel.pieces.Join` of one run of a task: it hands the pieces
    out on the bus and joins them (see the module docstring).  Its :meth:`start`,
    :meth:`finish` and :meth:`abandon` run in the export's thread; its news handler on
    the worker's event loop."""

    def __init__(
        self,
        worker: Worker,
        task: ExportTask,
        key: str,
        loop: asyncio.AbstractEventLoop,
        cancelled: Callable[[], bool],
    ) -> None:
        self.most = worker.settings.worker.pieces
        self.piece_rows = worker.settings.worker.piece_rows
        self.worker, self.task, self.key = worker, task, key
        """``key``: where the run stores its own file; its pieces go beside it."""
        self._loop, self._cancelled = loop, cancelled
        self._count = 1
        self._write: PieceWriter | None = None
        self._news: queue.SimpleQueue[tuple[float, PieceNews]] = queue.SimpleQueue()
        """News as it arrived, with the (monotonic) time it did."""
        self._heard: dict[int, _Heard] = {}
        self._done: set[int] = set()
        """Pieces appended or written here: a stored file of theirs heard of later is vain."""
        self._failed: ExportError | None = None
        """The error of the first piece that failed for a reason of the export's."""
        self._replies: Subscription | None = None

    def start(self, pieces: Pieces) -> None:
        """Open the private queue for news, and publish pieces 1 to ``count - 1``; those
        that cannot be published (the broker away) are written by :meth:`finish`."""
        count = self._count = pieces.count
        self._write = pieces.write
        self._heard = {index: _Heard() for index in range(1, count)}
        task, bus = self.task, self.worker.bus
        slicing = pieces.encoded_slicing()
        if slicing is None:
            log.warning(
                "task %s part %d: the source's slicing cannot cross to other workers "
                "unchanged (see Source.Slicing); this worker writes the pieces",
                *(task.job_id, task.part),
            )
            return
        try:
            self._replies = self._on_loop(bus.private_queue(self._on_news))
            for index in range(1, count):
                piece = PieceTask(
                    task=task,
                    piece=index,
                    count=count,
                    slicing=slicing,
                    key=self.key,
                    reply_to=self._replies.queue_name,
                )
                self._on_loop(bus.publish("", bus.topology.pieces, msgspec.json.encode(piece)))
        except (BusError, TimeoutError) as exc:
            log.warning(
                "task %s part %d: pieces not handed out (%s); this worker writes them",
                *(task.job_id, task.part, exc),
            )
        log.info("task %s part %d is written in %d pieces", task.job_id, task.part, count)

    def finish(self, file: BinaryIO, rows: int, progressed: Callable[[int], None]) -> int:
        """Append pieces 1 to ``count - 1`` in order (see the module docstring)."""
        before = rows
        try:
            for index in range(1, self._count):
                before += self._join(index, file, partial(_plus, progressed, before))
                progressed(before)
        finally:
            self._close()
        return before - rows

    def abandon(self) -> None:
        """Close the private queue and delete the stored pieces heard of."""
        self._close()

    def failure(self) -> BaseException | None:
        """The error of a piece that failed for a reason of the export's, once its news
        came: piece 0 then stops at its next batch, not at its end.  Cheap while no news
        came: the data store's cancel check calls it often."""
        if not self._news.empty():
            self._take_news()
        return self._failed

    def _join(self, index: int, file: BinaryIO, progressed: Callable[[int], None]) -> int:
        """Append piece ``index`` once it is stored, or write it here; its rows."""
        settings = self.worker.settings.worker
        silence = max(settings.piece_silence, 3 * settings.progress_interval)
        heard = self._heard[index]
        while True:
            self._take_news()
            if heard.file is not None:
                appended = self._append(heard.file, file)
                if appended is not None:
                    self._done.add(index)
                    return appended
                self._delete(heard.file.key)
                return self._write_here(
                    index, file, progressed, "its stored file could not be read"
                )
            if self._failed is not None:
                raise self._failed
            if heard.news is not None:  # it ended without a file
                return self._write_here(index, file, progressed, f"{heard.news.worker} dropped it")
            if heard.since is None:
                return self._write_here(index, file, progressed, "no other worker took it")
            if time.monotonic() - heard.since > silence:
                return self._write_here(
                    index, file, progressed, f"its worker was silent {silence} s"
                )
            if self._cancelled():
                raise Cancelled("the export was canceled")
            progressed(heard.rows)
            with contextlib.suppress(queue.Empty):
                self._heard_of(*self._news.get(timeout=NEWS_WAIT))

    def _write_here(
        self, index: int, file: BinaryIO, progressed: Callable[[int], None], why: str
    ) -> int:
        log.info(
            "task %s part %d: piece %d of %d written by the joining run: %s",
            *(self.task.job_id, self.task.part, index + 1, self._count, why),
        )
        self._done.add(index)
        assert self._write is not None  # start() came first
        return self._write(index, file, self._cancelled, progressed)

    def _append(self, stored: FileInfo, file: BinaryIO) -> int | None:
        """Append the stored piece ``stored`` to ``file``, then delete it; its rows, or
        ``None`` if the storage failed to give it (then nothing is appended)."""
        local = self.worker.work_area.new_path("piece")
        try:
            if not self._fetch(stored, local):
                return None
            with local.open("rb") as fetched:
                shutil.copyfileobj(fetched, file, COPY_CHUNK)
        finally:
            local.unlink(missing_ok=True)
        self._delete(stored.key)
        return stored.rows

    def _fetch(self, stored: FileInfo, local: Path) -> bool:
        """Copy the stored piece into ``local``, checking its size and SHA-256 (a piece
        that is not what its worker wrote fails the export); whether the storage gave it
        (it is tried again, backing off, while its failures pass)."""
        storage = self.worker.storage
        for wait in (*FETCH_BACKOFF, None):
            try:
                digest, size = hashlib.sha256(), 0
                with storage.open(stored.key) as source, local.open("wb") as target:
                    while chunk := source.read(COPY_CHUNK):
                        digest.update(chunk)
                        size += target.write(chunk)
            except FileNotFoundError:  # removed (a lifecycle rule), or on another host's disk
                log.warning("the stored piece %s is not in the storage", stored.key)
                return False
            except PASSING_FAILURES as exc:
                log.warning("the stored piece %s could not be read: %s", stored.key, exc)
                if wait is None or self._waited_out(wait):
                    return False
                continue
            if (size, digest.hexdigest()) != (stored.size, stored.sha256):
                raise ExportFailed(
                    f"the stored piece {stored.key} is not what its worker wrote "
                    f"({size} bytes, sha256 {digest.hexdigest()})"
                )
            return True
        return False

    def _waited_out(self, seconds: float) -> bool:
        """Wait ``seconds``; whether the export was canceled meanwhile."""
        deadline = time.monotonic() + seconds
        while not self._cancelled() and time.monotonic() < deadline:
            time.sleep(min(NEWS_WAIT, seconds))
        return self._cancelled()

    def _take_news(self) -> None:
        """Take in every piece of news that came meanwhile."""
        with contextlib.suppress(queue.Empty):
            while True:
                self._heard_of(*self._news.get_nowait())

    def _heard_of(self, arrived: float, news: PieceNews) -> None:
        """Record ``news`` of a piece, which ``arrived`` then; a stored file that is of no
        use now is deleted (but for the one news told of again)."""
        heard = self._heard.get(news.piece)
        if heard is None or news.piece in self._done or heard.news is not None:
            told_again = heard is not None and heard.file is not None and news.file == heard.file
            if news.file is not None and not told_again:
                self._delete(news.file.key)
            return
        if news.status == "running":
            heard.since, heard.rows = arrived, news.rows
        elif news.status == "done" and news.file is not None:
            heard.file = news.file
            heard.news = news
        else:
            heard.news = news
            if news.status == "failed" and news.error is not None and self._failed is None:
                self._failed = _piece_failed(news.piece, self._count, news.error)

    def _close(self) -> None:
        """Close the private queue (later news fails to reach it), then delete every
        stored piece heard of that is not appended (whatever closing raised)."""
        replies, self._replies = self._replies, None
        try:
            if replies is not None:
                with contextlib.suppress(BusError, TimeoutError):
                    self._on_loop(replies.stop())
        finally:
            self._take_news()
            for index, heard in self._heard.items():
                if heard.file is not None and index not in self._done:
                    self._delete(heard.file.key)
                    self._done.add(index)

    def _delete(self, key: str) -> None:
        try:
            self.worker.storage.delete(key)
        except Exception as exc:  # a piece left behind is no reason to fail the export
            log.warning("the stored piece %s was not deleted: %s", key, exc)

    async def _on_news(self, message: Message) -> None:
        """Hand news to the export's thread; malformed news is dropped."""
        try:
            news = msgspec.json.decode(message.body, type=PieceNews)
        except msgspec.DecodeError:
            log.warning("task %s dropped malformed piece news", self.task.job_id)
        else:
            self._news.put((time.monotonic(), news))
        await message.ack()

    def _on_loop(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the worker's event loop, from the export's thread, for at most
        a few broker confirm timeouts (:class:`TimeoutError`: the loop or the broker does
        not answer)."""
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result(timeout=3 * self.worker.settings.broker.confirm_timeout)
        except TimeoutError:
            future.cancel()
            raise


def _piece_failed(piece: int, count: int, error: ErrorBody) -> ExportError:
    """The error of the joining run whose ``piece`` failed with ``error``: the same code
    and fields, the piece named."""
    message = f"piece {piece + 1} of {count} failed: {error.message}"
    return from_body(msgspec.structs.replace(error, message=message))


def _plus(progressed: Callable[[int], None], before: int, rows: int) -> None:
    """``progressed(before + rows)``: rows of a piece under way, after ``before``."""
    progressed(before + rows)


class PieceRun:
    """One worker's writing of one :class:`~exportd.messages.PieceTask`, in a thread of the
    worker's own for pieces (never one a joining run may hold while it waits).

    The piece is acknowledged when it ends, or once it has run ``worker.ack_deadline`` (as
    a task is: the broker's acknowledgement timeout must not deliver it twice); a worker
    that dies before has it delivered again, while the joining run's silence watch writes
    it itself if that takes too long.
    """

    def __init__(self, worker: Worker, piece: PieceTask, message: Message) -> None:
        self.worker, self.piece, self.task, self.message = worker, piece, piece.task, message
        self._stop = False
        self._rows = 0
        self._acked = False
        self._started = time.monotonic()
        self._writing = False
        """Whether a thread took the piece: until then it says no more that it runs, so
        that one left waiting for a thread falls silent and its joining run writes it."""

    def stop(self) -> None:
        """Have the piece stop before its next batch (a cancel signal, a shutdown)."""
        self._stop = True

    async def execute(self) -> None:
        """Say the piece runs (a joining run that is gone does not want it: acknowledge it
        unwritten), write and store it, say how it ended, and acknowledge it."""
        piece, task = self.piece, self.piece.task
        try:
            await self._tell("running")
        except BusError as exc:
            why = "its joining run ended" if isinstance(exc, Unroutable) else str(exc)
            log.info(
                "worker %s leaves piece %d of task %s to its joining run: %s",
                *(self.worker.name, piece.piece + 1, task.job_id, why),
            )
            await self._ack()
            return
        log.info(
            "worker %s writes piece %d of %d of task %s part %d",
            *(self.worker.name, piece.piece + 1, piece.count, task.job_id, task.part),
        )
        reporter = self.worker.loops.keep_running(
            f"the reporter of piece {piece.piece} of {task.job_id}", self._report
        )
        planned: tuple[ExportPlan, Any] | None = None
        stored: FileInfo | None = None
        error: ErrorBody | None = None  # none for a piece dropped: the joining run writes it
        try:
            # A piece this worker cannot plan (a plugin it lacks, a slicing of another
            # version) the joining run can write.
            planned = await self._in_thread(self._plan)
            stored = await self._in_thread(partial(self._write_and_store, *planned))
        except ExportError as exc:
            if planned is None or isinstance(exc, (Cancelled, Unavailable)):
                log.info("piece %d of task %s dropped: %s", piece.piece + 1, task.job_id, exc)
            else:
                error = exc.body()
        except asyncio.CancelledError:  # the worker's end: its thread stops, unstored
            self.stop()
            raise
        except Exception:
            log.exception("piece %d of task %s dropped", piece.piece + 1, task.job_id)
        finally:
            await self.worker.loops.stop(reporter)
        await self._end("done" if stored is not None else "failed", stored, error)
        await self._ack()

    async def _in_thread(self, work: Callable[[], T]) -> T:
        """``work()``, in a thread of the worker's pool for pieces."""
        # The thread logs for the piece's job too (run_in_executor does not copy the context).
        in_context = partial(contextvars.copy_context().run, work)
        return await asyncio.get_running_loop().run_in_executor(
            self.worker.piece_threads, in_context
        )

    def _plan(self) -> tuple[ExportPlan, Any]:
        """The plan of the piece's task on this worker, and its slicing (in a thread)."""
        self._writing = True
        worker = self.worker
        plan = plan_task(self.task, worker.plugins, data_store(worker.settings), worker=worker.name)
        return plan, decode_slicing(plan, self.piece.slicing)

    def _write_and_store(self, plan: ExportPlan, slicing: Any) -> FileInfo:
        """Write the piece of ``plan`` into a file of this worker's, and store it (in a
        thread)."""
        worker, piece, task = self.worker, self.piece, self.piece.task
        path = worker.work_area.new_path("piece")
        try:
            written = run_export(
                plan,
                path,
                batch_size=worker.settings.batch_size,
                on_progress=self._progressed,
                cancelled=lambda: self._stop,
                part=task.part,
                part_count=task.part_count,
                piece=Piece(piece.piece, piece.count),
                slicing=slicing,
            )
            if self._stop:  # stopped as it ended: nobody would take or delete it
                raise Cancelled("the piece was stopped")
            key = piece_key(piece.key, piece.piece)
            worker.storage.store_checked(key, path, written.sha256)
            return written.file(key=key, name=path.name)
        finally:
            path.unlink(missing_ok=True)

    def _progressed(self, progress: Progress) -> None:
        """News from the export's thread: how many rows it wrote."""
        self._rows = progress.rows

    async def _report(self) -> None:
        """Say the piece runs, every ``progress_interval`` once a thread writes it, and
        acknowledge it once it has run ``ack_deadline``; a joining run that is gone (its
        queue is) stops the piece, while news that fails otherwise (the broker away) is
        tried again at the next interval."""
        settings = self.worker.settings.worker
        await asyncio.sleep(settings.progress_interval)
        try:
            if self._writing:
                await self._tell("running")
        except Unroutable:
            self.stop()
            raise
        except BusError as exc:
            self._note("news not told", exc)
        if time.monotonic() - self._started >= settings.ack_deadline:
            await self._ack()

    async def _ack(self) -> None:
        """Acknowledge the piece, once.  One whose channel dropped comes again, to a
        worker whose news the joining run takes or drops."""
        if not self._acked:
            self._acked = True
            try:
                await self.message.ack()
            except BusError as exc:
                self._note("not acknowledged", exc)

    async def _end(
        self, status: PieceStatus, stored: FileInfo | None, error: ErrorBody | None
    ) -> None:
        """Say how the piece ended; a stored piece that cannot be told of is deleted."""
        try:
            await self._tell(status, file=stored, error=error)
        except BusError as exc:
            self._note("its end not told", exc)
            if stored is not None:
                try:
                    await self._in_thread(partial(self.worker.storage.delete, stored.key))
                except Exception as failure:  # left behind; see docs/runtime.md, "Pieces"
                    log.warning("the stored piece %s was not deleted: %s", stored.key, failure)

    def _note(self, what: str, error: Exception) -> None:
        """Log at INFO that ``what`` happened to the piece, for ``error``."""
        log.info("piece %d of task %s: %s: %s", self.piece.piece + 1, self.task.job_id, what, error)

    async def _tell(
        self, status: PieceStatus, *, file: FileInfo | None = None, error: ErrorBody | None = None
    ) -> None:
        """Publish news of the piece to the joining run's private queue."""
        news = PieceNews(
            piece=self.piece.piece,
            status=status,
            rows=self._rows,
            file=file,
            error=error,
            worker=self.worker.name,
        )
        await self.worker.bus.publish("", self.piece.reply_to, msgspec.json.encode(news))
