"""The qna source against the hand-written data store: questions, rooms and parts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from exportd import DataStore, InvalidRequest, NotFound, ReadContext, Window
from exportd.kernel.batches import to_rows
from exportd.kernel.validation import convert
from exportd.plugins.sources import qna
from exportd.plugins.sources.qna import QnaParams, QnaSource
from tests.unit.datastore import BIG_CHANNEL, BIG_ROOMS, SMALL_CHANNEL, WINDOW

SOURCE = QnaSource()
UTC_ZONE = ZoneInfo("UTC")


def params(**values: Any) -> QnaParams:
    return convert({"channel_id": SMALL_CHANNEL} | values, QnaParams, "params")


def context(store: DataStore, limit: int | None = None) -> ReadContext:
    return ReadContext(window=WINDOW, data=store, batch_size=2, limit=limit)


def questions(store: DataStore, chosen: QnaParams, limit: int | None = None) -> list[int]:
    """The ids of the questions read, in order; checks the estimate on the way."""
    SOURCE.validate(chosen, ReadContext(window=WINDOW, data=store))
    ctx = context(store, limit)
    ids = [row[0] for batch in map(to_rows, SOURCE.read(chosen, ctx)) for row in batch]
    if limit is None:
        assert SOURCE.estimate(chosen, ctx) == len(ids)
    return ids


def test_questions_come_room_by_room_in_the_order_asked(store: DataStore) -> None:
    ctx = context(store)
    got = [row for batch in map(to_rows, SOURCE.read(params(), ctx)) for row in batch]
    assert got == [
        (
            3,
            "small-a",
            "Main stage",
            datetime(2024, 10, 26, 9, 30, tzinfo=UTC),
            "Bob",
            "=1+1",
            2,
            "rejected",
            None,
            None,
            None,
        ),
        (
            1,
            "small-a",
            "Main stage",
            datetime(2024, 10, 26, 10, tzinfo=UTC),
            "Alice",
            "When?",
            5,
            "answered",
            datetime(2024, 10, 26, 10, 5, tzinfo=UTC),
            "Olivia",
            "Next week.",
        ),
        (
            2,
            "small-b",
            "Side stage",
            datetime(2024, 10, 26, 9, tzinfo=UTC),
            None,
            'Is "beta" <safe>?\nReally?',
            0,
            "pending",
            None,
            None,
            None,
        ),
    ]
    assert SOURCE.estimate(params(), ctx) == 3  # question 4, at the window end, is out


def test_room_ids_restrict_the_rooms(store: DataStore) -> None:
    assert questions(store, params(room_ids=["small-b"])) == [2]
    assert questions(store, params(room_ids=["small-b", "small-a"])) == [3, 1, 2]


def test_the_limit_caps_the_rows(store: DataStore) -> None:
    assert questions(store, params(), limit=2) == [3, 1]


def test_a_small_channel_is_one_part(store: DataStore) -> None:
    chosen = params()
    assert SOURCE.parts(chosen, context(store)) == [chosen]


def test_sixty_rooms_make_three_parts_of_at_most_25(store: DataStore) -> None:
    parts = SOURCE.parts(params(channel_id=BIG_CHANNEL), context(store))
    assert [part.room_ids for part in parts] == [BIG_ROOMS[:25], BIG_ROOMS[25:50], BIG_ROOMS[50:]]
    assert all(part.channel_id == BIG_CHANNEL for part in parts)
    # Questions in big-01, big-26 and big-60: one in each part, none lost or repeated.
    assert [questions(store, part) for part in parts] == [[5], [6], [7]]
    assert questions(store, params(channel_id=BIG_CHANNEL)) == [5, 6, 7]


def test_rooms_per_part_is_configurable(store: DataStore) -> None:
    parts = SOURCE.parts(params(channel_id=BIG_CHANNEL, rooms_per_part=30), context(store))
    assert [part.room_ids for part in parts] == [BIG_ROOMS[:30], BIG_ROOMS[30:]]
    chosen = params(channel_id=BIG_CHANNEL, rooms_per_part=1, room_ids=["big-02", "big-01"])
    assert [part.room_ids for part in SOURCE.parts(chosen, context(store))] == [
        ["big-01"],
        ["big-02"],
    ]


def test_an_unknown_channel_is_not_found(store: DataStore) -> None:
    with pytest.raises(NotFound) as caught:
        SOURCE.validate(params(channel_id="nope"), ReadContext(window=WINDOW, data=store))
    assert [f.name for f in caught.value.fields] == ["params.channel_id"]


def test_rooms_of_another_channel_are_not_found(store: DataStore) -> None:
    chosen = params(room_ids=["small-a", "big-01", "nope"])
    with pytest.raises(NotFound) as caught:
        SOURCE.validate(chosen, ReadContext(window=WINDOW, data=store))
    assert [f.name for f in caught.value.fields] == ["params.room_ids[1]", "params.room_ids[2]"]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"channel_id": None}, "params.channel_id"),
        ({"room_ids": []}, "params.room_ids"),
        ({"room_ids": ["a", 1]}, "params.room_ids[1]"),
        ({"rooms_per_part": 0}, "params.rooms_per_part"),
        ({"rooms_per_part": 1001}, "params.rooms_per_part"),
        ({"part": 1}, "params.part"),
    ],
)
def test_bad_params_name_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        params(**values)
    assert [f.name for f in caught.value.fields] == [field]


def test_the_plugin_registers_the_source() -> None:
    assert [source.name for source in qna.exportd_sources()] == ["qna"]


def test_a_window_of_every_time_gives_every_question(store: DataStore) -> None:
    every = Window(datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC), UTC_ZONE)
    ctx = ReadContext(window=every, data=store)
    assert [row[0] for batch in map(to_rows, SOURCE.read(params(), ctx)) for row in batch] == [
        3,
        1,
        4,
        2,
    ]
    assert SOURCE.estimate(params(), ctx) == 4


def test_room_ids_are_matched_exactly(store: DataStore) -> None:
    chosen = params(room_ids=["small-a", "small-%", "small_a", "SMALL-A", "small-a "])
    with pytest.raises(NotFound) as caught:
        SOURCE.validate(chosen, ReadContext(window=WINDOW, data=store))
    assert [f.name for f in caught.value.fields] == [f"params.room_ids[{i}]" for i in (1, 2, 3, 4)]


def test_a_room_named_twice_is_read_once(store: DataStore) -> None:
    assert questions(store, params(room_ids=["small-b", "small-b"])) == [2]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"channel_id": "\udcff"}, "params.channel_id"),
        ({"room_ids": ["small-a", "small-a\x00b"]}, "params.room_ids[1]"),
    ],
)
def test_text_no_stored_text_can_match_is_a_field_error(
    store: DataStore, values: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        SOURCE.validate(params(**values), ReadContext(window=WINDOW, data=store))
    assert [f.name for f in caught.value.fields] == [field]


def test_rooms_per_part_beyond_what_sqlite_holds_is_a_field_error() -> None:
    with pytest.raises(InvalidRequest) as caught:
        params(rooms_per_part=2**63)
    assert [f.name for f in caught.value.fields] == ["params.rooms_per_part"]
