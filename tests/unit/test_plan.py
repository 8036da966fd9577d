"""Validating a request against the plugins: every fault found, each naming its field."""

from __future__ import annotations

import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from exportd import Column, ExportFailed, InvalidRequest, ReadContext, hookimpl
from exportd.kernel.datastores import SqliteStore
from exportd.kernel.plan import ExportPlan, plan_export, plan_task
from exportd.kernel.validation import decode_json
from exportd.messages import ExportRequest, ExportTask, RequestFields
from exportd.plugins.manager import Plugins
from tests.unit import toy_plugins

PLUGINS = Plugins(builtins=False, entry_points=False, extra=[toy_plugins])

NOWHERE = SqliteStore(Path("unused.db"))
"""A data store the toy plugins never read."""


def request(**changes: Any) -> ExportRequest:
    fields: dict[str, Any] = {
        "source": "count",
        "format": "lines",
        "params": {"rows": 3},
        "interval": {"start": "2024-03-01", "end": "2024-03-02"},
    }
    fields.update(changes)
    return msgspec.convert(fields, ExportRequest)


def fault_names(**changes: Any) -> list[str]:
    with pytest.raises(InvalidRequest) as caught:
        plan_export(request(**changes), PLUGINS, NOWHERE)
    return [field.name for field in caught.value.fields]


def test_a_valid_request_becomes_a_plan() -> None:
    plan = plan_export(request(timezone="Europe/Helsinki"), PLUGINS, NOWHERE)
    assert plan.params == toy_plugins.CountParams(rows=3)
    assert plan.options == toy_plugins.LinesOptions()
    assert [c.name for c in plan.columns] == ["n", "square", "label"]
    assert plan.window.start == datetime(2024, 2, 29, 22, tzinfo=UTC)
    assert plan.window.end == datetime(2024, 3, 1, 22, tzinfo=UTC)


def test_times_with_an_offset_keep_it_and_z_means_utc() -> None:
    interval = {"start": "2024-03-01T08:00:00+02:00", "end": "2024-03-01T12:00:00Z"}
    plan = plan_export(request(interval=interval, timezone="Asia/Tokyo"), PLUGINS, NOWHERE)
    assert plan.window.start == datetime(2024, 3, 1, 6, tzinfo=UTC)
    assert plan.window.end == datetime(2024, 3, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"source": "nope"}, ["source"]),
        ({"format": "nope"}, ["format"]),
        ({"timezone": "Mars/Olympus"}, ["timezone"]),
        ({"interval": {"start": "yesterday", "end": "2024-01-01"}}, ["interval.start"]),
        ({"interval": {"start": "2024-01-02", "end": "2024-01-01"}}, ["interval.end"]),
        ({"params": {"rows": -1}}, ["params.rows"]),
        ({"params": {"rows": 1, "colour": "red"}}, ["params.colour"]),
        ({"params": {}}, ["params.rows"]),
        ({"format_options": {"separator": 1}}, ["format_options.separator"]),
        ({"params": {"rows": 1, "forbidden": "x"}}, ["params.forbidden"]),
    ],
)
def test_each_fault_names_its_field(changes: dict[str, Any], names: list[str]) -> None:
    assert fault_names(**changes) == names


def test_every_fault_is_reported_at_once() -> None:
    names = fault_names(
        format="nope",
        timezone="Nowhere/Land",
        params={"rows": "many"},
        interval={"start": "2024-01-01", "end": "soon"},
    )
    assert names == ["format", "timezone", "interval.end", "params.rows"]


def test_a_typo_in_the_request_itself_names_the_field() -> None:
    body = b"""{"source": "count", "fromat": "csv",
               "interval": {"start": "2024-01-01", "end": "2024-01-02"}}"""
    with pytest.raises(InvalidRequest) as caught:
        decode_json(body, ExportRequest)
    assert caught.value.fields[0].name == "fromat"
    assert caught.value.fields[0].message == "unknown field"


