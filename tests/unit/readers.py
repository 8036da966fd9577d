"""Real readers that turn an exported file back into a header and typed rows.

One reader per built-in format, each on a real parser (the ``csv`` module,
openpyxl, msgspec, ``html.parser``, the text's lines), so that a test can
compare what a file holds with the rows that went in::

    from tests.unit.readers import READERS

    table = READERS["csv"](path, columns)

A reader gets the export's columns for their types (and, for txt and html,
their roles), and gives values back as typed as the format keeps them:

* csv, txt, html: each cell's text parsed by its column's type; an empty cell
  is ``None`` (these formats cannot tell an empty text from ``None``).  csv
  datetimes are aware; txt and html show local clock times to the second, read
  back as naive datetimes.  Text is returned as shown: csv keeps its formula
  quote, txt and html their control-character symbols.
* xlsx: openpyxl's typed cells, datetimes naive local times; every sheet's
  rows, each sheet starting with the header again.
* json, json_bulk: the decoded values, datetimes and dates parsed from their
  ISO text.

txt and html files whose columns carry time, author and text roles are
transcripts: each message reads back as a row of (conversation, time, author,
text), without the conversation if no column has that role, under the header
of those columns' names.  A txt message's continuation lines join its first
with ``"\\n"``.  Padding in txt table cells is stripped, so a value's own
leading or trailing spaces are lost there.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from html.parser import HTMLParser
from itertools import starmap
from pathlib import Path
from typing import Any

import msgspec
from openpyxl import load_workbook

from exportd import Column, ColumnType
from exportd.plugins.formats.common import TranscriptLayout, transcript_layout

Row = tuple[Any, ...]

TXT_INDENT = "    "
TXT_SEPARATOR = " | "
TXT_MESSAGE = re.compile(r"\[(?P<time>[^\]]*)\] (?P<author>.*?): (?P<text>.*)")
VOID_ELEMENTS = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    ]
)


@dataclass(frozen=True)
class Table:
    """What a file holds: its header and rows, and its title or metadata if it has them."""

    header: list[str]
    rows: list[Row]
    title: str | None = None
    """The title line of txt, the ``<h1>`` of html."""
    export: dict[str, Any] | None = None
    """The ``export`` member of a json document."""


Reader = Callable[[Path, Sequence[Column]], Table]


def typed(column_type: ColumnType, cell: str) -> Any:
    """The value that a cell's text shows, by its column's type; an empty cell is ``None``."""
    return _PARSERS[column_type](cell) if cell else None


def _boolean(cell: str) -> bool:
    if cell not in ("true", "false"):
        raise ValueError(f"not a boolean: {cell!r}")
    return cell == "true"


_PARSERS: dict[ColumnType, Callable[[str], Any]] = {
    "text": str,
    "integer": int,
    "float": float,
    "boolean": _boolean,
    "date": date.fromisoformat,
    "datetime": datetime.fromisoformat,
}


def _typed_rows(types: Sequence[ColumnType], rows: Sequence[Sequence[str]]) -> list[Row]:
    return [tuple(typed(t, cell) for t, cell in zip(types, row, strict=True)) for row in rows]


def read_csv(path: Path, columns: Sequence[Column]) -> Table:
    """A csv file (comma, no BOM) read with the ``csv`` module."""
    with path.open(newline="", encoding="utf-8") as file:
        header, *rows = csv.reader(file)
    return Table(header, _typed_rows([column.type for column in columns], rows))


def read_xlsx(path: Path, columns: Sequence[Column]) -> Table:
    """Every sheet of a workbook read with openpyxl, its header row once."""
    book = load_workbook(path)
    header: list[str] = []
    rows: list[Row] = []
    for sheet in book.worksheets:
        names, *values = sheet.iter_rows(values_only=True)
        if header and list(names) != header:
            raise ValueError(f"{path}: sheet {sheet.title!r} has another header")
        header = [str(name) for name in names]
        rows += [tuple(starmap(_xlsx_value, zip(columns, row, strict=True))) for row in values]
    return Table(header, rows)


def _xlsx_value(column: Column, value: Any) -> Any:
    """An openpyxl cell value as its column's type: Excel has no dates, only date-times,
    and openpyxl reads a whole float as an integer."""
    if column.type == "date" and isinstance(value, datetime):
        return value.date()
    if column.type == "float" and isinstance(value, int):
        return float(value)
    return value


def read_json(path: Path, columns: Sequence[Column]) -> Table:
    """A json document: the header from its ``export.columns``, the rows from ``rows``."""
    document = msgspec.json.decode(path.read_bytes())
    export: dict[str, Any] = document["export"]
    header = [column["name"] for column in export["columns"]]
    return Table(
        header, [_json_row(header, columns, obj) for obj in document["rows"]], export=export
    )


def read_json_bulk(path: Path, columns: Sequence[Column]) -> Table:
    """An NDJSON file, a line at a time; the header is the first object's keys."""
    with path.open("rb") as file:
        objects = [msgspec.json.decode(line) for line in file]
    header = list(objects[0]) if objects else []
    return Table(header, [_json_row(header, columns, obj) for obj in objects])


