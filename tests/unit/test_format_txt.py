"""The txt format: real files, read back as lines of text."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exportd import Column
from exportd.kernel.batches import to_arrow
from exportd.plugins.formats import txt as txt_plugin
from exportd.plugins.formats.txt import MAX_WIDTH, TxtFormat
from exportd.plugins.manager import Plugins
from exportd.testing import hostile_columns, hostile_rows, write_export

ZONE = "Europe/Helsinki"
TITLE = "rooms: 2024-03-01 02:00:00 to 2024-04-01 03:00:00 (Europe/Helsinki)"
TRANSCRIPT = [
    Column("conversation_id", "integer", "conversation"),
    Column("sent_at", "datetime", "time"),
    Column("sender", "text", "author"),
    Column("body", "text", "text"),
]


def write_txt(path: Path, columns: list[Column], batches: list[list[tuple[Any, ...]]]) -> list[str]:
    """Write ``batches`` as txt in :data:`ZONE`; the file's lines, as any reader splits them."""
    write_export(path, TxtFormat(), columns, batches, zone=ZONE)
    content = path.read_bytes().decode("utf-8")
    assert content.endswith("\n")
    return content.splitlines()


def shown(text: str) -> str:
    """``text`` as the format documents showing it on one line: controls as symbols."""
    return "".join(_symbol(char) for char in text)


def _symbol(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    if 0x80 <= code <= 0x9F or 0xD800 <= code <= 0xDFFF or char in "\u2028\u2029":
        return "\ufffd"
    return char


def display(column: Column, value: Any) -> str:
    """The documented display text of ``value`` in ``column``, before controls are shown."""
    if value is None:
        return ""
    if column.type == "boolean" and not isinstance(value, str):
        return "true" if value else "false"
    if column.type == "datetime" and isinstance(value, datetime):
        return value.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2024, 3, 5, hour, minute, second, tzinfo=UTC)


def test_it_is_registered_as_plain_text() -> None:
    registered = Plugins(builtins=False, entry_points=False, extra=[txt_plugin]).format("txt")
    assert (registered.media_type, registered.extension) == ("text/plain; charset=utf-8", "txt")


def test_a_transcript_has_a_section_per_conversation_and_local_times(tmp_path: Path) -> None:
    rows = [
        (41, at(8, 15, 2), "Alice", "Hello"),
        (41, at(8, 15, 9), "Bob", "Hi Alice,\r\nhow can I help?\n"),
        (42, at(9, 0), "Eve", ""),
        (42, at(9, 1), None, "one\n\nthree"),
    ]
    lines = write_txt(tmp_path / "out.txt", TRANSCRIPT, [rows[:3], [], rows[3:]])

    assert lines == [
        TITLE,
        "",
        "== conversation_id: 41 ==",
        "[2024-03-05 10:15:02] Alice: Hello",
        "[2024-03-05 10:15:09] Bob: Hi Alice,",
        "    how can I help?",
        "",
        "== conversation_id: 42 ==",
        "[2024-03-05 11:00:00] Eve: ",
        "[2024-03-05 11:01:00] : one",
        "    ",
        "    three",
    ]


def test_a_transcript_without_rows_is_its_title_alone(tmp_path: Path) -> None:
    """The blank line after the title is the first heading's (so that a piece of a file
    written in pieces writes the same bytes whether the pieces before it hold rows)."""
    assert write_txt(tmp_path / "out.txt", TRANSCRIPT, [[]]) == [TITLE]
    assert write_txt(tmp_path / "out.txt", TRANSCRIPT[1:], [[]]) == [TITLE, ""]


def test_a_transcript_without_conversations_is_one_run_of_messages(tmp_path: Path) -> None:
    columns = TRANSCRIPT[1:]
    rows = [(at(8, 0), "Ann\x00\n", "tab\there\x1b[31m"), (at(8, 1), "Bo", "ok")]
    lines = write_txt(tmp_path / "out.txt", columns, [rows])

    assert lines == [
        TITLE,
        "",
        "[2024-03-05 10:00:00] Ann␀␊: tab␉here␛[31m",
        "[2024-03-05 10:01:00] Bo: ok",
    ]


def test_a_table_is_aligned_by_its_first_batch(tmp_path: Path) -> None:
    columns = [
        Column("id", "integer"),
        Column("name"),
        Column("real", "boolean"),
        Column("day", "date"),
        Column("note"),
    ]
    first = [
        (1, "Ann", True, date(2024, 3, 5), "two\nlines"),
        (200, "Bob", False, None, None),
    ]
    later = [(3, "x" * (MAX_WIDTH + 5), None, date(2024, 3, 6), "late")]
    lines = write_txt(tmp_path / "out.txt", columns, [first, later])

    name = "x" * (MAX_WIDTH + 5)
    assert lines == [
        TITLE,
        "",
        " id | name | real  | day        | note",
        "----+------+-------+------------+----------",
        "  1 | Ann  | true  | 2024-03-05 | two␊lines",
        "200 | Bob  | false |            | ",
        f"  3 | {name} |       | 2024-03-06 | late",
    ]


def test_text_in_a_column_of_any_type_is_shown_as_it_is(tmp_path: Path) -> None:
    # SQLite stores text in a column of any type, and users load their own data.
    columns = [Column("n", "integer"), Column("at", "datetime"), Column("ok", "boolean")]
    rows = [("=1+1", "yesterday\n", "no"), (7, at(8, 0), False)]
    lines = write_txt(tmp_path / "out.txt", columns, [rows])

    assert lines[2:] == [
        "   n | at                  | ok",
        "-----+---------------------+------",
        "=1+1 | yesterday␊          | no",
        "   7 | 2024-03-05 10:00:00 | false",
    ]


