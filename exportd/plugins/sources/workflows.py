"""The ``workflows`` source: the events behind one step of a workflow.

It follows the giosg workflow source data download: ``filters`` narrow the
events by a property, ``step_data[step_index].actions`` picks the step's
actions in web navigation (page URLs) and interaction (view UIDs) workflows,
``target`` ``triggered_goal`` keeps the events that triggered the goal, and
``limit`` caps the rows.  A filter on a property this source does not support
is a "not implemented" error, as the original answers 406.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from exportd import (
    Batch,
    Column,
    FieldError,
    NotFound,
    NotImplementedFeature,
    ReadContext,
    Source,
    Window,
    hookimpl,
)
from exportd.plugins.sources.common import (
    SQL_INT_MAX,
    Rows,
    batches,
    check_text,
    connection,
    sql_limit,
    time_range,
    window_args,
)

FILTER_PROPERTIES = ("action", "visitor_id", "session_id", "page_url", "view_uid")
"""The event properties ``filters`` may name; each is a column of ``workflow_events``."""

STEP_DATA_PROPERTY = {"web_navigation": "page_url", "interaction": "view_uid"}
"""What ``step_data`` actions identify, by workflow kind; other kinds ignore step_data."""


class Filter(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Keep the events whose ``property`` has one of ``values``."""

    property: Annotated[str, msgspec.Meta(min_length=1)]
    values: Annotated[list[str], msgspec.Meta(min_length=1)]


class StepData(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What one step of the workflow shows: the identifiers of its actions."""

    actions: list[str] = []


class WorkflowParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which workflow step's events to export."""

    workflow_id: Annotated[str, msgspec.Meta(min_length=1)]
    step_index: Annotated[int, msgspec.Meta(ge=0, le=SQL_INT_MAX)]
    filters: list[Filter]
    step_data: list[StepData] | None = None
    target: Literal["default", "triggered_goal"] = "default"
    limit: Annotated[int, msgspec.Meta(gt=0, le=SQL_INT_MAX)] | None = None


COLUMNS = (
    Column("event_id", "integer"),
    Column("occurred_at", "datetime", "time"),
    Column("step_index", "integer"),
    Column("action", "text"),
    Column("visitor_id", "text"),
    Column("session_id", "text"),
    Column("page_url", "text"),
    Column("view_uid", "text"),
    Column("goal_triggered", "boolean"),
)

SELECT = (
    "SELECT id, occurred_at, step_index, action, visitor_id, session_id, page_url, view_uid,"
    " goal_triggered FROM workflow_events WHERE {where} ORDER BY occurred_at, id LIMIT ?"
)
COUNT = "SELECT count(*) FROM workflow_events WHERE {where}"
STEP = "FROM workflow_events WHERE workflow_id = :workflow AND step_index = :step"
STEP_RANGE = f"SELECT (SELECT min(occurred_at) {STEP}), (SELECT max(occurred_at) {STEP})"


def check_filters(filters: Sequence[Filter]) -> None:
    """Raise :class:`~exportd.NotImplementedFeature` naming every unsupported property."""
    unsupported = [
        FieldError(
            f"params.filters[{index}].property",
            f"filtering by {item.property!r} is not implemented; "
            f"supported: {', '.join(FILTER_PROPERTIES)}",
        )
        for index, item in enumerate(filters)
        if item.property not in FILTER_PROPERTIES
    ]
    if unsupported:
        raise NotImplementedFeature("filter property not implemented", unsupported)


def _where(params: WorkflowParams, kind: str, window: Window) -> tuple[str, list[Any]]:
    """The events' SQL condition and its parameters."""
    check_filters(params.filters)
    bounds = window_args(window)
    clauses = ["workflow_id = ?", "step_index = ?", "occurred_at >= ?", "occurred_at < ?"]
    args: list[Any] = [params.workflow_id, params.step_index, bounds["start"], bounds["end"]]
    # json_each keeps the statement to one parameter per list, however long.
    for item in params.filters:
        clauses.append(f"{item.property} IN (SELECT value FROM json_each(?))")
        args.append(json.dumps(item.values))
    step_property = STEP_DATA_PROPERTY.get(kind)
    steps = params.step_data or []
    if step_property and params.step_index < len(steps) and steps[params.step_index].actions:
        clauses.append(f"{step_property} IN (SELECT value FROM json_each(?))")
        args.append(json.dumps(steps[params.step_index].actions))
    if params.target == "triggered_goal":
        clauses.append("goal_triggered = 1")
    return " AND ".join(clauses), args


def _workflow(conn: sqlite3.Connection, params: WorkflowParams, org_id: str | None) -> str:
    """The workflow's kind, or :class:`~exportd.NotFound` for it (or another
    organisation's) or its step."""
    found = conn.execute(
        "SELECT kind, step_count FROM workflows WHERE id = ? AND ifnull(?, org_id) = org_id",
        (params.workflow_id, org_id),
    ).fetchone()
    if found is None:
        raise NotFound.field("params.workflow_id", f"no workflow with id {params.workflow_id!r}")
    kind, step_count = found
    if params.step_index >= step_count:
        raise NotFound.field(
            "params.step_index",
            f"workflow {params.workflow_id!r} has steps 0 to {step_count - 1}",
        )
    return str(kind)


def _event_rows(rows: Rows) -> Batch:
    parse = datetime.fromisoformat
    return [
        (id_, parse(at), step, action, visitor, session, url, view, goal == 1)
        for id_, at, step, action, visitor, session, url, view, goal in rows
    ]


class WorkflowsSource(Source[WorkflowParams]):
    """One row per event of a workflow step."""

    name = "workflows"
    description = "the events behind one step of a workflow (one row per event)"
    Params = WorkflowParams

    def validate(self, params: WorkflowParams, ctx: ReadContext) -> None:
        """Every filter property is supported, and the workflow and its step exist."""
        check_text(params)
        check_filters(params.filters)
        with connection(ctx) as conn:
            _workflow(conn, params, ctx.org_id)

    def columns(self, params: WorkflowParams, ctx: ReadContext) -> Sequence[Column]:
        """The event columns."""
        return COLUMNS

    def estimate(self, params: WorkflowParams, ctx: ReadContext) -> int | None:
        """The number of matching events, at most ``limit``."""
        with connection(ctx) as conn:
            where, args = _where(params, _workflow(conn, params, ctx.org_id), ctx.window)
            count: int = conn.execute(COUNT.format(where=where), args).fetchone()[0]
        return min(count, params.limit or count)

    def time_range(
        self, params: WorkflowParams, ctx: ReadContext
    ) -> tuple[datetime, datetime] | None:
        """When the step's first and last events occurred (filters aside)."""
        return time_range(
            ctx, STEP_RANGE, {"workflow": params.workflow_id, "step": params.step_index}
        )

    def read(self, params: WorkflowParams, ctx: ReadContext) -> Iterator[Batch]:
        """Yield the step's events in time order."""
        with connection(ctx) as conn:
            where, args = _where(params, _workflow(conn, params, ctx.org_id), ctx.window)
            args.append(sql_limit(params.limit, ctx.limit))
            cursor = conn.execute(SELECT.format(where=where), args)
            yield from batches(cursor, ctx.batch_size, _event_rows)


@hookimpl
def exportd_sources() -> list[Source[Any]]:
    """The ``workflows`` source."""
    return [WorkflowsSource()]
