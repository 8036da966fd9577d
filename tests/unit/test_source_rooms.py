"""The rooms source against the hand-written data store: exact logs and stats rows."""

from __future__ import annotations

import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exportd import DataStore, ExportFailed, InvalidRequest, NotFound, ReadContext, Window
from exportd.kernel.batches import to_rows
from exportd.kernel.datastores import SqliteStore
from exportd.kernel.validation import convert
from exportd.kernel.window import parse_window
from exportd.messages import Interval
from exportd.plugins.sources import rooms
from exportd.plugins.sources.rooms import RoomsParams, RoomsSource, day_count, local_days
from tests.unit.datastore import EMPTY_ROOM, OTHER_ROOM, ROOM, WINDOW

SOURCE = RoomsSource()
HELSINKI = parse_window(Interval("2024-10-26", "2024-10-29"), "Europe/Helsinki")
ALL_MESSAGES = [
    ("conv-0", 2),
    ("conv-1a", 3),
    *[("conv-1b", id_) for id_ in (4, 5, 6, 7, 8)],
    ("conv-6", 9),
    ("conv-6", 10),
    ("conv-7", 11),
    ("conv-7", 12),
    ("conv-2", 13),
    ("conv-3", 14),
    ("conv-3", 15),
    *[("conv-4", id_) for id_ in (16, 17, 18, 19, 20)],
]


def params(**values: Any) -> RoomsParams:
    return convert({"room_id": ROOM, **values}, RoomsParams, "params")


def batches(
    store: DataStore, window: Window = WINDOW, *, limit: int | None = None, **values: Any
) -> list[list[tuple[Any, ...]]]:
    chosen = params(**values)
    SOURCE.validate(chosen, ReadContext(window=window, data=store))
    ctx = ReadContext(window=window, data=store, batch_size=4, limit=limit)
    return [list(batch) for batch in map(to_rows, SOURCE.read(chosen, ctx))]


def rows(store: DataStore, window: Window = WINDOW, **values: Any) -> list[tuple[Any, ...]]:
    return [row for batch in batches(store, window, **values) for row in batch]


def messages(store: DataStore, **values: Any) -> list[tuple[str, int]]:
    """(conversation id, message id) of each logs row."""
    return [(row[0], row[3]) for row in rows(store, type="logs", **values)]


def estimate(store: DataStore, window: Window = WINDOW, **values: Any) -> int | None:
    return SOURCE.estimate(params(**values), ReadContext(window=window, data=store))


def test_logs_are_the_window_messages_by_conversation_start_then_time(store: DataStore) -> None:
    # conv-0 started before the window: only its message at the window start is
    # in; conv-5's message at the window end is out; conv-1a and conv-1b start at
    # the same second and are ordered by id; OTHER_ROOM's messages never appear.
    assert messages(store) == ALL_MESSAGES
    assert estimate(store, type="logs") == len(ALL_MESSAGES)


def test_logs_rows_carry_typed_values_and_come_in_batches(store: DataStore) -> None:
    got = batches(store, type="logs", is_real_conversation=False)
    assert got == [
        [
            (
                "conv-1a",
                datetime(2024, 10, 26, 8, 0, tzinfo=UTC),
                False,
                3,
                datetime(2024, 10, 26, 8, 0, 20, tzinfo=UTC),
                "bot",
                "Chatbot",
                "Free shipping over 50 €",
            ),
            (
                "conv-2",
                datetime(2024, 10, 26, 21, 30, tzinfo=UTC),
                False,
                13,
                datetime(2024, 10, 26, 21, 30, tzinfo=UTC),
                "operator",
                "Olivia",
                "Can I help?",
            ),
        ]
    ]
    assert [len(batch) for batch in batches(store, type="logs")] == [4, 4, 4, 4, 3]
    hostile = rows(store, type="logs")[3]
    assert hostile[2] is True
    assert hostile[7] == 'Order "A-1",\nlost 📦'


