"""The csv format: real files, read back with the csv module."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exportd import Column, ColumnType, InvalidRequest, arrow_batch
from exportd.kernel.validation import convert
from exportd.plugins.formats import csv as csv_plugin
from exportd.plugins.manager import Plugins
from exportd.testing import (
    encodable,
    export_info,
    hostile_columns,
    hostile_rows,
    write_export,
)
from tests.unit.format_cases import (
    MIXED,
    SYNTHETIC_COLUMNS,
    ZONE_CASES,
    peak_memory_of_export,
    synthetic_batches,
)

CSV = next(format_ for format_ in csv_plugin.exportd_formats() if format_.name == "csv")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Hostile text holds cells far longer than the reader's default limit of 128 KiB.
csv.field_size_limit(1 << 30)


def options(**fields: Any) -> msgspec.Struct:
    """The csv options, validated as a request's ``format_options`` are."""
    return convert(fields, CSV.Options, "format_options")


def write_csv(
    path: Path,
    columns: list[Column],
    batches: list[list[tuple[Any, ...]]],
    zone: str = "UTC",
    **fields: Any,
) -> Path:
    """Write ``batches`` as csv with the options ``fields``."""
    return write_export(path, CSV, columns, batches, options=options(**fields), zone=zone)


def read_csv(path: Path, *, delimiter: str = ",", bom: bool = False) -> list[list[str]]:
    """Every record of the file, header first."""
    with path.open(encoding="utf-8-sig" if bom else "utf-8", newline="") as file:
        return list(csv.reader(file, delimiter=delimiter, strict=True))


