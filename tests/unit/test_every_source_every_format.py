"""Every built-in source exported to every built-in format, end to end.

Each export goes through the real planner and pipeline into a file, which a
real reader (:mod:`tests.unit.readers`) turns back into rows.  Those are
compared value by value with rows computed here from ``data.db`` with plain
SQL, each value first shown the way the format documents showing it: csv's
formula quote, xlsx's naive local times and removed characters, txt's and
html's local clock times and control-character symbols.  The rooms stats are
the exception: their aggregates are checked exactly in test_source_rooms.py,
so here the source's own rows check only that the formats keep them.
"""

from __future__ import annotations

import hashlib
import math
import re
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from exportd import Column, DataStore, ReadContext, Window
from exportd.kernel.batches import to_rows
from exportd.kernel.datastores import SqliteStore
from exportd.kernel.pipeline import Written, run_export
from exportd.kernel.plan import ExportPlan, plan_export
from exportd.messages import ExportRequest
from exportd.plugins.formats.common import printable, printable_lines, transcript_layout
from exportd.plugins.manager import Plugins
from tests.unit.datastore import (
    BIG_CHANNEL,
    BIG_ROOMS,
    ROOM,
    SHOP,
    SMALL_CHANNEL,
    WEB_WORKFLOW,
    WINDOW,
)
from tests.unit.readers import READERS, Row, Table

PLUGINS = Plugins(entry_points=False)
FORMATS = ("csv", "xlsx", "txt", "html", "json", "json_bulk")
ZONES = ("UTC", "Europe/Helsinki")
BATCH_SIZE = 4  # several batches per file, so that writers carry state across batches
ROOMS_PER_PART = 25  # the qna source's default

# What the formats' documentation says they do to a value.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

Shown = Callable[[Column, Any, ZoneInfo], Any]


def query(datastore: Path, sql: str, *args: Any) -> list[Row]:
    """The rows of one query on ``data.db``, opened read-only: the reference for both
    stores, PostgreSQL's as SQLite's."""
    with closing(sqlite3.connect(f"{datastore.as_uri()}?mode=ro", uri=True)) as conn:
        return conn.execute(sql, args).fetchall()


def stored(text: str | None) -> datetime | None:
    """A time as ``data.db`` stores it (UTC ISO 8601 text), as an aware datetime."""
    return None if text is None else datetime.fromisoformat(text)


def within(window: Window, moment: datetime | None) -> bool:
    """Whether ``moment`` is in the window: start inclusive, end exclusive."""
    return moment is not None and window.start <= moment < window.end


def room_logs(datastore: Path, window: Window, params: dict[str, Any]) -> list[Row]:
    """The room's messages sent in the window, with their conversation, by conversation start."""
    rows = [
        (conversation, stored(started), bool(real), id_, stored(sent), type_, name, body)
        for conversation, started, real, id_, sent, type_, name, body in query(
            datastore,
            "SELECT c.id, c.started_at, c.is_real, m.id, m.sent_at, m.sender_type,"
            " m.sender_name, m.body"
            " FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id"
            " WHERE m.room_id = ?",
            params["room_id"],
        )
    ]
    return sorted(
        (row for row in rows if within(window, row[4])),
        key=lambda row: (row[1], row[0], row[4], row[3]),
    )


def room_stats(datastore: Path, window: Window, params: dict[str, Any]) -> list[Row]:
    """The rooms source's own stats rows (their figures are tested in test_source_rooms.py)."""
    source = PLUGINS.source("rooms")
    ctx = ReadContext(window=window, data=SqliteStore(datastore))
    chosen = msgspec.convert(params, source.Params)
    return [tuple(row) for batch in map(to_rows, source.read(chosen, ctx)) for row in batch]


def workflow_events(datastore: Path, window: Window, params: dict[str, Any]) -> list[Row]:
    """The step's events in the window whose page is one the filter names, in time order."""
    [only] = params["filters"]
    assert only["property"] == "page_url", "this expectation knows only a page_url filter"
    rows = [
        (id_, stored(at), step, action, visitor, session, url, view, bool(goal))
        for id_, at, step, action, visitor, session, url, view, goal in query(
            datastore,
            "SELECT id, occurred_at, step_index, action, visitor_id, session_id, page_url,"
            " view_uid, goal_triggered FROM workflow_events"
            " WHERE workflow_id = ? AND step_index = ?",
            params["workflow_id"],
            params["step_index"],
        )
    ]
    return sorted(
        (row for row in rows if within(window, row[1]) and row[6] in only["values"]),
        key=lambda row: (row[1], row[0]),
    )