def test_broken_json_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="body"):
        decode_json(b"{not json", ExportRequest)


def test_parts_carry_their_own_params() -> None:
    plan = plan_export(request(params={"rows": 11}), PLUGINS, NOWHERE)
    parts = plan.parts(batch_size=10)
    assert [part.params for part in parts] == [
        toy_plugins.CountParams(rows=5),
        toy_plugins.CountParams(rows=6),
    ]
    assert parts[1].request.params == msgspec.to_builtins(toy_plugins.CountParams(rows=6))


def test_a_plugin_bug_in_validate_fails_the_request_naming_the_source() -> None:
    class Buggy(toy_plugins.CountSource):
        name = "buggy"

        def validate(self, params: Any, ctx: ReadContext) -> None:
            raise KeyError("room")

    buggy = types.ModuleType("buggy_plugin")
    buggy.exportd_sources = hookimpl(lambda: [Buggy()])  # type: ignore[attr-defined]
    plugins = Plugins(builtins=False, entry_points=False, extra=[toy_plugins, buggy])
    with pytest.raises(ExportFailed, match="source 'buggy' failed: KeyError: 'room'"):
        plan_export(request(source="buggy"), plugins, NOWHERE)


@pytest.mark.parametrize(
    ("changes", "name", "message"),
    [
        ({"timezone": "Europe"}, "timezone", "unknown IANA time zone 'Europe'"),
        ({"timezone": "../etc/passwd"}, "timezone", "unknown IANA time zone"),
        (
            {"interval": {"start": "0001-01-01T00:00:00+01:00", "end": "2024-01-01"}},
            "interval.start",
            "out of the supported range",
        ),
        (
            {
                "interval": {"start": "2024-03-31T03:30", "end": "2024-03-31T05:00"},
                "timezone": "Europe/Helsinki",
            },
            "interval.start",
            "does not exist in Europe/Helsinki",
        ),
    ],
)
def test_zones_and_times_that_cannot_be_are_field_errors(
    changes: dict[str, Any], name: str, message: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        plan_export(request(**changes), PLUGINS, NOWHERE)
    assert caught.value.fields[0].name == name
    assert message in caught.value.fields[0].message


def test_a_repeated_local_time_means_its_first_occurrence() -> None:
    interval = {"start": "2024-10-27T03:30", "end": "2024-10-27T05:00"}
    plan = plan_export(request(interval=interval, timezone="Europe/Helsinki"), PLUGINS, NOWHERE)
    assert plan.window.start == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)


def test_the_file_name_comes_from_the_name_or_the_request_and_is_safe() -> None:
    plain = plan_export(request(params={"rows": 3}), PLUGINS, NOWHERE)
    assert plain.file_name() == "count-3-20240301-20240302.lines"
    named = plan_export(request(name="../Q3 report: ünïcode"), PLUGINS, NOWHERE)
    assert named.file_name() == "Q3_report_ünïcode.lines"
    dots = plan_export(request(name="..."), PLUGINS, NOWHERE)
    assert dots.file_name() == "export.lines"


class SchemaSource(toy_plugins.CountSource):
    """The count source whose columns come from a per-organisation schema: the columns
    name the organisation and the part they were asked for."""

    name = "schema"

    def columns(self, params: toy_plugins.CountParams, ctx: ReadContext) -> list[Column]:
        label = f"label_{ctx.org_id}_{ctx.part}of{ctx.part_count}"
        return [
            Column("n", "integer"),
            Column("square", "integer"),
            Column(label),
        ]


