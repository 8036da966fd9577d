"""The xlsx format: real workbooks, read back with openpyxl."""

from __future__ import annotations

import gc
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from openpyxl.utils.escape import unescape
from openpyxl.worksheet.worksheet import Worksheet

from exportd import Column, ColumnType, InvalidRequest
from exportd.kernel.validation import convert
from exportd.plugins.formats import xlsx as xlsx_plugin
from exportd.plugins.formats import xlsx_book
from exportd.plugins.formats.xlsx import XlsxFormat, XlsxOptions
from exportd.plugins.manager import Plugins
from exportd.testing import encodable, hostile_columns, hostile_rows, write_export
from tests.unit.format_cases import MIXED

ZONE = "Europe/Helsinki"
EXCEL_TEXT_LIMIT = 32_767
XML_FORBIDDEN = {*map(chr, range(0x20)), "\ufffe", "\uffff"} - {"\t", "\n", "\r"}


def options(**fields: Any) -> msgspec.Struct:
    """The xlsx options, validated as a request's ``format_options`` are."""
    return convert(fields, XlsxFormat.Options, "format_options")


def write_xlsx(
    path: Path,
    columns: list[Column],
    batches: list[list[tuple[Any, ...]]],
    *,
    rows_per_sheet: int = xlsx_plugin.SHEET_ROWS,
    **fields: Any,
) -> Path:
    """Write ``batches`` as xlsx in :data:`ZONE` with the options ``fields``."""
    format_ = XlsxFormat(rows_per_sheet=rows_per_sheet)
    return write_export(path, format_, columns, batches, options=options(**fields), zone=ZONE)


def sheet_values(sheet: Worksheet) -> list[list[Any]]:
    """Every row of ``sheet`` as its cell values, header first."""
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def local_naive(value: datetime) -> datetime:
    """``value`` as the wall-clock time in :data:`ZONE`, as Excel stores it."""
    return value.astimezone(ZoneInfo(ZONE)).replace(tzinfo=None)


def stored_text(value: str) -> str | None:
    """What a workbook holds for ``value``: no XML-forbidden characters, lone
    surrogates as U+FFFD, at most 32,767 characters, and nothing at all for an
    empty string."""
    kept = "".join(char for char in encodable(value) if char not in XML_FORBIDDEN)
    return kept[:EXCEL_TEXT_LIMIT] or None


def test_it_is_registered_as_an_excel_workbook() -> None:
    registered = Plugins(builtins=False, entry_points=False, extra=[xlsx_plugin]).format("xlsx")
    assert registered.media_type == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert registered.extension == "xlsx"


def test_cells_keep_their_types_and_times_are_local(tmp_path: Path) -> None:
    summer = datetime(2024, 7, 1, 9, 30, 15, tzinfo=UTC)
    winter = datetime(2024, 1, 1, 23, 0, 0, tzinfo=UTC)
    rows = [
        (1, summer, "Ann", True, date(2024, 7, 1), 2.5),
        (-2, winter, "Bob", False, date(2024, 1, 2), -0.125),
        (None, None, None, None, None, None),
    ]
    path = write_xlsx(tmp_path / "out.xlsx", MIXED, [rows])

    sheet = load_workbook(path)["Export"]
    assert sheet_values(sheet) == [
        ["id", "sent_at", "author", "real", "day", "score"],
        [1, datetime(2024, 7, 1, 12, 30, 15), "Ann", True, datetime(2024, 7, 1), 2.5],
        [-2, datetime(2024, 1, 2, 1, 0, 0), "Bob", False, datetime(2024, 1, 2), -0.125],
    ]
    assert [cell.number_format for cell in sheet[2][1:5:3]] == ["yyyy-mm-dd h:mm:ss", "yyyy-mm-dd"]
    assert [cell.data_type for cell in sheet[2]] == ["n", "d", "s", "b", "d", "n"]
    assert all(cell.font.b for cell in sheet[1])
    assert sheet.freeze_panes == "A2"


def test_text_is_never_a_formula_or_an_error_value(tmp_path: Path) -> None:
    hostile = ["=1+1", '=HYPERLINK("http://evil.example","x")', "#N/A", "#DIV/0!", "=", "+1"]
    columns = [Column("=SUM(A1:A2)"), Column("#REF!")]
    path = write_xlsx(tmp_path / "out.xlsx", columns, [[(text, text) for text in hostile]])

    sheet = load_workbook(path)["Export"]
    assert sheet_values(sheet) == [["=SUM(A1:A2)", "#REF!"], *([text, text] for text in hostile)]
    assert {cell.data_type for row in sheet.iter_rows() for cell in row} == {"s"}