def test_lone_surrogates_are_shown_as_the_replacement_character(tmp_path: Path) -> None:
    rows = [(1, at(8, 0), "Ann\ud800", "a\udfff\nb\ud83d\ude00")]
    lines = write_txt(tmp_path / "out.txt", TRANSCRIPT, [rows])

    assert lines[2:] == [
        "== conversation_id: 1 ==",
        "[2024-03-05 10:00:00] Ann\ufffd: a\ufffd",
        "    b\ufffd\ufffd",
    ]


def test_table_widths_are_capped(tmp_path: Path) -> None:
    long = "y" * (MAX_WIDTH * 2)
    lines = write_txt(tmp_path / "out.txt", [Column("a"), Column("b")], [[(long, 1)]])

    assert lines[2:] == [f"{'a':<{MAX_WIDTH}} | b", f"{'-' * MAX_WIDTH}-+--", f"{long} | 1"]


def test_a_table_without_rows_still_has_its_header(tmp_path: Path) -> None:
    lines = write_txt(tmp_path / "out.txt", [Column("a"), Column("n", "float")], [[]])

    assert lines == [TITLE, "", "a | n", "--+--"]


SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(data=st.data())
def test_hostile_messages_keep_one_line_per_message_line(
    tmp_path: Path, data: st.DataObject
) -> None:
    columns = [Column("conversation", "text", "conversation"), *TRANSCRIPT[1:]]
    rows = data.draw(hostile_rows(columns, wild=True))
    lines = write_txt(tmp_path / "hostile.txt", columns, [rows[:5], rows[5:]])

    expected = [TITLE]
    conversation: object = object()
    for row in rows:
        if row[0] != conversation:
            expected += ["", f"== conversation: {shown(display(columns[0], row[0]))} =="]
            conversation = row[0]
        first, *more = display(columns[3], row[3]).splitlines() or [""]
        time, author = shown(display(columns[1], row[1])), shown(display(columns[2], row[2]))
        expected.append(f"[{time}] {author}: {shown(first)}")
        expected += [f"    {shown(line)}" for line in more]
    assert lines == expected


@SETTINGS
@given(data=st.data())
def test_hostile_tables_keep_one_line_per_row(tmp_path: Path, data: st.DataObject) -> None:
    columns = data.draw(hostile_columns(wild=True))
    rows = data.draw(hostile_rows(columns, wild=True))
    lines = write_txt(tmp_path / "hostile.txt", columns, [rows[:5], rows[5:]])

    assert len(lines) == 4 + len(rows)
    assert lines[:2] == [TITLE, ""]
    header = [shown(column.name) for column in columns]
    assert re.fullmatch(row_pattern(columns, header), lines[2])
    assert set(lines[3]) <= {"-", "+"}
    for line, row in zip(lines[4:], rows, strict=True):
        cells = [shown(display(column, value)) for column, value in zip(columns, row, strict=True)]
        assert re.fullmatch(row_pattern(columns, cells), line), (line, cells)


def row_pattern(columns: list[Column], cells: list[str]) -> str:
    """A pattern a table line matches if it holds ``cells`` padded in their columns."""
    parts = [
        f" *{re.escape(cell)}" if column.type in ("integer", "float") else f"{re.escape(cell)} *"
        for column, cell in zip(columns, cells, strict=True)
    ]
    return re.escape(" | ").join(parts)


def test_it_takes_arrow_batches() -> None:
    assert TxtFormat.form == "arrow"


def test_times_are_local_beyond_the_listed_transitions_and_within_an_hour(
    tmp_path: Path,
) -> None:
    # Arrow's time zone database lists transitions to 2037 only; Nepal moved from
    # +05:30 to +05:45 at 18:30 UTC, within an hour.
    columns = [Column("at", "datetime"), Column("zone")]
    rows = [
        (datetime(2090, 7, 1, 12, 0, tzinfo=UTC), "Helsinki summer"),
        (datetime(1985, 12, 31, 18, 15, tzinfo=UTC), "Kathmandu, before"),
        (datetime(1985, 12, 31, 18, 45, tzinfo=UTC), "Kathmandu, after"),
    ]
    helsinki = write_export(tmp_path / "h.txt", TxtFormat(), columns, [rows[:1]], zone=ZONE)
    nepal = write_export(
        tmp_path / "n.txt", TxtFormat(), columns, [rows[1:]], zone="Asia/Kathmandu"
    )

    assert helsinki.read_text("utf-8").splitlines()[4] == "2090-07-01 15:00:00 | Helsinki summer"
    assert nepal.read_text("utf-8").splitlines()[4:] == [
        "1985-12-31 23:45:00 | Kathmandu, before",
        "1986-01-01 00:30:00 | Kathmandu, after",
    ]


def test_an_arrow_batch_with_stray_text_is_written_as_its_rows_are(tmp_path: Path) -> None:
    columns = [Column("n", "integer"), Column("at", "datetime"), Column("note")]
    rows = [(1, at(8, 0), "a\tb"), ("two", None, None), (3, "soon", "\x85")]
    batch = to_arrow(rows, columns)
    assert pa.types.is_union(batch.column(0).type)
    from_arrow = write_export(tmp_path / "a.txt", TxtFormat(), columns, [batch], zone=ZONE)
    from_rows = write_export(tmp_path / "r.txt", TxtFormat(), columns, [rows], zone=ZONE)

    assert from_arrow.read_bytes() == from_rows.read_bytes()
    assert from_arrow.read_text("utf-8").splitlines()[4:] == [
        "  1 | 2024-03-05 10:00:00 | a␉b",
        "two |                     | ",
        "  3 | soon                | \ufffd",
    ]
