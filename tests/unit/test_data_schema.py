"""The data store schema: idempotent, documented, and its time form sorts in time order."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import sqlite_utils
from hypothesis import given, settings
from hypothesis import strategies as st

from exportd import ReadContext, Window
from exportd.data.postgres import INDEXES_DDL, TABLES_DDL
from exportd.data.schema import INDEXES, TABLES, create_schema
from exportd.kernel.batches import to_rows
from exportd.kernel.datastores import SqliteStore
from exportd.plugins.sources.rooms import RoomsParams, RoomsSource
from tests.postgres import scratch_database

DOCS = Path(__file__).parents[2] / "docs" / "data-model.md"
UTC_ZONE = ZoneInfo("UTC")


def schema_sql(db: sqlite_utils.Database) -> list[tuple[str, str]]:
    return db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()


def test_create_schema_makes_every_table_and_index(tmp_path: Path) -> None:
    db = sqlite_utils.Database(tmp_path / "data.db")
    create_schema(db)
    for table in TABLES:
        assert list(db.table(table.name).columns_dict) == list(table.columns)
        assert db.table(table.name).pks == [table.pk]
    indexed = {(t.name, tuple(index.columns)) for t in TABLES for index in _indexes(db, t.name)}
    assert set(INDEXES) <= indexed


def _indexes(db: sqlite_utils.Database, table: str) -> list[sqlite_utils.db.Index]:
    return [index for index in db.table(table).indexes if not index.name.startswith("sqlite_")]


def test_create_schema_is_idempotent_and_keeps_rows(tmp_path: Path) -> None:
    db = sqlite_utils.Database(tmp_path / "data.db")
    create_schema(db)
    db.table("orgs").insert({"id": "o1", "name": "Acme"})
    before = schema_sql(db)
    create_schema(db)
    assert schema_sql(db) == before
    assert list(db.table("orgs").rows) == [{"id": "o1", "name": "Acme"}]


def test_defaults_fill_the_optional_flags(tmp_path: Path) -> None:
    db = sqlite_utils.Database(tmp_path / "data.db")
    create_schema(db)
    db.table("conversations").insert({"id": "c", "room_id": "r", "started_at": "x"})
    assert db.table("conversations").get("c")["is_real"] == 0


def test_every_table_and_column_is_documented() -> None:
    text = DOCS.read_text()
    for table in TABLES:
        section = re.search(rf"^### `{table.name}`\n(.*?)(?=^##|\Z)", text, re.M | re.S)
        assert section, f"docs/data-model.md has no section for {table.name}"
        documented = re.findall(r"^\| `(\w+)` \|", section[1], re.M)
        assert documented == list(table.columns), table.name


aware_times = st.datetimes(
    datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.datetimes(
    datetime(2000, 1, 2), datetime(2099, 12, 31), timezones=st.just(timezone(timedelta(hours=-5)))
)


@settings(max_examples=100, deadline=None)
@given(st.lists(aware_times, min_size=2, max_size=20))
def test_the_stored_time_form_sorts_in_time_order_in_sqlite(moments: list[datetime]) -> None:
    stored = [moment.astimezone(UTC).isoformat() for moment in moments]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (at TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [(text,) for text in stored])
    ordered = [
        datetime.fromisoformat(text) for (text,) in conn.execute("SELECT at FROM t ORDER BY at")
    ]
    assert ordered == sorted(moments)
    assert all(moment.tzinfo == UTC for moment in ordered)


def test_own_data_loads_with_the_sqlite_utils_tool(tmp_path: Path) -> None:
    """The recipe of docs/data-model.md: create the schema, insert CSV files."""
    store = tmp_path / "data.db"
    create_schema(sqlite_utils.Database(store))
    files = {
        "rooms": "id,org_id,name\nr1,o1,Support\n",
        "conversations": "id,room_id,started_at,ended_at,is_real,visitor_id\n"
        "c1,r1,2024-05-01T10:00:00+00:00,,1,v1\n",
        "messages": "id,conversation_id,room_id,sent_at,sender_type,sender_id,sender_name,body\n"
        '7,c1,r1,2024-05-01T10:00:05+00:00,visitor,v1,Ann,"Hi, ""you""\nthere"\n',
    }
    for table, content in files.items():
        csv_file = tmp_path / f"{table}.csv"
        csv_file.write_text(content)
        insert = [sys.executable, "-m", "sqlite_utils", "insert", store, table, csv_file]
        insert += ["--csv", "--empty-null"]
        subprocess.run(insert, check=True)
    assert sqlite_utils.Database(store).table("conversations").get("c1")["ended_at"] is None
    window = Window(datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 2, tzinfo=UTC), UTC_ZONE)
    source = RoomsSource()
    params = RoomsParams(room_id="r1", type="logs", is_real_conversation=True)
    ctx = ReadContext(window=window, data=SqliteStore(store))
    source.validate(params, ctx)
    rows = [row for batch in source.read(params, ctx) for row in to_rows(batch)]
    assert rows == [
        (
            "c1",
            datetime(2024, 5, 1, 10, tzinfo=UTC),
            True,
            7,
            datetime(2024, 5, 1, 10, 0, 5, tzinfo=UTC),
            "visitor",
            "Ann",
            'Hi, "you"\nthere',
        )
    ]


def test_postgres_has_the_same_tables_and_indexes() -> None:
    with scratch_database("schema") as url, psycopg.connect(url) as conn:
        conn.execute(TABLES_DDL)
        conn.execute(INDEXES_DDL)
        for table in TABLES:
            columns = conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
                " ORDER BY ordinal_position",
                (table.name,),
            ).fetchall()
            assert [name for (name,) in columns] == list(table.columns)
            nullable = conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = %s AND is_nullable = 'NO'",
                (table.name,),
            ).fetchall()
            assert {name for (name,) in nullable} == table.not_null | {table.pk}
        indexed = {
            (table, tuple(columns.split(", ")))
            for table, columns in conn.execute(
                "SELECT tablename, substring(indexdef FROM '\\((.*)\\)') FROM pg_indexes"
                " WHERE indexname LIKE 'idx_%'"
            )
        }
        assert indexed == set(INDEXES)


def test_the_postgres_ddl_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert TABLES_DDL.strip() in text
    assert INDEXES_DDL.strip() in text