# A value of each column type, what openpyxl reads back for it, and its data type.
TYPED_CELLS: dict[ColumnType, tuple[Any, Any, str]] = {
    "integer": (-5, -5, "n"),
    "float": (-0.5, -0.5, "n"),
    "boolean": (False, False, "b"),
    "date": (date(2024, 3, 5), datetime(2024, 3, 5), "d"),
    "datetime": (datetime(2024, 3, 5, 12, tzinfo=UTC), datetime(2024, 3, 5, 14), "d"),
    "text": ("plain", "plain", "s"),
}
STRAY_TEXT = ['=HYPERLINK("http://evil.example","x")', "=1+1", "#N/A", "#DIV/0!", "-2", "x"]


@pytest.mark.parametrize("column_type", list(TYPED_CELLS))
def test_text_in_a_column_of_any_type_is_a_string_cell(
    tmp_path: Path, column_type: ColumnType
) -> None:
    # SQLite stores text in a column of any type, and users load their own data.
    value, stored, data_type = TYPED_CELLS[column_type]
    rows = [(value,), *((text,) for text in STRAY_TEXT), (value,)]
    path = write_xlsx(tmp_path / "out.xlsx", [Column("value", column_type)], [rows])

    cells = [row[0] for row in load_workbook(path)["Export"].iter_rows(min_row=2)]
    assert [(cell.value, cell.data_type) for cell in cells] == [
        (stored, data_type),
        *((text, "s") for text in STRAY_TEXT),
        (stored, data_type),
    ]


def test_lone_surrogates_are_stored_as_the_replacement_character(tmp_path: Path) -> None:
    rows = [("a\ud800b\udfff",), ("\ud83d\ude00",), ("=\udc00",)]
    path = write_xlsx(tmp_path / "out.xlsx", [Column("text\ud800")], [rows])

    assert sheet_values(load_workbook(path)["Export"]) == [
        ["text\ufffd"],
        ["a\ufffdb\ufffd"],
        ["\ufffd\ufffd"],
        ["=\ufffd"],
    ]


def test_floats_excel_cannot_hold_are_written_as_text(tmp_path: Path) -> None:
    values = [float("nan"), float("inf"), -float("inf"), 1.7976931348623157e308, 9.5e307]
    path = write_xlsx(tmp_path / "out.xlsx", [Column("x", "float")], [[(v,) for v in values]])

    assert sheet_values(load_workbook(path)["Export"])[1:] == [
        ["nan"],
        ["inf"],
        ["-inf"],
        ["1.7976931348623157e+308"],
        [9.5e307],
    ]


def test_characters_that_xml_forbids_are_removed(tmp_path: Path) -> None:
    rows = [("a\x00b\x08c\x0b\x1fd\ufffe\uffffe",), ("tab\tline\nreturn\r",), ("\x00\x01",)]
    path = write_xlsx(tmp_path / "out.xlsx", [Column("text\x00")], [rows])

    assert sheet_values(load_workbook(path)["Export"]) == [
        ["text"],
        ["abcde"],
        ["tab\tline\nreturn\r"],
        [None],
    ]


def test_text_that_looks_like_an_excel_escape_is_escaped(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "out.xlsx", [Column("text")], [[("a_x0041_b_x00",)]])

    stored = sheet_values(load_workbook(path)["Export"])[1][0]
    # openpyxl hands over the stored text; Excel unescapes it, as unescape() does.
    assert stored == "a_x005F_x0041_b_x00"
    assert unescape(stored) == "a_x0041_b_x00"


def test_text_is_cut_to_the_excel_cell_limit(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "out.xlsx", [Column("text")], [[("x" * 40_000,), ("=" * 40_000,)]])

    values = sheet_values(load_workbook(path)["Export"])
    assert values[1:] == [["x" * EXCEL_TEXT_LIMIT], ["=" * EXCEL_TEXT_LIMIT]]


def test_rows_beyond_a_full_sheet_continue_on_new_sheets_under_the_header(tmp_path: Path) -> None:
    rows = [(n, f"row {n}") for n in range(8)]
    columns = [Column("n", "integer"), Column("label")]
    batches = [rows[:2], rows[2:3], [], rows[3:8]]
    path = write_xlsx(tmp_path / "out.xlsx", columns, batches, rows_per_sheet=4, sheet_name="Rows")

    book = load_workbook(path)
    assert book.sheetnames == ["Rows", "Rows (2)", "Rows (3)"]
    header = ["n", "label"]
    assert [sheet_values(sheet) for sheet in book] == [
        [header, *map(list, rows[0:3])],
        [header, *map(list, rows[3:6])],
        [header, *map(list, rows[6:8])],
    ]


