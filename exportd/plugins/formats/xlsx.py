"""The ``xlsx`` format: an Excel workbook written by openpyxl in write-only mode.

Rows stream to openpyxl's temporary sheet files as they arrive; the workbook is
zipped into the export file at ``close()``.  Cells are typed: numbers stay
numbers, booleans booleans, dates dates, and datetimes become Excel date-times
in the request's zone (Excel has no zones, so they are stored as local naive
times, to the millisecond).  Every Excel number is a double: integers beyond
2**53 lose precision, and openpyxl writes 16 significant digits.  Floats that
Excel cannot hold (NaN, infinities, beyond +-9.99999999999999e307) are written
as text (``"inf"``) instead of making a workbook Excel refuses to open.

Text, in a column of any type (SQLite stores text in any column):

* is never a formula or an error value: text that openpyxl would store as one
  (``"=1+1"``, ``"#N/A"``) is written as an explicit string cell;
* loses the characters XML 1.0 forbids (NUL and most other C0 controls,
  U+FFFE, U+FFFF); lone surrogates, which UTF-8 cannot encode, become U+FFFD;
* keeps a literal ``_xHHHH_`` by escaping its underscore as ``_x005F_``, since
  Excel would otherwise read it as an escaped character;
* is cut to Excel's limit of 32,767 characters per cell (openpyxl does that).

Values are rewritten a whole column per batch, and only where needed: text
columns, datetime and float columns, and a column of another type in a batch
that holds text.  A sheet holds 1,048,576 rows; after that the export
continues on a new sheet (``Export (2)``, ...) that starts with the header row
again.

The workbook's created and modified times (``docProps/core.xml``) and the times of
its zip entries are the export's ``generated_at``, in UTC (zip entries from 1980 on,
the earliest they can hold), so that the same job always writes the same bytes.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import IO, TYPE_CHECKING, Annotated, Any, BinaryIO
from zipfile import ZIP_DEFLATED, ZipFile, ZipInfo
from zoneinfo import ZoneInfo

import msgspec
from openpyxl import Workbook
from openpyxl.cell import Cell, WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES
from openpyxl.styles import Font
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.writer.excel import ExcelWriter

if TYPE_CHECKING:
    from _typeshed import SizedBuffer, StrPath

from exportd import Batch, Column, ExportInfo, Format, InvalidRequest, RowWriter, hookimpl
from exportd.plugins.formats.common import REPLACEMENT_CHARACTER, unchanged, with_stray_text

SHEET_ROWS = 1_048_576
SHEET_NAME_LENGTH = 31
SHEET_NAME_RULE = "1 to 31 characters, none of [ ] : * ? / \\, not starting or ending with '"
EXCEL_LARGEST_NUMBER = 9.99999999999999e307
EARLIEST_ZIP_TIME = datetime(1980, 1, 1, tzinfo=UTC)
ENTRY_PERMISSIONS = 0o600 << 16
"""What zipfile gives an entry written from bytes (rw-------), for those from files too."""
COPY_CHUNK = 1 << 20

_NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NOT_IN_SHEET_NAME = re.compile(r"[\[\]:*?/\\]")
_ESCAPE_LIKE = re.compile("_(?=x[0-9A-Fa-f]{4}_)")
_TYPED_TEXT = frozenset(ERROR_CODES)

Convert = Callable[[Sequence[Any]], Sequence[Any]]
SheetName = Annotated[str, msgspec.Meta(description=SHEET_NAME_RULE)]


class XlsxOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Options of the ``xlsx`` format.

    ``sheet_name`` names the first sheet; overflow sheets add `` (2)``, `` (3)``...
    """

    sheet_name: SheetName = "Export"

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

    def __init__(self, rows_per_sheet: int = SHEET_ROWS) -> None:
        if rows_per_sheet < 2:
            raise ValueError("a sheet needs room for the header and at least one row")
        self.rows_per_sheet = rows_per_sheet

    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: XlsxOptions, info: ExportInfo
    ) -> RowWriter:
        """Start a workbook whose first sheet holds the header row."""
        return XlsxWriter(
            file,
            columns,
            sheet_name=options.sheet_name,
            zone=info.window.timezone,
            rows_per_sheet=self.rows_per_sheet,
            generated_at=info.generated_at,
        )


