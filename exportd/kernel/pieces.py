"""One export's file written in pieces, by several workers at once, and joined.

A large export of a source that can slice (:attr:`~exportd.Source.sliceable`), in a
format that :meth:`~exportd.Format.joins`, may be split into ``count`` pieces: piece
``i`` is slice ``i`` of ``count``, and its file, written by the format for
:class:`~exportd.Piece` ``(i, count)``, follows the file of piece ``i - 1``.  The
export's own run writes piece 0 into the export's file; a :class:`Join`, the
worker's side (the kernel moves no messages), has the other pieces written elsewhere
once the run has worked out their slicing, and appends them in order once piece 0
is written, writing itself (through the callback the kernel gives it) any piece
that nobody else does.  Two joins exist: the worker's, which hands pieces to other
workers (:mod:`exportd.workers.pieces`), and :class:`ThreadedJoin`, which writes them
in threads of this process, so that a format that joins has its slices read and
encoded on every core (an export of a format that does not join has only its
reading sliced: :mod:`exportd.kernel.slices`).

The slicing crosses to other workers as msgspec MessagePack, decoded as the
source's :attr:`~exportd.Source.Slicing`.
"""

from __future__ import annotations

import abc
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import msgspec

from exportd.errors import Cancelled, ExportFailed
from exportd.kernel.plan import ExportPlan


