"""Helpers the built-in formats share: times in the request's zone, text in UTF-8,
text that turns up in a column of another type, transcript roles and
conversations, and the display text of values for the human-readable formats
(txt, html)."""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from exportd import Batch, Column, ColumnType, ExportInfo, Row

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
    after_typed = pc.multiply(codes.cast(pa.int32()), len(typed_cells))
    return pa.concat_arrays([typed_cells, text_cells]).take(pc.add(offsets, after_typed))


def per_distinct(array: pa.Array, cells: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """``cells(array)``, made once per distinct value where values repeat, as names,
    conversations and their start times do in a batch of messages: when there are at
    most half as many distinct values as values (nulls stay null)."""
    if len(array) < _FEW or pa.types.is_union(array.type):
        return cells(array)
    encoded = array.dictionary_encode()
    if len(encoded.dictionary) * 2 > len(array):
        return cells(array)
    return cells(encoded.dictionary).take(encoded.indices)


def rfc3339_text(array: pa.Array, zone: ZoneInfo) -> pa.Array:
    """An Arrow array of times as RFC 3339 text with ``zone``'s offset, as msgspec renders
    them: ``Z`` for a zero offset, a fraction of a second only when there is one.

    A naive time is taken to be UTC; nulls stay null.
    """
    utc = array.cast(pa.timestamp("us", "UTC"))
    if zone.key == "UTC":
        local, offsets = utc.cast(pa.timestamp("us")), pa.scalar("Z")
    else:
        local = pc.local_timestamp(utc.cast(pa.timestamp("us", zone.key)))
        offsets = _offsets(local, utc)
    # A naive time casts to "YYYY-MM-DD HH:MM:SS[.ffffff]", several times faster than
    # pc.strftime, which formats through a stream a value at a time.  In seconds, it
    # has no fraction: a cast that refuses to drop one says whether any has one.
    try:
        clock = local.cast(pa.timestamp("s")).cast(pa.string())
    except pa.ArrowInvalid:
        clock = pc.replace_substring(local.cast(pa.string()), ".000000", "")
    clock = pc.replace_substring(clock, " ", "T", max_replacements=1)
    text = pc.binary_join_element_wise(clock, offsets, "")
    if zone.key == "UTC":
        return text
    # Arrow reads a zone's transitions from the tz database files, whose explicit ones
    # end in 2037 (later ones follow a rule that Arrow ignores): zoneinfo renders those.
    late = pc.greater_equal(utc, pa.scalar(_LAST_LISTED_TRANSITIONS, utc.type))
    late = pc.fill_null(late, False)
    if not pc.any(late).as_py():
        return text
    moments = [moment.astimezone(zone) for moment in pc.filter(utc, late).to_pylist()]
    return pc.replace_with_mask(text, late, pa.array(msgspec.to_builtins(moments), pa.string()))


def _offsets(local: pa.Array, utc: pa.Array) -> pa.Array:
    """The UTC offset of each local time as RFC 3339 writes it (``Z``, ``+02:00``)."""
    seconds = pc.divide(
        pc.subtract(local.cast(pa.int64()), utc.cast(pa.int64())), 1_000_000
    ).dictionary_encode()
    texts = [_offset(value) for value in seconds.dictionary.to_pylist()]
    return pa.array(texts, pa.string()).take(seconds.indices)


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
    text = array.cast(pa.string())
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


class Run(NamedTuple):
    """Consecutive rows of a transcript that belong to one conversation."""

    conversation: str
    """The conversation's value as the writer renders it; ``""`` without a conversation column."""
    rows: Iterable[Row]
    """The rows, in order: an iterator, to be read before the next run."""
    starts: bool
    """Whether the conversation starts here, rather than going on from the last batch."""
    first: bool
    """Whether it is the export's first conversation."""


class ConversationRuns:
    """Splits a transcript's batches into runs of rows of one conversation each.

    A run starts where the conversation column's value changes, so a source
    should order rows by conversation.  The last batch's conversation is
    remembered: a run that goes on from it does not start again.  Without a
    conversation column a batch is one run that never starts.
    """

    def __init__(self, layout: TranscriptLayout, render: Sequence[Render]) -> None:
        """``render`` holds the writer's function for each column's values."""
        at = layout.conversation
        self._conversation = None if at is None else (at, render[at])
        self._current: Any = _NOTHING_YET

    @property
    def started(self) -> bool:
        """Whether any conversation has started."""
        return self._current is not _NOTHING_YET

    def split(self, batch: Batch) -> Iterator[Run]:
        """The runs of ``batch``, in order."""
        if self._conversation is None:
            if batch:
                yield Run("", batch, starts=False, first=False)
            return
        at, render = self._conversation
        for conversation, rows in groupby(batch, itemgetter(at)):
            first = not self.started
            starts = conversation != self._current
            self._current = conversation
            yield Run(render(conversation), rows, starts, first)


_NOTHING_YET = object()