def test_logs_of_real_conversations_only(store: DataStore) -> None:
    fake = {"conv-1a", "conv-2"}
    assert messages(store, is_real_conversation=True) == [
        pair for pair in ALL_MESSAGES if pair[0] not in fake
    ]
    assert estimate(store, type="logs", is_real_conversation=True) == len(ALL_MESSAGES) - 2


@pytest.mark.parametrize(
    ("minimum", "conversations"),
    [
        (0, None),
        (1, {"conv-0", "conv-1b", "conv-6", "conv-7", "conv-2", "conv-3", "conv-4"}),
        (3, {"conv-1b", "conv-4"}),
        (4, {"conv-1b", "conv-4"}),
        (5, set()),
    ],
)
def test_min_message_count_counts_visitor_and_operator_messages(
    store: DataStore, minimum: int, conversations: set[str] | None
) -> None:
    # conv-0 has 2 actual messages although only one is in the window; conv-1b
    # has 4 (bot messages do not count); conv-1a has only a bot message.
    expected = [pair for pair in ALL_MESSAGES if conversations is None or pair[0] in conversations]
    assert messages(store, min_message_count=minimum) == expected
    assert estimate(store, type="logs", min_message_count=minimum) == len(expected)


def test_conversation_filters_combine(store: DataStore) -> None:
    assert messages(store, is_real_conversation=False, min_message_count=1) == [("conv-2", 13)]


def test_logs_respect_the_limit(store: DataStore) -> None:
    got = rows(store, type="logs", limit=3)
    assert [(row[0], row[3]) for row in got] == ALL_MESSAGES[:3]


def test_a_room_without_conversations_has_no_logs_and_zero_days(store: DataStore) -> None:
    assert rows(store, type="logs", room_id=EMPTY_ROOM) == []
    assert estimate(store, type="logs", room_id=EMPTY_ROOM) == 0
    stats = rows(store, type="stats", room_id=EMPTY_ROOM)
    assert [row[0] for row in stats] == [date(2024, 10, 26), date(2024, 10, 27), date(2024, 10, 28)]
    assert all(row[1:] == (0,) * 8 + (None,) * 3 for row in stats)


def test_stats_per_utc_day(store: DataStore) -> None:
    assert rows(store, type="stats") == [
        (date(2024, 10, 26), 5, 3, 0, 5, 12, 4, 6, 2, 113.3, 30.0, 252.0),
        (date(2024, 10, 27), 2, 2, 1, 2, 7, 4, 2, 2, 60.0, 60.0, 1050.0),
        (date(2024, 10, 28), 0, 0, 0, 0, 0, 0, 0, 0, None, None, None),
    ]
    assert estimate(store, type="stats") == 3


def test_stats_round_each_sub_millisecond_time_to_the_millisecond(store: DataStore) -> None:
    # conv-10 runs from .000600 to .050400: 0.049 s between the times rounded, 0.0 s
    # rounded to 0.1 s, its response time too (the raw 0.0498 s would give 0.1).
    assert rows(store, type="stats", room_id=OTHER_ROOM)[-1] == (
        (date(2024, 10, 28), 1, 1, 0, 1, 2, 1, 1, 1, 0.0, 0.0, 0.0)
    )


def test_stats_per_local_day_across_the_end_of_summer_time(store: DataStore) -> None:
    # In Helsinki, conv-0 (23:58 UTC the day before) counts on the 26th with its
    # 110 s response (median of 10, 30, 110, 300 is 70); the 27th lasts 25 hours
    # and gets conv-2; the 28th has messages but no new chat.
    assert rows(store, HELSINKI, type="stats") == [
        (date(2024, 10, 26), 5, 4, 0, 5, 12, 5, 5, 2, 112.5, 70.0, 228.0),
        (date(2024, 10, 27), 3, 2, 1, 3, 5, 3, 2, 2, 60.0, 60.0, 800.0),
        (date(2024, 10, 28), 0, 0, 0, 0, 3, 1, 1, 1, None, None, None),
    ]