def questions(datastore: Path, window: Window, params: dict[str, Any]) -> list[Row]:
    """The channel's questions asked in the window, room by room, in the order asked."""
    rows = [
        (id_, room, name, stored(asked), author, text, votes, status, stored(at), by, answer)
        for id_, room, name, asked, author, text, votes, status, at, by, answer in query(
            datastore,
            "SELECT q.id, q.room_id, r.name, q.asked_at, q.author_name, q.question, q.upvotes,"
            " q.status, q.answered_at, q.answered_by, q.answer"
            " FROM qna_questions AS q JOIN qna_rooms AS r ON r.id = q.room_id"
            " WHERE q.channel_id = ?",
            params["channel_id"],
        )
    ]
    return sorted(
        (row for row in rows if within(window, row[3])),
        key=lambda row: (row[1], row[3], row[0]),
    )


@dataclass(frozen=True)
class Case:
    """One export of a source: its parameters, how many parts it makes, its expected rows."""

    name: str
    source: str
    params: dict[str, Any]
    expected: Callable[[Path, Window, dict[str, Any]], list[Row]]
    parts: int = 1


CASES = (
    Case("rooms-logs", "rooms", {"room_id": ROOM, "type": "logs"}, room_logs),
    Case("rooms-stats", "rooms", {"room_id": ROOM, "type": "stats"}, room_stats),
    Case(
        "workflows",
        "workflows",
        {
            "workflow_id": WEB_WORKFLOW,
            "step_index": 1,
            "filters": [{"property": "page_url", "values": [f"{SHOP}/tents"]}],
        },
        workflow_events,
    ),
    Case("qna", "qna", {"channel_id": SMALL_CHANNEL}, questions),
    Case(
        "qna-in-parts",
        "qna",
        {"channel_id": BIG_CHANNEL},
        questions,
        parts=math.ceil(len(BIG_ROOMS) / ROOMS_PER_PART),
    ),
)


def local_naive(value: datetime, zone: ZoneInfo) -> datetime:
    """An aware time as the wall clock in ``zone`` shows it, without the zone."""
    return value.astimezone(zone).replace(tzinfo=None)


def to_millisecond(value: datetime) -> datetime:
    """``value`` rounded to the millisecond, as openpyxl reads an Excel date-time back."""
    return value.replace(microsecond=0) + timedelta(milliseconds=round(value.microsecond / 1000))


def in_csv(column: Column, value: Any, zone: ZoneInfo) -> Any:
    """csv: RFC 3339 times in the zone, a quote before a formula, nothing for None or ""."""
    if value is None or value == "":
        return None
    if column.type == "datetime":
        return value.astimezone(zone)
    if column.type == "text" and value.startswith(FORMULA_STARTS):
        return f"'{value}"
    return value


def in_xlsx(column: Column, value: Any, zone: ZoneInfo) -> Any:
    """xlsx: naive local times to the millisecond, text without what XML forbids."""
    if value is None:
        return None
    if column.type == "datetime":
        return to_millisecond(local_naive(value, zone))
    if column.type == "text":
        return NOT_IN_XML.sub("", value) or None
    return value


def in_json(column: Column, value: Any, zone: ZoneInfo) -> Any:
    """json and json_bulk: every value as it is, times with the zone's offset."""
    if column.type == "datetime" and value is not None:
        return value.astimezone(zone)
    return value


def in_txt(column: Column, value: Any, zone: ZoneInfo) -> Any:
    """txt: local clock times to the second, controls (line breaks too) as symbols."""
    return _displayed(column, value, zone, printable)


def in_html(column: Column, value: Any, zone: ZoneInfo) -> Any:
    """html: local clock times to the second, controls but tabs and line breaks as symbols."""
    return _displayed(column, value, zone, printable_lines)


def _displayed(column: Column, value: Any, zone: ZoneInfo, show: Callable[[str], str]) -> Any:
    if value is None:
        return None
    if column.type == "datetime":
        return local_naive(value, zone).replace(microsecond=0)
    if column.type == "text":
        return show(value) or None
    return value


def txt_message(column: Column, value: Any, zone: ZoneInfo) -> Any:
    """A txt transcript's message text: one line per line of the text, trailing breaks dropped."""
    return "\n".join(map(printable, value.splitlines())) or None


SHOWN: dict[str, Shown] = {
    "csv": in_csv,
    "xlsx": in_xlsx,
    "txt": in_txt,
    "html": in_html,
    "json": in_json,
    "json_bulk": in_json,
}
MESSAGE_SHOWN: dict[str, Shown] = {"txt": txt_message, "html": in_html}
"""How a transcript shows its text column, for the formats that make transcripts."""