def test_columns_are_asked_with_the_read_context_of_the_export_and_of_each_part() -> None:
    schema = types.ModuleType("schema_plugin")

    @hookimpl
    def exportd_sources() -> list[Any]:
        return [SchemaSource()]

    schema.exportd_sources = exportd_sources  # type: ignore[attr-defined]
    plugins = Plugins(builtins=False, entry_points=False, extra=[toy_plugins, schema])
    plan = plan_export(
        request(source="schema", params={"rows": 20}, org_id="acme"), plugins, NOWHERE
    )
    assert plan.columns[-1].name == "label_acme_0of1"
    parts = plan.parts(batch_size=10)
    assert [part.columns[-1].name for part in parts] == ["label_acme_0of2", "label_acme_1of2"]


def task_of(plan: ExportPlan, part: int = 0, **changes: Any) -> ExportTask:
    """The task an engine makes of ``plan``'s part ``part``."""
    parts = plan.parts(batch_size=10)
    fields: dict[str, Any] = {
        "job_id": "job",
        "part": part,
        "part_count": len(parts),
        "attempt": 1,
        "request": RequestFields(**msgspec.structs.asdict(parts[part].request)),
        "key": "job/1/0/count.lines",
        "file_name": "count.lines",
        "columns": list(parts[part].columns),
    }
    return ExportTask(**(fields | changes))


def test_a_task_is_planned_without_validating_again_with_the_columns_it_carries() -> None:
    """The engine planned the task at submit: a value its source would refuse now (the
    data store changed since, say) does not fail the run."""
    planned = task_of(plan_export(request(), PLUGINS, NOWHERE))
    refused_now = msgspec.structs.replace(
        planned.request, params={**planned.request.params, "forbidden": "since"}
    )
    with pytest.raises(InvalidRequest, match=r"params\.forbidden"):
        plan_export(refused_now, PLUGINS, NOWHERE)
    columns = [Column("n", "integer"), Column("as planned")]
    plan = plan_task(
        msgspec.structs.replace(planned, request=refused_now, columns=columns),
        PLUGINS,
        NOWHERE,
        worker="w1",
    )
    assert plan.params == toy_plugins.CountParams(rows=3, forbidden="since")
    assert plan.columns == tuple(columns)


def test_a_task_of_an_older_engine_gets_its_columns_from_the_source() -> None:
    planned = task_of(plan_export(request(params={"rows": 20}), PLUGINS, NOWHERE), 1)
    plan = plan_task(msgspec.structs.replace(planned, columns=None), PLUGINS, NOWHERE, worker="w1")
    assert plan.columns == tuple(planned.columns or ())


def test_a_task_whose_plugins_the_worker_lacks_is_the_workers_failure() -> None:
    planned = task_of(plan_export(request(), PLUGINS, NOWHERE))
    bare = Plugins(builtins=False, entry_points=False)
    with pytest.raises(ExportFailed, match="worker w1 has no source 'count' and no format"):
        plan_task(planned, bare, NOWHERE, worker="w1")


class UnknownTypeSource(toy_plugins.CountSource):
    """The count source, whose columns name a type exportd does not know (msgspec does not
    check a Literal when a Struct is made in Python)."""

    name = "unknown_type"

    def columns(self, params: toy_plugins.CountParams, ctx: ReadContext) -> list[Column]:
        return [Column("n", "integer"), Column("square", "decimal"), Column("label")]  # type: ignore[arg-type]


def test_columns_of_an_unknown_type_fail_the_request_naming_the_source() -> None:
    """Tasks carry the columns to the workers, which could not read them: the engine
    refuses them at submit rather than leaving the job to a worker that cannot."""
    module = types.ModuleType("unknown_type_plugin")

    @hookimpl
    def exportd_sources() -> list[Any]:
        return [UnknownTypeSource()]

    module.exportd_sources = exportd_sources  # type: ignore[attr-defined]
    plugins = Plugins(builtins=False, entry_points=False, extra=[toy_plugins, module])
    with pytest.raises(
        ExportFailed, match="source 'unknown_type' failed: column 'square' has type 'decimal'"
    ):
        plan_export(request(source="unknown_type"), plugins, NOWHERE)