def test_overflow_sheet_names_stay_within_31_characters(tmp_path: Path) -> None:
    name = "m" * 31
    path = write_xlsx(
        tmp_path / "out.xlsx",
        [Column("n", "integer")],
        [[(1,), (2,)]],
        rows_per_sheet=2,
        sheet_name=name,
    )

    assert load_workbook(path).sheetnames == [name, "m" * 27 + " (2)"]


def test_an_export_without_rows_is_a_sheet_with_the_header(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "out.xlsx", MIXED, [])

    assert sheet_values(load_workbook(path)["Export"]) == [[column.name for column in MIXED]]


@pytest.mark.parametrize(
    "name", ["", "x" * 32, "a/b", "a\\b", "[x]", "a:b", "a*", "what?", "'quoted", "quoted'"]
)
def test_a_bad_sheet_name_is_explained_in_words(name: str) -> None:
    rule = "1 to 31 characters, none of [ ] : * ? / \\, not starting or ending with '"
    with pytest.raises(InvalidRequest) as caught:
        options(sheet_name=name)
    assert [(f.name, f.message) for f in caught.value.fields] == [
        ("format_options.sheet_name", rule)
    ]
    with pytest.raises(InvalidRequest):
        XlsxOptions(sheet_name=name)


@pytest.mark.parametrize("name", ["x" * 31, "it's", "Q&A (2024)", "日本語"])
def test_a_good_sheet_name_names_the_sheet(tmp_path: Path, name: str) -> None:
    path = write_xlsx(tmp_path / "out.xlsx", [Column("n", "integer")], [[(1,)]], sheet_name=name)
    assert load_workbook(path).sheetnames == [name]


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"sheet_name": 7}, "format_options.sheet_name"),
        ({"colour": "red"}, "format_options.colour"),
    ],
)
def test_bad_options_name_the_field(fields: dict[str, Any], name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        options(**fields)
    assert [field.name for field in caught.value.fields] == [name]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_hostile_values_survive_as_typed_cells(tmp_path: Path, data: st.DataObject) -> None:
    columns = data.draw(hostile_columns(wild=True))
    rows = data.draw(hostile_rows(columns, wild=True))
    path = write_xlsx(tmp_path / "hostile.xlsx", columns, [rows[:7], rows[7:]])

    sheet = load_workbook(path)["Export"]
    # Sized explicitly: a reader cannot tell trailing empty rows and columns apart.
    header, *stored = sheet.iter_rows(max_row=len(rows) + 1, max_col=len(columns), values_only=True)
    assert [unescape(name) if name else None for name in header] == [
        stored_text(column.name) for column in columns
    ]
    for stored_row, row in zip(stored, rows, strict=True):
        for column, got, value in zip(columns, stored_row, row, strict=True):
            assert_stored(column, got, value)
    assert {cell.data_type for row in sheet.iter_rows() for cell in row}.isdisjoint({"f", "e"})


def assert_stored(column: Column, got: Any, value: Any) -> None:
    """``got``, read from the workbook, is what ``value`` of ``column`` should become."""
    if value is None:
        assert got is None
    elif isinstance(value, str):
        assert (unescape(got) if got else None) == stored_text(value)
    elif column.type == "datetime":
        # Excel keeps milliseconds.
        assert abs(got - local_naive(value)) <= timedelta(milliseconds=1)
    elif column.type == "date":
        assert got == datetime.combine(value, time())
    elif column.type == "float" and abs(value) > xlsx_plugin.EXCEL_LARGEST_NUMBER:
        assert got == str(value)
    elif column.type in ("integer", "float"):
        # Every Excel number is a double; openpyxl writes 16 significant digits.
        assert got == pytest.approx(value, rel=1e-15)
    else:
        assert got is value


ENGINES = ["xml", "openpyxl"]


def cell_facts(path: Path) -> list[list[list[tuple[Any, str, str, bool]]]]:
    """Each sheet's cells as openpyxl reads them: value, data type, number format, bold."""
    return [
        [
            [(cell.value, cell.data_type, cell.number_format, bool(cell.font.b)) for cell in row]
            for row in sheet.iter_rows()
        ]
        for sheet in load_workbook(path)
    ]


def test_both_engines_write_cells_that_read_back_alike(tmp_path: Path) -> None:
    columns = [*MIXED, Column("late", "datetime"), Column("old", "date")]
    rows = [
        (
            1,
            datetime(2024, 7, 1, 9, 30, 15, 250_000, tzinfo=UTC),
            "Ann & <Bob>",
            True,
            date(2024, 7, 1),
            2.5,
            datetime(2040, 7, 1, 12, tzinfo=UTC),
            date(1900, 1, 1),
        ),
        (
            2**62,
            datetime(2024, 1, 1, 23, tzinfo=UTC),
            "=1+1",
            False,
            date(1900, 2, 28),
            float("inf"),
            datetime(2040, 1, 1, 12, tzinfo=UTC),
            date(1900, 3, 1),
        ),
        (None, None, "", None, None, 1e-7, None, None),
        ("text", "=2", "  spaced \r\n ", 1, "#N/A", "x", "y", "z"),
        (
            -3,
            datetime(1971, 3, 1, tzinfo=UTC),
            "a_x0041_x0042_b",
            False,
            date(2099, 12, 31),
            -0.0,
            datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC),
            date(1971, 1, 1),
        ),
    ]
    written = [
        write_xlsx(
            tmp_path / f"{engine}.xlsx",
            columns,
            [rows[:2], rows[2:]],
            rows_per_sheet=3,
            engine=engine,
        )
        for engine in ENGINES
    ]

    xml, reference = map(cell_facts, written)
    assert xml == reference
    assert len(xml) == 3
    assert [load_workbook(path).sheetnames for path in written] == [
        ["Export", "Export (2)", "Export (3)"]
    ] * 2


