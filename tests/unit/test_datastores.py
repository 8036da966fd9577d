"""The data stores behind ``data.url``: the setting, one store per process, the errors
that name ``data.url``, the deprecated SQLite-only ways, a one-dialect source."""

from __future__ import annotations

import dataclasses
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from exportd import Batch, Column, ExportFailed, NoParams, ReadContext, Source
from exportd.cli import main
from exportd.config import Settings, load_settings
from exportd.config.settings import DataSettings
from exportd.errors import ConfigError
from exportd.kernel.datastores import PostgresStore, SqliteStore, data_store, open_store
from exportd.kernel.pipeline import run_export
from exportd.kernel.plan import plan_export
from exportd.messages import ExportRequest, Interval
from exportd.plugins.manager import Plugins
from exportd.plugins.sources.rooms import RoomsParams, RoomsSource
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
    assert "data.url" in caught.value.message


def test_an_unreachable_server_fails_naming_data_url_without_the_password() -> None:
    store = PostgresStore(UNREACHABLE)
    with pytest.raises(ExportFailed) as caught, store.connect():
        pass
    message = caught.value.message
    assert "data.url postgresql://postgres:***@127.0.0.1:1/exportd" in message
    assert "secret" not in message


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
    with pytest.raises(ExportFailed, match=r"data\.url"):
        plan_export(request, plugins, store)
    plan = plan_export(request, plugins, SqliteStore(datastore))
    with pytest.raises(ExportFailed, match=r"data\.url"):
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
