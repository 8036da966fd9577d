"""The example third-party plugin (examples/exportd-example), used through its entry point.

The package is installed into the test environment (tests/conftest.py); its
``weather`` source and ``markdown`` format must work with each other and with
the built-in formats and sources.  Markdown is read back with a real
CommonMark + GFM-tables parser (markdown-it-py) and an HTML parser.
"""

from __future__ import annotations

import csv
import re
import tempfile
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from exportd_example.markdown import MarkdownFormat
from exportd_example.weather import WeatherParams, WeatherSource
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from exportd import Column, InvalidRequest, NotFound, ReadContext, Window
from exportd.data.demo import DemoSummary, generate_demo_data
from exportd.messages import ExportRequest
from exportd.plan import ExportPlan, plan_export
from exportd.plugins.manager import Plugins
from exportd.testing import encodable, hostile_columns, hostile_rows, write_export
from exportd.workers.pipeline import run_export

ENTRY_POINT_ONLY = Plugins(builtins=False)
WEATHER = WeatherSource()
MARKDOWN = MarkdownFormat()
HELSINKI = ZoneInfo("Europe/Helsinki")


class TableReader(HTMLParser):
    """The cells of every row of the HTML tables in a document; ``<br>`` is a newline."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "br" and self.cell is not None:
            self.cell.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def read_markdown_table(path: Path) -> list[list[str]]:
    """The header and rows of the Markdown table in ``path``, as rendered text."""
    html = (
        MarkdownIt("commonmark")
        .enable(["table", "strikethrough"])
        .render(path.read_text(encoding="utf-8"))
    )
    reader = TableReader()
    reader.feed(html)
    return reader.rows


def as_rendered(value: str) -> str:
    """What the format promises a text value renders as (see its docstring)."""
    value = re.sub("\r\n?", "\n", encodable(value).replace("\x00", "\ufffd"))
    # Line breaks stay (as <br>); the white space Markdown trims around them goes.
    edges = re.compile(r"^[^\S\n\x1c-\x1f\x85]+|[^\S\n\x1c-\x1f\x85]+\Z")
    return edges.sub(lambda space: space[0].replace("\v", ""), value)


def request(source: str, params: dict[str, Any], format_: str, **fields: Any) -> ExportRequest:
    data = {
        "source": source,
        "params": params,
        "format": format_,
        "interval": {"start": "2024-03-30", "end": "2024-04-01"},
        "timezone": "Europe/Helsinki",
        **fields,
    }
    return msgspec.convert(data, ExportRequest)


def export(plan: ExportPlan, path: Path) -> Path:
    run_export(plan, path, batch_size=7)
    return path


def weather_rows(window: Window, **params: Any) -> list[tuple[Any, ...]]:
    ctx = ReadContext(window=window, data_path=Path("unused.db"), batch_size=50)
    return [row for batch in WEATHER.read(WeatherParams(**params), ctx) for row in batch]


def test_the_plugin_is_found_through_its_entry_point_beside_the_built_ins() -> None:
    plugins = Plugins()
    assert {"weather", "rooms"} <= set(plugins.sources)
    assert {"markdown", "csv"} <= set(plugins.formats)
    for kind, name in (("source", "weather"), ("format", "markdown")):
        origin = plugins.origin(kind, name)
        assert (origin.plugin, origin.package) == ("example", "exportd-example 0.1.0")


def test_blocking_the_plugin_by_its_entry_point_name_removes_it() -> None:
    plugins = Plugins(builtins=False, blocked=["example"])
    assert "weather" not in plugins.sources
    assert "markdown" not in plugins.formats


@settings(max_examples=60, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1)),
    length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2)),
    overlap=st.floats(min_value=0, max_value=1),
    every_minutes=st.sampled_from([1, 5, 7, 60, 90, 1440]),
)
def test_a_reading_depends_on_the_time_only_and_the_estimate_is_exact(
    start: datetime, length: timedelta, overlap: float, every_minutes: int
) -> None:
    start = start.replace(tzinfo=UTC)
    window = Window(start, start + length, HELSINKI)
    rows = weather_rows(window, city="tokyo", every_minutes=every_minutes)
    ctx = ReadContext(window=window, data_path=Path("unused.db"))
    assert len(rows) == WEATHER.estimate(
        WeatherParams(city="tokyo", every_minutes=every_minutes), ctx
    )
    times = [row[0] for row in rows]
    assert times == sorted(set(times))
    assert all(
        window.start <= t < window.end and t.timestamp() % (every_minutes * 60) == 0 for t in times
    )
    assert all(-40 < row[2] < 50 and 5 <= row[3] <= 100 for row in rows)
    later = Window(start + length * overlap, window.end, HELSINKI)
    assert weather_rows(later, city="tokyo", every_minutes=every_minutes) == [
        row for row in rows if row[0] >= later.start
    ]


def test_fahrenheit_readings_are_the_celsius_ones_converted() -> None:
    window = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC), HELSINKI)
    celsius = weather_rows(window, city="Helsinki")
    fahrenheit = weather_rows(window, city="Helsinki", unit="fahrenheit")
    assert len(celsius) == len(fahrenheit) == 48
    for c, f in zip(celsius, fahrenheit, strict=True):
        assert f[2] == pytest.approx(c[2] * 9 / 5 + 32, abs=0.15)


def test_an_unknown_city_is_not_found_and_a_bad_step_is_invalid() -> None:
    with pytest.raises(NotFound) as unknown:
        plan_export(
            request("weather", {"city": "Atlantis"}, "markdown"), ENTRY_POINT_ONLY, Path("x")
        )
    assert unknown.value.fields[0].name == "params.city"
    assert "lisbon" in unknown.value.fields[0].message
    with pytest.raises(InvalidRequest) as bad:
        plan_export(
            request("weather", {"city": "Lisbon", "every_minutes": 0}, "markdown"),
            ENTRY_POINT_ONLY,
            Path("x"),
        )
    assert bad.value.fields[0].name == "params.every_minutes"


def test_weather_in_markdown_through_the_pipeline(tmp_path: Path) -> None:
    plan = plan_export(
        request("weather", {"city": "Lisbon"}, "markdown"), ENTRY_POINT_ONLY, Path("x")
    )
    table = read_markdown_table(export(plan, tmp_path / "weather.md"))
    expected = weather_rows(plan.window, city="Lisbon")
    assert table[0] == ["time", "city", "temperature", "humidity", "conditions"]
    assert len(table) - 1 == len(expected) == 47  # Helsinki's clocks go forward on 31 March
    assert table[1][0] == "2024-03-30 00:00:00+02:00"
    assert table[-1][0] == "2024-03-31 23:00:00+03:00"
    for cells, row in zip(table[1:], expected, strict=True):
        assert datetime.fromisoformat(cells[0]) == row[0]
        assert (cells[1], float(cells[2]), int(cells[3]), cells[4]) == row[1:]


def test_the_limit_stops_the_weather_early(tmp_path: Path) -> None:
    plan = plan_export(
        request("weather", {"city": "Nairobi"}, "markdown", limit=5), ENTRY_POINT_ONLY, Path("x")
    )
    assert len(read_markdown_table(export(plan, tmp_path / "w.md"))) == 1 + 5


@settings(max_examples=60, deadline=None)
@given(data=st.data(), zone=st.sampled_from(["UTC", "Europe/Helsinki", "America/St_Johns"]))
def test_any_values_survive_a_markdown_table(data: st.DataObject, zone: str) -> None:
    columns = data.draw(hostile_columns(wild=True))
    rows = data.draw(hostile_rows(columns, wild=True))
    with tempfile.TemporaryDirectory() as folder:
        path = write_export(Path(folder) / "t.md", MARKDOWN, columns, [rows], zone=zone)
        table = read_markdown_table(path)
    assert table[0] == [as_rendered(column.name) for column in columns]
    assert table[1:] == [
        [
            rendered(value, column, ZoneInfo(zone))
            for value, column in zip(row, columns, strict=True)
        ]
        for row in rows
    ]


def rendered(value: Any, column: Column, zone: ZoneInfo) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return as_rendered(value)
    if column.type == "datetime":
        return str(value.astimezone(zone).isoformat(" ", "seconds"))
    if column.type == "boolean":
        return "true" if value else "false"
    return str(value)


def test_numbers_are_right_aligned_unless_asked_not_to(tmp_path: Path) -> None:
    columns = [Column("n", "integer"), Column("label")]
    aligned = write_export(tmp_path / "a.md", MARKDOWN, columns, [[(1, "x")]])
    plain = write_export(
        tmp_path / "b.md", MARKDOWN, columns, [], options=MARKDOWN.Options(align_numbers=False)
    )
    assert aligned.read_text().splitlines()[1] == "| ---: | --- |"
    assert plain.read_text().splitlines() == ["| n | label |", "| --- | --- |"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return generate_demo_data(tmp_path_factory.mktemp("home") / "data.db", messages=3000)


def test_the_weather_in_a_built_in_format(tmp_path: Path) -> None:
    plan = plan_export(request("weather", {"city": "Sydney"}, "csv"), Plugins(), Path("x"))
    with export(plan, tmp_path / "w.csv").open(newline="", encoding="utf-8") as file:
        records = list(csv.DictReader(file))
    expected = weather_rows(plan.window, city="Sydney")
    assert [float(r["temperature"]) for r in records] == [row[2] for row in expected]
    assert [datetime.fromisoformat(r["time"]) for r in records] == [row[0] for row in expected]


def test_a_built_in_source_in_markdown(tmp_path: Path, demo: DemoSummary) -> None:
    plugins = Plugins()
    window = {"interval": {"start": demo.start.isoformat(), "end": demo.end.isoformat()}}
    logs = {"room_id": demo.room_id, "type": "logs"}
    markdown = plan_export(request("rooms", logs, "markdown", **window), plugins, demo.path)
    ndjson = plan_export(request("rooms", logs, "json_bulk", **window), plugins, demo.path)
    table = read_markdown_table(export(markdown, tmp_path / "logs.md"))
    with export(ndjson, tmp_path / "logs.ndjson").open("rb") as file:
        objects = [msgspec.json.decode(line) for line in file]
    names = [column.name for column in markdown.columns]
    assert table[0] == names
    assert len(table) - 1 == len(objects) > 0
    text_columns = [i for i, column in enumerate(markdown.columns) if column.type == "text"]
    for cells, record in zip(table[1:], objects, strict=True):
        for i in text_columns:
            value = record[names[i]]
            assert cells[i] == ("" if value is None else as_rendered(value))
