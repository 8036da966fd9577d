"""The json and json_bulk formats: real files, read back with the json module and msgspec."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exportd import Column, ColumnType, InvalidRequest, arrow_batch
from exportd.kernel.validation import convert
from exportd.plugins.formats import json as json_plugin
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

FORMATS = {format_.name: format_ for format_ in json_plugin.exportd_formats()}
JSON, BULK = FORMATS["json"], FORMATS["json_bulk"]

ROWS = [
    (1, datetime(2024, 3, 5, 12, 0, 1, 250000, tzinfo=UTC), "Ann", True, date(2024, 3, 5), 2.5),
    (-(2**63), None, 'say "hi"\n', False, None, -0.125),
    (2**63 - 1, None, None, None, None, None),
]
ROW_OBJECTS = [
    {
        "id": 1,
        "sent_at": "2024-03-05T12:00:01.250000Z",
        "author": "Ann",
        "real": True,
        "day": "2024-03-05",
        "score": 2.5,
    },
    {
        "id": -(2**63),
        "sent_at": None,
        "author": 'say "hi"\n',
        "real": False,
        "day": None,
        "score": -0.125,
    },
    {"id": 2**63 - 1, "sent_at": None, "author": None, "real": None, "day": None, "score": None},
]


def read_lines(path: Path) -> list[Any]:
    """Each line of an NDJSON file, decoded; only LF ends a line."""
    with path.open("rb") as file:
        lines = list(file)
    assert all(line.endswith(b"\n") for line in lines)
    return [json.loads(line) for line in lines]


def read_objects(format_name: str, path: Path) -> list[Any]:
    """The row objects of a json or json_bulk file."""
    if format_name == "json":
        return list(json.loads(path.read_bytes())["rows"])
    return read_lines(path)


def test_they_are_registered_with_their_media_types() -> None:
    plugins = Plugins(builtins=False, entry_points=False, extra=[json_plugin])
    assert {
        name: (plugins.format(name).media_type, plugins.format(name).extension)
        for name in ("json", "json_bulk")
    } == {"json": ("application/json", "json"), "json_bulk": ("application/x-ndjson", "ndjson")}


def test_the_document_describes_the_export_in_its_zone_then_holds_the_rows(
    tmp_path: Path,
) -> None:
    path = write_export(tmp_path / "out.json", JSON, MIXED, [ROWS[:1], [], ROWS[1:]])

    document = json.loads(path.read_bytes())
    assert document == {
        "export": {
            "source": "rooms",
            "params": {"room_id": "r1"},
            "interval": {"start": "2024-03-01T00:00:00Z", "end": "2024-04-01T00:00:00Z"},
            "timezone": "UTC",
            "columns": [
                {"name": "id", "type": "integer", "role": None},
                {"name": "sent_at", "type": "datetime", "role": "time"},
                {"name": "author", "type": "text", "role": "author"},
                {"name": "real", "type": "boolean", "role": None},
                {"name": "day", "type": "date", "role": None},
                {"name": "score", "type": "float", "role": None},
            ],
            "generated_at": "2024-04-01T08:30:00Z",
        },
        "rows": ROW_OBJECTS,
    }
    assert list(document) == ["export", "rows"]
    assert [list(row) for row in document["rows"]] == [[c.name for c in MIXED]] * len(ROWS)


def test_the_metadata_times_are_in_the_request_zone(tmp_path: Path) -> None:
    path = write_export(tmp_path / "out.json", JSON, MIXED, [], zone="Europe/Helsinki")

    export = json.loads(path.read_bytes())["export"]
    # March 2024 in UTC: Helsinki is +02:00 at the start and +03:00 (summer time) at the end.
    assert export["interval"] == {
        "start": "2024-03-01T02:00:00+02:00",
        "end": "2024-04-01T03:00:00+03:00",
    }
    assert export["timezone"] == "Europe/Helsinki"
    assert export["generated_at"] == "2024-04-01T11:30:00+03:00"


def test_an_export_without_rows_is_still_a_document(tmp_path: Path) -> None:
    path = write_export(tmp_path / "out.json", JSON, MIXED, [[], []])
    assert msgspec.json.decode(path.read_bytes())["rows"] == []


def test_json_bulk_writes_one_object_per_line(tmp_path: Path) -> None:
    path = write_export(tmp_path / "out.ndjson", BULK, MIXED, [ROWS[:1], [], ROWS[1:]])
    assert read_lines(path) == ROW_OBJECTS


def test_json_bulk_without_rows_is_an_empty_file(tmp_path: Path) -> None:
    path = write_export(tmp_path / "out.ndjson", BULK, MIXED, [[]])
    assert path.read_bytes() == b""


@pytest.mark.parametrize(("zone", "moment", "rendered"), ZONE_CASES)
@pytest.mark.parametrize("format_name", ["json", "json_bulk"])
def test_times_are_rfc3339_with_the_offset_of_the_request_zone(
    tmp_path: Path, format_name: str, zone: str, moment: datetime, rendered: str
) -> None:
    columns = [Column("at", "datetime"), Column("note")]
    rows = [(moment, "x"), (None, "y")]
    path = write_export(tmp_path / "out", FORMATS[format_name], columns, [rows], zone=zone)

    objects = read_objects(format_name, path)
    assert objects == [{"at": rendered, "note": "x"}, {"at": None, "note": "y"}]


@pytest.mark.parametrize("format_name", ["json", "json_bulk"])
def test_an_option_is_an_invalid_request_naming_it(format_name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        convert({"pretty": True}, FORMATS[format_name].Options, "format_options")
    assert [field.name for field in caught.value.fields] == ["format_options.pretty"]


@pytest.mark.parametrize("format_name", ["json", "json_bulk"])
def test_each_batch_reaches_the_file_before_close(tmp_path: Path, format_name: str) -> None:
    format_ = FORMATS[format_name]
    columns = [Column("n", "integer"), Column("text")]
    batch = [(n, "x" * 1000) for n in range(100)]
    with (tmp_path / "out").open("wb") as file:
        writer = format_.open(file, columns, format_.Options(), export_info(columns))
        sizes = []
        for _ in range(3):
            writer.write(batch)
            file.flush()
            sizes.append(file.tell())
        writer.close()

    assert [size > (index + 1) * 100_000 for index, size in enumerate(sizes)] == [True] * 3


@pytest.mark.parametrize("format_name", ["json", "json_bulk"])
def test_memory_stays_flat_as_the_export_grows(tmp_path: Path, format_name: str) -> None:
    format_, columns = FORMATS[format_name], SYNTHETIC_COLUMNS
    small = peak_memory_of_export(tmp_path / "s", format_, columns, lambda: synthetic_batches(3))
    large = peak_memory_of_export(tmp_path / "l", format_, columns, lambda: synthetic_batches(30))
    assert large < small * 1.2


@pytest.mark.parametrize("format_name", ["json", "json_bulk"])
@pytest.mark.parametrize("zone", ["UTC", "Europe/Helsinki"])
def test_any_column_name_is_a_key(tmp_path: Path, format_name: str, zone: str) -> None:
    columns = [
        Column('say "hi"\n'),
        Column("back\\slash"),
        Column("\x00"),
        Column("at", "datetime"),
    ]
    rows = [("a", "b", "c", datetime(2024, 3, 31, 1, tzinfo=UTC))]
    path = write_export(tmp_path / "out", FORMATS[format_name], columns, [rows], zone=zone)

    objects = read_objects(format_name, path)
    at = "2024-03-31T01:00:00Z" if zone == "UTC" else "2024-03-31T04:00:00+03:00"
    assert objects == [{'say "hi"\n': "a", "back\\slash": "b", "\x00": "c", "at": at}]


@pytest.mark.parametrize("format_name", ["json", "json_bulk"])
@pytest.mark.parametrize("column_type", ["integer", "float", "boolean", "date", "datetime"])
def test_text_in_a_column_of_any_type_is_a_string(
    tmp_path: Path, format_name: str, column_type: ColumnType
) -> None:
    # SQLite stores text in a column of any type, and users load their own data.
    columns = [Column("value", column_type), Column("at", "datetime")]
    moment = datetime(2024, 3, 5, 12, tzinfo=UTC)
    rows = [("=1+1", moment), ("", None), (None, moment)]
    path = write_export(
        tmp_path / "out", FORMATS[format_name], columns, [rows], zone="Europe/Helsinki"
    )

    at = "2024-03-05T14:00:00+02:00"
    assert read_objects(format_name, path) == [
        {"value": "=1+1", "at": at},
        {"value": "", "at": None},
        {"value": None, "at": at},
    ]


@pytest.mark.parametrize("format_name", ["json", "json_bulk"])
def test_lone_surrogates_are_written_as_the_replacement_character(
    tmp_path: Path, format_name: str
) -> None:
    columns = [Column("name\ud800"), Column("n", "integer")]
    rows = [("a\ud800b\udfff", 1), ("\ud83d\ude00", 2)]
    path = write_export(tmp_path / "out", FORMATS[format_name], columns, [rows[:1], rows[1:]])

    assert read_objects(format_name, path) == [
        {"name\ufffd": "a\ufffdb\ufffd", "n": 1},
        {"name\ufffd": "\ufffd\ufffd", "n": 2},
    ]


def test_lone_surrogates_in_the_metadata_are_the_replacement_character(tmp_path: Path) -> None:
    columns = [Column("name\udfff")]
    params = {"room_id": "r\ud800", "\udc00": ["\ud83d"]}
    info = dataclasses.replace(export_info(columns), params=params)
    with (tmp_path / "out.json").open("wb") as file:
        writer = JSON.open(file, columns, JSON.Options(), info)
        writer.close()

    export = json.loads((tmp_path / "out.json").read_bytes())["export"]
    assert export["params"] == {"room_id": "r\ufffd", "\ufffd": ["\ufffd"]}
    assert export["columns"] == [{"name": "name\ufffd", "type": "text", "role": None}]


PARSERS: dict[str, Callable[[str], Any]] = {
    "date": date.fromisoformat,
    "datetime": datetime.fromisoformat,
}


def decoded(column_type: ColumnType, value: Any) -> Any:
    """A JSON value read back as a value of its column's type."""
    parse = PARSERS.get(column_type)
    return value if value is None or parse is None else parse(value)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    format_name=st.sampled_from(["json", "json_bulk"]),
    zone=st.sampled_from(["UTC", "Europe/Helsinki", "America/Los_Angeles"]),
)
def test_hostile_values_and_names_survive(
    tmp_path: Path, data: st.DataObject, format_name: str, zone: str
) -> None:
    columns = data.draw(hostile_columns(wild=True))
    batches = data.draw(st.lists(hostile_rows(columns, wild=True), max_size=3))
    path = write_export(tmp_path / "out", FORMATS[format_name], columns, batches, zone=zone)

    names = [encodable(column.name) for column in columns]
    if format_name == "json":
        document = json.loads(path.read_bytes())
        assert document["export"]["columns"] == [
            {"name": name, "type": c.type, "role": None}
            for name, c in zip(names, columns, strict=True)
        ]
    objects = read_objects(format_name, path)
    written = [row for batch in batches for row in batch]
    assert len(objects) == len(written)
    for obj, row in zip(objects, written, strict=True):
        assert list(obj) == names
        for name, column, value in zip(names, columns, row, strict=True):
            if isinstance(value, str):
                assert obj[name] == encodable(value)
            else:
                assert decoded(column.type, obj[name]) == value
            if column.type == "datetime" and isinstance(value, datetime):
                local_offset = value.astimezone(ZoneInfo(zone)).utcoffset()
                assert datetime.fromisoformat(obj[name]).utcoffset() == local_offset