def neutralized(text: str) -> str:
    """What the OWASP rule makes of ``text``."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def test_it_is_registered_as_text_csv() -> None:
    registered = Plugins(builtins=False, entry_points=False, extra=[csv_plugin]).format("csv")
    assert (registered.media_type, registered.extension) == ("text/csv; charset=utf-8", "csv")


def test_every_type_reads_back_as_the_text_a_spreadsheet_expects(tmp_path: Path) -> None:
    rows = [
        (1, datetime(2024, 3, 5, 12, 0, 1, 250000, tzinfo=UTC), "Ann", True, date(2024, 3, 5), 2.5),
        (-2, None, None, False, None, -0.125),
        (None, None, "", None, None, None),
    ]
    path = write_csv(tmp_path / "out.csv", MIXED, [rows])

    assert read_csv(path) == [
        ["id", "sent_at", "author", "real", "day", "score"],
        ["1", "2024-03-05T12:00:01.250000Z", "Ann", "true", "2024-03-05", "2.5"],
        ["-2", "", "", "false", "", "-0.125"],
        ["", "", "", "", "", ""],
    ]


def test_rows_of_every_batch_follow_one_header_and_the_file_stays_open(tmp_path: Path) -> None:
    columns = [Column("n", "integer"), Column("label")]
    batches = [[(n, f"row {n}") for n in range(start, start + 3)] for start in (0, 3, 6)]
    path = write_csv(tmp_path / "out.csv", columns, [[], *batches, []])

    records = read_csv(path)
    assert records[0] == ["n", "label"]
    assert records[1:] == [[str(n), f"row {n}"] for n in range(9)]


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_text_a_spreadsheet_would_run_gets_a_quote_but_numbers_do_not(
    tmp_path: Path, start: str
) -> None:
    columns = [Column(f"{start}name"), Column("count", "integer"), Column("ratio", "float")]
    formula = f'{start}HYPERLINK("http://evil.example")'
    path = write_csv(tmp_path / "out.csv", columns, [[(formula, -5, -0.5)]])

    assert read_csv(path) == [
        [f"'{start}name", "count", "ratio"],
        [f"'{formula}", "-5", "-0.5"],
    ]


# A value of each column type, and the cell it makes in Europe/Helsinki.
TYPED_CELLS: dict[ColumnType, tuple[Any, str]] = {
    "integer": (-5, "-5"),
    "float": (-0.5, "-0.5"),
    "boolean": (False, "false"),
    "date": (date(2024, 3, 5), "2024-03-05"),
    "datetime": (datetime(2024, 3, 5, 12, tzinfo=UTC), "2024-03-05T14:00:00+02:00"),
    "text": ("plain", "plain"),
}
STRAY_TEXT = ['=HYPERLINK("http://evil.example","x")', "+1", "-2", "@SUM(A1)", "\t=1", "\r=1", "x"]


@pytest.mark.parametrize("neutralize", [True, False])
@pytest.mark.parametrize("column_type", list(TYPED_CELLS))
def test_text_in_a_column_of_any_type_is_written_as_text(
    tmp_path: Path, column_type: ColumnType, neutralize: bool
) -> None:
    # SQLite stores text in a column of any type, and users load their own data.
    value, cell = TYPED_CELLS[column_type]
    rows = [(value,), *((text,) for text in STRAY_TEXT), (None,), (value,)]
    path = write_csv(
        tmp_path / "out.csv",
        [Column("value", column_type)],
        [rows],
        zone="Europe/Helsinki",
        neutralize_formulas=neutralize,
    )

    texts = [neutralized(text) if neutralize else text for text in STRAY_TEXT]
    assert read_csv(path)[1:] == [[cell], *([text] for text in texts), [""], [cell]]


def test_lone_surrogates_are_written_as_the_replacement_character(tmp_path: Path) -> None:
    columns = [Column("name\ud800"), Column("n", "integer")]
    rows = [("a\ud800b\udfff", -1), ("\ud83d\ude00", 2)]
    path = write_csv(tmp_path / "out.csv", columns, [rows])

    assert read_csv(path) == [["name\ufffd", "n"], ["a\ufffdb\ufffd", "-1"], ["\ufffd\ufffd", "2"]]


@pytest.mark.parametrize(
    "text", ["=1+1", "+358 40 123", "-5", "@SUM(A1)", "\t=1", "\r=1", "'=already", "a=b"]
)
def test_without_neutralisation_text_round_trips_exactly(tmp_path: Path, text: str) -> None:
    path = write_csv(tmp_path / "out.csv", [Column(text)], [[(text,)]], neutralize_formulas=False)
    assert read_csv(path) == [[text], [text]]


def test_a_bom_starts_the_file_exactly_once(tmp_path: Path) -> None:
    batches = [[("é",)], [("ü",)]]
    path = write_csv(tmp_path / "out.csv", [Column("name")], batches, bom=True)

    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfname")
    assert data.count(b"\xef\xbb\xbf") == 1
    assert read_csv(path, bom=True) == [["name"], ["é"], ["ü"]]


def test_no_bom_by_default(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "out.csv", [Column("name")], [[("é",)]])
    assert path.read_bytes() == "name\r\né\r\n".encode()


@pytest.mark.parametrize(("line_ending", "end"), [("crlf", b"\r\n"), ("lf", b"\n")])
def test_records_end_with_the_chosen_line_ending(
    tmp_path: Path, line_ending: str, end: bytes
) -> None:
    rows = [("Ann", 1), ("Bob", 2)]
    columns = [Column("name"), Column("n", "integer")]
    path = write_csv(tmp_path / "out.csv", columns, [rows], line_ending=line_ending)

    data = path.read_bytes()
    assert data.endswith(end)
    assert len(data.split(end)) == 1 + len(rows) + 1
    assert data.count(b"\r") == (len(rows) + 1 if line_ending == "crlf" else 0)


@pytest.mark.parametrize("line_ending", ["crlf", "lf"])
def test_line_breaks_and_quotes_inside_text_survive(tmp_path: Path, line_ending: str) -> None:
    texts = ["two\nlines", "bare\rreturn", "dos\r\nline", "\r", 'a "quote"', '"']
    rows = [(text,) for text in texts]
    path = write_csv(
        tmp_path / "out.csv",
        [Column("text")],
        [rows],
        line_ending=line_ending,
        neutralize_formulas=False,
    )
    assert read_csv(path) == [["text"], *([text] for text in texts)]


@pytest.mark.parametrize("delimiter", [";", "\t", "|", " "])
def test_any_delimiter_separates_fields_and_is_quoted_inside_them(
    tmp_path: Path, delimiter: str
) -> None:
    columns = [Column("a"), Column("b", "integer")]
    rows = [(f"x{delimiter}y", 1), (f"z{delimiter}", 2)]
    path = write_csv(tmp_path / "out.csv", columns, [rows], delimiter=delimiter)

    assert path.read_bytes().decode().startswith(f"a{delimiter}b\r\n")
    assert read_csv(path, delimiter=delimiter) == [
        ["a", "b"],
        [f"x{delimiter}y", "1"],
        [f"z{delimiter}", "2"],
    ]


@pytest.mark.parametrize(("zone", "moment", "rendered"), ZONE_CASES)
def test_times_are_rfc3339_with_the_offset_of_the_request_zone(
    tmp_path: Path, zone: str, moment: datetime, rendered: str
) -> None:
    columns = [Column("at", "datetime"), Column("note")]
    path = write_csv(tmp_path / "out.csv", columns, [[(moment, "x"), (None, "y")]], zone=zone)
    assert read_csv(path)[1:] == [[rendered, "x"], ["", "y"]]


@pytest.mark.parametrize("delimiter", [";;", "", '"', "\n", "\r"])
def test_a_bad_delimiter_is_explained_in_words(delimiter: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        options(delimiter=delimiter)
    assert [(f.name, f.message) for f in caught.value.fields] == [
        ("format_options.delimiter", "one character other than a double quote, CR or LF")
    ]


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"delimiter": 44}, "format_options.delimiter"),
        ({"bom": "yes"}, "format_options.bom"),
        ({"line_ending": "cr"}, "format_options.line_ending"),
        ({"neutralize_formulas": None}, "format_options.neutralize_formulas"),
        ({"quotechar": "'"}, "format_options.quotechar"),
    ],
)
def test_a_bad_option_is_an_invalid_request_naming_it(fields: dict[str, Any], name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        options(**fields)
    assert [field.name for field in caught.value.fields] == [name]


def test_each_batch_reaches_the_file_before_close(tmp_path: Path) -> None:
    columns = [Column("n", "integer"), Column("text")]
    batch = [(n, "x" * 1000) for n in range(100)]
    with (tmp_path / "out.csv").open("wb") as file:
        writer = CSV.open(file, columns, options(), export_info(columns))
        sizes = []
        for _ in range(3):
            writer.write(batch)
            file.flush()
            sizes.append(file.tell())
        writer.close()

    # A writer may hold back at most a small buffer (8 KiB) until close.
    assert [size > (index + 1) * 100_000 - 8192 for index, size in enumerate(sizes)] == [True] * 3


def test_memory_stays_flat_as_the_export_grows(tmp_path: Path) -> None:
    columns = SYNTHETIC_COLUMNS
    small = peak_memory_of_export(tmp_path / "s.csv", CSV, columns, lambda: synthetic_batches(3))
    large = peak_memory_of_export(tmp_path / "l.csv", CSV, columns, lambda: synthetic_batches(30))
    assert large < small * 1.2


PARSERS: dict[str, Callable[[str], Any]] = {
    "integer": int,
    "float": float,
    "boolean": {"true": True, "false": False}.__getitem__,
    "date": date.fromisoformat,
    "datetime": datetime.fromisoformat,
}


def decoded(column_type: ColumnType, text: str) -> Any:
    """A non-text cell read back as a value of its column's type; empty is None."""
    if text == "":
        return None
    return PARSERS[column_type](text)


