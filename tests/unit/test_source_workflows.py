"""The workflows source against the hand-written data store: exact events per request."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from exportd import DataStore, InvalidRequest, NotFound, NotImplementedFeature, ReadContext, Window
from exportd.kernel.batches import to_rows
from exportd.kernel.validation import convert
from exportd.plugins.sources import workflows
from exportd.plugins.sources.workflows import WorkflowParams, WorkflowsSource
from tests.unit.datastore import (
    INTERACTION_WORKFLOW,
    SHOP,
    VOICE_WORKFLOW,
    WEB_WORKFLOW,
    WINDOW,
)

SOURCE = WorkflowsSource()
UTC_ZONE = ZoneInfo("UTC")


def params(**values: Any) -> WorkflowParams:
    defaults = {"workflow_id": WEB_WORKFLOW, "step_index": 1, "filters": []}
    return convert(defaults | values, WorkflowParams, "params")


def events(store: DataStore, *, ctx_limit: int | None = None, **values: Any) -> list[int]:
    """The ids of the events read, in order; checks the estimate on the way."""
    chosen = params(**values)
    SOURCE.validate(chosen, ReadContext(window=WINDOW, data=store))
    ctx = ReadContext(window=WINDOW, data=store, batch_size=2, limit=ctx_limit)
    ids = [row[0] for batch in map(to_rows, SOURCE.read(chosen, ctx)) for row in batch]
    if ctx_limit is None:
        assert SOURCE.estimate(chosen, ctx) == len(ids)
    return ids


def test_a_step_gives_its_events_in_the_window_in_time_order(store: DataStore) -> None:
    # Event 3 happened before event 2; 4 and 5 share a second; 6 is at the window end.
    assert events(store) == [3, 2, 4, 5]
    assert events(store, step_index=0) == [1]
    assert events(store, step_index=2) == [7]


def test_rows_carry_typed_values(store: DataStore) -> None:
    chosen = params(target="triggered_goal")
    ctx = ReadContext(window=WINDOW, data=store)
    assert [row for batch in map(to_rows, SOURCE.read(chosen, ctx)) for row in batch] == [
        (
            4,
            datetime(2024, 10, 26, 10, 3, tzinfo=UTC),
            1,
            "page_view",
            "v3",
            "s3",
            f"{SHOP}/tents",
            None,
            True,
        )
    ]
    assert [column.name for column in SOURCE.columns(chosen, ctx)][:2] == [
        "event_id",
        "occurred_at",
    ]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ([{"property": "action", "values": ["page_view"]}], [3, 2, 4, 5]),
        ([{"property": "action", "values": ["clicked"]}], []),
        ([{"property": "page_url", "values": [f"{SHOP}/tents"]}], [2, 4, 5]),
        ([{"property": "visitor_id", "values": ["v2", "v4"]}], [3, 5]),
        ([{"property": "session_id", "values": ["s3"]}], [4]),
        (
            [
                {"property": "page_url", "values": [f"{SHOP}/tents"]},
                {"property": "visitor_id", "values": ["v1", "v2"]},
            ],
            [2],
        ),
    ],
)
def test_filters_keep_events_with_one_of_the_values(
    store: DataStore, filters: list[dict[str, Any]], expected: list[int]
) -> None:
    assert events(store, filters=filters) == expected


def test_interaction_filters_by_view_uid(store: DataStore) -> None:
    view_b = [{"property": "view_uid", "values": ["view-b"]}]
    assert events(store, workflow_id=INTERACTION_WORKFLOW, filters=view_b) == [9, 10]


def test_step_data_picks_page_urls_in_web_navigation(store: DataStore) -> None:
    step_data = [{}, {"actions": [f"{SHOP}/stoves"]}]
    assert events(store, step_data=step_data) == [3]
    # The source step's entry is not used for step 1, nor is a step without actions.
    assert events(store, step_data=[{"actions": [f"{SHOP}/stoves"]}, {}]) == [3, 2, 4, 5]
    assert events(store, step_data=[{}]) == [3, 2, 4, 5]


def test_step_data_picks_view_uids_in_interaction(store: DataStore) -> None:
    step_data = [{}, {"actions": ["view-a"]}]
    assert events(store, workflow_id=INTERACTION_WORKFLOW, step_data=step_data) == [8]
    assert events(store, workflow_id=INTERACTION_WORKFLOW) == [8, 9, 10]


def test_step_data_is_ignored_for_voice_and_video(store: DataStore) -> None:
    # The seed's example: step_data names actions, the filter picks them.
    step_data = [{}, {"actions": ["User dialed", "Visitor dialed"]}]
    assert events(store, workflow_id=VOICE_WORKFLOW, step_data=step_data) == [11, 12, 13]
    dialed = [{"property": "action", "values": ["User dialed", "Visitor dialed"]}]
    assert events(store, workflow_id=VOICE_WORKFLOW, filters=dialed) == [11, 12]


def test_triggered_goal_keeps_the_goal_events(store: DataStore) -> None:
    assert events(store, target="triggered_goal") == [4]
    assert events(store, workflow_id=VOICE_WORKFLOW, target="triggered_goal") == [12, 13]


def test_limit_caps_the_rows(store: DataStore) -> None:
    assert events(store, limit=2) == [3, 2]
    assert events(store, limit=10) == [3, 2, 4, 5]
    assert events(store, limit=3, ctx_limit=1) == [3]
    assert events(store, ctx_limit=3) == [3, 2, 4]


def test_an_unsupported_filter_property_is_not_implemented(store: DataStore) -> None:
    chosen = params(
        filters=[
            {"property": "action", "values": ["page_view"]},
            {"property": "browser", "values": ["Firefox"]},
            {"property": "country", "values": ["FI"]},
        ]
    )
    with pytest.raises(NotImplementedFeature) as caught:
        SOURCE.validate(chosen, ReadContext(window=WINDOW, data=store))
    assert caught.value.code == "not_implemented"
    assert [f.name for f in caught.value.fields] == [
        "params.filters[1].property",
        "params.filters[2].property",
    ]
    assert "browser" in caught.value.fields[0].message


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"workflow_id": "nope"}, "params.workflow_id"),
        ({"step_index": 3}, "params.step_index"),
        ({"workflow_id": VOICE_WORKFLOW, "step_index": 2}, "params.step_index"),
    ],
)
def test_an_unknown_workflow_or_step_is_not_found(
    store: DataStore, values: dict[str, Any], field: str
) -> None:
    with pytest.raises(NotFound) as caught:
        SOURCE.validate(params(**values), ReadContext(window=WINDOW, data=store))
    assert [f.name for f in caught.value.fields] == [field]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"step_index": -1}, "params.step_index"),
        ({"filters": None}, "params.filters"),
        ({"filters": [{"property": "action"}]}, "params.filters[0].values"),
        ({"filters": [{"property": "action", "values": []}]}, "params.filters[0].values"),
        (
            {"filters": [{"property": "action", "values": ["x"], "op": "eq"}]},
            "params.filters[0].op",
        ),
        ({"step_data": [{}, {"actions": "x"}]}, "params.step_data[1].actions"),
        ({"target": "goal"}, "params.target"),
        ({"limit": 0}, "params.limit"),
        ({"format": "xlsx"}, "params.format"),
    ],
)
def test_bad_params_name_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        params(**values)
    assert [f.name for f in caught.value.fields] == [field]


def test_filters_are_required() -> None:
    with pytest.raises(InvalidRequest) as caught:
        convert({"workflow_id": WEB_WORKFLOW, "step_index": 1}, WorkflowParams, "params")
    assert [f.name for f in caught.value.fields] == ["params.filters"]


def test_the_plugin_registers_the_source() -> None:
    assert [source.name for source in workflows.exportd_sources()] == ["workflows"]


def test_a_window_of_every_time_gives_every_event_of_the_step(store: DataStore) -> None:
    every = Window(datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC), UTC_ZONE)
    ctx = ReadContext(window=every, data=store)
    chosen = params()
    assert [row[0] for batch in map(to_rows, SOURCE.read(chosen, ctx)) for row in batch] == [
        3,
        2,
        4,
        5,
        6,
    ]
    assert SOURCE.estimate(chosen, ctx) == 5


def test_filter_values_are_matched_exactly(store: DataStore) -> None:
    odd = ["v%", "v_", "V1", "v1 ", "' OR '1'='1", '"v1"']
    assert events(store, filters=[{"property": "visitor_id", "values": odd}]) == []


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"workflow_id": f"{WEB_WORKFLOW}\x00"}, "params.workflow_id"),
        (
            {"filters": [{"property": "action", "values": ["x", "page\x00view"]}]},
            "params.filters[0].values[1]",
        ),
        ({"step_data": [{}, {"actions": ["\udcff"]}]}, "params.step_data[1].actions[0]"),
    ],
)
def test_text_no_stored_text_can_match_is_a_field_error(
    store: DataStore, values: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        SOURCE.validate(params(**values), ReadContext(window=WINDOW, data=store))
    assert [f.name for f in caught.value.fields] == [field]


@pytest.mark.parametrize("name", ["step_index", "limit"])
def test_integers_beyond_what_sqlite_holds_are_a_field_error(name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        params(**{name: 2**63})
    assert [f.name for f in caught.value.fields] == [f"params.{name}"]


def test_the_largest_integers_sqlite_holds_work(store: DataStore) -> None:
    assert events(store, limit=2**63 - 1) == [3, 2, 4, 5]
    with pytest.raises(NotFound) as caught:
        SOURCE.validate(params(step_index=2**63 - 1), ReadContext(window=WINDOW, data=store))
    assert [f.name for f in caught.value.fields] == ["params.step_index"]
