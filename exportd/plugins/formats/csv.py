"""The ``csv`` format: RFC 4180 text in UTF-8 with a header row of column names.

The stdlib ``csv`` writer costs about a microsecond per row, which is most of
an export's budget, so rows are formatted a batch at a time instead: each
column becomes a list of cells in one comprehension, is searched as a whole
for characters that need quoting, and the lines are joined in C.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence
from typing import Annotated, Any, BinaryIO, Literal
from zoneinfo import ZoneInfo

import msgspec

from exportd import (
    Batch,
    Column,
    ColumnType,
    ExportInfo,
    Format,
    InvalidRequest,
    RowWriter,
    hookimpl,
)
from exportd.plugins.formats.common import utf8, with_stray_text

# What Excel, LibreOffice and Google Sheets may run as a formula (OWASP's list).
FORMULA_STARTS = frozenset("=+-@\t\r")
LINE_ENDINGS = {"\r\n": "\r\n", "\n": "\n", "crlf": "\r\n", "lf": "\n"}
DELIMITER_RULE = "one character other than a double quote, CR or LF"

Delimiter = Annotated[str, msgspec.Meta(description=DELIMITER_RULE)]
Values = Sequence[Any]
Cells = Callable[[Values], Sequence[str]]


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

    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: CsvOptions, info: ExportInfo
    ) -> RowWriter:
        """Write the header row and return a writer for the rows."""
        return CsvWriter(file, columns, options, info.window.timezone)


class CsvWriter(RowWriter):
    """Formats each batch column by column and writes it with one call."""

    def __init__(
        self, file: BinaryIO, columns: Sequence[Column], options: CsvOptions, zone: ZoneInfo
    ) -> None:
        self._file = file
        self._delimiter = options.delimiter
        self._line_ending = LINE_ENDINGS[options.line_ending]
        self._quoted = Quoting(options.delimiter)
        neutralize = options.neutralize_formulas
        self._cells = [cells_of(column.type, neutralize, zone) for column in columns]
        if options.bom:
            file.write(codecs.BOM_UTF8)
        header = [column.name for column in columns]
        self._write([header], [cells_of("text", neutralize, zone)] * len(columns))

    def write(self, batch: Batch) -> None:
        """Write one batch of rows."""
        if batch:
            self._write(batch, self._cells)

    def close(self) -> None:
        """Nothing to finish: every line is complete when written."""

    def _write(self, rows: Batch, cells_of_columns: Sequence[Cells]) -> None:
        by_column = zip(*rows, strict=True)
        columns = [
            self._quoted(cells(values))
            for cells, values in zip(cells_of_columns, by_column, strict=True)
        ]
        if len(columns) == 1:
            # A lone empty cell would make a blank line, which readers skip.
            lines = [cell or '""' for cell in columns[0]]
        else:
            lines = list(map(self._delimiter.join, zip(*columns, strict=True)))
        lines.append("")  # so that the last line ends too
        self._file.write(utf8(self._line_ending.join(lines)))


class Quoting:
    """RFC 4180 quoting of one column's cells.

    A cell holding the delimiter, a double quote, a CR or a LF goes between
    double quotes, with its double quotes doubled.  A column with no such
    character in any cell, the common case, is returned as it is.
    """

    def __init__(self, delimiter: str) -> None:
        self._delimiter = delimiter
        self._specials = (delimiter, '"', "\r", "\n")

    def __call__(self, cells: Sequence[str]) -> Sequence[str]:
        """``cells`` with each one that needs it quoted."""
        whole = "".join(cells)
        if not any(special in whole for special in self._specials):
            return cells
        d = self._delimiter
        return [
            '"' + cell.replace('"', '""') + '"'
            if d in cell or '"' in cell or "\r" in cell or "\n" in cell
            else cell
            for cell in cells
        ]


def cells_of(column_type: ColumnType, neutralize: bool, zone: ZoneInfo) -> Cells:
    """How the values of a column of ``column_type`` become (unquoted) cells."""
    text = neutralized if neutralize else plain
    if column_type == "text":
        return text
    typed = {"boolean": true_false, "datetime": rfc3339(zone)}.get(column_type, plain)
    return lambda values: with_stray_text(values, typed, text)


def plain(values: Values) -> list[str]:
    """Each value as ``str()`` renders it (ISO 8601 for dates); ``None`` is empty."""
    return ["" if v is None else v if v.__class__ is str else str(v) for v in values]


def neutralized(values: Values) -> list[str]:
    """Like :func:`plain`, with a single quote before text a spreadsheet would run."""
    return [
        (f"'{v}" if v[:1] in FORMULA_STARTS else v)
        if v.__class__ is str
        else ("" if v is None else str(v))
        for v in values
    ]


def true_false(values: Values) -> list[str]:
    """Booleans (or SQLite's 0/1) as ``true``/``false``; ``None`` is empty."""
    return ["" if v is None else "true" if v else "false" for v in values]


def rfc3339(zone: ZoneInfo) -> Cells:
    """Aware datetimes as RFC 3339 text with ``zone``'s offset; ``None`` is empty."""
    # msgspec renders datetimes as RFC 3339 some 30 times faster than isoformat().
    if zone.key == "UTC":
        return lambda values: plain(msgspec.to_builtins(values))
    return lambda values: plain(
        msgspec.to_builtins([v if v is None else v.astimezone(zone) for v in values])
    )


@hookimpl
def exportd_formats() -> list[Format[Any]]:
    """Register the ``csv`` format."""
    return [CsvFormat()]
