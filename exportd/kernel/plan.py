"""Validate an :class:`ExportRequest` against the plugins into an :class:`ExportPlan`.

Everything a user can get wrong is found here, before any work starts, and
reported together: unknown source or format, bad parameters or options, a bad
interval or time zone, a room that does not exist.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any, get_args

import msgspec

from exportd.errors import ExportError, ExportFailed, FieldError, InvalidRequest
from exportd.kernel.guard import call_plugin
from exportd.kernel.validation import check_labels, convert
from exportd.kernel.window import parse_window
from exportd.messages import ExportTask, RequestFields
from exportd.plugins.api import (
    Column,
    ColumnType,
    DataStore,
    ExportInfo,
    Format,
    Piece,
    ReadContext,
    Role,
    Source,
    Window,
)
from exportd.plugins.manager import Plugins

COLUMN_TYPES = frozenset(get_args(ColumnType))
ROLES = frozenset(get_args(Role))
MAX_NAME_LENGTH = 120
UNSAFE_IN_NAME = re.compile(r"[^\w.-]+")


@dataclass(frozen=True)
class ExportPlan:
    """A request that passed validation, with its plugins and decoded parameters."""

    request: RequestFields
    source: Source[Any]
    format: Format[Any]
    params: msgspec.Struct
    options: msgspec.Struct
    window: Window
    data: DataStore
    columns: tuple[Column, ...] = field(default=())
    generated_at: datetime | None = None
    """The time the file records as its making (see :class:`ExportInfo`); ``None``: now."""

    def context(
        self,
        *,
        batch_size: int,
        part: int = 0,
        part_count: int = 1,
        cancelled: Callable[[], bool] = lambda: False,
        slice: int = 0,
        slice_count: int = 1,
        slicing: Any = None,
    ) -> ReadContext:
        """The context a source reads this plan's rows (or a slice of them) with."""
        return ReadContext(
            window=self.window,
            data=self.data,
            batch_size=batch_size,
            limit=self.request.limit,
            part=part,
            part_count=part_count,
            cancelled=cancelled,
            org_id=self.request.org_id,
            slice=slice,
            slice_count=slice_count,
            slicing=slicing,
        )

    @property
    def source_label(self) -> str:
        """The source as error messages name it: ``source 'rooms'``."""
        return f"source {self.source.name!r}"

    @property
    def format_label(self) -> str:
        """The format as error messages name it: ``format 'csv'``."""
        return f"format {self.format.name!r}"

    def file_name(self) -> str:
        """The request's ``name``, or ``SOURCE-VALUES-START-END``, with the format's extension.

        VALUES are the text and whole-number parameters given; the interval is in
        the request's zone.  Anything but letters, digits, ``.``, ``-`` and ``_``
        becomes ``_``, so the name is safe in a path and a download header.
        """
        if self.request.name:
            words = [self.request.name]
        else:
            given = self.request.params
            values = [given[name] for name in _encode_names(type(self.params)) if name in given]
            zone = self.window.timezone
            words = [
                self.source.name,
                *(str(v) for v in values if isinstance(v, str | int) and not isinstance(v, bool)),
                _stamp(self.window.start.astimezone(zone)),
                _stamp(self.window.end.astimezone(zone)),
            ]
        stem = UNSAFE_IN_NAME.sub("_", "-".join(words)).strip("._")[:MAX_NAME_LENGTH]
        return f"{stem or 'export'}.{self.format.extension}"

    def part_file_names(self, count: int) -> list[str]:
        """The file names of ``count`` parts: :meth:`file_name`, or for several parts
        ``NAME-part1of3.EXT``, ``NAME-part2of3.EXT``, ..."""
        return part_names(self.file_name(), count)

    def info(self, piece: Piece | None = None) -> ExportInfo:
        """What a format may record about this export, when it writes ``piece`` of its
        file (by default the whole file)."""
        return ExportInfo(
            source=self.source.name,
            params=msgspec.to_builtins(self.params),
            window=self.window,
            columns=self.columns,
            generated_at=self.generated_at or datetime.now(UTC),
            piece=piece or Piece(),
        )

    def data_range(self) -> tuple[datetime, datetime] | None:
        """When the source's data for these parameters begins and ends, if it says
        (:meth:`Source.time_range <exportd.Source.time_range>`)."""
        ctx = self.context(batch_size=1)
        return call_plugin(self.source_label, lambda: self.source.time_range(self.params, ctx))

    def parts(self, batch_size: int) -> list[ExportPlan]:
        """One plan per independent part of this export (usually just itself)."""
        ctx = self.context(batch_size=batch_size)
        part_params = call_plugin(self.source_label, lambda: self.source.parts(self.params, ctx))
        count = len(part_params)
        return [
            _with_params(
                self, params, self.context(batch_size=batch_size, part=n, part_count=count)
            )
            for n, params in enumerate(part_params)
        ]


@functools.cache
def _encode_names(params_type: type[msgspec.Struct]) -> tuple[str, ...]:
    """The names of a parameters Struct's fields as requests spell them, in order (looked up
    once per type: msgspec evaluates the annotations each time it is asked)."""
    return tuple(field.encode_name for field in msgspec.structs.fields(params_type))


def _with_params(plan: ExportPlan, params: msgspec.Struct, ctx: ReadContext) -> ExportPlan:
    """``plan`` for these parameters (and the columns they give, read with ``ctx``)."""
    request = msgspec.structs.replace(plan.request, params=msgspec.to_builtins(params))
    return _with_columns(dataclasses.replace(plan, request=request, params=params), ctx)


