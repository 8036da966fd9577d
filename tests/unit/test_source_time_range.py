"""``Source.time_range``: where a built-in source's data begins and ends, whatever the
window, as the hand-written data store holds it; ``None`` where there is none."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from exportd import DataStore, ReadContext, Source
from exportd.kernel.validation import convert
from exportd.plugins.sources.qna import QnaSource
from exportd.plugins.sources.rooms import RoomsSource
from exportd.plugins.sources.workflows import WorkflowsSource
from tests.unit.datastore import (
    BIG_CHANNEL,
    EMPTY_ROOM,
    ROOM,
    SMALL_CHANNEL,
    WEB_WORKFLOW,
    WINDOW,
)

CASES = [
    (RoomsSource(), {"room_id": ROOM, "type": "logs"},
     "select min(sent_at), max(sent_at) from messages where room_id = ?", [ROOM]),
    (WorkflowsSource(), {"workflow_id": WEB_WORKFLOW, "step_index": 1, "filters": []},
     "select min(occurred_at), max(occurred_at) from workflow_events"
     " where workflow_id = ? and step_index = 1", [WEB_WORKFLOW]),
    (QnaSource(), {"channel_id": SMALL_CHANNEL},
     "select min(asked_at), max(asked_at) from qna_questions where channel_id = ?",
     [SMALL_CHANNEL]),
    (QnaSource(), {"channel_id": BIG_CHANNEL, "room_ids": ["big-01", "big-60"]},
     "select min(asked_at), max(asked_at) from qna_questions where room_id in (?, ?)",
     ["big-01", "big-60"]),
]  # fmt: skip


def time_range(
    source: Source[Any], values: dict[str, Any], store: DataStore
) -> tuple[datetime, datetime] | None:
    params = convert(values, source.Params, "params")
    return source.time_range(params, ReadContext(window=WINDOW, data=store))


@pytest.mark.parametrize(("source", "values", "sql", "args"), CASES)
def test_the_range_is_the_first_and_the_last_stored_time(
    *,
    datastore: Path,
    store: DataStore,
    source: Source[Any],
    values: dict[str, Any],
    sql: str,
    args: list[str],
) -> None:
    """In either store, the first and the last time of ``data.db``'s rows."""
    with closing(sqlite3.connect(datastore)) as db:
        first, last = db.execute(sql, args).fetchone()
    assert first < last
    assert time_range(source, values, store) == (
        datetime.fromisoformat(first),
        datetime.fromisoformat(last),
    )


def test_a_room_without_messages_has_no_range(store: DataStore) -> None:
    assert time_range(RoomsSource(), {"room_id": EMPTY_ROOM, "type": "logs"}, store) is None