def piece_count(plan: ExportPlan, estimate: int | None, join: Join) -> int:
    """How many pieces to write ``plan``'s file in: up to ``join.most``, one for each
    ``join.piece_rows`` rows of the estimate, for a source that can slice, a format that
    joins the columns, and an export without a limit (pieces would overshoot it)."""
    if (
        join.most <= 1
        or not plan.source.sliceable
        or plan.request.limit is not None
        or not plan.format.joins(plan.columns, plan.options)
    ):
        return 1
    return max(1, min(join.most, (estimate or 0) // join.piece_rows))


def encode_slicing(plan: ExportPlan, slicing: Any) -> bytes | None:
    """``slicing``, what the source's ``slicing`` said, as it crosses to other workers;
    ``None`` if it cannot cross unchanged (msgspec cannot encode it, or it decodes as
    the source's ``Slicing`` to something else: a tuple as a list, say), so that the
    export is not split across workers whose slices would disagree."""
    try:
        encoded = msgspec.msgpack.encode(slicing)
    except (TypeError, msgspec.EncodeError):
        return None
    try:
        crossed = decode_slicing(plan, encoded)
    except ExportFailed:
        return None
    return encoded if crossed == slicing else None


def decode_slicing(plan: ExportPlan, encoded: bytes) -> Any:
    """The slicing that :func:`encode_slicing` encoded, as the source's ``Slicing``."""
    try:
        return msgspec.msgpack.decode(encoded, type=plan.source.Slicing)
    except (TypeError, msgspec.DecodeError) as exc:
        raise ExportFailed(
            f"{plan.source_label} failed: its slicing does not decode as its Slicing type ({exc})"
        ) from exc


class PieceWriter(Protocol):
    """Writes piece ``index`` of the export into ``file`` (the format opened for the piece,
    the slice's rows, the format closed) and returns its rows; ``stop()`` stops it before
    its next batch (:class:`~exportd.errors.Cancelled`), ``on_rows(n)`` says after each
    batch that ``n`` rows are written."""

    def __call__(
        self,
        index: int,
        file: BinaryIO,
        stop: Callable[[], bool],
        on_rows: Callable[[int], None] | None,
    ) -> int: ...


@dataclass(frozen=True)
class Pieces:
    """What the kernel tells a :class:`Join` of the pieces it split an export into."""

    count: int
    encoded_slicing: Callable[[], bytes | None]
    """What the source's ``slicing`` said, encoded to cross to another worker, or ``None``
    if it cannot (see :func:`encode_slicing`); a join that writes the pieces here does
    not ask."""
    write: PieceWriter
    """Writes one piece here, in this process, into any file."""


class Join(abc.ABC):
    """Where the later pieces of an export written in pieces come from: it has pieces 1 to
    ``count - 1`` written (elsewhere, or at once in threads), then appends them to the file
    after piece 0.

    The kernel calls :meth:`start` once it knows the pieces, before it writes piece 0;
    :meth:`finish` once piece 0 is written; :meth:`abandon` (instead of ``finish``, or
    after a ``finish`` that raised) when the export fails or is canceled.
    """

    most: int
    """The most pieces the export may be split into (1: never split)."""
    piece_rows: int
    """The fewest rows, by the source's estimate, worth a piece of their own."""

    @abc.abstractmethod
    def start(self, pieces: Pieces) -> None:
        """Have pieces ``1`` to ``pieces.count - 1`` written.  A piece that cannot be handed
        out is written by :meth:`finish` itself (``pieces.write``)."""

    @abc.abstractmethod
    def finish(self, file: BinaryIO, rows: int, progressed: Callable[[int], None]) -> int:
        """Append pieces ``1`` to ``count - 1`` to ``file`` in order, once each is written;
        return their rows.  ``rows`` is the count of rows before them, and
        ``progressed(n)`` says ``n`` rows are written in all."""

    @abc.abstractmethod
    def abandon(self) -> None:
        """Stop: the export failed or was canceled.  Nothing of the pieces is to stay."""

    def failure(self) -> BaseException | None:
        """Why a piece failed, once one did before :meth:`finish`: the kernel then stops
        writing piece 0 (:class:`~exportd.errors.Cancelled`) and raises this instead.
        The default is ``None``: a join that hears of failures only in ``finish``."""
        return None


class ThreadedJoin(Join):
    """Pieces 1 to ``count - 1`` written at once by threads of this process, each into a
    spool file of its own in ``folder``, then appended in order: for a format that joins,
    a large export's slices are read *and encoded* on as many cores as ``slices`` allows
    (Arrow work and the data stores' drivers let go of the GIL)."""

    def __init__(self, most: int, piece_rows: int, folder: Path) -> None:
        self.most, self.piece_rows, self._folder = most, piece_rows, folder
        self._stop = threading.Event()
        self._threads: list[_PieceThread] = []

    def start(self, pieces: Pieces) -> None:
        """Start a thread for each later piece."""
        name = f".pieces.{uuid.uuid4().hex}"
        self._threads = [
            _PieceThread(pieces.write, index, self._folder / f"{name}.{index}", self._stop)
            for index in range(1, pieces.count)
        ]
        for thread in self._threads:
            thread.start()

    def finish(self, file: BinaryIO, rows: int, progressed: Callable[[int], None]) -> int:
        """Append each piece once its thread is done; a piece that failed fails the export."""
        before = rows
        for thread in self._threads:
            while thread.is_alive():
                thread.join(PROGRESS_WAIT)
                progressed(before + thread.rows)
            if thread.error is not None:
                raise self.failure() or thread.error
            with thread.spool.open("rb") as spooled:
                shutil.copyfileobj(spooled, file, COPY_CHUNK)
            thread.spool.unlink()
            before += thread.rows
            progressed(before)
        return before - rows

    def failure(self) -> BaseException | None:
        """The first piece's failure that is not a stop another one caused."""
        failures = [thread.error for thread in self._threads if thread.error is not None]
        return next((e for e in failures if not isinstance(e, Cancelled)), None)

    def abandon(self) -> None:
        """Stop the threads at their next batch, wait for them, remove their spool files."""
        self._stop.set()
        for thread in self._threads:
            if thread.ident is not None:  # not one that never started (start raised)
                thread.join()
            thread.spool.unlink(missing_ok=True)


PROGRESS_WAIT = 0.5
"""Seconds between two progress reports while the export waits for a piece's thread."""
COPY_CHUNK = 1 << 20


class _PieceThread(threading.Thread):
    """One piece's thread: writes the piece into ``spool``, keeps its rows and its error."""

    def __init__(self, write: PieceWriter, index: int, spool: Path, stop: threading.Event) -> None:
        super().__init__(name=f"exportd-piece-{index}", daemon=True)
        self._write, self._index, self.spool, self._halt = write, index, spool, stop
        self.rows = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.spool.open("wb") as file:
                self.rows = self._write(self._index, file, self._halt.is_set, self._counted)
        except BaseException as exc:  # raised in the thread that writes the file
            self.error = exc
            self._halt.set()  # every other piece's work is in vain now

    def _counted(self, rows: int) -> None:
        self.rows = rows