CSV_OPTIONS = st.fixed_dictionaries(
    {
        "delimiter": st.sampled_from([",", ";", "\t", "|", " ", "'", "é"]),
        "bom": st.booleans(),
        "line_ending": st.sampled_from(["crlf", "lf"]),
        "neutralize_formulas": st.booleans(),
    }
)
ZONES = st.sampled_from(["UTC", "Europe/Helsinki", "America/Los_Angeles"])


@settings(
    max_examples=75, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), fields=CSV_OPTIONS, zone=ZONES)
def test_hostile_values_survive_any_options(
    tmp_path: Path, data: st.DataObject, fields: dict[str, Any], zone: str
) -> None:
    columns = data.draw(hostile_columns(wild=True))
    batches = data.draw(st.lists(hostile_rows(columns, wild=True), max_size=3))
    path = write_csv(tmp_path / "out.csv", columns, batches, zone=zone, **fields)

    header, *records = read_csv(path, delimiter=fields["delimiter"], bom=fields["bom"])
    neutralize = neutralized if fields["neutralize_formulas"] else str
    assert header == [neutralize(encodable(column.name)) for column in columns]
    written = [row for batch in batches for row in batch]
    assert len(records) == len(written)
    for record, row in zip(records, written, strict=True):
        for column, text, value in zip(columns, record, row, strict=True):
            if isinstance(value, str) or column.type == "text":
                assert text == neutralize(encodable(value or ""))
            else:
                assert decoded(column.type, text) == value
            if column.type == "datetime" and isinstance(value, datetime):
                local_offset = value.astimezone(ZoneInfo(zone)).utcoffset()
                assert datetime.fromisoformat(text).utcoffset() == local_offset


