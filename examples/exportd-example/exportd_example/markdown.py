"""The ``markdown`` format: one GitHub-flavoured Markdown table.

Every value is escaped so that it renders as the text it is: pipes and the
characters Markdown reads as inline markup get a backslash, line breaks become
``<br>`` so that a multi-line value stays in its cell, and white space at
either end of a value becomes character references, which Markdown does not
trim.  Text is written as text in a column of any type (a loosely typed store
may hold some in a number or time column).  Three characters cannot survive: a
lone surrogate, which UTF-8 cannot encode, is written as U+FFFD, as the built-in
formats write it; NUL renders as U+FFFD (CommonMark replaces it); and a
vertical tab at either end of a value is dropped (no character reference may
stand for it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

import msgspec

from exportd import Batch, Column, ExportInfo, Format, RowWriter

MARKUP = str.maketrans(
    {char: "\\" + char for char in "\\|*_`[]<>&~"} | {"\n": "<br>", "\r": "<br>"}
)
# The white space Markdown trims from a table cell: \s less U+001C-U+001F and U+0085.
EDGE_SPACE = re.compile(r"^[^\S\x1c-\x1f\x85]+|[^\S\x1c-\x1f\x85]+\Z")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
NUMERIC = frozenset({"integer", "float"})

Cell = Callable[[Any], str]


class MarkdownOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How the table is laid out."""

    align_numbers: bool = True
    """Right-align integer and float columns."""


class MarkdownFormat(Format[MarkdownOptions]):
    """A header row, the alignment row, then one row per exported row."""

    name = "markdown"
    media_type = "text/markdown; charset=utf-8"
    extension = "md"
    description = "a GitHub-flavoured Markdown table"
    Options = MarkdownOptions

    def open(
        self,
        file: BinaryIO,
        columns: Sequence[Column],
        options: MarkdownOptions,
        info: ExportInfo,
    ) -> RowWriter:
        """Write the header and return a writer for the rows."""
        aligned = options.align_numbers
        file.write(table_row(escape(column.name) for column in columns).encode())
        file.write(
            table_row("---:" if aligned and c.type in NUMERIC else "---" for c in columns).encode()
        )
        cells = [cell_renderer(column, info.window.timezone) for column in columns]
        return MarkdownWriter(file, cells)


class MarkdownWriter(RowWriter):
    """Appends table rows to the file, one encoded chunk per batch."""

    def __init__(self, file: BinaryIO, cells: list[Cell]) -> None:
        self.file = file
        self.cells = cells

    def write(self, batch: Batch) -> None:
        """Render and write one batch of rows."""
        cells = self.cells
        lines = [
            table_row(
                "" if value is None else cell(value) for cell, value in zip(cells, row, strict=True)
            )
            for row in batch
        ]
        self.file.write("".join(lines).encode())

    def close(self) -> None:
        """Nothing to finish: a Markdown table has no footer."""


def table_row(cells: Any) -> str:
    """One table line from the already escaped ``cells``."""
    return "| " + " | ".join(cells) + " |\n"


def escape(text: str) -> str:
    """``text`` as Markdown that renders as exactly that text, on one line (each lone
    surrogate as U+FFFD)."""
    escaped = LONE_SURROGATE.sub("\ufffd", text).replace("\r\n", "\n").translate(MARKUP)
    return EDGE_SPACE.sub(character_references, escaped)


def character_references(space: re.Match[str]) -> str:
    """The white space that ``space`` matched, as character references."""
    return "".join(f"&#{ord(char)};" for char in space[0] if char != "\v")


def cell_renderer(column: Column, zone: ZoneInfo) -> Cell:
    """How to render a value of ``column`` (never ``None``) as a table cell: as the
    column's type says, but text as text in a column of any type."""
    typed: dict[str, Cell] = {
        "datetime": lambda value: value.astimezone(zone).isoformat(" ", "seconds"),
        "date": date.isoformat,
        "boolean": lambda value: "true" if value else "false",
        "integer": str,
        "float": str,
    }
    render = typed.get(column.type)
    if render is None:
        return text_cell
    return lambda value: text_cell(value) if isinstance(value, str) else render(value)


def text_cell(value: Any) -> str:
    """A text value as a table cell."""
    return escape(str(value))