def as_read_back(
    format_name: str, columns: Sequence[Column], zone: ZoneInfo, rows: list[Row]
) -> tuple[list[str], list[Row]]:
    """The header and rows that the reader of ``format_name`` should give back for ``rows``.

    A txt or html transcript keeps only its conversation, time, author and text columns.
    """
    layout = transcript_layout(columns) if format_name in MESSAGE_SHOWN else None
    shown = [SHOWN[format_name]] * len(columns)
    if layout is None:
        kept = list(range(len(columns)))
    else:
        at = (layout.conversation, layout.time, layout.author, layout.text)
        kept = [index for index in at if index is not None]
        shown[layout.text] = MESSAGE_SHOWN[format_name]
    return [columns[index].name for index in kept], [
        tuple(shown[index](columns[index], row[index], zone) for index in kept) for row in rows
    ]


def comparable(row: Row) -> tuple[tuple[type, Any, Any], ...]:
    """Each value with its type (``True`` is not ``1``) and, for datetimes, UTC offset."""
    return tuple(
        (type(value), value, value.utcoffset() if isinstance(value, datetime) else None)
        for value in row
    )


def request(case: Case, format_name: str, zone: str) -> ExportRequest:
    """The request for ``case`` over the fixture's window, rendered in ``zone``."""
    return msgspec.convert(
        {
            "source": case.source,
            "format": format_name,
            "params": case.params,
            "interval": {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat()},
            "timezone": zone,
        },
        ExportRequest,
    )


def export(plan: ExportPlan, target: Path) -> tuple[Written, bytes]:
    """Run ``plan`` into ``target``; what the export measured and the bytes on disk."""
    info = run_export(plan, target, batch_size=BATCH_SIZE)
    return info, target.read_bytes()


def title(source: str, zone: ZoneInfo) -> str:
    """The title txt and html give an export of ``source`` over the window."""
    start, end = (
        moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        for moment in (WINDOW.start, WINDOW.end)
    )
    return f"{source}: {start} to {end} ({zone.key})"


def check_file(info: Written, target: Path, content: bytes, plan: ExportPlan, rows: int) -> None:
    """What the export measured is the truth about the file on disk (hashed as written)."""
    assert info.media_type == plan.format.media_type
    assert info.size == len(content) == target.stat().st_size
    assert info.sha256 == hashlib.sha256(content).hexdigest()
    assert info.rows == rows


def check_metadata(table: Table, plan: ExportPlan, zone: ZoneInfo) -> None:
    """The title (txt, html) or ``export`` member (json) describes this export."""
    if plan.format.name in ("txt", "html"):
        assert table.title == title(plan.source.name, zone)
    if plan.format.name == "json":
        assert table.export is not None
        export = table.export
        assert export["source"] == plan.source.name
        assert export["params"] == msgspec.to_builtins(plan.params)
        assert export["timezone"] == zone.key
        assert export["columns"] == msgspec.to_builtins(list(plan.columns))
        interval = [datetime.fromisoformat(export["interval"][end]) for end in ("start", "end")]
        assert interval == [WINDOW.start, WINDOW.end]


def test_the_matrix_covers_every_builtin_source_and_format() -> None:
    assert set(FORMATS) == set(PLUGINS.formats)
    assert {case.source for case in CASES} == set(PLUGINS.sources)


@pytest.mark.parametrize("zone_name", ZONES)
@pytest.mark.parametrize("format_name", FORMATS)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_value_survives_the_export(
    *,
    datastore: Path,
    store: DataStore,
    tmp_path: Path,
    case: Case,
    format_name: str,
    zone_name: str,
) -> None:
    zone = ZoneInfo(zone_name)
    plan = plan_export(request(case, format_name, zone_name), PLUGINS, store)
    window = Window(WINDOW.start, WINDOW.end, zone)
    assert plan.window == window
    columns = list(plan.source.columns(plan.params, plan.context(batch_size=BATCH_SIZE)))
    assert list(plan.columns) == columns
    expected = case.expected(datastore, window, case.params)
    assert expected, "a case with no rows would check nothing"
    header, wanted = as_read_back(format_name, columns, zone, expected)

    parts = plan.parts(BATCH_SIZE)
    assert len(parts) == case.parts
    got: list[Row] = []
    for number, part in enumerate(parts):
        target = tmp_path / f"{case.name}-{number}.{plan.format.extension}"
        info, content = export(part, target)
        table = READERS[format_name](target, columns)
        check_file(info, target, content, part, len(table.rows))
        check_metadata(table, part, zone)
        assert table.header == header
        got += table.rows

    assert len(got) == len(expected)
    assert [comparable(row) for row in got] == [comparable(row) for row in wanted]
