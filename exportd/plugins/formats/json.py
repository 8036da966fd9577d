"""The ``json`` and ``json_bulk`` formats, both encoded a whole column at a time.

Batches come as Arrow record batches.  Each column becomes an array of JSON values
with pyarrow.compute, never a cell at a time in Python: text escaped and quoted,
numbers cast to text (a float that is no finite number is ``null``), booleans
``true``/``false``, times RFC 3339 in the request's zone, nulls ``null``; text is a
JSON string in a column of any type (see
:func:`~exportd.plugins.formats.common.by_kind`); a column that repeats its values
has them made once per distinct value.  One element-wise join of the pre-encoded
keys and the columns makes every row's object, whose bytes are written with one
call; a column of strings without nulls has its quotes in the keys' text.  The
metadata of a ``json`` document is encoded with msgspec.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

import msgspec
import pyarrow as pa

from exportd import (
    Column,
    ExportInfo,
    Format,
    NoOptions,
    RowWriter,
    arrow_batch,
    hookimpl,
)
from exportd.plugins.formats import compute as pc
from exportd.plugins.formats.common import (
    by_kind,
    number_text,
    per_distinct,
    rfc3339_text,
    values_bytes,
    without_surrogates,
)


class LocalInterval(msgspec.Struct):
    """The exported time range in the request's zone: start inclusive, end exclusive."""

    start: datetime
    end: datetime


class ExportMetadata(msgspec.Struct):
    """The ``export`` member of a ``json`` document: what was exported, and when."""

    source: str
    params: dict[str, Any]
    interval: LocalInterval
    timezone: str
    columns: Sequence[Column]
    generated_at: datetime

    @classmethod
    def of(cls, info: ExportInfo) -> ExportMetadata:
        """The metadata of the export that ``info`` describes, its times in the request's zone."""
        zone = info.window.timezone
        return cls(
            source=info.source,
            params=info.params,
            interval=LocalInterval(
                info.window.start.astimezone(zone), info.window.end.astimezone(zone)
            ),
            timezone=zone.key,
            columns=info.columns,
            generated_at=info.generated_at.astimezone(zone),
        )


class JsonRows:
    """Encodes the rows of record batches of ``columns`` as JSON objects, each one
    between ``before`` and ``after``, keyed by column name.

    Where two columns share a name, the object holds it once, where it comes first,
    with the last one's value (as a dict would).
    """

    def __init__(self, columns: Sequence[Column], zone: ZoneInfo, before: str, after: str) -> None:
        self._zone = zone
        self._before, self._after = before, after
        names = [without_surrogates(column.name) for column in columns]
        last = {name: index for index, name in enumerate(names)}
        self._picked = sorted(last.values(), key=lambda index: names.index(names[index]))
        self._keys = [msgspec.json.encode(names[index]).decode() + ":" for index in self._picked]

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        """The text of each row of ``batch``: its object between ``before`` and ``after``."""
        parts: list[Any] = []
        glue = self._before + "{"
        for key, index in zip(self._keys, self._picked, strict=True):
            array = batch.column(index)
            unquoted = self._unquoted(array)
            if unquoted is None:
                values = per_distinct(array, self._values)
                parts += [glue + key, values.fill_null("null") if values.null_count else values]
                glue = ","
            else:  # its quotes join the keys' text rather than cost a join of their own
                parts += [glue + key + '"', per_distinct(array, unquoted)]
                glue = '",'
        return pc.binary_join_element_wise(*parts, glue.rstrip(",") + "}" + self._after, "")

    def _unquoted(self, array: pa.Array) -> Callable[[pa.Array], pa.Array] | None:
        """What makes the JSON strings of ``array`` without their quotes, if it holds
        strings only; ``None`` if its values are no strings, or not all, or nulls."""
        kind = array.type
        if array.null_count:
            return None
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return json_escaped
        if pa.types.is_timestamp(kind):
            return lambda values: rfc3339_text(values, self._zone)
        return _date_text if pa.types.is_date(kind) else None

    def _values(self, array: pa.Array) -> pa.Array:
        return by_kind(array, self._typed, json_strings)

    def _typed(self, array: pa.Array) -> pa.Array:
        kind = array.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return json_strings(array)
        if pa.types.is_boolean(kind):
            return pc.if_else(array, "true", "false")
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            return json_numbers(array)
        if pa.types.is_timestamp(kind):
            return quoted(rfc3339_text(array, self._zone))
        if pa.types.is_date(kind):
            return quoted(_date_text(array))
        return json_strings(array.cast(pa.string()))