def test_a_record_batch_is_written_as_its_rows_would_be(tmp_path: Path) -> None:
    # Repeated values with nulls among them: cells are made once per distinct value.
    columns = [Column("name"), Column("n", "integer"), Column("at", "datetime")]
    moment = datetime(2024, 3, 5, 12, tzinfo=UTC)
    rows = [("=x", 1, moment), (None, None, None), ('a,"b"', 1, moment), ("x", 2, None)] * 50
    with (tmp_path / "out.csv").open("wb") as file:
        writer = CSV.open(file, columns, options(), export_info(columns))
        writer.write(arrow_batch(rows, columns))
        writer.close()

    cells = {"=x": "'=x", None: "", 'a,"b"': 'a,"b"', "x": "x"}
    expected = [
        [cells[name], "" if n is None else str(n), "" if at is None else "2024-03-05T12:00:00Z"]
        for name, n, at in rows
    ]
    assert read_csv(tmp_path / "out.csv") == [["name", "n", "at"], *expected]


def test_a_stray_text_union_is_written_by_kind(tmp_path: Path) -> None:
    union = pa.UnionArray.from_dense(
        pa.array([0, 1, 0, 1], pa.int8()),
        pa.array([0, 0, 1, 1], pa.int32()),
        [pa.array([1.5, None]), pa.array(["=1+1", "a\nb"])],
    )
    columns = [Column("value", "integer")]
    with (tmp_path / "out.csv").open("wb") as file:
        writer = CSV.open(file, columns, options(), export_info(columns))
        writer.write(pa.RecordBatch.from_arrays([union], names=["value"]))
        writer.close()

    assert read_csv(tmp_path / "out.csv") == [["value"], ["1.5"], ["'=1+1"], [""], ["a\nb"]]


@pytest.mark.parametrize(
    ("moment", "rendered"),
    [
        (datetime(2040, 1, 1, tzinfo=UTC), "2040-01-01T02:00:00+02:00"),
        (datetime(2040, 7, 1, tzinfo=UTC), "2040-07-01T03:00:00+03:00"),
        (datetime(2099, 7, 1, 0, 0, 0, 5, tzinfo=UTC), "2099-07-01T03:00:00.000005+03:00"),
    ],
)
def test_times_after_2037_keep_the_summer_time_of_the_zone(
    tmp_path: Path, moment: datetime, rendered: str
) -> None:
    # The tz database lists transitions up to 2037 and gives a rule for the years after.
    columns = [Column("at", "datetime")]
    path = write_csv(tmp_path / "out.csv", columns, [[(moment,)]], zone="Europe/Helsinki")
    assert read_csv(path)[1:] == [[rendered]]


def test_whole_floats_are_written_as_python_writes_them(tmp_path: Path) -> None:
    rows = [(0.0,), (-3.0,), (1e20,), (0.1,), (None,)]
    path = write_csv(tmp_path / "out.csv", [Column("x", "float")], [rows])
    assert read_csv(path)[1:] == [["0.0"], ["-3.0"], ["1e+20"], ["0.1"], [""]]
