"""The ``xlsx`` format's own writer: the workbook's XML written directly into a zip.

Each sheet's XML streams into its zip entry a batch at a time, its cells made a
whole column at a time by :mod:`exportd.plugins.formats.xlsx_cells`; the few small
parts (workbook, styles, content types, properties) are written at ``close()``,
when the sheets are known.  Memory holds one batch.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, BinaryIO
from zipfile import ZIP64_LIMIT, ZIP_DEFLATED, ZipFile, ZipInfo
from zoneinfo import ZoneInfo

import pyarrow as pa

from exportd.plugins.formats import compute as pc

if TYPE_CHECKING:
    from _typeshed import SizedBuffer, StrPath

from exportd import Column, RowWriter
from exportd.plugins.formats.xlsx_cells import BOLD, cells, escaped, tails_maker, text_cell

SHEET_NAME_LENGTH = 31
EARLIEST_ZIP_TIME = datetime(1980, 1, 1, tzinfo=UTC)
ENTRY_PERMISSIONS = 0o600 << 16
"""What zipfile gives an entry written from bytes (rw-------), for those from files too."""
COPY_CHUNK = 1 << 20
SHEET_COMPRESSION = 1
"""zlib's fastest level for the sheets: several times faster than its default, and
the repetitive sheet XML compresses almost as well."""
SHEET_BYTES = ZIP64_LIMIT - (1 << 20)
"""A sheet ends before its XML outgrows a zip entry without Zip64 (4 GiB), which not
every reader takes; the header, the footer and a batch's rows fit in what is left."""

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELATIONSHIPS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE_RELATIONSHIPS = "http://schemas.openxmlformats.org/package/2006/relationships"
_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_SHEET_START = (
    f'{_DECLARATION}<worksheet xmlns="{_MAIN}"><sheetViews><sheetView workbookViewId="0">'
    '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
    '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/></sheetView></sheetViews>'
    '<sheetFormatPr defaultRowHeight="15"/><sheetData>'
)
_SHEET_END = "</sheetData></worksheet>"
_FONT = '<sz val="11"/><name val="Calibri"/><family val="2"/>'
_XF = 'fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"'
STYLES = (
    f'{_DECLARATION}<styleSheet xmlns="{_MAIN}">'
    '<numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy-mm-dd h:mm:ss"/>'
    '<numFmt numFmtId="165" formatCode="yyyy-mm-dd"/></numFmts>'
    f'<fonts count="2"><font>{_FONT}</font><font><b/>{_FONT}</font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="4"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    f'<xf numFmtId="164" {_XF}/><xf numFmtId="165" {_XF}/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)
_TYPES = "application/vnd.openxmlformats-officedocument"
ROOT_RELATIONSHIPS = (
    f'{_DECLARATION}<Relationships xmlns="{_PACKAGE_RELATIONSHIPS}">'
    f'<Relationship Id="rId1" Type="{_RELATIONSHIPS}/officeDocument" Target="xl/workbook.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/'
    'relationships/metadata/core-properties" Target="docProps/core.xml"/>'
    f'<Relationship Id="rId3" Type="{_RELATIONSHIPS}/extended-properties" '
    'Target="docProps/app.xml"/></Relationships>'
)
APP_PROPERTIES = (
    f'{_DECLARATION}<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/'
    'extended-properties"><Application>exportd</Application></Properties>'
)


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
            zinfo_or_arcname = self.dated(ZipInfo(zinfo_or_arcname))
        super().writestr(zinfo_or_arcname, data, compress_type, compresslevel)

    def write(
        self,
        filename: StrPath,
        arcname: StrPath | None = None,
        compress_type: int | None = None,
        compresslevel: int | None = None,
    ) -> None:
        """Add the file ``filename`` as the entry ``arcname``, dated ``date_time``."""
        entry = self.dated(ZipInfo.from_file(filename, arcname))
        if compress_type is not None:
            entry.compress_type = compress_type
        with open(filename, "rb") as source, self.open(entry, "w") as target:
            shutil.copyfileobj(source, target, COPY_CHUNK)

    def dated(self, entry: ZipInfo) -> ZipInfo:
        """``entry`` dated ``date_time``, compressed as the archive is, with the
        permissions of an entry written from bytes."""
        entry.date_time = self.date_time
        entry.compress_type = self.compression
        entry.external_attr = ENTRY_PERMISSIONS
        return entry