def _json_row(header: list[str], columns: Sequence[Column], obj: dict[str, Any]) -> Row:
    if list(obj) != header:
        raise ValueError(f"row keys {list(obj)} are not {header}")
    return tuple(starmap(_json_value, zip(columns, obj.values(), strict=True)))


def _json_value(column: Column, value: Any) -> Any:
    if value is not None and column.type in ("date", "datetime"):
        return typed(column.type, value)
    return value


def read_txt(path: Path, columns: Sequence[Column]) -> Table:
    """A txt file's title, then its table or its transcript."""
    content = path.read_bytes().decode("utf-8")
    if not content.endswith("\n"):
        raise ValueError(f"{path}: the last line does not end")
    title, *lines = content[:-1].split("\n")
    layout = transcript_layout(columns)
    in_conversations = layout is not None and layout.conversation is not None
    if lines[:1] != [""] and (lines or not in_conversations):  # (an empty one: no blank)
        raise ValueError(f"{path}: no blank line after the title")
    lines = lines[1:]
    if layout is None:
        header, rows = _txt_table(lines, columns)
    else:
        header, rows = _txt_transcript(lines, columns, layout)
    return Table(header, rows, title=title)


def _txt_table(lines: list[str], columns: Sequence[Column]) -> tuple[list[str], list[Row]]:
    heading, rule, *body = lines
    if set(rule) - set("-+"):
        raise ValueError(f"not a rule under the header: {rule!r}")
    header, *cells = (
        [cell.strip() for cell in line.split(TXT_SEPARATOR)] for line in [heading, *body]
    )
    return header, _typed_rows([column.type for column in columns], cells)


def _txt_transcript(
    lines: list[str], columns: Sequence[Column], layout: TranscriptLayout
) -> tuple[list[str], list[Row]]:
    shown = _shown_columns(columns, layout)
    heading = _ConversationHeading(columns, layout)
    messages: list[list[str]] = []
    for line in lines:
        if line.startswith(TXT_INDENT):
            messages[-1][-1] += "\n" + line[len(TXT_INDENT) :]
        elif line.startswith("== ") and line.endswith(" =="):
            heading.read(line[3:-3])
        elif line:
            found = TXT_MESSAGE.fullmatch(line)
            if found is None:
                raise ValueError(f"not a message line: {line!r}")
            messages.append([*heading.cells, *found.group("time", "author", "text")])
    types = [column.type for column in shown]
    return [column.name for column in shown], _typed_rows(types, messages)


def read_html(path: Path, columns: Sequence[Column]) -> Table:
    """An html page parsed with ``html.parser``: its ``<h1>``, then its table or transcript."""
    parser = _TreeBuilder()
    parser.feed(path.read_bytes().decode("utf-8"))
    parser.close()
    if parser.open != [parser.root]:
        raise ValueError(f"{path}: unclosed <{parser.open[-1].tag}>")
    [title] = parser.root.all("h1")
    layout = transcript_layout(columns)
    if layout is None:
        header, rows = _html_table(parser.root, columns)
    else:
        header, rows = _html_transcript(parser.root, columns, layout)
    return Table(header, rows, title=title.text())


