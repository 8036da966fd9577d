"""The ``xlsx`` format: an Excel workbook, its sheet XML written directly.

Two engines write it (the ``engine`` option).  ``xml``, the default, streams
each batch's rows as sheet XML into the zip, the cells made a whole column at a
time by Arrow (:mod:`~exportd.plugins.formats.xlsx_book`); ``openpyxl`` hands
them to openpyxl in write-only mode, whose temporary sheet files are zipped
into the export file at ``close()`` (several times slower).  Both write the
same cells, which openpyxl reads back alike.  Cells are typed: numbers stay
numbers, booleans booleans, dates dates, and datetimes become Excel date-times
in the request's zone (Excel has no zones, so they are stored as local naive
times, to the millisecond).  Every Excel number is a double: integers beyond
2**53 lose precision (and the ``openpyxl`` engine writes 16 significant digits,
``xml`` the shortest that reads back as the same double).  Floats that Excel
cannot hold (NaN, infinities, beyond +-9.99999999999999e307) are written
as text (``"inf"``) instead of making a workbook Excel refuses to open.

Text, in a column of any type (SQLite stores text in any column):

* is never a formula or an error value: text that openpyxl would store as one
  (``"=1+1"``, ``"#N/A"``) is written as an explicit string cell;
* loses the characters XML 1.0 forbids (NUL and most other C0 controls,
  U+FFFE, U+FFFF); lone surrogates, which UTF-8 cannot encode, become U+FFFD;
* keeps a literal ``_xHHHH_`` by escaping its underscore as ``_x005F_``, since
  Excel would otherwise read it as an escaped character;
* is cut to Excel's limit of 32,767 characters per cell.

Values are rewritten a whole column per batch, and only where needed: text
columns, datetime and float columns, and a column of another type in a batch
that holds text.  A sheet holds 1,048,576 rows; after that the export
continues on a new sheet (``Export (2)``, ...) that starts with the header row
again (the ``xml`` engine also starts one before a sheet's XML reaches 4 GiB, the
most a zip entry holds without Zip64, which not every reader takes).

The workbook's created and modified times (``docProps/core.xml``) and the times of
its zip entries are the export's ``generated_at``, in UTC (zip entries from 1980 on,
the earliest they can hold), so that the same job always writes the same bytes.

An xlsx export is written whole by one worker: unlike csv's, its parts cannot be
joined by concatenating files (one zip, and each sheet's rows numbered in order).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, BinaryIO, Literal
from zoneinfo import ZoneInfo

import msgspec
import pyarrow as pa

from exportd import Column, ExportInfo, Format, InvalidRequest, RowWriter, hookimpl
from exportd.plugins.formats.common import unchanged, with_stray_text
from exportd.plugins.formats.xlsx_book import (
    SHEET_NAME_LENGTH,
    DatedZipFile,
    XmlBookWriter,
    sheet_title,
)
from exportd.plugins.formats.xlsx_cells import EXCEL_LARGEST_NUMBER, storable

SHEET_ROWS = 1_048_576
SHEET_NAME_RULE = "1 to 31 characters, none of [ ] : * ? / \\, not starting or ending with '"

_NOT_IN_SHEET_NAME = re.compile(r"[\[\]:*?/\\]")

Convert = Callable[[Sequence[Any]], Sequence[Any]]
SheetName = Annotated[str, msgspec.Meta(description=SHEET_NAME_RULE)]
Engine = Annotated[
    Literal["xml", "openpyxl"],
    msgspec.Meta(description="the writer: xml (the fast one) or openpyxl (the reference)"),
]


class XlsxOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Options of the ``xlsx`` format.

    ``sheet_name`` names the first sheet; overflow sheets add `` (2)``, `` (3)``...
    ``engine`` picks the writer: ``xml`` (the default) or ``openpyxl``.
    """

    sheet_name: SheetName = "Export"
    engine: Engine = "xml"

    def __post_init__(self) -> None:
        # Checked here rather than by a Meta pattern, whose error would quote the regex.
        name = self.sheet_name
        if (
            not 1 <= len(name) <= SHEET_NAME_LENGTH
            or _NOT_IN_SHEET_NAME.search(name)
            or name.startswith("'")
            or name.endswith("'")
        ):
            raise InvalidRequest.field("format_options.sheet_name", SHEET_NAME_RULE)


class XlsxFormat(Format[XlsxOptions]):
    """An Excel workbook with a bold header row and typed cells.

    ``rows_per_sheet`` (header included) is Excel's limit; tests lower it.
    """

    name = "xlsx"
    media_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    extension = "xlsx"
    description = "Excel workbook, typed cells, times in the request's zone"
    Options = XlsxOptions
    form = "arrow"

    def __init__(self, rows_per_sheet: int = SHEET_ROWS) -> None:
        if rows_per_sheet < 2:
            raise ValueError("a sheet needs room for the header and at least one row")
        self.rows_per_sheet = rows_per_sheet

    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: XlsxOptions, info: ExportInfo
    ) -> RowWriter:
        """Start a workbook whose first sheet holds the header row."""
        engine = XmlBookWriter if options.engine == "xml" else OpenpyxlWriter
        return engine(
            file,
            columns,
            sheet_name=options.sheet_name,
            zone=info.window.timezone,
            rows_per_sheet=self.rows_per_sheet,
            generated_at=info.generated_at,
        )