class XmlBookWriter(RowWriter):
    """Streams Arrow batches into sheets of XML, starting a new sheet when one is full."""

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
        self._generated_at = generated_at.astimezone(UTC)
        self._zip = DatedZipFile(file, self._generated_at)
        self._letters = [column_letter(i) for i in range(len(columns))]
        self._header = "".join(
            f'<c r="{letter}1"{text_cell(column.name, BOLD)}'
            for letter, column in zip(self._letters, columns, strict=True)
        )
        self._tails = tails_maker(zone)
        self._sheet_name = sheet_name
        self._rows_per_sheet = rows_per_sheet
        self._sheets = 0
        self._sheet: IO[bytes] | None = None
        self._row = self._bytes = 0
        self._new_sheet()

    def write(self, batch: pa.RecordBatch) -> None:
        """Append one batch's rows, spilling onto new sheets as they fill up."""
        start = 0
        while start < batch.num_rows:
            if self._row == self._rows_per_sheet:
                self._new_sheet()
            part = batch.slice(start, self._rows_per_sheet - self._row)
            xml = self._xml(part)
            if self._bytes + len(xml) > SHEET_BYTES and self._row > 1:
                self._new_sheet()
                continue
            self._put(xml)
            self._row += part.num_rows
            start += part.num_rows

    def close(self) -> None:
        """End the last sheet and write the parts that describe the workbook."""
        self._end_sheet()
        names = [sheet_title(self._sheet_name, i) for i in range(self._sheets)]
        parts = {
            "docProps/app.xml": APP_PROPERTIES,
            "docProps/core.xml": core_properties(self._generated_at),
            "xl/styles.xml": STYLES,
            "xl/workbook.xml": workbook(names),
            "xl/_rels/workbook.xml.rels": workbook_relationships(len(names)),
            "_rels/.rels": ROOT_RELATIONSHIPS,
            "[Content_Types].xml": content_types(len(names)),
        }
        for name, xml in parts.items():
            self._zip.writestr(name, xml)
        self._zip.close()

    def abort(self) -> None:
        """Let go of the zip, whose sheets went straight into the file exportd removes."""
        # The file may be what failed: closing only keeps zipfile from complaining later.
        with suppress(OSError, ValueError):
            self._end_sheet()
            self._zip.close()

    def _xml(self, batch: pa.RecordBatch) -> pa.Buffer:
        """The ``<row>`` elements of ``batch``, whose first row is the sheet's next."""
        first = self._row + 1
        rows = pa.array(range(first, first + batch.num_rows), pa.int64()).cast(pa.string())
        row_cells = [
            cells(self._tails(array), letter, rows)
            for array, letter in zip(batch.columns, self._letters, strict=True)
        ]
        joined = pc.binary_join_element_wise('<row r="', rows, '">', *row_cells, "</row>", "")
        # The rows' text lies end to end in the array's data buffer.
        _, offsets, data = joined.buffers()
        ends = pa.Array.from_buffers(pa.int32(), len(joined) + 1, [None, offsets], joined.offset)
        return data[ends[0].as_py() : ends[-1].as_py()]

    def _put(self, data: pa.Buffer | bytes) -> None:
        assert self._sheet is not None
        self._sheet.write(data)
        self._bytes += len(data)

    def _new_sheet(self) -> None:
        self._end_sheet()
        self._sheets += 1
        entry = self._zip.dated(ZipInfo(f"xl/worksheets/sheet{self._sheets}.xml"))
        # ZipInfo takes a level only so (compress_level from 3.13, this still an alias).
        setattr(entry, "_compresslevel", SHEET_COMPRESSION)  # noqa: B010
        self._sheet = self._zip.open(entry, "w")
        self._bytes = 0
        self._put(f'{_SHEET_START}<row r="1">{self._header}</row>'.encode())
        self._row = 1

    def _end_sheet(self) -> None:
        if self._sheet is not None:
            self._put(_SHEET_END.encode())
            self._sheet.close()
            self._sheet = None


def sheet_title(first: str, index: int) -> str:
    """The name of the sheet at ``index`` of a workbook whose first is ``first``:
    ``Export``, ``Export (2)``..., cut to Excel's 31 characters."""
    suffix = f" ({index + 1})" if index else ""
    return first[: SHEET_NAME_LENGTH - len(suffix)] + suffix


def column_letter(index: int) -> str:
    """The letters of the column at ``index`` (0 is ``A``, 26 ``AA``)."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def workbook(names: Sequence[str]) -> str:
    """The workbook part: its sheets, by name."""
    sheets = "".join(
        f'<sheet name="{escaped(name)}" sheetId="{n}" r:id="rId{n}"/>'
        for n, name in enumerate(names, 1)
    )
    return (
        f'{_DECLARATION}<workbook xmlns="{_MAIN}" xmlns:r="{_RELATIONSHIPS}">'
        f"<bookViews><workbookView/></bookViews><sheets>{sheets}</sheets></workbook>"
    )


def workbook_relationships(sheets: int) -> str:
    """The workbook's relationships: its sheets (``rId1``...) and its styles."""
    links = "".join(
        f'<Relationship Id="rId{n}" Type="{_RELATIONSHIPS}/worksheet" '
        f'Target="worksheets/sheet{n}.xml"/>'
        for n in range(1, sheets + 1)
    )
    styles = (
        f'<Relationship Id="rId{sheets + 1}" Type="{_RELATIONSHIPS}/styles" Target="styles.xml"/>'
    )
    return (
        f'{_DECLARATION}<Relationships xmlns="{_PACKAGE_RELATIONSHIPS}">'
        f"{links}{styles}</Relationships>"
    )


def content_types(sheets: int) -> str:
    """The package's content types, for ``sheets`` sheets."""
    overrides = [
        ("/xl/workbook.xml", "spreadsheetml.sheet.main+xml"),
        *(
            (f"/xl/worksheets/sheet{n}.xml", "spreadsheetml.worksheet+xml")
            for n in range(1, sheets + 1)
        ),
        ("/xl/styles.xml", "spreadsheetml.styles+xml"),
        ("/docProps/app.xml", "extended-properties+xml"),
    ]
    parts = "".join(
        f'<Override PartName="{name}" ContentType="{_TYPES}.{kind}"/>' for name, kind in overrides
    )
    return (
        f'{_DECLARATION}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
        f"{parts}"
        '<Override PartName="/docProps/core.xml" '
        'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/></Types>'
    )


def core_properties(moment: datetime) -> str:
    """The core properties part: created and modified at ``moment`` (UTC)."""
    stamp = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"{_DECLARATION}<cp:coreProperties "
        'xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f'<dcterms:created xsi:type="dcterms:W3CDTF">{stamp}</dcterms:created>'
        f'<dcterms:modified xsi:type="dcterms:W3CDTF">{stamp}</dcterms:modified>'
        "</cp:coreProperties>"
    )
