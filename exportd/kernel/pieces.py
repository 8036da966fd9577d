"""One export's file written in pieces, by several workers at once, and joined.

A large export of a source that can slice (:attr:`~exportd.Source.sliceable`), in a
format that :meth:`~exportd.Format.joins`, may be split into ``count`` pieces: piece
``i`` is slice ``i`` of ``count``, and its file, written by the format for
:class:`~exportd.Piece` ``(i, count)``, follows the file of piece ``i - 1``.  The
export's own run writes piece 0 into the export's file; a :class:`Join`, the
worker's side (the kernel moves no messages), has the other pieces written elsewhere
once the run has worked out their slicing, and appends them in order once piece 0
is written, writing itself (through the callback the kernel gives it) any piece
that nobody else does.

The slicing crosses to other workers as msgspec MessagePack, decoded as the
source's :attr:`~exportd.Source.Slicing`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, BinaryIO

import msgspec

from exportd.errors import ExportFailed
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


def encode_slicing(plan: ExportPlan, slicing: Any) -> bytes:
    """``slicing``, what the source's ``slicing`` said, as it crosses to other workers."""
    try:
        return msgspec.msgpack.encode(slicing)
    except (TypeError, msgspec.EncodeError) as exc:
        raise ExportFailed(
            f"{plan.source_label} failed: what its slicing() returned cannot cross to "
            f"another worker ({exc}); see Source.Slicing in docs/plugins.md"
        ) from exc


def decode_slicing(plan: ExportPlan, encoded: bytes) -> Any:
    """The slicing that :func:`encode_slicing` encoded, as the source's ``Slicing``."""
    try:
        return msgspec.msgpack.decode(encoded, type=plan.source.Slicing)
    except (TypeError, msgspec.DecodeError) as exc:
        raise ExportFailed(
            f"{plan.source_label} failed: its slicing does not decode as its Slicing type ({exc})"
        ) from exc


PieceWriter = Callable[[int], int]
"""Writes piece ``i`` of the export into its file, here and now; returns its rows."""


class Join(abc.ABC):
    """The worker's side of an export written in pieces: it has pieces 1 to ``count - 1``
    written elsewhere, then appends them to the file after piece 0.

    The kernel calls :meth:`start` once it knows the pieces, before it writes piece 0;
    :meth:`finish` once piece 0 is written; :meth:`abandon` (instead of ``finish``, or
    after a ``finish`` that raised) when the export fails or is canceled.
    """

    most: int
    """The most pieces the export may be split into (1: never split)."""
    piece_rows: int
    """The fewest rows, by the source's estimate, worth a piece of their own."""

    @abc.abstractmethod
    def start(self, count: int, slicing: bytes) -> None:
        """Have pieces ``1`` to ``count - 1`` written elsewhere, with ``slicing`` (see
        :func:`encode_slicing`).  A piece that cannot be handed out is written by
        :meth:`finish` itself."""

    @abc.abstractmethod
    def finish(
        self,
        file: BinaryIO,
        write_piece: PieceWriter,
        rows: int,
        progressed: Callable[[int], None],
    ) -> int:
        """Append pieces ``1`` to ``count - 1`` to ``file`` in order, once each is written
        (``write_piece(i)`` writes one here instead); return their rows.  ``rows`` is the
        count of rows before them, and ``progressed(n)`` says ``n`` rows are written in
        all."""

    @abc.abstractmethod
    def abandon(self) -> None:
        """Stop: the export failed or was canceled.  Nothing of the pieces is to stay."""
