"""The ``csv`` format: RFC 4180 text in UTF-8 with a header row of column names.

Batches come as Arrow record batches and are encoded a whole column at a time
with pyarrow.compute, never a cell at a time in Python: each column becomes an
array of cells (text neutralised, times in the request's zone, booleans
``true``/``false``; a column that repeats its values has them made once per
distinct value), a column whose bytes hold a character that needs quoting has
the cells holding one quoted, and one element-wise join makes every line, whose
bytes are written with one call.  That measured about three times faster than
pyarrow's own CSV writer given the same cells, which quotes every string.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import Annotated, Any, BinaryIO, Literal
from zoneinfo import ZoneInfo

import msgspec
import pyarrow as pa

from exportd import (
    Column,
    ExportInfo,
    Format,
    InvalidRequest,
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

# What Excel, LibreOffice and Google Sheets may run as a formula (OWASP's list).
FORMULA_STARTS = frozenset("=+-@\t\r")
FORMULA_PATTERN = r"^[=+\-@\t\r]"
"""Text starting with one of :data:`FORMULA_STARTS`, as an RE2 pattern."""
LINE_ENDINGS = {"\r\n": "\r\n", "\n": "\n", "crlf": "\r\n", "lf": "\n"}
DELIMITER_RULE = "one character other than a double quote, CR or LF"

Delimiter = Annotated[str, msgspec.Meta(description=DELIMITER_RULE)]


class CsvOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Options of the ``csv`` format.

    ``line_ending`` is ``"\\r\\n"`` (RFC 4180, also spelled ``"crlf"``) or
    ``"\\n"`` (``"lf"``).  ``bom`` starts the file with a UTF-8 byte order mark,
    which Excel needs to read UTF-8.  ``neutralize_formulas`` prefixes text that
    a spreadsheet would run as a formula with a single quote.
    """

    delimiter: Delimiter = ","
    bom: bool = False
    line_ending: Literal["\r\n", "\n", "crlf", "lf"] = "\r\n"
    neutralize_formulas: bool = True

    def __post_init__(self) -> None:
        # Checked here rather than by a Meta pattern, whose error would quote the regex.
        if len(self.delimiter) != 1 or self.delimiter in '"\r\n':
            raise InvalidRequest.field("format_options.delimiter", DELIMITER_RULE)


class CsvFormat(Format[CsvOptions]):
    """Comma-separated values (RFC 4180), UTF-8, one header row of column names.

    Text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
    (header included) is prefixed with ``'``, as OWASP recommends, unless
    ``neutralize_formulas`` is off; numbers are never touched.  That holds for
    text in a column of any type: SQLite stores text in any column, and it is
    written as text there too.  Datetimes are RFC 3339 with the offset of the
    request's zone, dates ISO 8601, booleans ``true``/``false``, ``None`` an
    empty cell.  Lone surrogates, which UTF-8 cannot encode, become U+FFFD.
    """

    name = "csv"
    media_type = "text/csv; charset=utf-8"
    extension = "csv"
    description = "comma-separated values (RFC 4180), UTF-8, with a header row"
    Options = CsvOptions
    form = "arrow"

    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: CsvOptions, info: ExportInfo
    ) -> RowWriter:
        """Write the header row (in the file's first piece) and return a writer for the
        rows."""
        return CsvWriter(file, columns, options, info.window.timezone, header=info.piece.first)

    def joins(self, columns: Sequence[Column], options: CsvOptions) -> bool:
        """Always: a later piece is its rows' lines, without the byte-order mark and the
        header."""
        return True


