"""Arrow columns as the XML of spreadsheet cells, a whole column at a time.

Each function takes an Arrow array and gives a string array of the same length:
the *tail* of each cell's ``<c>`` element, from the end of its ``r`` attribute on
(``' t="b"><v>1</v></c>'``), or null where the row has no cell (a null value).
:func:`cells` puts a reference before each tail.  What the cells hold follows the
rules of :mod:`exportd.plugins.formats.xlsx`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from zoneinfo import ZoneInfo

import pyarrow as pa

from exportd.plugins.formats import compute as pc
from exportd.plugins.formats.common import REPLACEMENT_CHARACTER, by_kind, wall_clock

EXCEL_LARGEST_NUMBER = 9.99999999999999e307
EXCEL_TEXT_LIMIT = 32_767
BOLD, DATETIME, DATE = 1, 2, 3
"""The styles (``cellXfs`` indices) of the header, datetime and date cells."""
SERIAL_1970 = 25_569
"""1970-01-01 as an Excel serial day number (days since 1899-12-30)."""
US_PER_DAY = 86_400_000_000

_NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NOT_IN_XML_RE2 = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x{fffe}\x{ffff}]"
_ESCAPE_LIKE = re.compile("_(?=x[0-9A-Fa-f]{4}_)")
_ESCAPE_LIKE_RE2 = "_x[0-9A-Fa-f]{4}_"
# In text content only & and < must be escaped, and > after "]]"; a CR would be
# read back as a LF unless it is a character reference.
_XML_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("\r", "&#13;"))
_TEXT_CELL = (' t="inlineStr"><is><t xml:space="preserve">', "</t></is></c>")
_EMPTY_TEXT_CELL = ' t="inlineStr"></c>'
_NUMBER_CELL = ("><v>", "</v></c>")
_TRUE_CELL, _FALSE_CELL = ' t="b"><v>1</v></c>', ' t="b"><v>0</v></c>'

Tails = Callable[[pa.Array], pa.Array]


def storable(value: str) -> str:
    """``value`` without the characters XML forbids, its lone surrogates as U+FFFD and
    its ``_xHHHH_`` look-alikes escaped (as ``_x005F_xHHHH_``)."""
    value = _NOT_IN_XML.sub(_xml_replacement, value)
    return _ESCAPE_LIKE.sub("_x005F_", value) if "_x" in value else value


def _xml_replacement(match: re.Match[str]) -> str:
    return REPLACEMENT_CHARACTER if "\ud800" <= match[0] <= "\udfff" else ""


def escaped(value: str) -> str:
    """``value`` as XML text content (or an attribute's value, quoted with ``"``)."""
    for char, entity in (*_XML_ESCAPES, ('"', "&quot;")):
        value = value.replace(char, entity)
    return value


def text_cell(value: str, style: int = 0) -> str:
    """One inline string cell's tail holding ``value`` (made storable)."""
    value = storable(value)[:EXCEL_TEXT_LIMIT]
    styled = f' s="{style}"' if style else ""
    if not value:
        return styled + _EMPTY_TEXT_CELL
    return f"{styled}{_TEXT_CELL[0]}{escaped(value)}{_TEXT_CELL[1]}"


def cells(tails: pa.Array, letter: str, rows: pa.Array) -> pa.Array:
    """Whole ``<c>`` elements of the column ``letter`` from its ``tails``, ``""`` for
    none; ``rows`` holds the row numbers as text."""
    joined = pc.binary_join_element_wise(f'<c r="{letter}', rows, '"', tails, "")
    return pc.fill_null(joined, "")


def tails_maker(zone: ZoneInfo) -> Tails:
    """The tails of any column's array (stray-text unions too), times in ``zone``."""
    kinds: tuple[tuple[Callable[[pa.DataType], bool], Tails], ...] = (
        (pa.types.is_boolean, _booleans),
        (pa.types.is_integer, _integers),
        (pa.types.is_floating, _floats),
        (pa.types.is_timestamp, partial(_datetimes, zone=zone)),
        (pa.types.is_date, _dates),
    )

    def typed(array: pa.Array) -> pa.Array:
        for is_kind, tails in kinds:
            if is_kind(array.type):
                return tails(array)
        # Text, and any other type as its text.
        return text_tails(array.cast(pa.string()))

    return lambda array: by_kind(array, typed, text_tails)


def text_tails(array: pa.Array) -> pa.Array:
    """Inline string cells of a string array's text, made storable and cut to 32,767
    characters (as :func:`text_cell` does)."""
    if pc.any(pc.match_substring_regex(array, _NOT_IN_XML_RE2)).as_py():
        array = pc.replace_substring_regex(array, _NOT_IN_XML_RE2, "")
    look_alikes = pc.fill_null(pc.match_substring_regex(array, _ESCAPE_LIKE_RE2), False)
    if pc.any(look_alikes).as_py():
        # Rare, and RE2 has no look-ahead for "_x0041_x0042_": Python's re does these.
        fixed = [_ESCAPE_LIKE.sub("_x005F_", v) for v in array.filter(look_alikes).to_pylist()]
        array = pc.replace_with_mask(array, look_alikes, pa.array(fixed, array.type))
    if (pc.max(pc.binary_length(array)).as_py() or 0) > EXCEL_TEXT_LIMIT:
        array = pc.utf8_slice_codeunits(array, 0, EXCEL_TEXT_LIMIT)
    for char, entity in _XML_ESCAPES:
        if pc.any(pc.match_substring(array, char)).as_py():
            array = pc.replace_substring(array, char, entity)
    tails = pc.binary_join_element_wise(_TEXT_CELL[0], array, _TEXT_CELL[1], "")
    empty = pc.equal(array, "")
    # An empty cell, as openpyxl writes one (it reads back as no value).
    return pc.if_else(empty, _EMPTY_TEXT_CELL, tails) if pc.any(empty).as_py() else tails


def _numbers(digits: pa.Array, style: int = 0) -> pa.Array:
    """Number cells of numbers already written as text (``digits``)."""
    start = f' s="{style}"{_NUMBER_CELL[0]}' if style else _NUMBER_CELL[0]
    return pc.binary_join_element_wise(start, digits, _NUMBER_CELL[1], "")


def _booleans(array: pa.Array) -> pa.Array:
    """Boolean cells."""
    return pc.if_else(array, _TRUE_CELL, _FALSE_CELL)


def _integers(array: pa.Array) -> pa.Array:
    """Number cells of integers."""
    return _numbers(array.cast(pa.string()))


def _floats(array: pa.Array) -> pa.Array:
    """Number cells of floats, text cells (``"inf"``) of those Excel cannot hold."""
    array = array.cast(pa.float64())
    text = array.cast(pa.string())
    # NaN fails the comparison, so it becomes text too.
    fits = pc.less_equal(pc.abs(array), EXCEL_LARGEST_NUMBER)
    if pc.all(fits).as_py():
        return _numbers(text)
    return pc.if_else(fits, _numbers(text), text_tails(text))


def _datetimes(array: pa.Array, zone: ZoneInfo) -> pa.Array:
    """Number cells of times as Excel serial day numbers of their wall-clock time in
    ``zone`` (a time without a zone is taken to be UTC)."""
    utc = array.cast(pa.timestamp("us", tz=array.type.tz or "UTC"))
    micros = wall_clock(utc, zone).cast(pa.int64())
    serial = pc.add(
        pc.divide(micros.cast(pa.float64(), safe=False), float(US_PER_DAY)), float(SERIAL_1970)
    )
    return _numbers(_leap_day_shifted(serial).cast(pa.string()), DATETIME)


def _dates(array: pa.Array) -> pa.Array:
    """Number cells of dates as Excel serial day numbers."""
    serial = pc.add(array.cast(pa.date32()).cast(pa.int32()).cast(pa.int64()), SERIAL_1970)
    return _numbers(_leap_day_shifted(serial).cast(pa.string()), DATE)


def _leap_day_shifted(serial: pa.Array) -> pa.Array:
    """Serial day numbers from 1899-12-30 as Excel counts them: its calendar has a
    29 February 1900, so the days from 1900-01-01 to 1900-02-28 are one less (as
    openpyxl writes and reads them)."""
    early = pc.and_(pc.greater_equal(serial, 1), pc.less(serial, 61))
    if not pc.any(early).as_py():
        return serial
    return pc.if_else(early, pc.subtract(serial, 1), serial)