def test_stats_days_are_cut_to_the_window(store: DataStore) -> None:
    window = Window(
        start=datetime(2024, 10, 26, 12, tzinfo=UTC),
        end=datetime(2024, 10, 27, 12, tzinfo=UTC),
        timezone=ZoneInfo("UTC"),
    )
    got = rows(store, window, type="stats")
    assert [(row[0], row[1], row[5]) for row in got] == [
        (date(2024, 10, 26), 3, 5),
        (date(2024, 10, 27), 1, 2),
    ]


def test_local_days_follow_local_midnight() -> None:
    days = list(local_days(HELSINKI))
    assert [(day, end - start) for day, start, end in days] == [
        (date(2024, 10, 26), timedelta(hours=24)),
        (date(2024, 10, 27), timedelta(hours=25)),
        (date(2024, 10, 28), timedelta(hours=24)),
    ]
    assert days[0][1] == datetime(2024, 10, 25, 21, tzinfo=UTC)


ZONES = ["UTC", "Europe/Helsinki", "America/Santiago", "Australia/Lord_Howe", "Asia/Kolkata"]


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    start=st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1)),
    length=st.timedeltas(timedelta(seconds=1), timedelta(days=40)),
)
def test_local_days_tile_the_window(zone: str, start: datetime, length: timedelta) -> None:
    window = Window(start.replace(tzinfo=UTC), start.replace(tzinfo=UTC) + length, ZoneInfo(zone))
    days = list(local_days(window))
    assert len(days) == day_count(window)
    assert days[0][1] == window.start
    assert days[-1][2] == window.end
    for (day, _, end), (following, start_, _) in pairwise(days):
        assert following == day + timedelta(days=1)
        assert end == start_
        assert start_.astimezone(window.timezone).date() == following
    assert all(start < end for _, start, end in days)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"type": "logs", "room_id": ""}, "params.room_id"),
        ({}, "params.type"),
        ({"type": "both"}, "params.type"),
        ({"type": "logs", "min_message_count": -1}, "params.min_message_count"),
        ({"type": "logs", "is_real_conversation": "yes"}, "params.is_real_conversation"),
        ({"type": "logs", "room": ROOM}, "params.room"),
    ],
)
def test_bad_params_name_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        params(**values)
    assert [f.name for f in caught.value.fields] == [field]