@pytest.mark.parametrize("format_name", ["json", "json_bulk"])
def test_floats_stay_floats_and_non_numbers_are_null(tmp_path: Path, format_name: str) -> None:
    rows = [(0.0,), (-3.0,), (1e20,), (0.1,), (float("nan"),), (float("inf"),), (None,)]
    path = write_export(tmp_path / "out", FORMATS[format_name], [Column("x", "float")], [rows])

    values = [obj["x"] for obj in read_objects(format_name, path)]
    assert values == [0.0, -3.0, 1e20, 0.1, None, None, None]
    assert [type(value) for value in values[:4]] == [float] * 4


@pytest.mark.parametrize("format_name", ["json", "json_bulk"])
def test_a_name_two_columns_share_is_one_key_with_the_last_value(
    tmp_path: Path, format_name: str
) -> None:
    columns = [Column("a"), Column("b", "integer"), Column("a", "integer")]
    path = write_export(tmp_path / "out", FORMATS[format_name], columns, [[("x", 1, 2)]])

    assert read_objects(format_name, path) == [{"a": 2, "b": 1}]
    assert path.read_bytes().count(b'"a":') == 1


@pytest.mark.parametrize("format_name", ["json", "json_bulk"])
def test_a_record_batch_is_written_as_its_rows_would_be(tmp_path: Path, format_name: str) -> None:
    # Repeated values with nulls among them: values are made once per distinct value.
    columns = [Column("name"), Column("at", "datetime"), Column("day", "date")]
    moment, day = datetime(2040, 7, 1, tzinfo=UTC), date(2024, 3, 5)
    rows = [('say "hi"\n\x01', moment, day), (None, None, None), ("x", moment, day)] * 50
    format_ = FORMATS[format_name]
    with (tmp_path / "out").open("wb") as file:
        info = export_info(columns, zone="Europe/Helsinki")
        writer = format_.open(file, columns, format_.Options(), info)
        writer.write(arrow_batch(rows, columns))
        writer.close()

    at = "2040-07-01T03:00:00+03:00"  # summer time after the tz database's listed years
    expected = [
        {
            "name": name,
            "at": None if time is None else at,
            "day": None if d is None else "2024-03-05",
        }
        for name, time, d in rows
    ]
    assert read_objects(format_name, tmp_path / "out") == expected
