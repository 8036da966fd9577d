"""What the built-in sources share: store errors that name the file, exact text
matching, the stored time form at the ends of the datetime range.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
import sqlite_utils

from exportd import DataStore, ExportFailed, InvalidRequest, NotFound, ReadContext, Source
from exportd.data.schema import create_schema
from exportd.kernel.batches import to_rows
from exportd.kernel.datastores import PostgresStore, SqliteStore
from exportd.kernel.validation import convert
from exportd.plugins.sources.common import check_text, db_time
from exportd.plugins.sources.qna import QnaSource
from exportd.plugins.sources.rooms import RoomsSource
from exportd.plugins.sources.workflows import WorkflowsSource
from tests.postgres import DIALECTS, scratch_database
from tests.unit.datastore import (
    ODD,
    ODD_TABLES,
    ROOM,
    SMALL_CHANNEL,
    TABLES,
    WEB_WORKFLOW,
    WINDOW,
    build_odd_datastore,
    load_postgres,
)

PARAMS: dict[str, dict[str, Any]] = {
    "rooms": {"room_id": ROOM, "type": "logs"},
    "workflows": {"workflow_id": WEB_WORKFLOW, "step_index": 1, "filters": []},
    "qna": {"channel_id": SMALL_CHANNEL},
}
SOURCES = [RoomsSource(), WorkflowsSource(), QnaSource()]
STEPS = ["validate", "estimate", "read"]


def run(source: Source[Any], step: str, values: dict[str, Any], data: Path | DataStore) -> Any:
    """One step of a source, as the pipeline calls it, on ``data`` (a path: a SQLite file)."""
    params = convert(values, source.Params, "params")
    store = data if isinstance(data, DataStore) else SqliteStore(data)
    ctx = ReadContext(window=WINDOW, data=store, batch_size=2)
    if step == "read":
        return [row for batch in map(to_rows, source.read(params, ctx)) for row in batch]
    return getattr(source, step)(params, ctx)


@pytest.fixture(scope="module", params=DIALECTS)
def odd_datastore(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DataStore]:
    """The odd rows of :func:`build_odd_datastore` in each data store."""
    if request.param == "sqlite":
        yield SqliteStore(build_odd_datastore(tmp_path_factory.mktemp("odd") / "data.db"))
        return
    with scratch_database() as url:
        store = PostgresStore(load_postgres(url, TABLES, ODD_TABLES))
        yield store
        store.close()


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.name)
@pytest.mark.parametrize(
    ("content", "error"),
    [(b"SQLite format 2\n" * 64, "file is not a database"), (b"", "no such table")],
    ids=["not-a-database", "empty-file"],
)
def test_a_file_that_is_no_data_store_fails_naming_it(
    tmp_path: Path, source: Source[Any], step: str, content: bytes, error: str
) -> None:
    path = tmp_path / "data.db"
    path.write_bytes(content)
    with pytest.raises(ExportFailed, match=error) as caught:
        run(source, step, PARAMS[source.name], path)
    assert str(path) in caught.value.message


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.name)
def test_a_data_store_sqlite_cannot_open_fails_naming_it(
    tmp_path: Path, datastore: Path, source: Source[Any]
) -> None:
    # SQLite's unix VFS refuses to open a path longer than 512 bytes.
    folder = tmp_path.joinpath(*["x" * 200] * 3)
    folder.mkdir(parents=True)
    path = Path(shutil.copyfile(datastore, folder / "data.db"))
    with pytest.raises(ExportFailed, match="unable to open database file") as caught:
        run(source, "validate", PARAMS[source.name], path)
    assert str(path) in caught.value.message


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.name)
def test_a_folder_in_place_of_the_data_store_fails_naming_it(
    tmp_path: Path, source: Source[Any]
) -> None:
    path = tmp_path / "data.db"
    path.mkdir()
    with pytest.raises(ExportFailed) as caught:
        run(source, "validate", PARAMS[source.name], path)
    assert str(path) in caught.value.message


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.name)
def test_an_empty_data_store_knows_nothing(tmp_path: Path, source: Source[Any]) -> None:
    db = sqlite_utils.Database(tmp_path / "data.db")
    create_schema(db)
    db.close()
    with pytest.raises(NotFound):
        run(source, "validate", PARAMS[source.name], tmp_path / "data.db")


def test_odd_text_is_matched_exactly(odd_datastore: DataStore) -> None:
    logs = run(RoomsSource(), "read", {"room_id": ODD, "type": "logs"}, odd_datastore)
    assert [(row[0], row[3], row[6], row[7]) for row in logs] == [(ODD, 100, ODD, ODD)]
    stats = run(RoomsSource(), "read", {"room_id": ODD, "type": "stats"}, odd_datastore)
    assert [(row[1], row[5]) for row in stats] == [(1, 1), (0, 0), (0, 0)]
    odd_filter = {"property": "visitor_id", "values": ["v%", "v_", ODD]}
    events = run(
        WorkflowsSource(), "read", PARAMS["workflows"] | {"filters": [odd_filter]}, odd_datastore
    )
    assert [row[0] for row in events] == [100]
    questions = run(QnaSource(), "read", PARAMS["qna"] | {"room_ids": [ODD]}, odd_datastore)
    assert [(row[0], row[1], row[4]) for row in questions] == [(100, ODD, ODD)]


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.name)
def test_odd_text_validates(odd_datastore: DataStore, source: Source[Any]) -> None:
    odd = {
        "rooms": {"room_id": ODD},
        "workflows": {"filters": [{"property": "action", "values": [ODD]}]},
        "qna": {"room_ids": [ODD]},
    }
    run(source, "validate", PARAMS[source.name] | odd[source.name], odd_datastore)


class Nested(msgspec.Struct):
    name: str
    items: list[dict[str, str]]


def test_check_text_names_every_text_with_a_nul_or_a_lone_surrogate() -> None:
    check_text(Nested(name=ODD, items=[{"a": "\t\r\n\u200f"}]))
    with pytest.raises(InvalidRequest) as caught:
        check_text(Nested(name="a\x00b", items=[{"a": "ok", "b": "\udcff"}]))
    assert [f.name for f in caught.value.fields] == ["params.name", "params.items[0].b"]


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime.min.replace(tzinfo=UTC), "0001-01-01T00:00:00+00:00"),
        (datetime.max.replace(tzinfo=UTC), "9999-12-31T23:59:59.999999+00:00"),
        (datetime(1, 1, 1, 2, tzinfo=ZoneInfo("Europe/Helsinki")), "0001-01-01T00:20:11+00:00"),
    ],
)
def test_db_time_reaches_the_ends_of_the_datetime_range(moment: datetime, text: str) -> None:
    assert db_time(SqliteStore(Path("data.db")), moment) == text
