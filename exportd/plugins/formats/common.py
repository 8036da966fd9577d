"""Helpers the built-in formats share: times in the request's zone, text in UTF-8,
text that turns up in a column of another type, transcript roles and
conversations, and the display text of values for the human-readable formats
(txt, html): of one value, and of Arrow arrays a column at a time."""

from __future__ import annotations

import codecs
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, BinaryIO, TypeVar
from zoneinfo import ZoneInfo

import pyarrow as pa

from exportd import Column, ColumnType, ExportInfo
from exportd.plugins.formats import compute as pc

T = TypeVar("T")
Render = Callable[[Any], str]

NUMERIC_TYPES: frozenset[ColumnType] = frozenset({"integer", "float"})
REPLACEMENT_CHARACTER = "\ufffd"
_FEW = 64  # values, below which making cells per distinct value saves nothing
_LAST_LISTED_TRANSITIONS = datetime(2037, 1, 1, tzinfo=UTC)

# C0 controls and DEL have visible stand-ins in Unicode's Control Pictures block
# (U+2400-U+2421); C1 controls, lone surrogates (which UTF-8 cannot encode) and the
# line/paragraph separators have none, so they become U+FFFD.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")
_CONTROLS_BUT_LINES = re.compile("\r\n|[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATES = re.compile("[\ud800-\udfff]")
_SURROGATES_REPLACED = "exportd.replace-surrogates"


def _replace_surrogates(error: UnicodeError) -> tuple[bytes, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    # The UTF-8 encoder takes a replacement as bytes: a str one must be ASCII.
    return REPLACEMENT_CHARACTER.encode() * (error.end - error.start), error.end


codecs.register_error(_SURROGATES_REPLACED, _replace_surrogates)


def utf8(text: str) -> bytes:
    """``text`` in UTF-8, each lone surrogate (which UTF-8 cannot encode) as U+FFFD.

    As fast as ``text.encode()``: the replacing only runs where a surrogate is.
    """
    return text.encode("utf-8", _SURROGATES_REPLACED)


def without_surrogates(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD, as :func:`utf8` writes it."""
    return _SURROGATES.sub(REPLACEMENT_CHARACTER, text)


def with_stray_text(
    values: Sequence[Any],
    typed: Callable[[Sequence[Any]], Sequence[T]],
    text: Callable[[Sequence[Any]], Sequence[T]],
) -> Sequence[T]:
    """The cells of a column's ``values``: ``typed`` makes them, except that each str
    among them is made by ``text`` (which must take values of any type).

    This is for columns of a type other than text, whose values are almost never
    str, though SQLite stores text in a column of any type and users load their
    own data.  Values without text cost one look at each value's type, in C;
    among values with some, ``typed`` gets ``None`` in place of each str.
    """
    if str not in set(map(type, values)):
        return typed(values)
    cells = typed([None if v.__class__ is str else v for v in values])
    return [
        t if v.__class__ is str else c for v, t, c in zip(values, text(values), cells, strict=True)
    ]


def by_kind(
    array: pa.Array, typed: Callable[[pa.Array], pa.Array], text: Callable[[pa.Array], pa.Array]
) -> pa.Array:
    """The cells of a column's Arrow ``array``: ``typed`` makes them, except that in a
    stray-text union (see :func:`exportd.arrow_type`) ``text`` makes those of its text.

    ``typed`` gets the union's typed values, which may be of another type than the
    column's; both return arrays of one type (their cells), which come back in the
    union's order.  An array that is no union costs nothing more than ``typed``.
    """
    if not pa.types.is_union(array.type):
        return typed(array)
    typed_cells, text_cells = typed(array.field(0)), text(array.field(1))
    # A union's type_codes and offsets ignore the offset of a slice of it: read its buffers.
    _, codes, offsets = array.buffers()[:3]
    codes = pa.Array.from_buffers(pa.int8(), len(array), [None, codes], offset=array.offset)
    offsets = pa.Array.from_buffers(pa.int32(), len(array), [None, offsets], offset=array.offset)
    after_typed = pc.multiply(pc.cast(codes, pa.int32()), len(typed_cells))
    return pc.take(pa.concat_arrays([typed_cells, text_cells]), pc.add(offsets, after_typed))


def per_distinct(array: pa.Array, cells: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """``cells(array)``, made once per distinct value where values repeat, as names,
    conversations and their start times do in a batch of messages: when there are at
    most half as many distinct values as values (nulls stay null)."""
    if len(array) < _FEW or pa.types.is_union(array.type):
        return cells(array)
    encoded = pc.dictionary_encode(array)
    if len(encoded.dictionary) * 2 > len(array):
        return cells(array)
    return pc.take(cells(encoded.dictionary), encoded.indices)


def wall_clock(times: pa.Array, zone: ZoneInfo) -> pa.Array:
    """Times (a time without a zone is taken to be UTC) as naive ``timestamp("us")`` of
    their wall-clock time in ``zone``; nulls stay null."""
    utc = pc.cast(times, pa.timestamp("us", tz=times.type.tz or "UTC"))
    if zone.key == "UTC":
        return pc.cast(utc, pa.timestamp("us"))
    local = pc.local_timestamp(pc.cast(utc, pa.timestamp("us", tz=zone.key)))
    # Arrow reads a zone's transitions from the tz database files, whose explicit ones
    # end in 2037 (later ones follow a rule that Arrow ignores): zoneinfo does those.
    late = pc.fill_null(pc.greater_equal(utc, pa.scalar(_LAST_LISTED_TRANSITIONS, utc.type)), False)
    if not pc.any(late).as_py():
        return local
    clocks = [t.astimezone(zone).replace(tzinfo=None) for t in pc.filter(utc, late).to_pylist()]
    return pc.replace_with_mask(local, late, pa.array(clocks, local.type))


def offset_seconds(local: pa.Array, times: pa.Array) -> pa.Array:
    """The UTC offset, in seconds, of each wall-clock time of :func:`wall_clock` (``local``)
    of ``times``."""
    utc = pc.cast(pc.cast(times, pa.timestamp("us", tz=times.type.tz or "UTC")), pa.int64())
    return pc.divide(pc.subtract(pc.cast(local, pa.int64()), utc), 1_000_000)


def rfc3339_text(array: pa.Array, zone: ZoneInfo) -> pa.Array:
    """An Arrow array of times as RFC 3339 text with ``zone``'s offset, as msgspec renders
    them: ``Z`` for a zero offset, a fraction of a second only when there is one.

    A naive time is taken to be UTC; nulls stay null.
    """
    local = wall_clock(array, zone)
    offsets = pa.scalar("Z") if zone.key == "UTC" else _offsets(offset_seconds(local, array))
    # A naive time casts to "YYYY-MM-DD HH:MM:SS[.ffffff]", several times faster than
    # pc.strftime, which formats through a stream a value at a time.  In seconds, it
    # has no fraction: a cast that refuses to drop one says whether any has one.
    try:
        clock = pc.cast(pc.cast(local, pa.timestamp("s")), pa.string())
    except pa.ArrowInvalid:
        clock = pc.replace_substring(pc.cast(local, pa.string()), ".000000", "")
    clock = pc.replace_substring(clock, " ", "T", max_replacements=1)
    return pc.binary_join_element_wise(clock, offsets, "")


def _offsets(offsets: pa.Array) -> pa.Array:
    """UTC offsets in seconds as RFC 3339 writes them (``Z``, ``+02:00``)."""
    seconds = pc.dictionary_encode(offsets)
    texts = [_offset(value) for value in seconds.dictionary.to_pylist()]
    return pc.take(pa.array(texts, pa.string()), seconds.indices)


def _offset(seconds: int) -> str:
    if seconds == 0:
        return "Z"
    sign, seconds = ("-", -seconds) if seconds < 0 else ("+", seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{sign}{hours:02d}:{minutes:02d}" + (f":{seconds:02d}" if seconds else "")


def number_text(array: pa.Array) -> pa.Array:
    """An Arrow array of numbers as text, a float's shortest that reads back the same,
    with ``.0`` after a whole one (as Python writes it, and a JSON reader takes it for
    a float); nulls stay null."""
    text = pc.cast(array, pa.string())
    if not pa.types.is_floating(array.type):
        return text
    whole = pc.invert(pc.match_substring_regex(text, "[.eEna]"))
    return pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)


def values_bytes(strings: pa.Array) -> pa.Buffer:
    """The values of a freshly computed array of strings, end to end: its data buffer
    up to the last value's end, without copying it."""
    total = pc.sum(pc.binary_length(strings)).as_py()
    data = strings.buffers()[2]
    return pa.py_buffer(b"") if not total or data is None else data[:total]


def unchanged(values: Sequence[T]) -> Sequence[T]:
    """``values`` as they are: the cells of a column that a format need not convert."""
    return values


def local_time(value: datetime, zone: ZoneInfo) -> datetime:
    """``value`` (aware) in ``zone``; a naive value is taken to be UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo("UTC"))
    return value.astimezone(zone)


def clock(local: datetime) -> str:
    """A local time as ``YYYY-MM-DD HH:MM:SS``: to the second, without its offset."""
    return local.isoformat(" ", "seconds")[:19]


def export_title(info: ExportInfo) -> str:
    """A heading for an export: its source and interval, in the request's zone."""
    window = info.window
    start, end = (clock(local_time(t, window.timezone)) for t in (window.start, window.end))
    return f"{info.source}: {start} to {end} ({window.timezone.key})"


def printable(text: str) -> str:
    """``text`` with every control character shown as a visible symbol, so that it
    stays on one line: ``"\\n"`` becomes ``"␊"``, NUL ``"␀"``, tab ``"␉"`` (the
    Control Pictures block); C1 controls, U+2028/U+2029 and lone surrogates ``"�"``.
    """
    return _CONTROLS.sub(_picture, text)


def printable_lines(text: str) -> str:
    """Like :func:`printable`, but tabs, line feeds and U+2028/U+2029 stay; CRLF becomes LF."""
    return _CONTROLS_BUT_LINES.sub(_picture, text)


def _picture(match: re.Match[str]) -> str:
    char = match[0]
    if char == "\r\n":
        return "\n"
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)
    return "\u2421" if code == 0x7F else REPLACEMENT_CHARACTER


def renderers(columns: Sequence[Column], zone: ZoneInfo) -> list[Render]:
    """For each column, a function giving the display text of one of its values.

    ``None`` is empty, booleans (or SQLite's 0/1) are ``true``/``false``,
    datetimes are the local :func:`clock` time in ``zone``, anything else
    (text in a column of another type too) ``str()``.  Control characters are
    left as they are: see :func:`printable`.
    """

    def render_time(value: Any) -> str:
        return (
            clock(local_time(value, zone)) if isinstance(value, datetime) else _render_plain(value)
        )

    by_type: dict[str, Render] = {"datetime": render_time, "boolean": _render_boolean}
    return [by_type.get(column.type, _render_plain) for column in columns]


def _render_plain(value: Any) -> str:
    return "" if value is None else str(value)


def _render_boolean(value: Any) -> str:
    if value is None or value.__class__ is str:
        return _render_plain(value)
    return "true" if value else "false"


@dataclass(frozen=True)
class TranscriptLayout:
    """Column positions of a transcript: time, author, text and (maybe) conversation."""

    time: int
    author: int
    text: int
    conversation: int | None


def transcript_layout(columns: Sequence[Column]) -> TranscriptLayout | None:
    """The transcript layout if the columns carry time, author and text roles, else None."""
    roles = {column.role: index for index, column in enumerate(columns) if column.role}
    if not {"time", "author", "text"} <= roles.keys():
        return None
    return TranscriptLayout(
        time=roles["time"],
        author=roles["author"],
        text=roles["text"],
        conversation=roles.get("conversation"),
    )


_NOTHING_YET = object()


# The column-wise display text of the human-readable formats (txt, html), on Arrow
# arrays.  Patterns are RE2's: they find the cells that need :func:`printable` or
# :func:`printable_lines`, which then run on those cells alone.
_RE2_CONTROLS = "[\\x00-\\x1f\\x7f-\\x9f\\x{2028}\\x{2029}]"
_RE2_CONTROLS_BUT_LINES = "[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f]"
# Bytes that are no part of a control character's UTF-8 (C1 controls are C2 80-9F,
# U+2028/U+2029 E2 80 A8/A9).
_UNSUSPECT_BYTES = bytes(b for b in range(0x20, 0x100) if b not in (0x7F, 0xC2, 0xE2))
_LINES_UNSUSPECT_BYTES = _UNSUSPECT_BYTES + b"\t\n"
_C1_UTF8 = re.compile(b"\xc2[\x80-\x9f]")
_HTML_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#x27;"))
_TWO_DIGITS = pa.array([f"{n:02}" for n in range(60)], pa.string())


class LocalClock:
    """Times of a ``timestamp("us")`` array in ``zone``, as :func:`clock` and ISO 8601
    text, worked out a column at a time (their wall-clock time by :func:`wall_clock`)."""

    def __init__(self, zone: ZoneInfo) -> None:
        self._zone = zone

    def clock(self, times: pa.Array) -> pa.Array:
        """Each time's local :func:`clock` text, ``None`` for ``None``."""
        day, time = _wall_clock(self._local(times)[0])
        return pc.binary_join_element_wise(day, time, " ")

    def clock_and_iso(self, times: pa.Array) -> tuple[pa.Array, pa.Array]:
        """Each time's local :func:`clock` text and ISO 8601 text with its offset
        (``2024-05-01T10:15:02+03:00``), as :meth:`datetime.isoformat` writes it."""
        local, offsets = self._local(times)
        day, time = _wall_clock(local)
        unique = pc.drop_null(pc.unique(offsets))
        suffixes = pa.array([_offset_suffix(o) for o in unique.to_pylist()], pa.string())
        suffix = pc.take(suffixes, pc.index_in(offsets, unique))
        iso = pc.binary_join_element_wise(day, "T", time, suffix, "")
        return pc.binary_join_element_wise(day, time, " "), iso

    def _local(self, times: pa.Array) -> tuple[pa.Array, pa.Array]:
        """The local wall-clock times (``timestamp("s")``, no zone) and offsets (s)."""
        local = wall_clock(times, self._zone)
        seconds = pc.cast(pc.floor_temporal(local, unit="second"), pa.timestamp("s"))
        return seconds, offset_seconds(local, times)


def _wall_clock(local: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The ``YYYY-MM-DD`` and ``HH:MM:SS`` text of wall-clock times (``timestamp("s")``).

    A batch's times fall on few days, each written once by Python, and the time of
    day is put together from two-digit numbers: much faster than Arrow's ``strftime``.
    """
    days = pc.floor_temporal(local, unit="day")
    seconds = pc.subtract(pc.cast(local, pa.int64()), pc.cast(days, pa.int64()))
    unique = pc.drop_null(pc.unique(days))
    texts = pa.array([day.date().isoformat() for day in unique.to_pylist()], pa.string())
    return pc.take(texts, pc.index_in(days, unique)), _times_of_day(seconds)


def _times_of_day(seconds: pa.Array) -> pa.Array:
    """Seconds since midnight as ``HH:MM:SS``."""
    minutes, hours = pc.divide(seconds, 60), pc.divide(seconds, 3600)
    return pc.binary_join_element_wise(
        pc.take(_TWO_DIGITS, hours),
        pc.take(_TWO_DIGITS, pc.subtract(minutes, pc.multiply(hours, 60))),
        pc.take(_TWO_DIGITS, pc.subtract(seconds, pc.multiply(minutes, 60))),
        ":",
    )


def _offset_suffix(offset: int) -> str:
    """A UTC offset in seconds as :meth:`datetime.isoformat` ends with it: ``+03:00``."""
    return datetime(2000, 1, 1, tzinfo=timezone(timedelta(seconds=offset))).isoformat()[19:]


class ColumnText:
    """The text a format shows for a column's Arrow arrays: a string array without
    nulls holding each value's display text, as :func:`renderers` gives it, passed
    through ``shown`` (which makes text safe to show: :func:`printable_cells`, say)
    unless it is the text of a number, boolean, date or time, which needs none.

    Strings, integers, booleans, dates and times are worked out a column at a time;
    values of any other kind (floats, whose ``str()`` Arrow does not write, or typed
    values of another type than the column's) go through :func:`renderers`' function.
    """

    def __init__(
        self, column: Column, zone: ZoneInfo, shown: Callable[[pa.Array], pa.Array]
    ) -> None:
        self.column = column
        self.clock = LocalClock(zone)
        self._shown = shown
        [self._render] = renderers([column], zone)

    def cells(self, array: pa.Array) -> pa.Array:
        """The text of each of ``array``'s values."""
        return by_kind(array, self.typed, self._text)

    def typed(self, array: pa.Array) -> pa.Array:
        """The text of typed values (no stray-text union)."""
        kind, column_type = array.type, self.column.type
        if pa.types.is_string(kind) or pa.types.is_null(kind):
            return self._text(array)
        if column_type == "boolean":
            if pa.types.is_boolean(kind):
                return pc.fill_null(pc.if_else(array, "true", "false"), "")
        elif pa.types.is_integer(kind) or pa.types.is_date32(kind):
            return pc.fill_null(pc.cast(array, pa.string()), "")
        elif column_type == "datetime" and kind == pa.timestamp("us", tz=kind.tz):
            return pc.fill_null(self.clock.clock(array), "")
        rendered = [self._render(value) for value in array.to_pylist()]
        return self._shown(pa.array(rendered, pa.string()))

    def _text(self, array: pa.Array) -> pa.Array:
        return self._shown(pc.fill_null(pc.cast(array, pa.string()), ""))


def _controls_fixed(cells: pa.Array, pattern: str, fix: Callable[[str], str]) -> pa.Array:
    """``cells`` (strings without nulls) with ``fix`` run on those that RE2's ``pattern``
    (of control characters) finds something in, and the others as they are."""
    if not _may_hold_controls(cells, lines=pattern == _RE2_CONTROLS_BUT_LINES):
        return cells
    found = pc.match_substring_regex(cells, pattern)
    if not pc.any(found).as_py():
        return cells
    fixed = [fix(cell) for cell in pc.filter(cells, found).to_pylist()]
    return pc.replace_with_mask(cells, found, pa.array(fixed, pa.string()))


def _may_hold_controls(cells: pa.Array, *, lines: bool) -> bool:
    """Whether ``cells`` may hold a control character, U+2028 or U+2029 (with ``lines``:
    a control character but tab and line feed): a look at their bytes at once, much
    faster than a regex over each cell."""
    text = bytes(_text_bytes(cells))
    suspect = text.translate(None, _LINES_UNSUSPECT_BYTES if lines else _UNSUSPECT_BYTES)
    if suspect.translate(None, b"\xc2\xe2"):  # an ASCII control
        return True
    if b"\xc2" in suspect and _C1_UTF8.search(text) is not None:
        return True
    return not lines and b"\xe2" in suspect and (b"\xe2\x80\xa8" in text or b"\xe2\x80\xa9" in text)


def printable_cells(cells: pa.Array, fix: Callable[[str], str] = printable) -> pa.Array:
    """Each of ``cells`` through :func:`printable` (or ``fix``, for the cells that hold
    a control character, a line break above all)."""
    return _controls_fixed(cells, _RE2_CONTROLS, fix)


def printable_lines_cells(cells: pa.Array) -> pa.Array:
    """Each of ``cells`` through :func:`printable_lines`."""
    return _controls_fixed(cells, _RE2_CONTROLS_BUT_LINES, printable_lines)


def html_escaped(cells: pa.Array) -> pa.Array:
    """Each of ``cells`` as :func:`html.escape` writes it (``& < > " '``)."""
    held = bytes(_text_bytes(cells))
    for char, entity in _HTML_ESCAPES:
        if char.encode() in held:
            cells = pc.replace_substring(cells, char, entity)
    return cells


def write_cells(file: BinaryIO, cells: pa.Array) -> None:
    """Write ``cells`` (strings without nulls) to ``file`` one after the other, in UTF-8:
    straight from the array's buffer."""
    text = _text_bytes(cells)
    if text:
        file.write(text)


def _text_bytes(cells: pa.Array) -> memoryview:
    """The UTF-8 of ``cells`` (strings) one after the other, in the array's buffer."""
    if len(cells) == 0:
        return memoryview(b"")
    _, offsets, data = cells.buffers()
    at = memoryview(offsets).cast("i")
    start, end = at[cells.offset], at[cells.offset + len(cells)]
    return memoryview(data)[start:end] if end > start else memoryview(b"")


class ConversationStarts:
    """Where a transcript's conversations start, batch after batch of Arrow arrays.

    A conversation starts where the conversation column's value changes, so a
    source should order rows by conversation.  The last batch's conversation is
    remembered: one that goes on from it does not start again.
    """

    def __init__(self) -> None:
        self._current: Any = _NOTHING_YET

    @property
    def started(self) -> bool:
        """Whether any conversation has started."""
        return self._current is not _NOTHING_YET

    def starts(self, conversations: pa.Array) -> tuple[pa.Array, pa.Array]:
        """For each value of a conversation column, whether a conversation starts there,
        and whether one ends there (one starts that is not the export's first)."""
        if len(conversations) == 0:
            nothing = pa.array([], pa.bool_())
            return nothing, nothing
        if pa.types.is_union(conversations.type):
            values = conversations.to_pylist()
            changed = pa.array([a != b for a, b in itertools.pairwise(values)], pa.bool_())
            last = values[-1]
        else:
            changed = _changes(conversations[1:], conversations[:-1])
            last = conversations[-1].as_py()
        first = conversations[0].as_py() != self._current
        ends = self.started and first
        self._current = last
        return (
            pa.concat_arrays([pa.array([first], pa.bool_()), changed]),
            pa.concat_arrays([pa.array([ends], pa.bool_()), changed]),
        )


def _changes(values: pa.Array, before: pa.Array) -> pa.Array:
    """Whether each of ``values`` differs from the one ``before`` it (``None`` equals ``None``)."""
    null, null_before = pc.is_null(values), pc.is_null(before)
    differs = pc.fill_null(pc.not_equal(values, before), False)
    return pc.or_(pc.xor(null, null_before), differs)
