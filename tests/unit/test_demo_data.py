"""Demo data: deterministic, the size asked for, realistic enough to exercise every source."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import psycopg
import pytest
import sqlite_utils

from exportd import DataStore, ExportFailed, ReadContext, Source, Window
from exportd.cli import main
from exportd.data import postgres
from exportd.data.demo import DemoSummary, generate_demo_data, load_demo_data
from exportd.data.demo_text import EVENT_ACTIONS
from exportd.data.schema import INDEXES, TABLES, Table, create_schema
from exportd.kernel.datastores import PostgresStore, SqliteStore
from exportd.plugins.sources.qna import QnaParams, QnaSource
from exportd.plugins.sources.rooms import RoomsParams, RoomsSource
from exportd.plugins.sources.workflows import WorkflowParams, WorkflowsSource
from tests.postgres import DIALECTS, scratch_database

MESSAGES = 3000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return generate_demo_data(tmp_path_factory.mktemp("demo") / "data.db", messages=MESSAGES)


@pytest.fixture(scope="module")
def postgres_demo() -> Iterator[str]:
    """The URL of a PostgreSQL store holding the same demo data as :func:`demo`."""
    with scratch_database("demo") as url:
        load_demo_data(url, messages=MESSAGES)
        yield url


@pytest.fixture(scope="module", params=DIALECTS)
def demo_store(request: pytest.FixtureRequest, demo: DemoSummary) -> Iterator[DataStore]:
    """The demo data in each data store."""
    if request.param == "sqlite":
        yield SqliteStore(demo.path)
        return
    store = PostgresStore(request.getfixturevalue("postgres_demo"))
    yield store
    store.close()


def query(summary: DemoSummary, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(summary.path) as conn:
        return conn.execute(sql).fetchall()


def count(summary: DemoSummary, sql: str) -> int:
    value = query(summary, sql)[0][0]
    assert isinstance(value, int)
    return value


def test_the_same_seed_gives_the_same_file(tmp_path: Path, demo: DemoSummary) -> None:
    again = generate_demo_data(tmp_path / "again.db", messages=MESSAGES)
    assert again.path.read_bytes() == demo.path.read_bytes()
    other = generate_demo_data(tmp_path / "other.db", messages=MESSAGES, seed=2)
    bodies = "SELECT conversation_id, body FROM messages ORDER BY id"
    assert query(other, bodies) != query(demo, bodies)


def test_the_summary_counts_what_is_in_the_tables(demo: DemoSummary) -> None:
    assert demo.messages == MESSAGES
    for table in TABLES:
        assert count(demo, f"SELECT count(*) FROM {table.name}") == getattr(demo, table.name)


def test_the_message_count_is_exact(tmp_path: Path) -> None:
    for messages in (0, 1, 2, 777):
        summary = generate_demo_data(tmp_path / f"{messages}.db", messages=messages)
        assert count(summary, "SELECT count(*) FROM messages") == messages == summary.messages


def test_times_are_stored_utc_in_the_period(demo: DemoSummary) -> None:
    for (text,) in query(demo, "SELECT sent_at FROM messages ORDER BY random() LIMIT 200"):
        assert isinstance(text, str)
        moment = datetime.fromisoformat(text)
        assert moment.isoformat() == text and moment.utcoffset() is not None
        assert not moment.utcoffset()
        assert demo.start <= moment < demo.end + (demo.end - demo.start) / 30


def test_conversations_are_real_exactly_when_a_visitor_wrote(demo: DemoSummary) -> None:
    flags = query(
        demo,
        """SELECT c.is_real, EXISTS (SELECT 1 FROM messages AS m
            WHERE m.conversation_id = c.id AND m.sender_type = 'visitor')
        FROM conversations AS c""",
    )
    assert all(real == wrote for real, wrote in flags)
    assert {real for real, _ in flags} == {0, 1}
    missed = """SELECT count(*) FROM conversations AS c WHERE c.is_real AND NOT EXISTS (
        SELECT 1 FROM messages AS m
        WHERE m.conversation_id = c.id AND m.sender_type = 'operator'
    )"""
    assert count(demo, missed) > 0


def test_messages_agree_with_their_conversation(demo: DemoSummary) -> None:
    wrong = """SELECT count(*)
        FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id
        WHERE m.room_id != c.room_id OR m.sent_at < c.started_at OR m.sent_at > c.ended_at"""
    assert count(demo, wrong) == 0
    sizes = {
        size for (size,) in query(demo, "SELECT count(*) FROM messages GROUP BY conversation_id")
    }
    assert min(sizes) == 1 and max(sizes) > 20
    senders = query(demo, "SELECT DISTINCT sender_type FROM messages ORDER BY 1")
    assert senders == [("bot",), ("operator",), ("system",), ("visitor",)]


def test_bodies_include_hostile_text(demo: DemoSummary) -> None:
    bodies = {body for (body,) in query(demo, "SELECT DISTINCT body FROM messages")}
    for needle in ('"', ",", "\n", "🎉", "=SUM(", "<script>", "مرحبا"):
        assert any(needle in body for body in bodies if isinstance(body, str)), needle


def test_every_workflow_kind_has_events_on_every_step(demo: DemoSummary) -> None:
    steps = query(
        demo,
        """SELECT w.kind, w.step_count, count(DISTINCT e.step_index), sum(e.goal_triggered)
        FROM workflows AS w JOIN workflow_events AS e ON e.workflow_id = w.id GROUP BY w.id""",
    )
    assert {kind for kind, *_ in steps} == set(EVENT_ACTIONS)
    assert all(step_count == used and goals > 0 for _, step_count, used, goals in steps)


def test_a_qna_channel_has_more_than_25_rooms(demo: DemoSummary) -> None:
    sizes = query(demo, "SELECT channel_id, count(*) FROM qna_rooms GROUP BY channel_id")
    assert dict(sizes)[demo.channel_id] > 25
    statuses = {status for (status,) in query(demo, "SELECT DISTINCT status FROM qna_questions")}
    assert statuses == {"answered", "approved", "pending", "rejected"}
    unanswered = (
        "SELECT count(*) FROM qna_questions WHERE (status = 'answered') != (answer IS NOT NULL)"
    )
    assert count(demo, unanswered) == 0


def test_the_schema_is_complete(demo: DemoSummary) -> None:
    db = sqlite_utils.Database(demo.path)
    before = db.execute("SELECT sql FROM sqlite_master").fetchall()
    create_schema(db)
    assert db.execute("SELECT sql FROM sqlite_master").fetchall() == before
    db.close()


def test_the_sources_read_the_demo_data(demo: DemoSummary, demo_store: DataStore) -> None:
    window = Window(demo.start, demo.end, ZoneInfo("UTC"))
    ctx = ReadContext(window=window, data=demo_store)
    in_room = f"SELECT count(*) FROM messages WHERE room_id = '{demo.room_id}'"
    cases = [
        (RoomsSource(), RoomsParams(room_id=demo.room_id, type="logs"), count(demo, in_room)),
        (RoomsSource(), RoomsParams(room_id=demo.room_id, type="stats"), 30),
        (
            WorkflowsSource(),
            WorkflowParams(workflow_id=demo.workflow_id, step_index=0, filters=[]),
            None,
        ),
        (QnaSource(), QnaParams(channel_id=demo.channel_id), None),
    ]
    for source, params, expected in cases:
        source.validate(params, ReadContext(window=window, data=demo_store))
        rows = sum(len(batch) for batch in source.read(params, ctx))
        assert rows == source.estimate(params, ctx)
        assert rows > 0 and expected in (None, rows)
    parts = QnaSource().parts(QnaParams(channel_id=demo.channel_id), ctx)
    assert len(parts) == 3


def test_an_existing_store_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "data.db"
    target.write_bytes(b"old")
    with pytest.raises(ValueError, match="messages"):
        generate_demo_data(target, messages=-1)
    assert target.read_bytes() == b"old"
    summary = generate_demo_data(target, messages=10)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data.db"]
    assert count(summary, "SELECT count(*) FROM messages") == 10


def _as_stored(table: Table, row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row of SQLite's ``table`` as PostgreSQL holds it: times as aware datetimes, flags
    as booleans."""
    kinds = dict(zip(table.columns, row, strict=True))
    return tuple(
        datetime.fromisoformat(value)
        if name.endswith("_at") and value is not None
        else bool(value)
        if name in ("is_real", "goal_triggered")
        else value
        for name, value in kinds.items()
    )


