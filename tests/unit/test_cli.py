"""The ``exportd`` command line, in-process through ``main`` and as a real process.

Exports are read back with real readers (openpyxl, json, csv) and compared with
``data.db``; bad input must end in one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import pty
import select
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import openpyxl
import pytest

from exportd.bus.base import redacted
from exportd.cli import COMMANDS, build_parser, main
from exportd.cli.export import empty_note, human_size, key_value, write_parts
from exportd.cli.progress import ProgressBar, progress_bar, render
from exportd.data.demo import DemoSummary, generate_demo_data
from exportd.kernel.datastores import SqliteStore
from exportd.kernel.plan import plan_export
from exportd.messages import ExportRequest, Progress
from exportd.plugins.manager import Plugins
from exportd.plugins.sources.rooms import LOG_COLUMNS
from tests.unit import toy_plugins

BIN = Path(sys.executable).parent
Run = Callable[..., tuple[int, str, str]]
ROOM_MESSAGES = """
    select id from messages where room_id = ? and sent_at >= ? and sent_at < ? order by id
"""
# A test runner may have been started with SIGINT ignored, which a child inherits.
WITH_CTRL_C = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)

NOWHERE = SqliteStore(Path("unused.db"))
"""A data store the toy plugins never read."""


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No EXPORTD_* variable or exportd.toml from outside reaches a test."""
    for name in list(os.environ):
        if name.startswith("EXPORTD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return generate_demo_data(tmp_path_factory.mktemp("home") / "data.db", messages=3000)


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, demo: DemoSummary) -> DemoSummary:
    """EXPORTD_HOME is the shared demo store's folder (write files elsewhere, with -o)."""
    monkeypatch.setenv("EXPORTD_HOME", str(demo.path.parent))
    return demo


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run ``exportd ARGS...`` in-process: (exit status, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def interval(demo: DemoSummary) -> list[str]:
    return ["--start", demo.start.isoformat(), "--end", demo.end.isoformat()]


def reported_files(stdout: str) -> list[tuple[Path, int, str]]:
    """(path, rows, sha256) of every file the export command reported."""
    lines = stdout.splitlines()
    assert len(lines) % 2 == 0, stdout
    files = []
    for path, details in zip(lines[::2], lines[1::2], strict=True):
        rows, _, digest = details.partition(", sha256 ")
        files.append((Path(path), int(rows.split()[0].replace(",", "")), digest))
    return files


def check_reported(stdout: str) -> list[tuple[Path, int]]:
    """The reported files exist, with the reported size and SHA-256; (path, rows) of each."""
    found = []
    for path, rows, digest in reported_files(stdout):
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest
        assert f", {human_size(len(data))}, " in stdout
        found.append((path, rows))
    return found


def query(demo: DemoSummary, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(demo.path)) as db:
        return db.execute(sql, args).fetchall()


# demo-data


def test_demo_data_fills_the_home_folder_and_its_suggestions_run(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EXPORTD_HOME", str(tmp_path / "home"))
    status, out, err = run("demo-data", "--messages", "800", "--seed", "5")
    assert (status, err) == (0, "")
    assert out.startswith(f"Wrote {tmp_path / 'home' / 'data.db'} in ")
    assert "  messages                 800" in out
    suggestions = [line.strip() for line in out.splitlines() if line.startswith("  exportd ")]
    exports, [tenant] = suggestions[:4], suggestions[4:]
    for number, command in enumerate(exports):
        (tmp_path / f"try{number}").mkdir()
        argv = [*shlex.split(command)[1:], "-o", str(tmp_path / f"try{number}/")]
        status, out, err = run(*argv)
        assert (status, err) == (0, ""), command
        assert all(rows > 0 for _, rows in check_reported(out))
    status, out, err = run(*shlex.split(tenant)[1:])
    assert (status, err) == (0, "")
    org_id = out.splitlines()[0].removeprefix("id: ")
    room_id = shlex.split(exports[0])[4].removeprefix("room_id=")
    with closing(sqlite3.connect(tmp_path / "home" / "data.db")) as data:
        owner = data.execute("select org_id from rooms where id = ?", [room_id]).fetchone()
    assert owner == (org_id,)  # the tenant owns the room the suggestions export


def test_demo_data_as_json_is_deterministic(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EXPORTD_HOME", str(tmp_path))
    first = json.loads(run("demo-data", "--messages", "300", "--json")[1])
    digest = hashlib.sha256((tmp_path / "data.db").read_bytes()).hexdigest()
    second = json.loads(run("demo-data", "--messages", "300", "--json")[1])
    assert hashlib.sha256((tmp_path / "data.db").read_bytes()).hexdigest() == digest
    assert first["messages"] == 300
    assert first["path"] == str(tmp_path / "data.db")
    assert {k: v for k, v in first.items() if k != "seconds"} == {
        k: v for k, v in second.items() if k != "seconds"
    }
    assert datetime.fromisoformat(first["start"]) < datetime.fromisoformat(first["end"])


# plugins


def test_plugins_lists_every_source_and_format_with_its_package(run: Run) -> None:
    status, out, _ = run("plugins")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "Sources:"
    assert "Formats:" in lines
    by_name = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert set(by_name) >= {"rooms", "workflows", "qna", "weather", "csv", "xlsx", "markdown"}
    assert by_name["rooms"].endswith("exportd (exportd.plugins.sources.rooms)")
    assert by_name["markdown"].endswith("exportd-example 0.1.0 (example)")


def test_plugins_as_json_carries_the_parameter_schemas(run: Run) -> None:
    listing = json.loads(run("plugins", "--json")[1])
    sources = {source["name"]: source for source in listing["sources"]}
    formats = {format_["name"]: format_ for format_ in listing["formats"]}
    assert sources["weather"]["package"] == "exportd-example 0.1.0"
    assert "city" in json.dumps(sources["weather"]["params"])
    assert "room_id" in json.dumps(sources["rooms"]["params"])
    assert formats["xlsx"]["extension"] == "xlsx"
    assert "align_numbers" in json.dumps(formats["markdown"]["options"])


def test_blocked_plugins_are_not_listed(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTD_DISABLE_PLUGINS", "example,exportd.plugins.formats.xlsx")
    names = {line.split()[0] for line in run("plugins")[1].splitlines()}
    assert "rooms" in names
    assert not names & {"weather", "markdown", "xlsx"}


# export


def test_a_rooms_chat_log_in_xlsx_holds_the_rooms_messages(
    run: Run, home: DemoSummary, tmp_path: Path
) -> None:
    target = tmp_path / "logs.xlsx"
    status, out, err = run(
        "export", "rooms", "-p", f"room_id={home.room_id}", "-p", "type=logs", "-f", "xlsx",
        *interval(home), "-o", str(target),
    )  # fmt: skip
    assert (status, err) == (0, "")
    [(path, rows)] = check_reported(out)
    assert path == target
    sheet = openpyxl.load_workbook(target, read_only=True).worksheets[0]
    table = list(sheet.iter_rows(values_only=True))
    header = list(table[0])
    exported_ids = sorted(row[header.index("message_id")] for row in table[1:])
    window = (home.start.isoformat(), home.end.isoformat())
    stored_ids = [id_ for (id_,) in query(home, ROOM_MESSAGES, home.room_id, *window)]
    assert exported_ids == stored_ids
    assert rows == len(stored_ids) > 0


def test_a_channel_of_more_than_25_rooms_exports_in_parts(
    run: Run, home: DemoSummary, tmp_path: Path
) -> None:
    status, out, _ = run(
        "export", "qna", "-p", f"channel_id={home.channel_id}", "-f", "json", *interval(home),
        "-o", str(tmp_path / "questions.json"),
    )  # fmt: skip
    assert status == 0
    files = check_reported(out)
    [(rooms,)] = query(home, "select count(*) from qna_rooms where channel_id = ?", home.channel_id)
    count = math.ceil(rooms / 25)
    assert count > 1
    assert [path.name for path, _ in files] == [
        f"questions-part{n}of{count}.json" for n in range(1, count + 1)
    ]
    ids = [row["question_id"] for path, _ in files for row in json.loads(path.read_text())["rows"]]
    stored = query(
        home,
        "select id from qna_questions where channel_id = ? and asked_at >= ? and asked_at < ?",
        home.channel_id, home.start.isoformat(), home.end.isoformat(),
    )  # fmt: skip
    assert sorted(ids) == sorted(id_ for (id_,) in stored)
    assert sum(rows for _, rows in files) == len(ids)


def test_without_an_output_the_file_goes_to_the_files_folder_with_a_telling_name(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EXPORTD_HOME", str(tmp_path / "home"))
    status, out, _ = run(
        "export", "weather", "-p", "city=Lisbon", "-p", "every_minutes=30",
        "--start", "2024-05-01T08:00", "--end", "2024-05-03",
    )  # fmt: skip
    assert status == 0
    [(path, rows)] = check_reported(out)
    assert path == tmp_path / "home" / "files" / "weather-Lisbon-30-20240501T080000-20240503.csv"
    assert rows == 40 * 2  # every half hour from 08:00 on 1 May to midnight on 2 May


def test_an_output_folder_gets_the_default_name(run: Run, tmp_path: Path) -> None:
    (tmp_path / "existing").mkdir()
    (tmp_path / "slashed").mkdir()
    for output in ("existing", "slashed/"):
        status, out, _ = run(
            "export", "weather", "-p", "city=tokyo", "-f", "markdown",
            "--start", "2024-05-01", "--end", "2024-05-02", "-o", output,
        )  # fmt: skip
        assert status == 0
        expected = Path(output) / "weather-tokyo-20240501-20240502.md"
        assert check_reported(out) == [(expected, 24)]


def test_an_output_folder_that_does_not_exist_is_an_error_naming_it(
    run: Run, tmp_path: Path
) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    for output, message in [
        ("new/", "-o new/: there is no folder new"),
        ("missing/w.csv", "-o missing/w.csv: there is no folder missing"),
        ("blocker/w.csv", "-o blocker/w.csv: blocker is not a folder"),
    ]:
        status, out, err = run(
            "export", "weather", "-p", "city=Lisbon",
            "--start", "2024-05-01", "--end", "2024-05-02", "-o", output,
        )  # fmt: skip
        assert (status, out, err) == (1, "", f"exportd: error: {message}\n")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["blocker"]


def test_a_window_without_rows_says_where_the_data_is(
    run: Run, home: DemoSummary, tmp_path: Path
) -> None:
    logs = ["export", "rooms", "-p", f"room_id={home.room_id}", "-p", "type=logs"]
    status, out, err = run(*logs, "-o", str(tmp_path / "empty.csv"))  # the last 30 days
    assert status == 0
    assert check_reported(out) == [(tmp_path / "empty.csv", 0)]
    with (tmp_path / "empty.csv").open(newline="") as file:
        assert list(csv.reader(file)) == [[column.name for column in LOG_COLUMNS]]
    sql = "select min(sent_at), max(sent_at), count(*) from messages where room_id = ?"
    [(first_text, last_text, count)] = query(home, sql, home.room_id)
    first, last = datetime.fromisoformat(first_text), datetime.fromisoformat(last_text)
    end = datetime.now(UTC).date() + timedelta(days=1)
    start, stop = first.date(), last.date() + timedelta(days=1)
    assert err == (
        f"exportd: the window {end - timedelta(days=30)} 00:00:00 to {end} 00:00:00 (UTC) "
        f"matched no rows; the data runs from {first:%Y-%m-%d %H:%M:%S} to "
        f"{last:%Y-%m-%d %H:%M:%S}: try --start {start} --end {stop}\n"
    )
    status, out, err = run(
        *logs, "--start", str(start), "--end", str(stop), "-o", str(tmp_path / "all.csv")
    )
    assert (status, err) == (0, "")
    assert check_reported(out) == [(tmp_path / "all.csv", count)]


def test_a_window_without_rows_from_a_source_that_does_not_know_its_range(
    run: Run, tmp_path: Path
) -> None:
    status, out, err = run(
        "export", "weather", "-p", "city=Lisbon", "--tz", "Europe/Lisbon",  # hourly readings
        "--start", "2024-05-01T08:10", "--end", "2024-05-01T08:50", "-o", str(tmp_path / "w.csv"),
    )  # fmt: skip
    assert status == 0
    assert check_reported(out) == [(tmp_path / "w.csv", 0)]
    assert err == (
        "exportd: the window 2024-05-01 08:10:00 to 2024-05-01 08:50:00 (Europe/Lisbon) "
        "matched no rows\n"
    )


def test_json_describes_every_file(run: Run, home: DemoSummary, tmp_path: Path) -> None:
    status, out, err = run(
        "export", "qna", "-p", f"channel_id={home.channel_id}", "-f", "json", *interval(home),
        "-o", f"{tmp_path}/", "--json",
    )  # fmt: skip
    assert (status, err) == (0, "")
    files = json.loads(out)["files"]
    assert json.loads(out)["job"] is None  # exported here, not run as a job
    assert len(files) > 1
    for file in files:
        data = Path(file["path"]).read_bytes()
        assert file == {
            "path": str(tmp_path / file["name"]),
            "name": file["name"],
            "rows": len(json.loads(data)["rows"]),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "media_type": "application/json",
        }


def test_an_export_in_parts_cannot_go_to_standard_output(run: Run, home: DemoSummary) -> None:
    status, out, err = run(
        "export", "qna", "-p", f"channel_id={home.channel_id}", *interval(home), "-o", "-"
    )
    assert (status, out) == (2, "")
    assert err.startswith("exportd export: error: -o -: this export has ")
    assert err.endswith(" parts, one file each, and standard output takes one: give -o FOLDER/"
                        " (see: exportd export --help)\n")  # fmt: skip


def test_dash_o_dash_writes_the_file_to_stdout_and_the_summary_to_stderr(
    home: DemoSummary, tmp_path: Path
) -> None:
    logs = ["export", "rooms", "-p", f"room_id={home.room_id}", "-p", "type=logs", "-f", "xlsx"]
    env = {**environment(home.path.parent), "SOURCE_DATE_EPOCH": "1700000000"}

    def exportd(*argv: str) -> subprocess.CompletedProcess[bytes]:
        command = [str(BIN / "exportd"), *logs, *interval(home), *argv]
        return subprocess.run(command, capture_output=True, env=env, check=True)

    piped = exportd("-o", "-")
    exportd("-o", str(tmp_path / "logs.xlsx"))
    assert piped.stdout == (tmp_path / "logs.xlsx").read_bytes()
    digest = hashlib.sha256(piped.stdout).hexdigest()
    place, details = piped.stderr.decode().splitlines()
    assert (place, details.split(", sha256 ")[1]) == ("(standard output)", digest)
    sheet = openpyxl.load_workbook(io.BytesIO(piped.stdout), read_only=True).worksheets[0]
    window = (home.start.isoformat(), home.end.isoformat())
    rows = len(list(sheet.iter_rows(values_only=True)))
    assert rows == 1 + len(query(home, ROOM_MESSAGES, home.room_id, *window))
    described = json.loads(exportd("-o", "-", "--json").stderr)["files"]
    assert [(file["path"], file["sha256"]) for file in described] == [(None, digest)]


def test_a_reader_that_leaves_early_ends_the_export_in_one_line(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [str(BIN / "exportd"), "export", "weather", "-p", "city=Lisbon", "-p", "every_minutes=1",
         "--start", "2024-01-01", "--end", "2024-03-01", "-o", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment(tmp_path),
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(100).startswith(b"time,city,")
    process.stdout.close()  # like head -c 100: the rest (megabytes) has nowhere to go
    assert process.wait(timeout=60) == 1
    assert process.stderr.read() == (
        b"exportd: error: standard output was closed before the whole file was written\n"
    )


def test_the_default_interval_is_the_30_days_up_to_the_end_of_today(
    run: Run, tmp_path: Path
) -> None:
    zone = "Pacific/Kiritimati"  # UTC+14: its "today" is often not UTC's
    status, out, _ = run(
        "export", "weather", "-p", "city=nairobi", "--tz", zone, "-o", str(tmp_path / "w.csv")
    )
    assert status == 0
    with (tmp_path / "w.csv").open(newline="") as file:
        times = [datetime.fromisoformat(row["time"]) for row in csv.DictReader(file)]
    assert len(times) == 30 * 24
    tomorrow = datetime.now(UTC).astimezone(times[0].tzinfo).date() + timedelta(days=1)
    assert times[-1] + timedelta(hours=1) == datetime.combine(
        tomorrow, datetime.min.time(), times[0].tzinfo
    )
    status, out, _ = run(
        "export",
        "weather",
        "-p",
        "city=nairobi",
        "--end",
        "2024-03-01",
        "-o",
        str(tmp_path / "x.csv"),
    )
    assert reported_files(out)[0][1] == 30 * 24  # from 31 January, 30 days before 1 March


def test_parameter_values_are_json_when_they_parse_and_text_otherwise() -> None:
    assert key_value("n=3") == ("n", 3)
    assert key_value("real=true") == ("real", True)
    assert key_value("gone=null") == ("gone", None)
    assert key_value('filters=[{"property": "action", "values": ["x"]}]') == (
        "filters",
        [{"property": "action", "values": ["x"]}],
    )
    assert key_value('id="123"') == ("id", "123")
    assert key_value("city=Lisbon") == ("city", "Lisbon")
    assert key_value("expr=a=b") == ("expr", "a=b")
    assert key_value("empty=") == ("empty", "")


def test_dash_p_overrides_the_keys_of_params_json(run: Run, tmp_path: Path) -> None:
    status, _, _ = run(
        "export", "weather", "--params", '{"city": "Tokyo", "unit": "fahrenheit"}',
        "-p", "city=Reykjavik", "--start", "2024-01-01", "--end", "2024-01-02",
        "-f", "json_bulk", "--limit", "3", "-o", str(tmp_path / "w.ndjson"),
    )  # fmt: skip
    assert status == 0
    rows = [msgspec.json.decode(line) for line in (tmp_path / "w.ndjson").read_bytes().splitlines()]
    assert [row["city"] for row in rows] == ["Reykjavik"] * 3
    assert all(row["temperature"] > 20 for row in rows)  # fahrenheit, in a Reykjavik January


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["export", "rooms", "-p", "room_id=nope", "-p", "type=logs"], 1,
         "exportd: error: params.room_id: no room with id 'nope'"),
        (["export", "nope"], 1, "exportd: error: source: unknown source 'nope'; known: qna, "),
        (["export", "rooms", "-p", "room_id=x", "-p", "type=logs", "--tz", "Mars/Olympus"], 1,
         "exportd: error: timezone: unknown IANA time zone 'Mars/Olympus'"),
        (["export", "weather", "-p", "city=Lisbon", "--start", "2024-02-01", "--end", "2024-01-01"],
         1, "exportd: error: interval.end: must be after interval.start"),
        (["export", "weather", "-p", "city=Lisbon", "-p", "colour=red"], 1,
         "exportd: error: params.colour: unknown field"),
        (["export", "weather", "-p", "city=Lisbon", "-f", "markdown", "--option", "bold=1"], 1,
         "exportd: error: format_options.bold: unknown field"),
        (["export", "weather", "-p", "city=Lisbon", "--limit", "0"], 2,
         "exportd export: error: argument --limit: must be 1 or more, got 0"),
        (["export", "weather", "-p", "city=Lisbon", "--limit", "-3"], 2,
         "exportd export: error: argument --limit: must be 1 or more, got -3"),
        (["export", "weather", "-p", "city=Lisbon", "--limit", "many"], 2,
         "exportd export: error: argument --limit: must be a whole number, got 'many'"),
        (["export", "rooms", "-p", "room_id=x", "-p", "type=bogus"], 1,
         "exportd: error: params.type: must be one of logs, stats; got 'bogus'"),
        (["export", "rooms", "-p", "room_id=x", "-p", "type=logs", "-p", "min_message_count=abc"],
         1, "exportd: error: params.min_message_count: must be an integer, got text 'abc'"),
        (["export", "weather", "-p", "city"], 2,
         "exportd export: error: argument -p/--param: expected KEY=VALUE, got 'city'"),
        (["export", "weather", "--params", "[1]"], 2,
         "exportd export: error: argument --params: expected a JSON object"),
        (["demo-data", "--messages", "-5"], 2,
         "exportd demo-data: error: argument --messages: must be 0 or more, got -5"),
        (["frobnicate"], 2, "exportd: error: argument COMMAND: invalid choice: 'frobnicate'"),
    ],
)  # fmt: skip
def test_bad_input_ends_in_one_line_naming_the_fault(
    run: Run, home: DemoSummary, argv: list[str], status: int, message: str
) -> None:
    got_status, out, err = run(*argv)
    assert (got_status, out) == (status, "")
    assert err.count("\n") == 1
    assert err.startswith(message)


def test_configuration_errors_end_in_one_line(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EXPORTD_BATCH_SIZE", "0")
    assert run("plugins")[::2] == (
        1,
        "exportd: error: configuration key 'batch_size' (EXPORTD_BATCH_SIZE): must be at least 1\n",
    )
    monkeypatch.delenv("EXPORTD_BATCH_SIZE")
    (tmp_path / "exportd.toml").write_text('hom = "typo"\n')
    assert run("plugins")[::2] == (
        1,
        "exportd: error: configuration key 'hom' (exportd.toml): unknown field\n",
    )


def test_the_test_suites_variables_are_no_settings_but_typos_are_refused(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPORTD_TEST_BROKER_URL", "x")
    assert run("plugins")[0] == 0
    monkeypatch.setenv("EXPORTD_BATCH_SIZ", "1")
    assert run("plugins")[::2] == (
        1,
        "exportd: error: unknown setting EXPORTD_BATCH_SIZ; did you mean EXPORTD_BATCH_SIZE?\n",
    )


def test_exporting_before_there_is_a_data_store_says_what_to_do(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EXPORTD_HOME", str(tmp_path / "empty"))
    status, _, err = run("export", "rooms", "-p", "room_id=r", "-p", "type=logs")
    assert status == 1
    assert err.startswith("exportd: error: no data store at ")
    assert "exportd demo-data" in err
    assert err.count("\n") == 1


def test_when_a_part_fails_the_parts_already_written_are_removed(tmp_path: Path) -> None:
    request = msgspec.convert(
        {
            "source": "count",
            "format": "lines",
            "params": {"rows": 20},
            "interval": {"start": "2024-01-01", "end": "2024-01-02"},
        },
        ExportRequest,
    )
    plugins = Plugins(builtins=False, entry_points=False, extra=[toy_plugins])
    parts = plan_export(request, plugins, SqliteStore(tmp_path / "data.db")).parts(batch_size=5)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    targets = [tmp_path / "first.lines", tmp_path / "blocker" / "second.lines"]
    with pytest.raises(OSError):
        write_parts(parts, targets, batch_size=5)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["blocker"]


def test_a_source_that_fails_to_give_its_range_leaves_the_empty_export_done() -> None:
    def note(params: dict[str, Any]) -> str:
        interval = {"start": "2024-01-01", "end": "2024-01-02"}
        request = msgspec.convert(
            {"source": "count", "format": "lines", "params": params, "interval": interval},
            ExportRequest,
        )
        plugins = Plugins(builtins=False, entry_points=False, extra=[toy_plugins])
        return empty_note(plan_export(request, plugins, NOWHERE))

    assert note({"rows": 0}).endswith(" (UTC) matched no rows")
    assert note({"rows": 0, "range_fails": True}).endswith(
        " (UTC) matched no rows (and source 'count' failed: RuntimeError: no range today)"
    )


# reproducible files

EVERY_FORMAT = ["csv", "txt", "html", "json", "json_bulk", "xlsx", "markdown"]


def export_logs(run: Run, home: DemoSummary, format_: str, target: Path) -> None:
    status, _, err = run(
        "export", "rooms", "-p", f"room_id={home.room_id}", "-p", "type=logs", "-f", format_,
        *interval(home), "-o", str(target),
    )  # fmt: skip
    assert (status, err) == (0, "")


@pytest.mark.parametrize("format_", EVERY_FORMAT)
def test_with_source_date_epoch_the_same_export_is_the_same_bytes(
    run: Run, home: DemoSummary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, format_: str
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first, second = tmp_path / f"first.{format_}", tmp_path / f"second.{format_}"
    export_logs(run, home, format_, first)
    export_logs(run, home, format_, second)
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize(
    "times",
    [
        ("1700000000", datetime(2023, 11, 14, 22, 13, 20), (2023, 11, 14, 22, 13, 20)),
        ("0", datetime(1970, 1, 1), (1980, 1, 1, 0, 0, 0)),  # zip's times start in 1980
    ],
)
def test_the_times_in_a_workbook_and_its_zip_entries_are_source_date_epoch(
    run: Run,
    home: DemoSummary,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    times: tuple[str, datetime, tuple[int, ...]],
) -> None:
    epoch, recorded, zipped = times
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    export_logs(run, home, "xlsx", tmp_path / "logs.xlsx")
    properties = openpyxl.load_workbook(tmp_path / "logs.xlsx", read_only=True).properties
    assert (properties.created, properties.modified) == (recorded, recorded)
    with zipfile.ZipFile(tmp_path / "logs.xlsx") as archive:
        assert {entry.date_time for entry in archive.infolist()} == {zipped}


def test_a_json_file_records_source_date_epoch_as_its_generation_time(
    run: Run, home: DemoSummary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    export_logs(run, home, "json", tmp_path / "logs.json")
    generated = json.loads((tmp_path / "logs.json").read_text())["export"]["generated_at"]
    assert datetime.fromisoformat(generated) == datetime.fromtimestamp(1700000000, UTC)


def test_a_bad_source_date_epoch_is_one_line_naming_it(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    assert run("export", "weather", "-p", "city=Lisbon")[::2] == (
        1,
        "exportd: error: SOURCE_DATE_EPOCH: must be a whole number of seconds since 1970, "
        "got 'yesterday'\n",
    )


# the progress bar


def test_the_bar_shows_rows_total_percentage_and_rate() -> None:
    assert render(Progress(rows=500, bytes=0, total=1000), 2.0, "part 1/2") == (
        "part 1/2  [############------------]  50%  500/1,000 rows  250 rows/s"
    )
    assert render(Progress(rows=1500, bytes=0, total=None), 0.5) == "1,500 rows  3,000 rows/s"
    assert render(Progress(rows=9, bytes=0, total=4), 0.0).startswith(f"[{'#' * 24}] 100%")


def test_the_bar_redraws_at_most_ten_times_a_second_and_erases_itself() -> None:
    now = [100.0]
    stream = io.StringIO()
    bar = ProgressBar(stream, clock=lambda: now[0], width=40)
    for rows in range(1, 51):
        bar.update(Progress(rows=rows, bytes=0, total=50))
        now[0] += 0.01
    draws = stream.getvalue().split("\r")[1:]
    assert len(draws) == 5
    assert all(len(draw) <= 39 + len("\x1b[K") for draw in draws)
    bar.close()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_there_is_no_bar_when_stderr_is_not_a_terminal() -> None:
    assert progress_bar(io.StringIO()) is None


# real processes


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    return {**env, "EXPORTD_HOME": str(home), "EXPORTD_BATCH_SIZE": "500"}


class TerminalRun:
    """``exportd`` as a process whose stderr is a terminal (a pty); stdout is a pipe."""

    def __init__(self, argv: list[str], home: Path) -> None:
        master, terminal = pty.openpty()
        self.master = master
        self.stderr = b""
        self.process = subprocess.Popen(
            [sys.executable, "-c", WITH_CTRL_C, str(BIN / "exportd"), *argv],
            stdout=subprocess.PIPE,
            stderr=terminal,
            env=environment(home),
        )
        os.close(terminal)

    def read_until(self, text: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            assert time.monotonic() < deadline, self.stderr
            if select.select([self.master], [], [], 0.1)[0]:
                self.stderr += os.read(self.master, 65536)

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        stdout, _ = self.process.communicate(timeout=timeout)
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the terminal is gone
                break
            if not chunk:
                break
            self.stderr += chunk
        os.close(self.master)
        return self.process.returncode, stdout.decode(), self.stderr.decode()


def test_a_real_process_draws_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    target = tmp_path / "w.csv"
    run = TerminalRun(
        ["export", "weather", "-p", "city=Lisbon", "-p", "every_minutes=5", *
         ["--start", "2024-01-01", "--end", "2024-01-08", "-o", str(target)]],
        tmp_path,
    )  # fmt: skip
    status, out, err = run.finish()
    assert status == 0
    assert check_reported(out) == [(target, 7 * 24 * 12)]
    assert "/2,016 rows" in err
    assert err.endswith("\r\x1b[K")  # the bar erased itself


def test_ctrl_c_cancels_cleanly(tmp_path: Path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    run = TerminalRun(
        ["export", "weather", "-p", "city=Lisbon", "-p", "every_minutes=1", "-f", "markdown", *
         ["--start", "2000-01-01", "--end", "2030-01-01", "-o", f"{output}/"]],
        tmp_path,
    )  # fmt: skip
    run.read_until(b" rows/s")
    run.process.send_signal(signal.SIGINT)
    status, out, err = run.finish()
    assert (status, out) == (130, "")
    assert err.endswith("\r\x1b[Kexportd: canceled\r\n")
    assert "Traceback" not in err
    assert list(output.iterdir()) == []


def test_python_dash_m_exportd_runs_the_command_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exportd", "export", "weather", "-p", "city=Tokyo",
         "--start", "2024-01-01", "--end", "2024-01-02", "-o", "w.csv"],
        capture_output=True, text=True, env=environment(tmp_path), cwd=tmp_path, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    assert check_reported(result.stdout.replace("w.csv", str(tmp_path / "w.csv"))) == [
        (tmp_path / "w.csv", 24)
    ]


def test_a_plugin_that_fails_to_import_ends_in_one_line_naming_it(tmp_path: Path) -> None:
    dist = tmp_path / "site" / "broken_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[exportd]\nbroken = no_such_module_here\n")
    env = {**environment(tmp_path), "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run(
        [str(BIN / "exportd"), "plugins"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        "exportd: error: plugin 'broken' from broken-plugin 1.0 failed to load: ModuleNotFoundError"
    )
    assert result.stderr.count("\n") == 1


def test_a_broker_url_in_a_message_is_as_given_with_its_password_hidden() -> None:
    assert redacted("amqp://guest:secret@127.0.0.1:5999/") == "amqp://guest:**@127.0.0.1:5999/"
    assert redacted("amqps://u:p@h/vhost?heartbeat=5") == "amqps://u:**@h/vhost?heartbeat=5"
    assert redacted("amqp://h:5672") == "amqp://h:5672"
    assert redacted("amqp://guest@h/") == "amqp://guest@h/"


def test_human_sizes() -> None:
    assert [human_size(n) for n in (0, 1023, 1536, 5 * 2**20, 3 * 2**30)] == [
        "0 bytes",
        "1023 bytes",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]


def fields_of(stdout: str) -> dict[str, str]:
    """The ``key: value`` lines of the tenant commands."""
    return dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)


def test_tenants_are_made_changed_and_their_tokens_revoked(run: Run) -> None:
    status, out, _ = run("orgs", "create", "Acme", "--id", "acme")
    assert (status, fields_of(out)["active"]) == (0, "True")
    status, out, _ = run("orgs", "update", "acme", "--inactive", "--benefit", "qna")
    assert (fields_of(out)["active"], fields_of(out)["benefits"]) == ("False", "qna")
    assert fields_of(run("orgs", "update", "acme", "--benefit", "")[1])["benefits"] == ""
    run("users", "create", "acme", "Ann", "--id", "ann")
    made = fields_of(run("tokens", "create", "ann", "--permission", "settings")[1])
    assert made["token"].startswith("xd_") and len(made["id"]) == 12

    status, out, _ = run("tokens", "list", "ann")
    listed = fields_of(out)
    assert (listed["id"], listed["permissions"]) == (made["id"], "settings")
    assert made["token"] not in out  # the secret is shown once, at creation

    assert run("tokens", "revoke", made["id"])[:2] == (0, f"revoked: {made['id']}\n")
    assert run("tokens", "list", "ann")[1] == "no tokens\n"
    status, _, err = run("tokens", "revoke", made["id"])
    assert (status, err) == (1, f"exportd: error: token_id: no token {made['id']!r}\n")
    status, _, err = run("orgs", "update", "nope", "--active")
    assert (status, err) == (1, "exportd: error: org_id: no organisation 'nope'\n")


def test_tenants_are_listed_and_every_tenant_command_speaks_json(run: Run) -> None:
    assert run("orgs", "list")[1] == "no organisations\n"
    org = json.loads(run("orgs", "create", "Acme", "--id", "acme", "--json")[1])
    assert org == {"id": "acme", "name": "Acme", "active": True, "benefits": []}
    run("orgs", "create", "Beta", "--id", "beta")
    updated = json.loads(run("orgs", "update", "beta", "--inactive", "--json")[1])
    assert updated["active"] is False
    assert [o["id"] for o in json.loads(run("orgs", "list", "--json")[1])] == ["acme", "beta"]
    assert "\n\nid: beta\n" in run("orgs", "list")[1]

    ann = json.loads(run("users", "create", "acme", "Ann", "--id", "ann", "--json")[1])
    assert ann == {"id": "ann", "org_id": "acme", "name": "Ann", "email": None}
    run("users", "create", "beta", "Bob", "--id", "bob")
    assert json.loads(run("users", "list", "--org", "acme", "--json")[1]) == [ann]
    assert [u["id"] for u in json.loads(run("users", "list", "--json")[1])] == ["ann", "bob"]
    assert run("users", "list", "--org", "nope")[::2] == (
        1,
        "exportd: error: org_id: no organisation 'nope'\n",
    )

    token = json.loads(run("tokens", "create", "ann", "--json")[1])
    assert token["token"].startswith("xd_")
    [listed] = json.loads(run("tokens", "list", "ann", "--json")[1])
    assert (listed["id"], listed["permissions"]) == (token["id"], ["reports"])
    revoked = json.loads(run("tokens", "revoke", token["id"], "--json")[1])
    assert revoked == {"revoked": token["id"]}
    assert json.loads(run("tokens", "list", "ann", "--json")[1]) == []


def test_every_command_action_and_argument_has_help() -> None:
    def missing(parser: argparse.ArgumentParser, path: str) -> Iterator[str]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                for name, sub in action.choices.items():
                    if not helps.get(name):
                        yield f"{path} {name}"
                    yield from missing(sub, f"{path} {name}")
            elif not action.help:
                yield f"{path} {action.dest}"

    for command in COMMANDS:
        assert list(missing(build_parser([command]), "exportd")) == []


def test_a_control_socket_nobody_answers_on_is_one_line(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EXPORTD_HOME", str(tmp_path))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left_over:  # a killed serve's
        left_over.bind(str(tmp_path / "control.sock"))
    for argv in (["jobs", "list"], ["jobs", "cancel", "abcdef"]):
        assert run(*argv)[::2] == (
            1,
            f"exportd: error: nothing answers on {tmp_path / 'control.sock'}: is exportd "
            "serve running? (if not, remove the file, or give --broker)\n",
        )


def test_a_command_freezes_what_start_up_made_out_of_the_collectors_way(tmp_path: Path) -> None:
    script = "import gc, exportd.cli; exportd.cli.main(['plugins']); print(gc.get_freeze_count())"
    frozen = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "EXPORTD_HOME": str(tmp_path)},
    ).stdout.splitlines()[-1]
    assert int(frozen) > 10_000
