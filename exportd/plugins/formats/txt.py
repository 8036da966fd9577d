"""The ``txt`` format: plain UTF-8 text for people, with ``"\\n"`` line endings.

The file starts with a title line (source, interval, time zone) and a blank line.

When the columns carry time, author and text roles it is a transcript::

    == conversation_id: 41 ==
    [2024-05-01 10:15:02] Alice: Hello
    [2024-05-01 10:15:09] Bob: Hi Alice,
        how can I help?

    == conversation_id: 42 ==
    ...

A conversation heading starts each run of rows with the same conversation
value (if a column has that role), so a source should order rows by
conversation.  Each line break in a message (anything ``str.splitlines``
splits on: LF, CRLF, CR, U+2028...) starts a continuation line indented by
four spaces; trailing line breaks are dropped.

Otherwise it is a table: a header, a rule, then one line per row, cells
separated by ``" | "``.  As the file is streamed, column widths come from the
header and the first batch of rows, capped at :data:`MAX_WIDTH` characters;
a longer value later is not cut, its line just runs over.  Numbers are
right-aligned.  Widths count code points, so wide characters (CJK, emoji)
may shift a line.

Times are shown to the second in the request's zone, booleans as
``true``/``false``, ``None`` as nothing.  Control characters that would break
the layout are shown as visible symbols (see
:func:`~exportd.plugins.formats.common.printable`): ``"\\t"`` as ``"␉"``, NUL
as ``"␀"``, a line break in a table cell as ``"␊"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, BinaryIO

from exportd import Batch, Column, ExportInfo, Format, NoOptions, RowWriter, hookimpl
from exportd.plugins.formats.common import (
    NUMERIC_TYPES,
    ConversationRuns,
    TranscriptLayout,
    export_title,
    printable,
    renderers,
    transcript_layout,
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

    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: NoOptions, info: ExportInfo
    ) -> RowWriter:
        """Write the title and return the transcript or table writer."""
        _write_lines(file, [printable(export_title(info)), ""])
        layout = transcript_layout(columns)
        if layout is None:
            return TableWriter(file, columns, info)
        return TranscriptWriter(file, columns, layout, info)


class TranscriptWriter(RowWriter):
    """Writes ``[time] author: text`` lines under a heading per conversation."""

    def __init__(
        self, file: BinaryIO, columns: Sequence[Column], layout: TranscriptLayout, info: ExportInfo
    ) -> None:
        self._file = file
        self._layout = layout
        self._render = renderers(columns, info.window.timezone)
        conversation = layout.conversation
        self._label = "" if conversation is None else printable(columns[conversation].name)
        self._runs = ConversationRuns(layout, self._render)

    def write(self, batch: Batch) -> None:
        """Write the batch's messages, starting a section where the conversation changes."""
        layout, render = self._layout, self._render
        time, author, text = render[layout.time], render[layout.author], render[layout.text]
        at_time, at_author, at_text = layout.time, layout.author, layout.text
        lines: list[str] = []
        for run in self._runs.split(batch):
            if run.starts:
                if not run.first:
                    lines.append("")
                lines.append(f"== {self._label}: {printable(run.conversation)} ==")
            for row in run.rows:
                first, *more = text(row[at_text]).splitlines() or [""]
                lines.append(
                    f"[{printable(time(row[at_time]))}] {printable(author(row[at_author]))}: "
                    f"{printable(first)}"
                )
                lines.extend(INDENT + printable(line) for line in more)
        _write_lines(self._file, lines)

    def close(self) -> None:
        """Nothing to finish: every batch is written whole."""


class TableWriter(RowWriter):
    """Writes an aligned table whose widths are set by its first batch."""

    def __init__(self, file: BinaryIO, columns: Sequence[Column], info: ExportInfo) -> None:
        self._file = file
        self._columns = columns
        self._render = renderers(columns, info.window.timezone)
        self._line: str | None = None  # the str.format template of a line, once widths are known

    def write(self, batch: Batch) -> None:
        """Write the batch's rows, after the header if this is the first batch."""
        render = self._render
        rows = [[printable(r(v)) for r, v in zip(render, row, strict=True)] for row in batch]
        if self._line is None:
            if not rows:
                return
            self._line = self._write_header(rows)
        _write_lines(self._file, [self._line.format(*cells) for cells in rows])

    def close(self) -> None:
        """Write the header of a table that got no rows."""
        if self._line is None:
            self._write_header([])

    def _write_header(self, rows: list[list[str]]) -> str:
        """Write the header and rule, sized for ``rows``; return the template of a line."""
        header = [printable(column.name) for column in self._columns]
        widths = [
            min(MAX_WIDTH, max(len(cell) for cell in cells))
            for cells in zip(header, *rows, strict=True)
        ]
        last = len(widths) - 1
        line = SEPARATOR.join(
            f"{{:>{width}}}"
            if column.type in NUMERIC_TYPES
            else "{}"
            if index == last
            else f"{{:<{width}}}"
            for index, (column, width) in enumerate(zip(self._columns, widths, strict=True))
        )
        rule = "-+-".join("-" * width for width in widths)
        _write_lines(self._file, [line.format(*header), rule])
        return line


def _write_lines(file: BinaryIO, lines: list[str]) -> None:
    if lines:
        file.write("".join(line + "\n" for line in lines).encode("utf-8"))


@hookimpl
def exportd_formats() -> list[Format[Any]]:
    """Register the ``txt`` format."""
    return [TxtFormat()]