def plan_export(
    request: RequestFields,
    plugins: Plugins,
    data: DataStore,
    *,
    generated_at: datetime | None = None,
) -> ExportPlan:
    """Validate ``request`` and resolve its plugins, or raise one error listing every fault.

    ``generated_at`` is the time the files record as their making: a job's creation
    time, so that every run of the job writes the same bytes; ``None`` for now.
    """
    plan = _resolve(request, plugins, data, generated_at, requested=True)
    ctx = plan.context(batch_size=1)
    call_plugin(plan.source_label, lambda: plan.source.validate(plan.params, ctx))
    return _with_columns(plan, ctx)


def plan_task(task: ExportTask, plugins: Plugins, data: DataStore, *, worker: str) -> ExportPlan:
    """The plan of a task, whose engine planned it when the request came: its plugins
    resolved and its parameters decoded, with the columns the task carries.

    Nothing is validated again, so a request valid at submit stays valid at run, whatever
    the data store holds by then.  A source or format that ``worker`` lacks is the
    worker's failure (:func:`check_worker_plugins`).
    """
    check_worker_plugins(task.request, plugins, worker)
    plan = _resolve(task.request, plugins, data, task.created_at, requested=False)
    if task.columns is None:  # from an engine that predates planned columns
        ctx = plan.context(batch_size=1, part=task.part, part_count=task.part_count)
        return _with_columns(plan, ctx)
    return dataclasses.replace(plan, columns=tuple(task.columns))


def _resolve(
    request: RequestFields,
    plugins: Plugins,
    data: DataStore,
    generated_at: datetime | None,
    *,
    requested: bool,
) -> ExportPlan:
    """``request``'s plugins resolved and its values decoded, without its columns; one
    error listing every fault.  A request just ``requested`` (not a task's, checked
    then) has its delivery and its labels checked too."""
    failures: list[ExportError] = []

    def attempt(step: Callable[[], Any]) -> Any:
        try:
            return step()
        except ExportError as exc:
            failures.append(exc)
            return None

    source = attempt(lambda: plugins.source(request.source))
    format_ = attempt(lambda: plugins.format(request.format))
    window = attempt(lambda: parse_window(request.interval, request.timezone))
    params = source and attempt(lambda: convert(request.params, source.Params, "params"))
    options = format_ and attempt(
        lambda: convert(request.format_options, format_.Options, "format_options")
    )
    if requested:
        attempt(lambda: plugins.check_delivery(request.delivery))
        attempt(lambda: check_labels(request.labels))
    if failures:
        raise _combine(failures)
    return ExportPlan(
        request=request,
        source=source,
        format=format_,
        params=params,
        options=options,
        window=window,
        data=data,
        generated_at=generated_at,
    )


def _with_columns(plan: ExportPlan, ctx: ReadContext) -> ExportPlan:
    """``plan`` with the columns its source gives for its parameters, read with ``ctx``:
    each a :class:`Column` of a known type and role (tasks carry them to the workers, which
    could not read another)."""
    columns = call_plugin(plan.source_label, lambda: tuple(plan.source.columns(plan.params, ctx)))
    for column in columns:
        if not isinstance(column, Column):
            raise ExportFailed(
                f"{plan.source_label} failed: columns() must give Column instances, got {column!r}"
            )
        if column.type not in COLUMN_TYPES or column.role not in {*ROLES, None}:
            raise ExportFailed(
                f"{plan.source_label} failed: column {column.name!r} has type {column.type!r} "
                f"and role {column.role!r}; the types are {sorted(COLUMN_TYPES)}, the roles "
                f"{sorted(ROLES)} or None"
            )
    return dataclasses.replace(plan, columns=columns)


def check_worker_plugins(request: RequestFields, plugins: Plugins, worker: str) -> None:
    """Refuse a task whose source or format the ``plugins`` of ``worker`` lack, saying so
    (``worker W has no source 'pgtable'``): the engine that accepted the task has them,
    so it is this worker's failure, not the request's."""
    missing = [
        f"{kind} {name!r}"
        for kind, name, known in (
            ("source", request.source, plugins.sources),
            ("format", request.format, plugins.formats),
        )
        if name not in known
    ]
    if missing:
        raise ExportFailed(
            f"worker {worker} has no {' and no '.join(missing)}: install the plugin that "
            "adds it on every worker, or leave it unblocked there"
        )


def part_names(name: str, count: int) -> list[str]:
    """``name`` for one part; ``STEM-partNofCOUNT.EXT`` for each of several."""
    if count == 1:
        return [name]
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    return [f"{stem}-part{n}of{count}{dot}{extension}" for n in range(1, count + 1)]


def _stamp(moment: datetime) -> str:
    """``20240501`` for a midnight, ``20240501T083000`` otherwise."""
    return moment.strftime("%Y%m%d" if moment.time() == time() else "%Y%m%dT%H%M%S")


def _combine(failures: list[ExportError]) -> ExportError:
    """One error carrying every failure's fields; its class is theirs if they agree."""
    if len(failures) == 1:
        return failures[0]
    fields = [f for exc in failures for f in exc.fields or [FieldError("request", exc.message)]]
    kinds = {type(exc) for exc in failures}
    kind = kinds.pop() if len(kinds) == 1 else InvalidRequest
    names = ", ".join(dict.fromkeys(f.name for f in fields))
    return kind(f"invalid request: {names}", fields)
