"""The ``html`` format: one standalone UTF-8 HTML5 page.

The page has no scripts and loads nothing: its only style is inline CSS.  The
head, title and heading (source, interval, time zone) are written at
``open()``, rows as each batch arrives, and the closing tags at ``close()``.

When the columns carry time, author and text roles the page is a transcript:
a ``<section>`` per run of rows with the same conversation value (if a column
has that role) holding one ``<div class="message">`` per row with its
``<time>``, author and text.  Otherwise it is a ``<table>`` with a
``<thead>`` of column names and a ``<tbody>`` of rows.

Batches come as Arrow record batches and are written a column at a time
(:class:`~exportd.plugins.formats.common.ColumnText`).  Every value is escaped
as :func:`html.escape` escapes it.  Line breaks and tabs are
kept and shown (``white-space: pre-wrap``), CRLF as LF; other control
characters, which HTML forbids, are shown as visible symbols (see
:func:`~exportd.plugins.formats.common.printable_lines`).  Datetimes are
``<time datetime="2024-05-01T10:15:02+03:00">2024-05-01 10:15:02</time>``
in the request's zone, to the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any, BinaryIO

import pyarrow as pa

from exportd import Column, ExportInfo, Format, NoOptions, RowWriter, hookimpl
from exportd.plugins.formats import compute as pc
from exportd.plugins.formats.common import (
    NUMERIC_TYPES,
    ColumnText,
    ConversationStarts,
    TranscriptLayout,
    by_kind,
    export_title,
    html_escaped,
    printable_lines,
    printable_lines_cells,
    transcript_layout,
    write_cells,
)

STYLE = """\
body{font:15px/1.45 system-ui,sans-serif;margin:2rem;color:#1d1d1f;background:#fff}
h1{font-size:1.25rem}
h2{font-size:1rem;margin:2rem 0 .5rem;padding-bottom:.25rem;border-bottom:1px solid #ccc}
time{color:#666;font-variant-numeric:tabular-nums;white-space:nowrap}
.message{display:grid;grid-template-columns:10.5rem 12rem 1fr;gap:1rem;padding:.2rem 0}
.message time{grid-column:1}
.author{grid-column:2;font-weight:600;overflow-wrap:anywhere}
.text{grid-column:3}
.text,td,th{white-space:pre-wrap;overflow-wrap:anywhere;unicode-bidi:plaintext}
table{border-collapse:collapse}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4;position:sticky;top:0}
"""
_TAIL = "</body>\n</html>\n"


class HtmlFormat(Format[NoOptions]):
    """A standalone HTML page: a transcript when the columns allow it, a table otherwise."""

    name = "html"
    media_type = "text/html; charset=utf-8"
    extension = "html"
    description = "a standalone HTML page: a chat transcript, or a table"
    form = "arrow"

    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: NoOptions, info: ExportInfo
    ) -> RowWriter:
        """Write the page's head and heading and return the transcript or table writer."""
        layout = transcript_layout(columns)
        markup = [CellMarkup(column, info) for column in columns]
        if layout is None:
            return TableWriter(file, columns, markup, info)
        return TranscriptWriter(file, columns, markup, layout, info)


class CellMarkup:
    """The escaped HTML of a column's values, an Arrow array at a time: a datetime as
    ``<time datetime="...">...</time>``, anything else its escaped display text."""

    def __init__(self, column: Column, info: ExportInfo) -> None:
        self._text = ColumnText(column, info.window.timezone, _escaped_cells)
        self._times = column.type == "datetime"

    def cells(self, array: pa.Array) -> pa.Array:
        """The markup of each of ``array``'s values."""
        return by_kind(array, self._typed, self._text.cells)

    def _typed(self, array: pa.Array) -> pa.Array:
        if not (self._times and array.type == pa.timestamp("us", tz=array.type.tz)):
            return self._text.typed(array)
        clock, iso = self._text.clock.clock_and_iso(array)
        times = pc.binary_join_element_wise('<time datetime="', iso, '">', clock, "</time>", "")
        return times.fill_null("")


class TranscriptWriter(RowWriter):
    """Writes one ``<div class="message">`` per row, a ``<section>`` per conversation."""

    def __init__(
        self,
        file: BinaryIO,
        columns: Sequence[Column],
        markup: list[CellMarkup],
        layout: TranscriptLayout,
        info: ExportInfo,
    ) -> None:
        self._file = file
        self._markup = markup
        self._layout = layout
        conversation = layout.conversation
        self._label = "" if conversation is None else _escaped(columns[conversation].name)
        self._starts = ConversationStarts()
        _write(file, [_head(info, ""), "<main>\n"])

    def write(self, batch: pa.RecordBatch) -> None:
        """Write the batch's messages, starting a section where the conversation changes."""
        layout = self._layout
        time, author, text = (
            self._cells(batch, at) for at in (layout.time, layout.author, layout.text)
        )
        parts: list[Any] = [
            '<div class="message">',
            time,
            '<span class="author">',
            author,
            '</span><div class="text">',
            text,
            "</div></div>\n",
        ]
        if layout.conversation is not None and batch.num_rows:
            parts[:0] = self._sections(batch, layout.conversation)
        write_cells(self._file, pc.binary_join_element_wise(*parts, ""))

    def close(self) -> None:
        """Close the last section and the page."""
        end = "</section>\n" if self._starts.started else ""
        _write(self._file, [end, "</main>\n", _TAIL])

    def _cells(self, batch: pa.RecordBatch, at: int) -> pa.Array:
        return self._markup[at].cells(batch.column(at))

    def _sections(self, batch: pa.RecordBatch, at: int) -> list[pa.Array]:
        """Before each row that starts a conversation, the end of the last section (if
        any) and the start of its own; nothing before the others."""
        starts, ends = self._starts.starts(batch.column(at))
        headings = pc.binary_join_element_wise(
            f"<section>\n<h2>{self._label}: ", self._cells(batch, at), "</h2>\n", ""
        )
        return [pc.if_else(ends, "</section>\n", ""), pc.if_else(starts, headings, "")]


class TableWriter(RowWriter):
    """Writes a ``<table>`` row per row."""

    def __init__(
        self, file: BinaryIO, columns: Sequence[Column], markup: list[CellMarkup], info: ExportInfo
    ) -> None:
        self._file = file
        self._markup = markup
        # Numbers are right-aligned by position, so that no cell needs a class.
        numbers = ",".join(
            f"td:nth-child({index})"
            for index, column in enumerate(columns, 1)
            if column.type in NUMERIC_TYPES
        )
        header = "".join(f"<th>{_escaped(column.name)}</th>" for column in columns)
        _write(
            file,
            [
                _head(info, f"{numbers}{{text-align:right}}\n" if numbers else ""),
                f"<table>\n<thead><tr>{header}</tr></thead>\n<tbody>\n",
            ],
        )

    def write(self, batch: pa.RecordBatch) -> None:
        """Write the batch's rows."""
        if not batch.num_rows:
            return
        cells = [m.cells(array) for m, array in zip(self._markup, batch.columns, strict=True)]
        row = pc.binary_join_element_wise(*cells, "</td><td>")
        write_cells(self._file, pc.binary_join_element_wise("<tr><td>", row, "</td></tr>\n", ""))

    def close(self) -> None:
        """Close the table and the page."""
        _write(self._file, ["</tbody>\n</table>\n", _TAIL])


def _escaped_cells(cells: pa.Array) -> pa.Array:
    return html_escaped(printable_lines_cells(cells))


def _escaped(text: str) -> str:
    return escape(printable_lines(text))


def _head(info: ExportInfo, extra_style: str) -> str:
    title = _escaped(export_title(info))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>\n{STYLE}{extra_style}</style>\n</head>\n"
        f"<body>\n<h1>{title}</h1>\n"
    )


def _write(file: BinaryIO, parts: list[str]) -> None:
    if parts:
        file.write("".join(parts).encode("utf-8"))


@hookimpl
def exportd_formats() -> list[Format[Any]]:
    """Register the ``html`` format."""
    return [HtmlFormat()]