def test_postgres_gets_the_same_rows(demo: DemoSummary, postgres_demo: str) -> None:
    with psycopg.connect(postgres_demo, options="-c TimeZone=UTC") as conn:
        for table in TABLES:
            columns = ", ".join(table.columns)
            order = f"SELECT {columns} FROM {table.name} ORDER BY id"
            expected = [_as_stored(table, row) for row in query(demo, order)]
            assert conn.execute(order).fetchall() == expected, table.name


def _counts(url: str) -> dict[str, int]:
    """The rows of each table of the store at ``url``."""
    with psycopg.connect(url) as conn:
        return {
            table.name: conn.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0]
            for table in TABLES
        }


def _failing_fill(put: postgres.Put) -> None:
    """Puts some orgs, then fails in the middle of their COPY."""

    def rows() -> Iterator[tuple[Any, ...]]:
        yield ("org-1", "One")
        yield ("org-2", "Two")
        raise RuntimeError("the generator broke")

    put("orgs", rows())


def test_postgres_is_replaced_whole_in_one_transaction() -> None:
    with scratch_database("demo") as url:
        first = load_demo_data(url, messages=20)
        assert not isinstance(first, DemoSummary) and first.url == url
        before = _counts(url)
        with pytest.raises(RuntimeError, match="generator broke"):
            postgres.load(url, _failing_fill)
        assert _counts(url) == before  # the old rows, all of them
        load_demo_data(url, messages=5)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM messages").fetchone() == (5,)
            indexes = conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'idx_%'")
            assert indexes.fetchone() == (len(INDEXES),)
            analyzed = conn.execute(
                "SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL"
            )
            assert analyzed.fetchone() == (len(TABLES),)


