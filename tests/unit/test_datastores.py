"""The data stores behind ``data.url``: the setting, one store per process, the errors
that name ``data.url``, the deprecated SQLite-only ways, a one-dialect source."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest

from exportd import Batch, Column, ExportFailed, NoParams, ReadContext, Source, arrow_schema
from exportd.cli import main
from exportd.config import Settings, load_settings
from exportd.config.data_url import reason, redact
from exportd.config.settings import DataSettings
from exportd.errors import ConfigError, Unavailable
from exportd.kernel import datastores
from exportd.kernel.batches import to_rows
from exportd.kernel.datastores import PostgresStore, SqliteStore, data_store, open_store
from exportd.kernel.pipeline import run_export
from exportd.kernel.plan import plan_export
from exportd.messages import ExportRequest, Interval
from exportd.plugins.manager import Plugins
from exportd.plugins.sources.rooms import RoomsParams, RoomsSource
from exportd.testing import data_store as data_store_for
from tests.needs import missing
from tests.postgres import scratch_database, why_not
from tests.unit.datastore import ROOM, WINDOW

UNREACHABLE = "postgresql://postgres:secret@127.0.0.1:1/exportd"
"""A PostgreSQL URL where nothing listens (port 1), with a password not to show."""


def test_an_empty_url_is_data_db_in_the_home() -> None:
    assert Settings().data_url == "sqlite:///var/data.db"
    assert Settings(home="/srv/x").data_url == "sqlite:////srv/x/data.db"
    store = open_store(Settings(home="/srv/x").data_url)
    assert (store.dialect, store.path) == ("sqlite", Path("/srv/x/data.db"))


def test_the_url_and_the_pool_size_come_from_the_environment() -> None:
    settings = load_settings(
        {"EXPORTD_DATA__URL": "postgresql://u@db:5433/exports", "EXPORTD_DATA__POOL_SIZE": "8"}
    )
    assert (settings.data_url, settings.data.pool_size) == ("postgresql://u@db:5433/exports", 8)


@pytest.mark.parametrize("url", ["mysql://db/x", "sqlite:/relative", "data.db"])
def test_a_url_of_another_scheme_is_a_config_error_naming_data_url(url: str) -> None:
    with pytest.raises(ConfigError, match=r"data\.url"):
        load_settings({"EXPORTD_DATA__URL": url})
    with pytest.raises(ConfigError, match=r"data\.url"):
        open_store(url)


def test_a_process_has_one_store_per_url() -> None:
    settings = Settings(home="var", data=DataSettings(url=UNREACHABLE))
    assert data_store(settings) is data_store(settings)
    assert data_store(settings) is not data_store(Settings(home="var"))


def test_postgresql_without_psycopg_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)  # import fails
    with pytest.raises(ConfigError) as caught:
        open_store("postgresql://u@db/x")
    assert "pip install 'exportd[postgresql]'" in caught.value.message
    assert [field.name for field in caught.value.fields] == ["data.url"]


def test_an_unreachable_server_is_unavailable_naming_data_url_without_the_password() -> None:
    store = PostgresStore(UNREACHABLE)
    with pytest.raises(Unavailable) as caught, store.connect():
        pass
    message = caught.value.message
    assert "data.url postgresql://postgres:***@127.0.0.1:1/exportd" in message
    assert "secret" not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u@h/db?password=s3cret", "postgresql://u@h/db"),
        (
            "postgresql://u@h/db?sslmode=require&sslpassword=s3cret",
            "postgresql://u@h/db?sslmode=require",
        ),
        ("postgresql://u:s3cret@h/db?password=s3cret&x=1", "postgresql://u:***@h/db?x=1"),
        ("postgresql://u:s3cret@[::1/db", "postgresql://***"),
        ("sqlite:///var/data.db", "sqlite:///var/data.db"),
    ],
)
def test_redact_hides_every_password_and_never_raises(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_libpq_quoting_a_malformed_url_shows_no_password() -> None:
    url = "postgresql://u:p%40ss@[::1/db?password=q%2Fw"
    with pytest.raises(psycopg.Error) as caught:
        psycopg.conninfo.conninfo_to_dict(url)
    assert url in str(caught.value)  # libpq quotes it whole
    said = reason(caught.value, url)
    assert "postgresql://***" in said
    assert not any(secret in said for secret in ("p%40ss", "p@ss", "q%2Fw", "q/w"))
    error = psycopg.OperationalError("password p@ss for u failed; also q/w")
    assert reason(error, url) == "password *** for u failed; also ***"


@pytest.mark.parametrize(
    "url", ["postgresql://u:s3cret@[::1/db", "postgresql://u:s3cret@h/db?nonsense=1"]
)
def test_a_malformed_postgresql_url_is_a_config_error_naming_data_url(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"EXPORTD_DATA__URL": url})
    assert [field.name for field in caught.value.fields] == ["data.url"]
    assert "s3cret" not in str(caught.value)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # the structural check without it
    if "[" in url:
        with pytest.raises(ConfigError, match=r"data\.url"):
            load_settings({"EXPORTD_DATA__URL": url})
    monkeypatch.undo()
    monkeypatch.chdir(Path(__file__).parent)
    assert main(["demo-data", "--url", url]) != 0
    err = capsys.readouterr().err
    assert "data.url" in err and "Traceback" not in err and "s3cret" not in err


def test_the_pool_size_follows_the_concurrency_and_the_slices_unless_set() -> None:
    """A connection for each slice of each export, one for each piece of another worker's
    export (as many as the worker's concurrency), and two to spare."""
    exports = {"EXPORTD_WORKER__CONCURRENCY": "5", "EXPORTD_HTTP__SYNC_CONCURRENCY": "3"}
    settings = load_settings({**exports, "EXPORTD_SLICES": "1"})
    assert (settings.data.pool_size, settings.data_pool_size) == (0, 8 + 5 + 2)
    assert load_settings({**exports, "EXPORTD_SLICES": "2"}).data_pool_size == 16 + 5 + 2
    slices = min(4, len(os.sched_getaffinity(0)))
    assert load_settings(exports).data_pool_size == 8 * slices + 5 + 2
    assert load_settings({"EXPORTD_DATA__POOL_SIZE": "7"}).data_pool_size == 7


def test_an_unreachable_server_refuses_the_request_and_fails_the_run(
    tmp_path: Path, datastore: Path
) -> None:
    """The request is refused when it is planned (no job is made), and a task planned
    before the server went away fails its run, naming data.url."""
    request = ExportRequest(
        source="rooms",
        format="csv",
        params={"room_id": ROOM, "type": "logs"},
        interval=Interval(start=WINDOW.start.isoformat(), end=WINDOW.end.isoformat()),
    )
    plugins = Plugins(entry_points=False)
    store = PostgresStore(UNREACHABLE)
    with pytest.raises(Unavailable, match=r"data\.url"):
        plan_export(request, plugins, store)
    plan = plan_export(request, plugins, SqliteStore(datastore))
    with pytest.raises(Unavailable, match=r"data\.url"):
        run_export(dataclasses.replace(plan, data=store), tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_the_cli_reports_an_unreachable_server_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPORTD_DATA__URL", UNREACHABLE)
    status = main(["export", "rooms", "-p", f"room_id={ROOM}", "-p", "type=logs", "-o", "out.csv"])
    err = capsys.readouterr().err
    assert status != 0
    assert "data.url" in err and "Traceback" not in err and "secret" not in err
    assert err.startswith("exportd: error: ") and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


class SqliteOnly(Source[NoParams]):
    """A third party's source that reads SQLite alone."""

    name = "sqlite_only"

    def validate(self, params: NoParams, ctx: ReadContext) -> None:
        ctx.data.require(self.name, "sqlite")

    def columns(self, params: NoParams, ctx: ReadContext) -> Sequence[Column]:
        return [Column("n", "integer")]

    def read(self, params: NoParams, ctx: ReadContext) -> Iterator[Batch]:
        yield [(1,)]


def test_a_source_of_one_dialect_refuses_another_store_clearly() -> None:
    SqliteOnly().validate(NoParams(), ReadContext(WINDOW, data=SqliteStore(Path("x.db"))))
    with pytest.raises(ExportFailed) as caught:
        SqliteOnly().validate(NoParams(), ReadContext(WINDOW, data=PostgresStore(UNREACHABLE)))
    message = caught.value.message
    assert "source 'sqlite_only' reads only sqlite data stores" in message
    assert "data.url (postgresql://postgres:***@127.0.0.1:1/exportd)" in message


def test_the_deprecated_data_path_still_reads_sqlite(datastore: Path) -> None:
    with pytest.warns(DeprecationWarning, match="data_path"):
        ctx = ReadContext(window=WINDOW, data_path=datastore)
    assert ctx.data.path == datastore
    with pytest.warns(DeprecationWarning, match="data_path"):
        assert ctx.data_path == datastore
    with pytest.warns(DeprecationWarning, match=r"connect\(\)"):
        conn = ctx.connect()
    with conn:
        assert conn.execute("SELECT count(*) FROM rooms").fetchone()[0] > 0
    conn.close()
    params = RoomsParams(room_id=ROOM, type="logs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert sum(len(batch) for batch in RoomsSource().read(params, ctx)) > 0


def test_the_deprecated_ways_name_data_url_on_postgresql() -> None:
    ctx = ReadContext(window=WINDOW, data=PostgresStore(UNREACHABLE))
    for deprecated in (lambda: ctx.data_path, ctx.connect):
        with pytest.warns(DeprecationWarning), pytest.raises(ExportFailed, match=r"data\.url"):
            deprecated()


def test_postgresql_sessions_are_read_only_and_in_utc(postgres_datastore: str) -> None:
    store = PostgresStore(postgres_datastore, pool_size=2)
    try:
        with store.connect() as conn:
            assert conn.execute("SHOW TimeZone").fetchone() == ("UTC",)
        with pytest.raises(ExportFailed, match="read-only transaction"), store.connect() as conn:
            conn.execute("DELETE FROM messages")
        with store.connect() as conn:  # the pool's connection came back, usable
            assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] > 0
    finally:
        store.close()


def test_postgresql_streams_in_batches_through_a_server_side_cursor(
    postgres_datastore: str,
) -> None:
    store = PostgresStore(postgres_datastore)
    try:
        with store.connect() as conn:
            batches = store.stream(conn, "SELECT id FROM messages ORDER BY id", {}, 3)
            first = next(batches)
            assert len(first) == 3
            cursors = conn.execute("SELECT count(*) FROM pg_cursors").fetchone()
            assert cursors == (1,)
            batches.close()  # an export stopped early closes its cursor
            assert conn.execute("SELECT count(*) FROM pg_cursors").fetchone() == (0,)
    finally:
        store.close()


def test_the_urls_parameters_are_kept_beside_the_stores_session() -> None:
    """A schema on the URL's search_path reads as in psql; the session stays in UTC and
    read-only; the URL's own connect_timeout and application_name win over the defaults."""
    with scratch_database("search_path") as url:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("CREATE SCHEMA exportd; CREATE TABLE exportd.things (n int)")
            admin.execute("INSERT INTO exportd.things VALUES (1), (2)")
        params = "options=-csearch_path%3Dexportd&connect_timeout=3&application_name=mine"
        with PostgresStore(f"{url}?{params}", pool_size=1) as store:
            assert "connect_timeout=3" in store.conninfo
            with store.connect() as conn:
                assert conn.execute("SELECT count(*) FROM things").fetchone() == (2,)
                settings = "SELECT current_setting('TimeZone'), current_setting('application_name')"
                assert conn.execute(settings).fetchone() == ("UTC", "mine")
            with pytest.raises(ExportFailed, match="read-only"), store.connect() as conn:
                conn.execute("SET search_path = public")  # reset when it comes back
                conn.execute("DELETE FROM exportd.things")
            with store.connect() as conn:
                assert conn.execute("SELECT count(*) FROM things").fetchone() == (2,)
        with PostgresStore(url) as store, store.connect() as conn:  # the defaults
            assert conn.execute("SHOW application_name").fetchone() == ("exportd",)
            assert "connect_timeout=10" in store.conninfo


def test_a_connection_a_source_changed_goes_back_to_the_pool_as_it_was_lent(
    postgres_datastore: str,
) -> None:
    with PostgresStore(postgres_datastore, pool_size=1) as store:
        with store.connect() as conn:
            pid = conn.info.backend_pid
            conn.execute("SET TimeZone = 'Asia/Tokyo'")
            conn.commit()
            conn.autocommit = True
            conn.execute("SET default_transaction_read_only = off")
        with store.connect() as conn:
            assert conn.info.backend_pid == pid  # the same one, reset
            assert conn.autocommit is False
            assert conn.execute("SHOW TimeZone").fetchone() == ("UTC",)
            assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)


def test_a_connection_the_server_dropped_is_replaced_not_lent(postgres_datastore: str) -> None:
    with PostgresStore(postgres_datastore, pool_size=1) as store:
        with store.connect() as conn:
            pid = conn.info.backend_pid
        with psycopg.connect(postgres_datastore, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        with store.connect() as conn:  # checked when lent: a new one
            assert conn.info.backend_pid != pid
            assert conn.execute("SELECT count(*) FROM rooms").fetchone()[0] > 0


def test_a_connection_lost_mid_export_is_unavailable_and_a_bad_statement_fails(
    postgres_datastore: str,
) -> None:
    with PostgresStore(postgres_datastore, pool_size=1) as store:
        with pytest.raises(Unavailable, match=r"data\.url") as caught, store.connect() as conn:
            with psycopg.connect(postgres_datastore, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
            conn.execute("SELECT 1")
        assert "may work once the server is back" in caught.value.message
        with pytest.raises(ExportFailed, match="no_such_table") as failed, store.connect() as conn:
            conn.execute("SELECT * FROM no_such_table")
        assert not isinstance(failed.value, Unavailable)


def test_a_pool_with_no_connection_free_is_unavailable_saying_why(
    postgres_datastore: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datastores, "POOL_TIMEOUT", 0.2)
    store = PostgresStore(postgres_datastore, pool_size=1)
    with store, store.connect(), pytest.raises(Unavailable) as caught, store.connect():
        pass
    message = caught.value.message
    assert f"data.url {redact(postgres_datastore)}" in message
    assert "all its 1 connections (data.pool_size) are in use" in message


def test_requests_for_an_unreachable_server_do_not_wait_for_one_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def slow_refusal(conninfo: str) -> NoReturn:
        time.sleep(0.5)
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(psycopg, "connect", slow_refusal)
    store = PostgresStore(UNREACHABLE)

    def attempt(_: int) -> str:
        with pytest.raises(Unavailable) as caught, store.connect():
            pass
        return caught.value.message

    started = time.monotonic()
    with ThreadPoolExecutor(4) as threads:
        messages = list(threads.map(attempt, range(4)))
    assert time.monotonic() - started < 1.5  # not 4 x 0.5 s
    assert all("connection refused" in message for message in messages)


@pytest.mark.parametrize("command", ["serve", "engine", "worker"])
def test_a_data_url_a_service_cannot_use_stops_it_at_start_in_one_line(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPORTD_DATA__URL", "postgresql://u:s3cret@db/x")
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)  # import fails
    assert main([command]) != 0
    err = capsys.readouterr().err
    assert "data.url" in err and "pip install 'exportd[postgresql]'" in err
    assert "Traceback" not in err and "s3cret" not in err
    assert len(err.strip().splitlines()) == 1


def test_the_tests_say_whether_postgresql_refused_the_login_or_is_not_there() -> None:
    urls = ("postgresql://nobody:s3cret@127.0.0.1:5432/postgres", UNREACHABLE)
    said = []
    for url in urls:
        with pytest.raises(psycopg.OperationalError) as caught:
            psycopg.connect(url, connect_timeout=5)
        said.append(why_not(url, caught.value))
    if "Connection refused" in said[0]:
        missing("no PostgreSQL at 127.0.0.1:5432 to refuse a login")
    assert said[0].startswith(
        "PostgreSQL at postgresql://nobody:***@127.0.0.1:5432/postgres refused"
    )
    assert said[1].startswith("no PostgreSQL at postgresql://postgres:***@127.0.0.1:1/exportd (")
    assert not any("s3cret" in text or "secret" in text for text in said)


def test_a_store_closes_as_a_context_manager_and_opens_again_when_used(
    datastore: Path, postgres_datastore: str
) -> None:
    with SqliteStore(datastore) as sqlite:  # nothing to close
        sqlite.close()
    with data_store_for(postgres_datastore) as store:
        assert isinstance(store, PostgresStore)
        with store.connect():
            assert store._pool is not None
    assert store._pool is None  # closed at the block's end
    with store.connect() as conn:  # and usable again
        assert conn.execute("SELECT 1").fetchone() == (1,)
    store.close()


STRAY_COLUMNS = (
    Column("n", "integer"),
    Column("at", "datetime"),
    Column("flag", "boolean"),
    Column("x", "float"),
)


def stray_text_store(path: Path, rows: Sequence[tuple[object, ...]]) -> SqliteStore:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "CREATE TABLE t (i INTEGER PRIMARY KEY, n INTEGER, at TEXT, flag INTEGER, x REAL)"
        )
        conn.executemany("INSERT INTO t (n, at, flag, x) VALUES (?, ?, ?, ?)", rows)
        conn.commit()
    return SqliteStore(path)


SQLITE_ROWS = [
    (1, "2024-05-01T08:00:00+00:00", 1, 1.5),
    (2, "2024-05-01T10:00:00.000001+02:00", 0, 2),
    (None, None, None, None),
    (3, "2024-05-01T08:00:00.123456+00:00", 1, 0.25),
    ("three", "not a time", 1, "x"),
    (4, "2024-05-01T08:00:00", 0, 4.0),
]


@pytest.mark.parametrize("size", [1, 2, 4, 100])
def test_sqlite_arrow_types_the_columns_and_keeps_stray_text_as_text(
    tmp_path: Path, size: int
) -> None:
    store = stray_text_store(tmp_path / "data.db", SQLITE_ROWS)
    with store.connect() as conn:
        expected = [
            tuple(_stored(value, column) for value, column in zip(row, STRAY_COLUMNS, strict=True))
            for row in conn.execute("SELECT n, at, flag, x FROM t ORDER BY i")
        ]
        batches = list(
            store.arrow(
                conn,
                "SELECT n, at, flag, x FROM t WHERE i > :i ORDER BY i",
                {"i": 0},
                size,
                STRAY_COLUMNS,
            )
        )
    assert all(batch.num_rows <= size for batch in batches)
    assert [row for batch in batches for row in to_rows(batch)] == expected
    first = batches[0]
    if size < 4:  # the first batch has no stray values: typed as the columns say
        assert first.schema == arrow_schema(STRAY_COLUMNS)


def _stored(value: object, column: Column) -> object:
    """What the row-form sources made of a stored value (stray text kept as it is; a
    time without an offset is in UTC)."""
    if column.type == "datetime" and isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if column.type == "boolean" and isinstance(value, int):
        return value == 1
    return value


def test_postgresql_arrow_reads_typed_batches_in_sessions_like_the_pools(
    postgres_datastore: str,
) -> None:
    columns = (
        Column("id", "integer"),
        Column("sent_at", "datetime"),
        Column("zone", "text"),
        Column("read_only", "text"),
    )
    settings = "current_setting('TimeZone'), current_setting('transaction_read_only')"
    select = f"SELECT id, sent_at, {settings} FROM messages WHERE id > %(id)s ORDER BY id"
    with PostgresStore(postgres_datastore, pool_size=1) as store:
        with store.connect() as conn:
            expected = conn.execute(select, {"id": 2}).fetchall()
            batches = list(store.arrow(conn, select, {"id": 2}, 3, columns))
        assert {batch.schema for batch in batches} == {arrow_schema(columns)}
        assert [len(batch) for batch in batches[:-1]] == [3] * (len(batches) - 1)
        assert [row for batch in batches for row in to_rows(batch)] == expected
        assert {row[2:] for row in expected} == {("UTC", "on")}


def test_postgresql_arrow_cut_short_gives_no_connection_back_and_reads_again(
    postgres_datastore: str,
) -> None:
    columns = (Column("id", "integer"),)
    with PostgresStore(postgres_datastore, pool_size=1) as store:
        with store.connect() as conn:
            batches = store.arrow(conn, "SELECT id FROM messages ORDER BY id", {}, 1, columns)
            assert len(next(batches)) == 1
            batches.close()  # an export stopped early
            again = store.arrow(conn, "SELECT count(*) FROM messages", {}, 10, columns)
            assert to_rows(next(again)) == conn.execute("SELECT count(*) FROM messages").fetchall()
        with pytest.raises(ExportFailed, match="read-only"), store.connect() as conn:
            list(store.arrow(conn, "DELETE FROM messages RETURNING id", {}, 10, columns))


def test_postgresql_arrow_replaces_an_idle_connection_the_server_closed(
    postgres_datastore: str,
) -> None:
    columns = (Column("n", "integer"),)
    with PostgresStore(postgres_datastore, pool_size=1) as store, store.connect() as conn:
        [batch] = store.arrow(conn, "SELECT pg_backend_pid()", {}, 10, columns)
        [(pid,)] = to_rows(batch)
        # The server ends the idle ADBC session (a restart, an idle timeout).
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        time.sleep(0.2)
        [batch] = store.arrow(conn, "SELECT 2", {}, 10, columns)
        assert to_rows(batch) == [(2,)]


@pytest.mark.parametrize("size", [1, 2, 3, 100])
def test_sqlite_arrow_types_a_column_null_in_its_first_rows_by_its_later_values(
    tmp_path: Path, size: int
) -> None:
    path = tmp_path / "data.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, name TEXT, at TEXT)")
        conn.executemany(
            "INSERT INTO t (name, at) VALUES (?, ?)",
            [(None, None)] * 4 + [("ann", "2024-05-01T08:00:00+00:00"), (None, None), ("bo", 7)],
        )
        conn.commit()
    store = SqliteStore(path)
    columns = (Column("name", "text"), Column("at", "datetime"))
    with store.connect() as conn:
        got = list(store.arrow(conn, "SELECT name, at FROM t ORDER BY i", {}, size, columns))
    assert [row for batch in got for row in to_rows(batch)] == [(None, None)] * 4 + [
        ("ann", datetime(2024, 5, 1, 8, tzinfo=UTC)),
        (None, None),
        ("bo", "7"),  # a TEXT column keeps 7 as text: stray text in a time column
    ]


def test_an_arrow_read_waits_for_a_writer_of_another_process_as_sqlite3_does(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
    script = (
        "import sqlite3, sys, time; w = sqlite3.connect(sys.argv[1], isolation_level=None);"
        "w.execute('BEGIN EXCLUSIVE'); print('held', flush=True); time.sleep(1); "
        "w.execute('COMMIT')"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"held\n"
        store = SqliteStore(path)
        with store.connect() as conn:
            batches = store.arrow(conn, "SELECT x FROM t", {}, 10, [Column("x", "integer")])
            assert [batch.column(0).to_pylist() for batch in batches] == [[1]]
    finally:
        writer.wait(timeout=10)