class XlsxWriter(RowWriter):
    """Appends rows to write-only sheets, starting a new sheet when one is full."""

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
        self._sheets: list[WriteOnlyWorksheet] = []
        self._sheet = self._new_sheet()
        self._room = rows_per_sheet - 1

    def write(self, batch: Batch) -> None:
        """Append one batch, spilling onto new sheets as they fill up."""
        while batch:
            if not self._room:
                self._sheet = self._new_sheet()
                self._room = self._rows_per_sheet - 1
            rows, batch = batch[: self._room], batch[self._room :]
            append = self._sheet.append
            for row in self._cells(rows):
                append(row)
            self._room -= len(rows)

    def close(self) -> None:
        """Zip the sheets into the file, dated ``generated_at``."""
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

    def _new_sheet(self) -> WriteOnlyWorksheet:
        number = len(self._book.worksheets) + 1
        suffix = f" ({number})" if number > 1 else ""
        sheet: WriteOnlyWorksheet = self._book.create_sheet(
            self._sheet_name[: SHEET_NAME_LENGTH - len(suffix)] + suffix
        )
        sheet.freeze_panes = "A2"
        bold = Font(bold=True)
        header = []
        for name in self._names:
            cell = WriteOnlyCell(sheet, _storable(name))
            cell.data_type = "s"
            cell.font = bold
            header.append(cell)
        sheet.append(header)
        self._sheets.append(sheet)
        return sheet

    def _cells(self, rows: Batch) -> Iterable[Sequence[Any]]:
        """``rows`` as openpyxl should get them: each column's values converted for Excel."""
        by_column: list[Sequence[Any]] = list(zip(*rows, strict=True))
        texts = partial(_texts, sheet=self._sheet)
        for i in self._texts:
            by_column[i] = texts(by_column[i])
        for i, convert in self._typed:
            by_column[i] = with_stray_text(by_column[i], convert, texts)
        return zip(*by_column, strict=True)


class DatedZipFile(ZipFile):
    """A zip archive being written whose entries all carry one time, ``moment`` (in
    UTC, from 1980 on), rather than the clock's (entries from bytes) or their files'
    modification times (entries from files)."""

    def __init__(self, file: IO[bytes], moment: datetime) -> None:
        super().__init__(file, "w", ZIP_DEFLATED, allowZip64=True)
        self.date_time = max(moment, EARLIEST_ZIP_TIME).astimezone(UTC).timetuple()[:6]

    def writestr(
        self,
        zinfo_or_arcname: str | ZipInfo,
        data: SizedBuffer | str,
        compress_type: int | None = None,
        compresslevel: int | None = None,
    ) -> None:
        """Add an entry holding ``data``; one named by a string gets ``date_time``."""
        if isinstance(zinfo_or_arcname, str):
            zinfo_or_arcname = self._dated(ZipInfo(zinfo_or_arcname))
        super().writestr(zinfo_or_arcname, data, compress_type, compresslevel)

    def write(
        self,
        filename: StrPath,
        arcname: StrPath | None = None,
        compress_type: int | None = None,
        compresslevel: int | None = None,
    ) -> None:
        """Add the file ``filename`` as the entry ``arcname``, dated ``date_time``."""
        entry = self._dated(ZipInfo.from_file(filename, arcname))
        if compress_type is not None:
            entry.compress_type = compress_type
        with open(filename, "rb") as source, self.open(entry, "w") as target:
            shutil.copyfileobj(source, target, COPY_CHUNK)

    def _dated(self, entry: ZipInfo) -> ZipInfo:
        """``entry`` dated ``date_time``, compressed as the archive is, with the
        permissions of an entry written from bytes."""
        entry.date_time = self.date_time
        entry.compress_type = self.compression
        entry.external_attr = ENTRY_PERMISSIONS
        return entry


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


def _texts(values: Sequence[Any], sheet: WriteOnlyWorksheet) -> list[Any]:
    """Each str of ``values`` made safe to store (see :func:`_text`); the others stay."""
    return [v if v.__class__ is not str else _text(v, sheet) for v in values]


def _text(value: str, sheet: WriteOnlyWorksheet) -> str | Cell:
    """``value`` made safe to store, as a string cell if openpyxl would not store it as one."""
    value = _storable(value)
    if value[:1] != "=" and value not in _TYPED_TEXT:
        return value
    cell = WriteOnlyCell(sheet, value)
    cell.data_type = "s"
    return cell


def _storable(value: str) -> str:
    """``value`` without the characters XML forbids, its lone surrogates as U+FFFD and
    its ``_xHHHH_`` look-alikes escaped."""
    value = _NOT_IN_XML.sub(_xml_replacement, value)
    return _ESCAPE_LIKE.sub("_x005F_", value) if "_x" in value else value


def _xml_replacement(match: re.Match[str]) -> str:
    return REPLACEMENT_CHARACTER if "\ud800" <= match[0] <= "\udfff" else ""


@hookimpl
def exportd_formats() -> list[Format[Any]]:
    """Register the ``xlsx`` format."""
    return [XlsxFormat()]