def test_both_engines_write_times_centuries_away_alike(tmp_path: Path) -> None:
    # 0001-01-01 and 9999-12-31 are common stand-ins for "never" in real data.
    columns = [Column("at", "datetime")]
    rows = [
        (datetime(1, 1, 2, tzinfo=UTC),),
        (datetime(1684, 6, 1, tzinfo=UTC),),
        (datetime(2256, 6, 1, 12, 30, tzinfo=UTC),),
        (datetime(9999, 12, 30, tzinfo=UTC),),
    ]
    written = [
        write_xlsx(tmp_path / f"{engine}.xlsx", columns, [rows], engine=engine)
        for engine in ENGINES
    ]
    xml, reference = map(cell_facts, written)
    assert xml == reference
    assert xml[0][3][0][0] == local_naive(rows[2][0])


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_freezes_the_header_of_every_sheet(tmp_path: Path, engine: str) -> None:
    path = write_xlsx(
        tmp_path / "out.xlsx",
        [Column("n", "integer")],
        [[(1,), (2,), (3,)]],
        rows_per_sheet=2,
        engine=engine,
    )

    book = load_workbook(path)
    assert [sheet.freeze_panes for sheet in book] == ["A2"] * 3
    assert [sheet_values(sheet) for sheet in book] == [[["n"], [n]] for n in (1, 2, 3)]


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_writes_an_arrow_batch_with_stray_text(tmp_path: Path, engine: str) -> None:
    # A source's own Arrow batch: text among the times, as a stray-text union.
    times = pa.array([datetime(2024, 3, 5, 12, tzinfo=UTC)], pa.timestamp("us", "UTC"))
    union = pa.UnionArray.from_dense(
        pa.array([0, 1, 0], pa.int8()),
        pa.array([0, 0, 0], pa.int32()),
        [times, pa.array(["=now()"])],
    )
    batch = pa.record_batch([union], names=["at"])
    path = write_xlsx(tmp_path / "out.xlsx", [Column("at", "datetime")], [batch], engine=engine)

    cells = [row[0] for row in load_workbook(path)["Export"].iter_rows(min_row=2)]
    assert [(cell.value, cell.data_type) for cell in cells] == [
        (datetime(2024, 3, 5, 14), "d"),
        ("=now()", "s"),
        (datetime(2024, 3, 5, 14), "d"),
    ]


def test_the_default_engine_is_the_xml_writer() -> None:
    assert options().engine == "xml"
    assert options(engine="openpyxl").engine == "openpyxl"


def test_a_bad_engine_names_the_field() -> None:
    with pytest.raises(InvalidRequest) as caught:
        options(engine="xlsxwriter")
    assert [field.name for field in caught.value.fields] == ["format_options.engine"]


def test_a_sheet_ends_before_its_xml_outgrows_a_zip_entry_without_zip64(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The limit lowered from 4 GiB, as rows_per_sheet is lowered from 1,048,576.
    monkeypatch.setattr(xlsx_book, "SHEET_BYTES", 1_000)
    rows = [(n, "x" * 300) for n in range(6)]
    columns = [Column("n", "integer"), Column("text")]
    path = write_xlsx(tmp_path / "out.xlsx", columns, [rows[:2], rows[2:4], rows[4:]])

    book = load_workbook(path)
    assert book.sheetnames == ["Export", "Export (2)", "Export (3)"]
    assert [sheet_values(sheet)[1:] for sheet in book] == [
        [list(row) for row in rows[i : i + 2]] for i in (0, 2, 4)
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_an_aborted_export_leaves_nothing_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    rows = [(n, "x") for n in range(3)]
    columns = [Column("n", "integer"), Column("text")]
    opts = options(engine=engine)
    write_export(tmp_path / "out.xlsx", XlsxFormat(), columns, [rows], options=opts, abort=True)
    gc.collect()

    assert unraisable == []