class CsvWriter(RowWriter):
    """Encodes each record batch column by column and writes it with one call."""

    def __init__(
        self,
        file: BinaryIO,
        columns: Sequence[Column],
        options: CsvOptions,
        zone: ZoneInfo,
        *,
        header: bool = True,
    ) -> None:
        self._file = file
        self._columns = columns
        self._cells = CsvCells(options, zone)
        delimiter, line_ending = options.delimiter, LINE_ENDINGS[options.line_ending]
        # What goes between the cells of a line, and after its last one.
        self._joints = [*([delimiter] * (len(columns) - 1)), line_ending]
        if not header:
            return
        if options.bom:
            file.write(codecs.BOM_UTF8)
        names = pa.array([without_surrogates(column.name) for column in columns], pa.string())
        self._write(
            [self._cells.quoted(self._cells.text(names[i : i + 1])) for i in range(len(columns))]
        )

    def write(self, batch: Any) -> None:
        """Write one batch of rows (a record batch, or row tuples)."""
        batch = arrow_batch(batch, self._columns)
        if batch.num_rows:
            self._write([self._cells(array) for array in batch.columns])

    def close(self) -> None:
        """Nothing to finish: every line is complete when written."""

    def _write(self, columns: list[pa.Array]) -> None:
        if len(columns) == 1:
            # A lone empty cell would make a blank line, which readers skip.
            columns = [pc.if_else(pc.equal(columns[0], ""), '""', columns[0])]
        parts = [part for pair in zip(columns, self._joints, strict=True) for part in pair]
        lines = pc.binary_join_element_wise(*parts, "")
        self._file.write(values_bytes(lines))


class CsvCells:
    """How an Arrow array of a column's values becomes its cells, quoted where needed.

    Numbers become ``str()``-like text, dates ISO 8601, times RFC 3339 in the
    request's zone, booleans ``true``/``false``, nulls empty cells; text (in a
    column of any type: see :func:`~exportd.plugins.formats.common.by_kind`) gets
    a single quote before what a spreadsheet would run, unless that is off.
    """

    def __init__(self, options: CsvOptions, zone: ZoneInfo) -> None:
        self._neutralize = options.neutralize_formulas
        self._zone = zone
        specials = (options.delimiter, '"', "\r", "\n")
        self._special_bytes = [char.encode() for char in specials]
        self._specials = "[" + "".join(f"\\x{{{ord(char):x}}}" for char in specials) + "]"

    def __call__(self, array: pa.Array) -> pa.Array:
        """The cells of ``array``, quoted where needed."""
        cells = per_distinct(
            array, lambda values: self.quoted(by_kind(values, self._typed, self.text))
        )
        return pc.fill_null(cells, "") if cells.null_count else cells

    def text(self, array: pa.Array) -> pa.Array:
        """Text cells, neutralised unless that is off."""
        if not self._neutralize:
            return array
        runs = pc.match_substring_regex(array, FORMULA_PATTERN)
        if not pc.any(runs).as_py():
            return array
        return pc.if_else(runs, pc.binary_join_element_wise("'", array, ""), array)

    def quoted(self, cells: pa.Array) -> pa.Array:
        """``cells`` with each one holding the delimiter, a double quote, a CR or a LF
        between double quotes, its double quotes doubled (RFC 4180)."""
        # Searching the column's bytes as a whole is some fifty times faster than
        # searching each cell, and most columns hold none of these characters.
        data = cells.buffers()[2]
        whole = b"" if data is None else data.to_pybytes()
        if not any(special in whole for special in self._special_bytes):
            return cells
        needed = pc.match_substring_regex(cells, self._specials)
        doubled = pc.replace_substring(cells, '"', '""') if b'"' in whole else cells
        return pc.if_else(needed, pc.binary_join_element_wise('"', doubled, '"', ""), cells)

    def _typed(self, array: pa.Array) -> pa.Array:
        kind = array.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return self.text(array)
        if pa.types.is_boolean(kind):
            return pc.if_else(array, "true", "false")
        if pa.types.is_timestamp(kind):
            return rfc3339_text(array, self._zone)
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            return number_text(array)
        return pc.cast(array, pa.string())


@hookimpl
def exportd_formats() -> list[Format[Any]]:
    """Register the ``csv`` format."""
    return [CsvFormat()]