def test_postgres_keeps_what_depends_on_its_tables_and_says_so() -> None:
    with scratch_database("demo") as url:
        load_demo_data(url, messages=20)
        with psycopg.connect(url) as conn:
            conn.execute("CREATE VIEW busy AS SELECT room_id, count(*) FROM messages GROUP BY 1")
        before = _counts(url)
        with pytest.raises(ExportFailed) as caught:
            load_demo_data(url, messages=5)
        assert "other objects depend on exportd's tables" in caught.value.message
        assert "busy" in caught.value.message
        assert _counts(url) == before
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM busy").fetchone()[0] > 0


def test_postgres_waits_for_a_readers_lock_only_so_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(postgres, "LOCK_TIMEOUT", "200ms")
    with scratch_database("demo") as url:
        load_demo_data(url, messages=20)
        with psycopg.connect(url) as reader:
            reader.execute("SELECT count(*) FROM messages")  # holds its lock until the end
            with pytest.raises(ExportFailed, match="lock timeout"):
                load_demo_data(url, messages=5)
        assert _counts(url)["messages"] == 20


def test_demo_data_fills_postgresql_only_when_url_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPORTD_DATA__URL", "postgresql://u:s3cret@127.0.0.1:1/prod")
    assert main(["demo-data", "--messages", "5"]) != 0
    err = capsys.readouterr().err
    assert "pass --url" in err and "postgresql://u:***@127.0.0.1:1/prod" in err
    assert len(err.strip().splitlines()) == 1 and "s3cret" not in err
    assert list(tmp_path.iterdir()) == []


