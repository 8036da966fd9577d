"""The ``json`` and ``json_bulk`` formats, both encoded with msgspec a batch at a time.

Each batch of row tuples becomes a list of msgspec Structs whose field names
are the column names (dicts where a name rules that out), built in C
(``starmap``), and is encoded with one call.
msgspec renders aware datetimes as RFC 3339 itself; only the datetime columns
are moved to the request's zone first, and not at all when it is UTC, the zone
sources hand them over in.

Text is written as a JSON string in a column of any type.  Lone surrogates,
which UTF-8 cannot encode (msgspec refuses them), become U+FFFD: a batch that
holds one is encoded again with its text cleaned, so that only such a batch
pays for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import starmap
from typing import Any, BinaryIO, TypeVar
from zoneinfo import ZoneInfo

import msgspec

from exportd import Batch, Column, ExportInfo, Format, NoOptions, RowWriter, hookimpl
from exportd.plugins.formats.common import unchanged, with_stray_text, without_surrogates

T = TypeVar("T")

# msgspec writes a renamed field's name as it is, so it refuses these characters.
UNNAMEABLE = re.compile(r'["\\\x00-\x1f]')


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


class RowObjects:
    """Turns batches of row tuples into objects keyed by column name, ready to encode."""

    def __init__(self, columns: Sequence[Column], zone: ZoneInfo) -> None:
        self._object = row_constructor([without_surrogates(column.name) for column in columns])
        self._zone = zone
        self._times = (
            []
            if zone.key == "UTC"
            else [index for index, column in enumerate(columns) if column.type == "datetime"]
        )

    def __call__(self, batch: Batch) -> list[Any]:
        """The rows of ``batch`` as objects, their datetimes in the request's zone."""
        if not (self._times and batch):
            return list(starmap(self._object, batch))
        by_column: list[Sequence[Any]] = list(zip(*batch, strict=True))
        for index in self._times:
            by_column[index] = with_stray_text(by_column[index], self._in_zone, unchanged)
        return list(map(self._object, *by_column))

    def encode(self, encode: Callable[[list[Any]], T], batch: Batch) -> T:
        """``encode`` of the rows of ``batch`` as objects, lone surrogates as U+FFFD."""
        try:
            return encode(self(batch))
        except UnicodeEncodeError:
            return encode(self([tuple(map(_cleaned, row)) for row in batch]))

    def _in_zone(self, values: Sequence[Any]) -> list[Any]:
        zone = self._zone
        return [v if v is None else v.astimezone(zone) for v in values]


def _cleaned(value: Any) -> Any:
    """``value`` without lone surrogates if it is text (a key or value of a dict too)."""
    if isinstance(value, str):
        return without_surrogates(value)
    if isinstance(value, list):
        return list(map(_cleaned, value))
    if isinstance(value, dict):
        return {_cleaned(key): _cleaned(item) for key, item in value.items()}
    return value


def row_constructor(names: Sequence[str]) -> Callable[..., Any]:
    """What makes of a row's values an object that encodes as ``{name: value, ...}``.

    A msgspec Struct type where it can be, four times faster to build and
    encode than a dict; a dict when a name holds what msgspec refuses in a
    field name, or when two columns share a name (the last one's value wins).
    """
    if len(set(names)) < len(names) or any(UNNAMEABLE.search(name) for name in names):
        return lambda *values: dict(zip(names, values, strict=True))
    # Struct fields must be identifiers; ``rename`` gives them the column names.
    fields = [f"c{index}" for index in range(len(names))]
    return msgspec.defstruct(
        "Row",
        [(field, Any) for field in fields],
        rename=dict(zip(fields, names, strict=True)),
        gc=False,  # rows hold only scalars, so they cannot form cycles
    )


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

    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: NoOptions, info: ExportInfo
    ) -> RowWriter:
        """Write the document's head and return a writer for the rows."""
        return JsonWriter(file, RowObjects(columns, info.window.timezone), info)


class JsonWriter(RowWriter):
    """Streams the ``rows`` array of a ``json`` document, one write per batch."""

    def __init__(self, file: BinaryIO, objects: RowObjects, info: ExportInfo) -> None:
        self._file = file
        self._objects = objects
        self._encoder = msgspec.json.Encoder()
        self._buffer = bytearray()
        self._separator = b""
        # The metadata holds text from the request and the source: column names, params.
        metadata = self._encoder.encode(_cleaned(msgspec.to_builtins(ExportMetadata.of(info))))
        file.write(b'{"export":' + metadata + b',"rows":[')

    def write(self, batch: Batch) -> None:
        """Append the batch's rows to the ``rows`` array."""
        if not batch:
            return
        buffer = self._buffer
        # The batch encodes as "[row,...,row]": swap its "[" for the separator
        # and leave out its "]", so its rows join the array open in the file.
        self._objects.encode(lambda objects: self._encoder.encode_into(objects, buffer), batch)
        buffer[:1] = self._separator
        self._separator = b","
        with memoryview(buffer) as view:  # released at once, so the buffer can grow again
            self._file.write(view[:-1])

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

    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: NoOptions, info: ExportInfo
    ) -> RowWriter:
        """Return a writer of one JSON object per line."""
        return JsonLinesWriter(file, RowObjects(columns, info.window.timezone))


class JsonLinesWriter(RowWriter):
    """Writes each batch as JSON lines with one encode and one write."""

    def __init__(self, file: BinaryIO, objects: RowObjects) -> None:
        self._file = file
        self._objects = objects
        self._encoder = msgspec.json.Encoder()

    def write(self, batch: Batch) -> None:
        """Write one line per row of the batch."""
        self._file.write(self._objects.encode(self._encoder.encode_lines, batch))

    def close(self) -> None:
        """Nothing to finish: every line is complete when written."""


@hookimpl
def exportd_formats() -> list[Format[Any]]:
    """Register the ``json`` and ``json_bulk`` formats."""
    return [JsonFormat(), JsonBulkFormat()]