@pytest.mark.parametrize(
    ("values", "fields"),
    [
        ({"is_real_conversation": False}, ["params.is_real_conversation"]),
        ({"min_message_count": 2}, ["params.min_message_count"]),
        (
            {"is_real_conversation": True, "min_message_count": 1},
            ["params.is_real_conversation", "params.min_message_count"],
        ),
    ],
)
def test_logs_filters_with_stats_are_rejected(
    store: DataStore, values: dict[str, Any], fields: list[str]
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        SOURCE.validate(params(type="stats", **values), ReadContext(window=WINDOW, data=store))
    assert [f.name for f in caught.value.fields] == fields


def test_an_unknown_room_is_not_found(store: DataStore) -> None:
    with pytest.raises(NotFound) as caught:
        SOURCE.validate(params(type="logs", room_id="nope"), ReadContext(window=WINDOW, data=store))
    assert [f.name for f in caught.value.fields] == ["params.room_id"]


def test_a_missing_data_store_fails_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "data.db"
    with pytest.raises(ExportFailed, match="demo-data") as caught:
        SOURCE.validate(params(type="logs"), ReadContext(window=WINDOW, data=SqliteStore(missing)))
    assert str(missing) in caught.value.message


def test_columns_carry_roles_for_transcripts(store: DataStore) -> None:
    ctx = ReadContext(window=WINDOW, data=store)
    columns = SOURCE.columns(params(type="logs"), ctx)
    assert {column.role: column.name for column in columns if column.role} == {
        "conversation": "conversation_id",
        "time": "sent_at",
        "author": "sender_name",
        "text": "body",
    }
    stats = SOURCE.columns(params(type="stats"), ctx)
    assert (stats[0].name, stats[0].type) == ("date", "date")
    assert all(column.role is None for column in stats)


def test_the_plugin_registers_the_source() -> None:
    assert [source.name for source in rooms.exportd_sources()] == ["rooms"]


ZERO_DAY = (0,) * 8 + (None,) * 3


def utc_window(start: datetime, end: datetime, zone: str = "UTC") -> Window:
    """The window from ``start`` to ``end`` (naive UTC), cutting days in ``zone``."""
    return Window(start.replace(tzinfo=UTC), end.replace(tzinfo=UTC), ZoneInfo(zone))


EVERY_DAY = utc_window(datetime.min, datetime.max)


def test_a_stats_window_of_every_day_with_a_small_limit_is_quick_and_small(
    store: DataStore,
) -> None:
    chosen = params(type="stats")
    ctx = ReadContext(window=EVERY_DAY, data=store, limit=3)
    tracemalloc.start()
    began = time.perf_counter()
    try:
        total = SOURCE.estimate(chosen, ctx)
        got = [row for batch in map(to_rows, SOURCE.read(chosen, ctx)) for row in batch]
        seconds = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == (date.max - date.min).days + 1
    assert got == [(date(1, 1, day), *ZERO_DAY) for day in (1, 2, 3)]
    assert seconds < 1
    assert peak < 1_000_000


def test_a_long_stats_window_is_read_one_batch_of_days_at_a_time(store: DataStore) -> None:
    window = utc_window(datetime(1960, 1, 1), datetime(1990, 1, 1), "Europe/Helsinki")
    ctx = ReadContext(window=window, data=store, batch_size=200)
    sizes = []
    tracemalloc.start()
    try:
        for batch in map(to_rows, SOURCE.read(params(type="stats"), ctx)):
            sizes.append(len(batch))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(sizes) == day_count(window) > 10_000
    assert set(sizes[:-1]) == {200}
    # All the window's days and their bounds at once would take megabytes.
    assert peak < 1_000_000


@settings(max_examples=50, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    batch_size=st.integers(1, 7),
    limit=st.none() | st.integers(1, 20),
)
def test_stats_read_in_batches_of_days_equal_stats_read_in_one(
    store: DataStore, zone: str, batch_size: int, limit: int | None
) -> None:
    # Two weeks around the end of summer time in Europe, with all the room's messages.
    window = parse_window(Interval("2024-10-20", "2024-11-03"), zone)
    chosen = params(type="stats")
    at_once = ReadContext(window=window, data=store, batch_size=1000)
    in_batches = ReadContext(window=window, data=store, batch_size=batch_size, limit=limit)
    every_day = [row for batch in map(to_rows, SOURCE.read(chosen, at_once)) for row in batch]
    assert sum(row[5] for row in every_day) == 21
    got = [list(batch) for batch in map(to_rows, SOURCE.read(chosen, in_batches))]
    assert [row for batch in got for row in batch] == every_day[:limit]
    assert all(len(batch) == batch_size for batch in got[:-1])


@pytest.mark.parametrize(
    ("window", "dates"),
    [
        (utc_window(datetime.min, datetime(1, 1, 2, 12)), [date(1, 1, 1), date(1, 1, 2)]),
        (utc_window(datetime(9999, 12, 30, 12), datetime.max), [date(9999, 12, 30), date.max]),
        (
            utc_window(datetime(9999, 12, 30, 12), datetime(9999, 12, 31, 21), "Europe/Helsinki"),
            [date(9999, 12, 30), date.max],
        ),
    ],
)
def test_stats_reach_the_first_and_the_last_day_of_the_calendar(
    store: DataStore, window: Window, dates: list[date]
) -> None:
    assert rows(store, window, type="stats") == [(day, *ZERO_DAY) for day in dates]
    assert estimate(store, window, type="stats") == len(dates)


@pytest.mark.parametrize(
    ("window", "field"),
    [
        (utc_window(datetime.min, datetime(1, 1, 3), "America/New_York"), "interval.start"),
        (utc_window(datetime(9999, 12, 30), datetime.max, "Asia/Tokyo"), "interval.end"),
    ],
)
def test_stats_days_beyond_the_calendar_are_a_field_error(
    store: DataStore, window: Window, field: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        SOURCE.validate(params(type="stats"), ReadContext(window=window, data=store))
    assert [f.name for f in caught.value.fields] == [field]
    # Logs have no days to cut, so the same window is fine for them.
    SOURCE.validate(params(type="logs"), ReadContext(window=window, data=store))


def test_logs_of_a_window_of_every_time_are_all_the_room_messages(store: DataStore) -> None:
    got = [(row[0], row[3]) for row in rows(store, EVERY_DAY, type="logs")]
    assert got == [("conv-0", 1), *ALL_MESSAGES, ("conv-5", 21)]
    assert estimate(store, EVERY_DAY, type="logs") == len(got)


@pytest.mark.parametrize("room_id", ["%", "_", "'", "' OR '1'='1", f"{ROOM}%", ROOM.upper()])
def test_room_ids_are_matched_exactly(store: DataStore, room_id: str) -> None:
    with pytest.raises(NotFound) as caught:
        SOURCE.validate(
            params(type="logs", room_id=room_id), ReadContext(window=WINDOW, data=store)
        )
    assert [f.name for f in caught.value.fields] == ["params.room_id"]


@pytest.mark.parametrize("room_id", [f"{ROOM}\x00", "\udcff"])
def test_room_ids_no_stored_text_can_match_are_a_field_error(
    store: DataStore, room_id: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        SOURCE.validate(
            params(type="logs", room_id=room_id), ReadContext(window=WINDOW, data=store)
        )
    assert [f.name for f in caught.value.fields] == ["params.room_id"]


def test_min_message_count_is_bounded_by_what_sqlite_holds(store: DataStore) -> None:
    with pytest.raises(InvalidRequest) as caught:
        params(type="logs", min_message_count=2**63)
    assert [f.name for f in caught.value.fields] == ["params.min_message_count"]
    assert messages(store, min_message_count=2**63 - 1) == []
    assert estimate(store, type="logs", min_message_count=2**63 - 1) == 0


def sliced(store: DataStore, count: int, **values: Any) -> list[list[tuple[Any, ...]]]:
    """The rows of each of ``count`` slices of a read."""
    chosen = params(**values)
    return [
        [
            row
            for batch in map(
                to_rows,
                SOURCE.read(
                    chosen,
                    ReadContext(
                        window=WINDOW, data=store, batch_size=4, slice=k, slice_count=count
                    ),
                ),
            )
            for row in batch
        ]
        for k in range(count)
    ]


@pytest.mark.parametrize("count", [2, 3, 7])
@pytest.mark.parametrize(
    "values", [{"type": "logs"}, {"type": "logs", "is_real_conversation": True}, {"type": "stats"}]
)
def test_the_slices_one_after_the_other_are_the_whole_read(
    store: DataStore, count: int, values: dict[str, Any]
) -> None:
    slices = sliced(store, count, **values)
    assert [row for part in slices for row in part] == rows(store, **values)
    assert sum(1 for part in slices if part) >= 2


def test_the_slices_of_a_window_without_messages_are_empty(store: DataStore) -> None:
    assert sliced(store, 3, type="logs", room_id=EMPTY_ROOM) == [[], [], []]


@pytest.mark.parametrize("window", [WINDOW, HELSINKI])
@pytest.mark.parametrize("room", [ROOM, OTHER_ROOM, EMPTY_ROOM])
def test_both_ways_of_bounding_the_logs_find_the_same_start_times(
    store: DataStore, window: Window, room: str
) -> None:
    sql = rooms.STATEMENTS[store.dialect]
    args = {"room": room, **rooms.window_args(store, window)}
    with store.connect() as conn:
        from_messages = tuple(conn.execute(sql.touched_range, args).fetchone())
        from_conversations = tuple(
            (conn.execute(sql.first_touched.format(order=order), args).fetchone() or [None])[0]
            for order in ("ASC", "DESC")
        )
    assert from_conversations == from_messages
