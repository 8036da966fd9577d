"""The tests of exportd-example, written with exportd's test kit alone, as a third-party
plugin's tests are: ``exportd.testing`` runs the exports and checks the contract, its
pytest plugin gives the fixtures (``exportd_demo``, ``exportd_service``).

The package is tested as it is installed, through its entry point.  Its ``weather``
source and ``markdown`` format must work with each other and with the built-in formats
and sources.  Markdown is read back with a real CommonMark + GFM-tables parser
(markdown-it-py) and an HTML parser.
"""

from __future__ import annotations

import csv
import re
import tempfile
from collections.abc import Iterator
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
from exportd.testing import (
    DemoSummary,
    ExportedFile,
    PluginSet,
    Service,
    check_format,
    check_source,
    data_store,
    encodable,
    hostile_columns,
    hostile_rows,
    run_export,
    write_export,
)

THIS_PLUGIN = PluginSet(builtins=False)
"""The installed plugin packages alone: this one, without exportd's built-ins."""
EVERY_PLUGIN = PluginSet()
"""This plugin and exportd's built-ins."""
WEATHER = WeatherSource()
MARKDOWN = MarkdownFormat()
NO_DATA = data_store("sqlite:///unused.db")
"""A data store the weather source, which reads none, is handed (and never opens);
closed when the tests end (see :func:`no_data_closed`)."""
HELSINKI = ZoneInfo("Europe/Helsinki")
START, END, ZONE = "2024-03-30", "2024-04-01", "Europe/Helsinki"
"""Two days, in which Helsinki's clocks go forward (on 31 March): 47 hours."""


@pytest.fixture(scope="module", autouse=True)
def no_data_closed() -> Iterator[None]:
    """Close :data:`NO_DATA` once this module's tests are done, as every store made with
    ``data_store`` must be (a no-op for SQLite, a pool closed for PostgreSQL)."""
    with NO_DATA:
        yield


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


def rendered(value: Any, column: Column, zone: ZoneInfo) -> str:
    """What the format promises a value of ``column`` renders as."""
    if value is None:
        return ""
    if isinstance(value, str):
        return as_rendered(value)
    if column.type == "datetime":
        return str(value.astimezone(zone).isoformat(" ", "seconds"))
    if column.type == "boolean":
        return "true" if value else "false"
    return str(value)


def weather_rows(window: Window, **params: Any) -> list[tuple[Any, ...]]:
    """What the source reads for ``params`` in ``window``."""
    ctx = ReadContext(window=window, data=NO_DATA, batch_size=50)
    return [tuple(row) for batch in WEATHER.read(WeatherParams(**params), ctx) for row in batch]


def export_weather(
    folder: Path,
    params: dict[str, Any],
    format_name: str = "markdown",
    *,
    limit: int | None = None,
    plugins: PluginSet = THIS_PLUGIN,
) -> ExportedFile:
    """The weather for ``params`` from :data:`START` to :data:`END`, exported into
    ``folder``."""
    [file] = run_export(
        "weather",
        params,
        format_name,
        into=folder,
        start=START,
        end=END,
        timezone=ZONE,
        limit=limit,
        plugins=plugins,
    )
    return file


def two_days() -> Window:
    """The window from :data:`START` to :data:`END`, as the source sees it."""
    start, end = (datetime.fromisoformat(day).replace(tzinfo=HELSINKI) for day in (START, END))
    return Window(start.astimezone(UTC), end.astimezone(UTC), HELSINKI)


def test_the_weather_keeps_the_source_contract() -> None:
    check_source(
        "weather", {"city": "Lisbon", "every_minutes": 7}, start=START, end=END, timezone=ZONE
    )


def test_markdown_keeps_the_format_contract() -> None:
    check_format("markdown")
    check_format("markdown", {"align_numbers": False}, max_examples=10)


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
    ctx = ReadContext(window=window, data=NO_DATA)
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


