"""The ``html`` format: one standalone UTF-8 HTML5 page.

The page has no scripts and loads nothing: its only style is inline CSS.  The
head, title and heading (source, interval, time zone) are written at
``open()``, rows as each batch arrives, and the closing tags at ``close()``.

When the columns carry time, author and text roles the page is a transcript:
a ``<section>`` per run of rows with the same conversation value (if a column
has that role) holding one ``<div class="message">`` per row with its
``<time>``, author and text.  Otherwise it is a ``<table>`` with a
``<thead>`` of column names and a ``<tbody>`` of rows.

Every value is escaped with :func:`html.escape`.  Line breaks and tabs are
kept and shown (``white-space: pre-wrap``), CRLF as LF; other control
characters, which HTML forbids, are shown as visible symbols (see
:func:`~exportd.plugins.formats.common.printable_lines`).  Datetimes are
``<time datetime="2024-05-01T10:15:02+03:00">2024-05-01 10:15:02</time>``
in the request's zone, to the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

from exportd import Batch, Column, ExportInfo, Format, NoOptions, RowWriter, hookimpl
from exportd.plugins.formats.common import (
    NUMERIC_TYPES,
    ConversationRuns,
    Render,
    TranscriptLayout,
    clock,
    export_title,
    local_time,
    printable_lines,
    renderers,
    transcript_layout,
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

    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: NoOptions, info: ExportInfo
    ) -> RowWriter:
        """Write the page's head and heading and return the transcript or table writer."""
        layout = transcript_layout(columns)
        markup = cell_markup(columns, info.window.timezone)
        if layout is None:
            return TableWriter(file, columns, markup, info)
        return TranscriptWriter(file, columns, markup, layout, info)


class TranscriptWriter(RowWriter):
    """Writes one ``<div class="message">`` per row, a ``<section>`` per conversation."""

    def __init__(
        self,
        file: BinaryIO,
        columns: Sequence[Column],
        markup: list[Render],
        layout: TranscriptLayout,
        info: ExportInfo,
    ) -> None:
        self._file = file
        self._markup = markup
        self._layout = layout
        conversation = layout.conversation
        self._label = "" if conversation is None else _escaped(columns[conversation].name)
        self._runs = ConversationRuns(layout, markup)
        _write(file, [_head(info, ""), "<main>\n"])

    def write(self, batch: Batch) -> None:
        """Write the batch's messages, starting a section where the conversation changes."""
        layout, markup = self._layout, self._markup
        time, author, text = markup[layout.time], markup[layout.author], markup[layout.text]
        at_time, at_author, at_text = layout.time, layout.author, layout.text
        parts: list[str] = []
        for run in self._runs.split(batch):
            if run.starts:
                if not run.first:
                    parts.append("</section>\n")
                parts.append(f"<section>\n<h2>{self._label}: {run.conversation}</h2>\n")
            parts.extend(
                f'<div class="message">{time(row[at_time])}'
                f'<span class="author">{author(row[at_author])}</span>'
                f'<div class="text">{text(row[at_text])}</div></div>\n'
                for row in run.rows
            )
        _write(self._file, parts)

    def close(self) -> None:
        """Close the last section and the page."""
        end = "</section>\n" if self._runs.started else ""
        _write(self._file, [end, "</main>\n", _TAIL])


class TableWriter(RowWriter):
    """Writes a ``<table>`` row per row."""

    def __init__(
        self, file: BinaryIO, columns: Sequence[Column], markup: list[Render], info: ExportInfo
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

    def write(self, batch: Batch) -> None:
        """Write the batch's rows."""
        markup = self._markup
        _write(
            self._file,
            [
                "<tr><td>"
                + "</td><td>".join([m(v) for m, v in zip(markup, row, strict=True)])
                + "</td></tr>\n"
                for row in batch
            ],
        )

    def close(self) -> None:
        """Close the table and the page."""
        _write(self._file, ["</tbody>\n</table>\n", _TAIL])


def cell_markup(columns: Sequence[Column], zone: ZoneInfo) -> list[Render]:
    """For each column, a function giving the escaped HTML of one of its values."""
    return [
        _time_markup(zone, render) if column.type == "datetime" else _escaping(render)
        for column, render in zip(columns, renderers(columns, zone), strict=True)
    ]


def _time_markup(zone: ZoneInfo, render: Render) -> Render:
    text = _escaping(render)

    def markup(value: Any) -> str:
        if not isinstance(value, datetime):
            return text(value)
        local = local_time(value, zone)
        return f'<time datetime="{local.isoformat(timespec="seconds")}">{clock(local)}</time>'

    return markup


def _escaping(render: Render) -> Render:
    def markup(value: Any) -> str:
        return escape(printable_lines(render(value)))

    return markup


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