def _html_table(page: _Element, columns: Sequence[Column]) -> tuple[list[str], list[Row]]:
    [head] = page.all("thead")
    [body] = page.all("tbody")
    header = [th.text() for th in head.all("th")]
    cells = [[td.text() for td in tr.all("td")] for tr in body.all("tr")]
    return header, _typed_rows([column.type for column in columns], cells)


def _html_transcript(
    page: _Element, columns: Sequence[Column], layout: TranscriptLayout
) -> tuple[list[str], list[Row]]:
    shown = _shown_columns(columns, layout)
    heading = _ConversationHeading(columns, layout)
    [main] = page.all("main")
    sections = main.all("section") or [main]
    messages: list[list[str]] = []
    for section in sections:
        for h2 in section.all("h2"):
            heading.read(h2.text())
        for message in section.all("div", "message"):
            [time] = message.all("time")
            [author] = message.all("span", "author")
            [text] = message.all("div", "text")
            messages.append([*heading.cells, time.text(), author.text(), text.text()])
    types = [column.type for column in shown]
    return [column.name for column in shown], _typed_rows(types, messages)


def _shown_columns(columns: Sequence[Column], layout: TranscriptLayout) -> list[Column]:
    """The columns a transcript shows: conversation (if any), time, author, text."""
    at = (layout.conversation, layout.time, layout.author, layout.text)
    return [columns[index] for index in at if index is not None]


class _ConversationHeading:
    """The conversation of the messages that follow, from the last ``"label: value"`` heading."""

    def __init__(self, columns: Sequence[Column], layout: TranscriptLayout) -> None:
        self._label = "" if layout.conversation is None else columns[layout.conversation].name
        self.cells: list[str] = []
        """The cell that starts each message's row: none if no column is the conversation."""

    def read(self, heading: str) -> None:
        """Take the conversation value from ``heading``, which must name the column."""
        label, separator, value = heading.partition(": ")
        if (label, separator) != (self._label, ": "):
            raise ValueError(f"a heading names another column: {heading!r}")
        self.cells = [value]


@dataclass
class _Element:
    """An element of a parsed page: its tag, attributes and children."""

    tag: str
    attrs: dict[str, str | None] = field(default_factory=dict)
    children: list[_Element | str] = field(default_factory=list)

    def text(self) -> str:
        """All the text inside, as a browser would copy it."""
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def all(self, tag: str, css_class: str | None = None) -> list[_Element]:
        """Every element inside with ``tag`` (and ``css_class``), in document order."""
        found: list[_Element] = []
        for child in self.children:
            if isinstance(child, _Element):
                if child.tag == tag and css_class in (None, child.attrs.get("class")):
                    found.append(child)
                found += child.all(tag, css_class)
        return found


class _TreeBuilder(HTMLParser):
    """Builds an :class:`_Element` tree, failing on any badly nested end tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = _Element("#document")
        self.open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Open an element (void elements have no content to open)."""
        element = _Element(tag, dict(attrs))
        self.open[-1].children.append(element)
        if tag not in VOID_ELEMENTS:
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        """Close the innermost open element, which must be ``tag``."""
        if self.open[-1].tag != tag:
            raise ValueError(f"</{tag}> closes <{self.open[-1].tag}>")
        self.open.pop()

    def handle_data(self, data: str) -> None:
        """Add text to the innermost open element."""
        self.open[-1].children.append(data)


READERS: dict[str, Reader] = {
    "csv": read_csv,
    "xlsx": read_xlsx,
    "txt": read_txt,
    "html": read_html,
    "json": read_json,
    "json_bulk": read_json_bulk,
}
"""The reader of each built-in format, by format name."""
