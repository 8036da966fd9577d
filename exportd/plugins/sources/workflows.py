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
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
import pyarrow as pa

from exportd import (
    Column,
    FieldError,
    NotFound,
    NotImplementedFeature,
    ReadContext,
    Source,
    hookimpl,
)
from exportd.plugins.sources.common import (
    SQL_INT_MAX,
    check_text,
    read_arrow,
    scalar,
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


class WorkflowsSql(NamedTuple):
    """The statements of the ``workflows`` source in one dialect; ``{where}`` is the
    events' condition, made of the clauses below."""

    select: str
    row_count: str
    step: str
    """The step's events (the first clauses of every condition)."""
    bounds: str
    """The window's clauses."""
    among: str
    """The clause "``{column}`` is one of the list ``values_N``" (``{index}`` is N)."""
    workflow: str
    """The workflow's kind and step count, if it is the organisation ``org``'s (or any,
    when ``org`` is null)."""
    step_range: str


SQLITE_STEP = "workflow_id = :workflow AND step_index = :step"
POSTGRES_STEP = "workflow_id = %(workflow)s AND step_index = %(step)s"
EVENT_COLUMNS = (
    "id, occurred_at, step_index, action, visitor_id, session_id, page_url, view_uid,"
    " goal_triggered"
)
SQLITE = WorkflowsSql(
    select=f"SELECT {EVENT_COLUMNS} FROM workflow_events WHERE {{where}}"
    " ORDER BY occurred_at, id LIMIT coalesce(:limit, -1)",
    row_count="SELECT count(*) FROM workflow_events WHERE {where}",
    step=SQLITE_STEP,
    bounds="occurred_at >= :start AND occurred_at < :end",
    # json_each keeps the statement to one parameter per list, however long.
    among="{column} IN (SELECT value FROM json_each(:values_{index}))",
    workflow="SELECT kind, step_count FROM workflows"
    " WHERE id = :workflow AND org_id = coalesce(:org, org_id)",
    step_range=f"SELECT (SELECT min(occurred_at) FROM workflow_events WHERE {SQLITE_STEP}),"
    f" (SELECT max(occurred_at) FROM workflow_events WHERE {SQLITE_STEP})",
)
POSTGRESQL = WorkflowsSql(
    select=f"SELECT {EVENT_COLUMNS} FROM workflow_events WHERE {{where}}"
    " ORDER BY occurred_at, id LIMIT %(limit)s",
    row_count="SELECT count(*) FROM workflow_events WHERE {where}",
    step=POSTGRES_STEP,
    bounds="occurred_at >= %(start)s AND occurred_at < %(end)s",
    among="{column} = ANY(%(values_{index})s)",
    workflow="SELECT kind, step_count FROM workflows"
    " WHERE id = %(workflow)s AND org_id = coalesce(%(org)s, org_id)",
    step_range=f"SELECT (SELECT min(occurred_at) FROM workflow_events WHERE {POSTGRES_STEP}),"
    f" (SELECT max(occurred_at) FROM workflow_events WHERE {POSTGRES_STEP})",
)
STATEMENTS = {"sqlite": SQLITE, "postgresql": POSTGRESQL}


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


def _where(params: WorkflowParams, kind: str, ctx: ReadContext) -> tuple[str, dict[str, Any]]:
    """The events' SQL condition and its parameters."""
    check_filters(params.filters)
    sql, store = STATEMENTS[ctx.data.dialect], ctx.data
    clauses = [sql.step, sql.bounds]
    args: dict[str, Any] = {
        "workflow": params.workflow_id,
        "step": params.step_index,
        **window_args(store, ctx.window),
    }
    lists = [(item.property, item.values) for item in params.filters]
    step_property = STEP_DATA_PROPERTY.get(kind)
    steps = params.step_data or []
    if step_property and params.step_index < len(steps) and steps[params.step_index].actions:
        lists.append((step_property, steps[params.step_index].actions))
    for index, (column, values) in enumerate(lists):
        clauses.append(sql.among.format(column=column, index=index))
        args[f"values_{index}"] = json.dumps(values) if store.dialect == "sqlite" else values
    if params.target == "triggered_goal":
        clauses.append("goal_triggered")
    return " AND ".join(clauses), args


def _workflow(params: WorkflowParams, ctx: ReadContext) -> str:
    """The workflow's kind, or :class:`~exportd.NotFound` for it (or another
    organisation's) or its step."""
    sql = STATEMENTS[ctx.data.dialect].workflow
    with ctx.data.connect() as conn:
        found = conn.execute(sql, {"workflow": params.workflow_id, "org": ctx.org_id}).fetchone()
    if found is None:
        raise NotFound.field("params.workflow_id", f"no workflow with id {params.workflow_id!r}")
    kind, step_count = found
    if params.step_index >= step_count:
        raise NotFound.field(
            "params.step_index",
            f"workflow {params.workflow_id!r} has steps 0 to {step_count - 1}",
        )
    return str(kind)


class WorkflowsSource(Source[WorkflowParams]):
    """One row per event of a workflow step."""

    name = "workflows"
    description = "the events behind one step of a workflow (one row per event)"
    Params = WorkflowParams
    form = "arrow"

    def validate(self, params: WorkflowParams, ctx: ReadContext) -> None:
        """Every filter property is supported, and the workflow and its step exist."""
        check_text(params)
        check_filters(params.filters)
        _workflow(params, ctx)

    def columns(self, params: WorkflowParams, ctx: ReadContext) -> Sequence[Column]:
        """The event columns."""
        return COLUMNS

    def estimate(self, params: WorkflowParams, ctx: ReadContext) -> int | None:
        """The number of matching events, at most ``limit``."""
        where, args = _where(params, _workflow(params, ctx), ctx)
        count = int(scalar(ctx, STATEMENTS[ctx.data.dialect].row_count.format(where=where), args))
        return min(count, params.limit or count)

    def time_range(
        self, params: WorkflowParams, ctx: ReadContext
    ) -> tuple[datetime, datetime] | None:
        """When the step's first and last events occurred (filters aside)."""
        sql = STATEMENTS[ctx.data.dialect].step_range
        return time_range(ctx, sql, {"workflow": params.workflow_id, "step": params.step_index})

    def read(self, params: WorkflowParams, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Yield the step's events in time order, as Arrow batches."""
        where, args = _where(params, _workflow(params, ctx), ctx)
        args["limit"] = sql_limit(params.limit, ctx.limit)
        select = STATEMENTS[ctx.data.dialect].select.format(where=where)
        yield from read_arrow(ctx, select, args, COLUMNS)


@hookimpl
def exportd_sources() -> list[Source[Any]]:
    """The ``workflows`` source."""
    return [WorkflowsSource()]