def test_an_unknown_city_is_not_found_and_a_bad_step_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as unknown:
        export_weather(tmp_path, {"city": "Atlantis"})
    assert unknown.value.fields[0].name == "params.city"
    assert "lisbon" in unknown.value.fields[0].message
    with pytest.raises(InvalidRequest) as bad:
        export_weather(tmp_path, {"city": "Lisbon", "every_minutes": 0})
    assert bad.value.fields[0].name == "params.every_minutes"


def test_weather_in_markdown(tmp_path: Path) -> None:
    file = export_weather(tmp_path, {"city": "Lisbon"})
    table = read_markdown_table(file.path)
    expected = weather_rows(two_days(), city="Lisbon")
    assert table[0] == ["time", "city", "temperature", "humidity", "conditions"]
    assert len(table) - 1 == len(expected) == file.info.rows == 47
    assert table[1][0] == "2024-03-30 00:00:00+02:00"
    assert table[-1][0] == "2024-03-31 23:00:00+03:00"
    for cells, row in zip(table[1:], expected, strict=True):
        assert datetime.fromisoformat(cells[0]) == row[0]
        assert (cells[1], float(cells[2]), int(cells[3]), cells[4]) == row[1:]


def test_the_limit_stops_the_weather_early(tmp_path: Path) -> None:
    file = export_weather(tmp_path, {"city": "Nairobi"}, limit=5)
    assert len(read_markdown_table(file.path)) == 1 + 5


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


def test_numbers_are_right_aligned_unless_asked_not_to(tmp_path: Path) -> None:
    columns = [Column("n", "integer"), Column("label")]
    aligned = write_export(tmp_path / "a.md", MARKDOWN, columns, [[(1, "x")]])
    plain = write_export(
        tmp_path / "b.md", MARKDOWN, columns, [], options=MARKDOWN.Options(align_numbers=False)
    )
    assert aligned.read_text().splitlines()[1] == "| ---: | --- |"
    assert plain.read_text().splitlines() == ["| n | label |", "| --- | --- |"]


def test_the_weather_in_a_built_in_format(tmp_path: Path) -> None:
    file = export_weather(tmp_path, {"city": "Sydney"}, "csv", plugins=EVERY_PLUGIN)
    with file.path.open(newline="", encoding="utf-8") as opened:
        records = list(csv.DictReader(opened))
    expected = weather_rows(two_days(), city="Sydney")
    assert [float(r["temperature"]) for r in records] == [row[2] for row in expected]
    assert [datetime.fromisoformat(r["time"]) for r in records] == [row[0] for row in expected]


def test_a_built_in_source_in_markdown(tmp_path: Path, exportd_demo: DemoSummary) -> None:
    def export(format_name: str) -> Path:
        [file] = run_export(
            "rooms",
            {"room_id": exportd_demo.room_id, "type": "logs"},
            format_name,
            into=tmp_path,
            start=exportd_demo.start,
            end=exportd_demo.end,
            data=exportd_demo.path,
        )
        return file.path

    table = read_markdown_table(export("markdown"))
    with export("json").open("rb") as file:
        document = msgspec.json.decode(file.read())
    names = [column["name"] for column in document["export"]["columns"]]
    assert table[0] == names
    assert len(table) - 1 == len(document["rows"]) > 0
    text = [column["name"] for column in document["export"]["columns"] if column["type"] == "text"]
    for cells, record in zip(table[1:], document["rows"], strict=True):
        for name in text:
            value = record[name]
            assert cells[names.index(name)] == ("" if value is None else as_rendered(value))


def test_the_weather_in_markdown_as_a_job(exportd_service: Service) -> None:
    job = exportd_service.submit(
        "weather", {"city": "Tokyo"}, "markdown", start=START, end=END, timezone=ZONE
    )
    done = exportd_service.wait(job)
    [file] = exportd_service.files(done)
    assert file.info.media_type == "text/markdown; charset=utf-8"
    assert len(read_markdown_table(file.path)) - 1 == file.info.rows == 47