def test_demo_data_takes_a_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with scratch_database("demo") as url:
        assert main(["demo-data", "--url", url, "--messages", "7", "--json"]) == 0
        assert msgspec.json.decode(capsys.readouterr().out)["messages"] == 7
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM messages").fetchone() == (7,)


ZONES = ["UTC", "Europe/Helsinki", "America/St_Johns", "Asia/Kathmandu"]


def _parity_cases(demo: DemoSummary) -> list[tuple[Source[Any], dict[str, Any]]]:
    """Parameter sets of every source, over every room, workflow and channel the demo has."""
    with sqlite3.connect(demo.path) as conn:
        rooms = [room for (room,) in conn.execute("SELECT id FROM rooms ORDER BY id")]
        workflows = conn.execute("SELECT id, step_count FROM workflows ORDER BY id").fetchall()
        channels = [row[0] for row in conn.execute("SELECT id FROM qna_channels ORDER BY id")]
        some_rooms = [
            room
            for (room,) in conn.execute(
                "SELECT id FROM qna_rooms WHERE channel_id = ? LIMIT 3", (demo.channel_id,)
            )
        ]
    rooms_source, workflows_source, qna_source = RoomsSource(), WorkflowsSource(), QnaSource()
    cases: list[tuple[Source[Any], dict[str, Any]]] = []
    for room in rooms:
        cases += [
            (rooms_source, {"room_id": room, "type": "stats"}),
            (rooms_source, {"room_id": room, "type": "logs", "is_real_conversation": False}),
        ]
    cases += [
        (rooms_source, {"room_id": demo.room_id, "type": "logs"}),
        (rooms_source, {"room_id": demo.room_id, "type": "logs", "min_message_count": 6}),
    ]
    first_actions = sorted({action for steps in EVENT_ACTIONS.values() for action in steps[0]})
    for workflow, step_count in workflows:
        steps = [{"workflow_id": workflow, "step_index": step} for step in range(step_count)]
        cases += [(workflows_source, step | {"filters": []}) for step in steps]
        cases += [
            (
                workflows_source,
                steps[0] | {"filters": [{"property": "action", "values": first_actions}]},
            ),
            (
                workflows_source,
                steps[-1] | {"filters": [], "target": "triggered_goal", "limit": 9},
            ),
        ]
    cases += [(qna_source, {"channel_id": channel}) for channel in channels]
    cases.append((qna_source, {"channel_id": demo.channel_id, "room_ids": some_rooms}))
    return cases


@pytest.mark.parametrize("zone", ZONES)
def test_both_stores_give_the_same_rows(demo: DemoSummary, postgres_demo: str, zone: str) -> None:
    """Every source and parameter set gives, from SQLite and from PostgreSQL, the same
    rows in the same order, of the same types (the stats' rounded figures included)."""
    window = Window(demo.start, demo.end, ZoneInfo(zone))
    sqlite, postgres = SqliteStore(demo.path), PostgresStore(postgres_demo)
    try:
        for source, values in _parity_cases(demo):
            params = msgspec.convert(values, source.Params)
            results = []
            for store in (sqlite, postgres):
                ctx = ReadContext(window=window, data=store, batch_size=50)
                source.validate(params, ctx)
                rows = [
                    tuple((type(value), value) for value in row)
                    for part in source.parts(params, ctx)
                    for batch in source.read(part, ctx)
                    for row in batch
                ]
                results.append((rows, source.estimate(params, ctx), source.time_range(params, ctx)))
            assert results[0] == results[1], (source.name, values)
            quiet = values.get("is_real_conversation") is False  # small rooms may have none
            assert results[0][0] or quiet, f"{source.name} {values} checks nothing"
    finally:
        postgres.close()