class OpenpyxlWriter(RowWriter):
    """Appends rows to openpyxl's write-only sheets, starting a new sheet when one is full."""

    def __init__(
        self,
        file: BinaryIO,
        columns: Sequence[Column],
        *,
        sheet_name: str,
        zone: ZoneInfo,
        rows_per_sheet: int,
        generated_at: datetime,
    ) -> None:
        # Imported here: only this engine needs openpyxl, slow to import.
        from openpyxl import Workbook

        self._file = file
        self._generated_at = generated_at.astimezone(UTC)
        self._book = Workbook(write_only=True)
        self._names = [column.name for column in columns]
        self._texts = [i for i, column in enumerate(columns) if column.type == "text"]
        conversions: dict[str, Convert] = {
            "datetime": partial(_wall_clock, zone=zone),
            "float": _excel_floats,
        }
        self._typed = [
            (i, conversions.get(column.type, unchanged))
            for i, column in enumerate(columns)
            if column.type != "text"
        ]
        self._sheet_name = sheet_name
        self._rows_per_sheet = rows_per_sheet
        self._sheets: list[Any] = []
        self._sheet = self._new_sheet()
        self._room = rows_per_sheet - 1

    def write(self, batch: pa.RecordBatch) -> None:
        """Append one batch, spilling onto new sheets as they fill up."""
        rows = list(zip(*(array.to_pylist() for array in batch.columns), strict=True))
        while rows:
            if not self._room:
                self._sheet = self._new_sheet()
                self._room = self._rows_per_sheet - 1
            part, rows = rows[: self._room], rows[self._room :]
            append = self._sheet.append
            for row in self._cells(part):
                append(row)
            self._room -= len(part)

    def close(self) -> None:
        """Zip the sheets into the file, dated ``generated_at``."""
        from openpyxl.writer.excel import ExcelWriter

        # Not Workbook.save, which sets the modified time to now.
        properties = self._book.properties
        properties.created = properties.modified = self._generated_at.replace(tzinfo=None)
        ExcelWriter(self._book, DatedZipFile(self._file, self._generated_at)).save()

    def abort(self) -> None:
        """Remove the sheets' temporary files, which openpyxl otherwise keeps until exit."""
        for sheet in self._sheets:
            # openpyxl has no public call for this; _writer is set by the first append.
            writer = getattr(sheet, "_writer", None)
            if writer is not None:
                sheet.close()
                writer.cleanup()

    def _new_sheet(self) -> Any:
        from openpyxl.styles import Font

        sheet = self._book.create_sheet(sheet_title(self._sheet_name, len(self._sheets)))
        sheet.freeze_panes = "A2"
        bold = Font(bold=True)
        header = []
        for name in self._names:
            cell = _string_cell(sheet, storable(name))
            cell.font = bold
            header.append(cell)
        sheet.append(header)
        self._sheets.append(sheet)
        return sheet

    def _cells(self, rows: Sequence[tuple[Any, ...]]) -> Iterable[Sequence[Any]]:
        """``rows`` as openpyxl should get them: each column's values converted for Excel."""
        by_column: list[Sequence[Any]] = list(zip(*rows, strict=True))
        texts = partial(_texts, sheet=self._sheet)
        for i in self._texts:
            by_column[i] = texts(by_column[i])
        for i, convert in self._typed:
            by_column[i] = with_stray_text(by_column[i], convert, texts)
        return zip(*by_column, strict=True)


def _wall_clock(values: Sequence[Any], zone: ZoneInfo) -> list[Any]:
    """Aware datetimes as the naive local times Excel wants; ``None`` stays."""
    local = [v if v is None else v.astimezone(zone) for v in values]
    # combine(date, time) drops the zone several times faster than replace(tzinfo=None).
    combine = datetime.combine
    return [v if v is None else combine(v.date(), v.time()) for v in local]


def _excel_floats(values: Sequence[Any]) -> list[Any]:
    """Floats as they are, or as text where Excel cannot hold them; ``None`` stays."""
    # NaN fails both comparisons, so it becomes text too.
    return [
        v if v is None or -EXCEL_LARGEST_NUMBER <= v <= EXCEL_LARGEST_NUMBER else str(v)
        for v in values
    ]


def _texts(values: Sequence[Any], sheet: Any) -> list[Any]:
    """Each str of ``values`` made safe to store (see :func:`_text`); the others stay."""
    return [v if v.__class__ is not str else _text(v, sheet) for v in values]


def _text(value: str, sheet: Any) -> Any:
    """``value`` made safe to store, as a string cell if openpyxl would not store it as one."""
    from openpyxl.cell.cell import ERROR_CODES

    value = storable(value)
    if value[:1] != "=" and value not in ERROR_CODES:
        return value
    return _string_cell(sheet, value)


def _string_cell(sheet: Any, value: str) -> Any:
    """A write-only cell of ``sheet`` that stores ``value`` as a string."""
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(sheet, value)
    cell.data_type = "s"
    return cell


@hookimpl
def exportd_formats() -> list[Format[Any]]:
    """Register the ``xlsx`` format."""
    return [XlsxFormat()]