# How JSON writes the control characters, which a string may hold only escaped.
ESCAPES = {
    **{chr(code): f"\\u{code:04x}" for code in range(0x20)},
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
NEEDS_ESCAPE = re.compile(rb'[\x00-\x1f"\\]')
CONTROLS = re.compile(rb"[\x00-\x1f]")


def json_strings(array: pa.Array) -> pa.Array:
    """An Arrow array of text as JSON strings (nulls stay null)."""
    return quoted(json_escaped(array))


def json_escaped(array: pa.Array) -> pa.Array:
    """An Arrow array of text as what JSON strings hold between their quotes."""
    data = array.buffers()[2]
    whole = b"" if data is None else data.to_pybytes()
    # Most columns need no escape at all: one search of their bytes says so.
    if NEEDS_ESCAPE.search(whole):
        if b"\\" in whole:
            array = pc.replace_substring(array, "\\", "\\\\")
        if b'"' in whole:
            array = pc.replace_substring(array, '"', '\\"')
        if CONTROLS.search(whole):
            array = _controls_escaped(array)
    return array


def _controls_escaped(array: pa.Array) -> pa.Array:
    """``array`` with its control characters escaped: only the few cells holding any
    go through a replacement per control character."""
    holding = pc.fill_null(pc.match_substring_regex(array, r"[\x00-\x1f]"), False)
    cells = pc.filter(array, holding)
    for char, escape in ESCAPES.items():
        if char.encode() in cells.buffers()[2].to_pybytes():
            cells = pc.replace_substring(cells, char, escape)
    return pc.replace_with_mask(array, holding, cells)


def json_numbers(array: pa.Array) -> pa.Array:
    """An Arrow array of numbers as JSON numbers; NaN and the infinities, which JSON
    has no numbers for, are nulls (as msgspec writes them)."""
    numbers = number_text(array)
    if pa.types.is_floating(array.type):
        finite = pc.is_finite(array)
        if pc.all(finite).as_py() is False:
            numbers = pc.if_else(finite, numbers, pa.scalar(None, pa.string()))
    return numbers


def _date_text(array: pa.Array) -> pa.Array:
    return array.cast(pa.string())


def quoted(array: pa.Array) -> pa.Array:
    """Each value of an array of text between double quotes (nulls stay null)."""
    return pc.binary_join_element_wise('"', array, '"', "")


def _cleaned(value: Any) -> Any:
    """``value`` without lone surrogates if it is text (a key or value of a dict too)."""
    if isinstance(value, str):
        return without_surrogates(value)
    if isinstance(value, list):
        return list(map(_cleaned, value))
    if isinstance(value, dict):
        return {_cleaned(key): _cleaned(item) for key, item in value.items()}
    return value


class JsonFormat(Format[NoOptions]):
    """One JSON document: ``{"export": {...}, "rows": [{column: value, ...}, ...]}``.

    ``export`` holds the source, its parameters, the interval, the time zone,
    the columns (name, type, role) and when the file was generated.  Times are
    RFC 3339 with the offset of the request's zone.  The document is streamed:
    its head, then each batch's rows, then its tail.
    """

    name = "json"
    media_type = "application/json"
    extension = "json"
    description = "one JSON document: export metadata and the rows as objects"
    form = "arrow"

    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: NoOptions, info: ExportInfo
    ) -> RowWriter:
        """Write the document's head and return a writer for the rows."""
        return JsonWriter(file, columns, info)


class JsonWriter(RowWriter):
    """Streams the ``rows`` array of a ``json`` document, one write per batch."""

    def __init__(self, file: BinaryIO, columns: Sequence[Column], info: ExportInfo) -> None:
        self._file = file
        self._columns = columns
        # Each row comes after a comma, but for the array's first one.
        self._rows = JsonRows(columns, info.window.timezone, before=",", after="")
        self._skip = 1
        # The metadata holds text from the request and the source: column names, params.
        encoded = msgspec.json.encode(_cleaned(msgspec.to_builtins(ExportMetadata.of(info))))
        file.write(b'{"export":' + encoded + b',"rows":[')

    def write(self, batch: Any) -> None:
        """Append the rows of the batch (a record batch, or row tuples) to the ``rows`` array."""
        batch = arrow_batch(batch, self._columns)
        if batch.num_rows:
            self._file.write(values_bytes(self._rows(batch))[self._skip :])
            self._skip = 0

    def close(self) -> None:
        """Close the ``rows`` array and the document."""
        self._file.write(b"]}\n")


class JsonBulkFormat(Format[NoOptions]):
    """Newline-delimited JSON (NDJSON, extension ``ndjson``): one object per row.

    Each line is ``{column: value, ...}`` with times in RFC 3339 with the
    offset of the request's zone; there is no metadata line, so the file can
    be split or loaded a line at a time.
    """

    name = "json_bulk"
    media_type = "application/x-ndjson"
    extension = "ndjson"
    description = "newline-delimited JSON, one object per row"
    form = "arrow"

    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: NoOptions, info: ExportInfo
    ) -> RowWriter:
        """Return a writer of one JSON object per line."""
        return JsonLinesWriter(file, columns, info.window.timezone)

    def joins(self, columns: Sequence[Column], options: NoOptions) -> bool:
        """Always: every line stands alone."""
        return True


class JsonLinesWriter(RowWriter):
    """Writes each batch as JSON lines with one write."""

    def __init__(self, file: BinaryIO, columns: Sequence[Column], zone: ZoneInfo) -> None:
        self._file = file
        self._columns = columns
        self._rows = JsonRows(columns, zone, before="", after="\n")

    def write(self, batch: Any) -> None:
        """Write one line per row of the batch (a record batch, or row tuples)."""
        batch = arrow_batch(batch, self._columns)
        if batch.num_rows:
            self._file.write(values_bytes(self._rows(batch)))

    def close(self) -> None:
        """Nothing to finish: every line is complete when written."""


@hookimpl
def exportd_formats() -> list[Format[Any]]:
    """Register the ``json`` and ``json_bulk`` formats."""
    return [JsonFormat(), JsonBulkFormat()]
