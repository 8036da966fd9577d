"""The rooms source against the hand-written data store: exact logs and stats rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exportd import ExportFailed, InvalidRequest, NotFound, ReadContext, Window
from exportd.messages import Interval
from exportd.plugins.sources import rooms
from exportd.plugins.sources.rooms import RoomsParams, RoomsSource, local_days
from exportd.validation import convert
from exportd.window import parse_window
from tests.unit.datastore import EMPTY_ROOM, ROOM, WINDOW

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
    datastore: Path, window: Window = WINDOW, *, limit: int | None = None, **values: Any
) -> list[list[tuple[Any, ...]]]:
    chosen = params(**values)
    SOURCE.validate(chosen, ReadContext(window=window, data_path=datastore))
    ctx = ReadContext(window=window, data_path=datastore, batch_size=4, limit=limit)
    return [list(batch) for batch in SOURCE.read(chosen, ctx)]


def rows(datastore: Path, window: Window = WINDOW, **values: Any) -> list[tuple[Any, ...]]:
    return [row for batch in batches(datastore, window, **values) for row in batch]


def messages(datastore: Path, **values: Any) -> list[tuple[str, int]]:
    """(conversation id, message id) of each logs row."""
    return [(row[0], row[3]) for row in rows(datastore, type="logs", **values)]


def estimate(datastore: Path, window: Window = WINDOW, **values: Any) -> int | None:
    return SOURCE.estimate(params(**values), ReadContext(window=window, data_path=datastore))


def test_logs_are_the_window_messages_by_conversation_start_then_time(datastore: Path) -> None:
    # conv-0 started before the window: only its message at the window start is
    # in; conv-5's message at the window end is out; conv-1a and conv-1b start at
    # the same second and are ordered by id; OTHER_ROOM's messages never appear.
    assert messages(datastore) == ALL_MESSAGES
    assert estimate(datastore, type="logs") == len(ALL_MESSAGES)


def test_logs_rows_carry_typed_values_and_come_in_batches(datastore: Path) -> None:
    got = batches(datastore, type="logs", is_real_conversation=False)
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
    assert [len(batch) for batch in batches(datastore, type="logs")] == [4, 4, 4, 4, 3]
    hostile = rows(datastore, type="logs")[3]
    assert hostile[2] is True
    assert hostile[7] == 'Order "A-1",\nlost 📦'


def test_logs_of_real_conversations_only(datastore: Path) -> None:
    fake = {"conv-1a", "conv-2"}
    assert messages(datastore, is_real_conversation=True) == [
        pair for pair in ALL_MESSAGES if pair[0] not in fake
    ]
    assert estimate(datastore, type="logs", is_real_conversation=True) == len(ALL_MESSAGES) - 2


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
    datastore: Path, minimum: int, conversations: set[str] | None
) -> None:
    # conv-0 has 2 actual messages although only one is in the window; conv-1b
    # has 4 (bot messages do not count); conv-1a has only a bot message.
    expected = [pair for pair in ALL_MESSAGES if conversations is None or pair[0] in conversations]
    assert messages(datastore, min_message_count=minimum) == expected
    assert estimate(datastore, type="logs", min_message_count=minimum) == len(expected)


def test_conversation_filters_combine(datastore: Path) -> None:
    assert messages(datastore, is_real_conversation=False, min_message_count=1) == [("conv-2", 13)]


def test_logs_respect_the_limit(datastore: Path) -> None:
    got = rows(datastore, type="logs", limit=3)
    assert [(row[0], row[3]) for row in got] == ALL_MESSAGES[:3]


def test_a_room_without_conversations_has_no_logs_and_zero_days(datastore: Path) -> None:
    assert rows(datastore, type="logs", room_id=EMPTY_ROOM) == []
    assert estimate(datastore, type="logs", room_id=EMPTY_ROOM) == 0
    stats = rows(datastore, type="stats", room_id=EMPTY_ROOM)
    assert [row[0] for row in stats] == [date(2024, 10, 26), date(2024, 10, 27), date(2024, 10, 28)]
    assert all(row[1:] == (0,) * 8 + (None,) * 3 for row in stats)


def test_stats_per_utc_day(datastore: Path) -> None:
    assert rows(datastore, type="stats") == [
        (date(2024, 10, 26), 5, 3, 0, 5, 12, 4, 6, 2, 113.3, 30.0, 252.0),
        (date(2024, 10, 27), 2, 2, 1, 2, 7, 4, 2, 2, 60.0, 60.0, 1050.0),
        (date(2024, 10, 28), 0, 0, 0, 0, 0, 0, 0, 0, None, None, None),
    ]
    assert estimate(datastore, type="stats") == 3


def test_stats_per_local_day_across_the_end_of_summer_time(datastore: Path) -> None:
    # In Helsinki, conv-0 (23:58 UTC the day before) counts on the 26th with its
    # 110 s response (median of 10, 30, 110, 300 is 70); the 27th lasts 25 hours
    # and gets conv-2; the 28th has messages but no new chat.
    assert rows(datastore, HELSINKI, type="stats") == [
        (date(2024, 10, 26), 5, 4, 0, 5, 12, 5, 5, 2, 112.5, 70.0, 228.0),
        (date(2024, 10, 27), 3, 2, 1, 3, 5, 3, 2, 2, 60.0, 60.0, 800.0),
        (date(2024, 10, 28), 0, 0, 0, 0, 3, 1, 1, 1, None, None, None),
    ]


def test_stats_days_are_cut_to_the_window(datastore: Path) -> None:
    window = Window(
        start=datetime(2024, 10, 26, 12, tzinfo=UTC),
        end=datetime(2024, 10, 27, 12, tzinfo=UTC),
        timezone=ZoneInfo("UTC"),
    )
    got = rows(datastore, window, type="stats")
    assert [(row[0], row[1], row[5]) for row in got] == [
        (date(2024, 10, 26), 3, 5),
        (date(2024, 10, 27), 1, 2),
    ]


def test_local_days_follow_local_midnight() -> None:
    days = local_days(HELSINKI)
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
    days = local_days(window)
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
    datastore: Path, values: dict[str, Any], fields: list[str]
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        SOURCE.validate(
            params(type="stats", **values), ReadContext(window=WINDOW, data_path=datastore)
        )
    assert [f.name for f in caught.value.fields] == fields


def test_an_unknown_room_is_not_found(datastore: Path) -> None:
    with pytest.raises(NotFound) as caught:
        SOURCE.validate(
            params(type="logs", room_id="nope"), ReadContext(window=WINDOW, data_path=datastore)
        )
    assert [f.name for f in caught.value.fields] == ["params.room_id"]


def test_a_missing_data_store_fails_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "data.db"
    with pytest.raises(ExportFailed, match="demo-data") as caught:
        SOURCE.validate(params(type="logs"), ReadContext(window=WINDOW, data_path=missing))
    assert str(missing) in caught.value.message


def test_columns_carry_roles_for_transcripts() -> None:
    columns = SOURCE.columns(params(type="logs"))
    assert {column.role: column.name for column in columns if column.role} == {
        "conversation": "conversation_id",
        "time": "sent_at",
        "author": "sender_name",
        "text": "body",
    }
    stats = SOURCE.columns(params(type="stats"))
    assert (stats[0].name, stats[0].type) == ("date", "date")
    assert all(column.role is None for column in stats)


def test_the_plugin_registers_the_source() -> None:
    assert [source.name for source in rooms.exportd_sources()] == ["rooms"]
