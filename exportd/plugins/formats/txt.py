"""The ``txt`` format: plain UTF-8 text for people, with ``"\\n"`` line endings.

The file starts with a title line (source, interval, time zone) and a blank line
(but for an empty transcript in conversations: below).

When the columns carry time, author and text roles it is a transcript::

    == conversation_id: 41 ==
    [2024-05-01 10:15:02] Alice: Hello
    [2024-05-01 10:15:09] Bob: Hi Alice,
        how can I help?

    == conversation_id: 42 ==
    ...

A conversation heading, after a blank line, starts each run of rows with the
same conversation value (if a column has that role), so a source should order
rows by conversation.  The blank line after the title is the first heading's: a
transcript in conversations without rows is its title line alone, and a piece
of a file written in pieces (:class:`~exportd.Piece`) writes the same bytes
whether the pieces before it hold rows or not.  Each line break in a message
(anything ``str.splitlines`` splits on: LF, CRLF, CR, U+2028...) starts a
continuation line indented by four spaces; trailing line breaks are dropped.

Otherwise it is a table: a header, a rule, then one line per row, cells
separated by ``" | "``.  As the file is streamed, column widths come from the
header and the first batch of rows, capped at :data:`MAX_WIDTH` characters;
a longer value later is not cut, its line just runs over.  Numbers are
right-aligned.  Widths count code points, so wide characters (CJK, emoji)
may shift a line.

Batches come as Arrow record batches and are written a column at a time
(:class:`~exportd.plugins.formats.common.ColumnText`).  Times are shown to the
second in the request's zone, booleans as
``true``/``false``, ``None`` as nothing.  Control characters that would break
the layout are shown as visible symbols (see
:func:`~exportd.plugins.formats.common.printable`): ``"\\t"`` as ``"␉"``, NUL
as ``"␀"``, a line break in a table cell as ``"␊"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, BinaryIO

import pyarrow as pa

from exportd import Column, ExportInfo, Format, NoOptions, RowWriter, hookimpl
from exportd.plugins.formats import compute as pc
from exportd.plugins.formats.common import (
    NUMERIC_TYPES,
    ColumnText,
    ConversationStarts,
    TranscriptLayout,
    export_title,
    printable,
    printable_cells,
    transcript_layout,
    write_cells,
)

MAX_WIDTH = 40
INDENT = "    "
SEPARATOR = " | "


class TxtFormat(Format[NoOptions]):
    """A readable transcript when the columns allow it, an aligned table otherwise."""

    name = "txt"
    media_type = "text/plain; charset=utf-8"
    extension = "txt"
    description = "plain text: a chat transcript, or an aligned table"
    form = "arrow"

    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: NoOptions, info: ExportInfo
    ) -> RowWriter:
        """Write the title (in the file's first piece) and return the transcript or table
        writer."""
        layout = transcript_layout(columns)
        if info.piece.first:
            # A transcript in conversations has its blank line before each heading.
            in_conversations = layout is not None and layout.conversation is not None
            title = [printable(export_title(info)), *([] if in_conversations else [""])]
            _write_lines(file, title)
        if layout is None:
            return TableWriter(file, columns, info)
        return TranscriptWriter(file, columns, layout, info)

    def joins(self, columns: Sequence[Column], options: NoOptions) -> bool:
        """A transcript joins: a later piece starts with its conversation's heading, after
        its blank line, as every heading is, so that it does not matter whether the pieces
        before it hold rows.  A table does not: its widths come from the first piece's
        rows."""
        return transcript_layout(columns) is not None


class TranscriptWriter(RowWriter):
    """Writes ``[time] author: text`` lines under a heading per conversation."""

    def __init__(
        self, file: BinaryIO, columns: Sequence[Column], layout: TranscriptLayout, info: ExportInfo
    ) -> None:
        self._file = file
        self._layout = layout
        zone = info.window.timezone
        self._text = [ColumnText(column, zone, printable_cells) for column in columns]
        self._text[layout.text] = ColumnText(columns[layout.text], zone, _message_lines)
        conversation = layout.conversation
        self._label = "" if conversation is None else printable(columns[conversation].name)
        self._starts = ConversationStarts()

    def write(self, batch: pa.RecordBatch) -> None:
        """Write the batch's messages, starting a section where the conversation changes."""
        layout = self._layout
        time, author = (self._cells(batch, at) for at in (layout.time, layout.author))
        text = self._text[layout.text].cells(batch.column(layout.text))
        parts: list[Any] = ["[", time, "] ", author, ": ", text, "\n"]
        if layout.conversation is not None and batch.num_rows:
            parts[:0] = self._headings(batch, layout.conversation)
        write_cells(self._file, pc.binary_join_element_wise(*parts, ""))

    def close(self) -> None:
        """Nothing to finish: every batch is written whole."""

    def _cells(self, batch: pa.RecordBatch, at: int) -> pa.Array:
        return self._text[at].cells(batch.column(at))

    def _headings(self, batch: pa.RecordBatch, at: int) -> list[pa.Array]:
        """A blank line and a heading before each row that starts a conversation; nothing
        before the others."""
        starts, _ = self._starts.starts(batch.column(at))
        headings = pc.binary_join_element_wise(
            f"\n== {self._label}: ", self._cells(batch, at), " ==\n", ""
        )
        return [pc.if_else(starts, headings, "")]


def _message_lines(cells: pa.Array) -> pa.Array:
    """Each message's text shown, its line breaks as continuation lines."""
    return printable_cells(cells, _lines)


def _lines(text: str) -> str:
    """A message's text, each line break as a continuation line, trailing ones dropped."""
    first, *more = text.splitlines() or [""]
    return "\n".join([printable(first), *(INDENT + printable(line) for line in more)])


class TableWriter(RowWriter):
    """Writes an aligned table whose widths are set by its first batch."""

    def __init__(self, file: BinaryIO, columns: Sequence[Column], info: ExportInfo) -> None:
        self._file = file
        self._columns = columns
        zone = info.window.timezone
        self._text = [ColumnText(column, zone, printable_cells) for column in columns]
        self._widths: list[int] | None = None  # once the first batch has set them

    def write(self, batch: pa.RecordBatch) -> None:
        """Write the batch's rows, after the header if this is the first batch."""
        cells = [text.cells(array) for text, array in zip(self._text, batch.columns, strict=True)]
        if self._widths is None:
            if not batch.num_rows:
                return
            self._widths = self._write_header(cells)
        last = len(cells) - 1
        padded = [
            pc.utf8_lpad(cells, width)
            if column.type in NUMERIC_TYPES
            else cells
            if index == last
            else pc.utf8_rpad(cells, width)
            for index, (column, cells, width) in enumerate(
                zip(self._columns, cells, self._widths, strict=True)
            )
        ]
        lines = pc.binary_join_element_wise(*padded, SEPARATOR)
        write_cells(self._file, pc.binary_join_element_wise(lines, "\n", ""))

    def close(self) -> None:
        """Write the header of a table that got no rows."""
        if self._widths is None:
            self._write_header([])

    def _write_header(self, cells: list[pa.Array]) -> list[int]:
        """Write the header and rule, sized for the first batch's ``cells``; return the widths."""
        header = [printable(column.name) for column in self._columns]
        longest = [pc.max(pc.utf8_length(column)).as_py() for column in cells] or [0] * len(header)
        widths = [
            min(MAX_WIDTH, max(len(name), most)) for name, most in zip(header, longest, strict=True)
        ]
        last = len(widths) - 1
        line = SEPARATOR.join(
            f"{name:>{width}}"
            if column.type in NUMERIC_TYPES
            else name
            if index == last
            else f"{name:<{width}}"
            for index, (column, name, width) in enumerate(
                zip(self._columns, header, widths, strict=True)
            )
        )
        rule = "-+-".join("-" * width for width in widths)
        _write_lines(self._file, [line, rule])
        return widths


def _write_lines(file: BinaryIO, lines: list[str]) -> None:
    if lines:
        file.write("".join(line + "\n" for line in lines).encode("utf-8"))


@hookimpl
def exportd_formats() -> list[Format[Any]]:
    """Register the ``txt`` format."""
    return [TxtFormat()]
