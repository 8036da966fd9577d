"""What the built-in sources share: the stored time forms, store access, batching.

The built-in sources read either data store (``ctx.data``): each keeps one statement per
dialect where the two must differ, in its own module.  SQLite's ``data.db`` stores every
time as ISO 8601 text in UTC (docs/data-model.md), so window bounds are compared as text;
PostgreSQL stores ``timestamptz`` and ``boolean``.  The sources read their rows as
Arrow batches (:meth:`~exportd.DataStore.arrow`), which the store types alike on both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec
import pyarrow as pa

from exportd import (
    Column,
    DataStore,
    FieldError,
    InvalidRequest,
    ReadContext,
    Window,
    arrow_schema,
    arrow_type,
)

SQL_INT_MAX = 2**63 - 1
"""The largest integer SQLite (and PostgreSQL's bigint) stores: the bound of every
integer parameter."""

_UNMATCHABLE = re.compile("[\x00\ud800-\udfff]")


class Exists(NamedTuple):
    """Whether a row with ``:id`` (``%(id)s``) exists, of the organisation ``org``
    (any, when ``org`` is null)."""

    sqlite: str
    postgresql: str


EXISTS = Exists(
    sqlite="SELECT 1 FROM {table} WHERE id = :id AND org_id = coalesce(:org, org_id)",
    postgresql="SELECT 1 FROM {table} WHERE id = %(id)s AND org_id = coalesce(%(org)s, org_id)",
)


def db_time(store: DataStore, moment: datetime) -> str | datetime:
    """An aware datetime as the store compares times: for SQLite the stored text,
    ``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00``; for PostgreSQL the datetime itself."""
    utc = moment.astimezone(UTC)
    return utc.isoformat() if store.dialect == "sqlite" else utc


def window_args(store: DataStore, window: Window) -> dict[str, str | datetime]:
    """The window's bounds as SQL parameters ``start`` (inclusive) and ``end`` (exclusive)."""
    return {"start": db_time(store, window.start), "end": db_time(store, window.end)}


def sql_limit(*limits: int | None) -> int | None:
    """The smallest of the limits that are set, for ``LIMIT``: ``None`` for none (the
    statements read SQLite's ``coalesce(:limit, -1)``, PostgreSQL's ``LIMIT NULL``)."""
    return min((limit for limit in limits if limit is not None), default=None)


def check_text(params: msgspec.Struct) -> None:
    """Raise :class:`~exportd.InvalidRequest` naming every text parameter with a NUL
    character or a lone surrogate.

    SQLite's JSON functions (which carry the list parameters) cut text at a NUL,
    PostgreSQL's text cannot hold one, and a lone surrogate (what Python makes of
    undecodable bytes on a command line) cannot be encoded for either.
    """
    unmatchable = [
        FieldError(name, "must not contain NUL characters or unpaired surrogates")
        for name, text in _texts(msgspec.to_builtins(params), "params")
        if _UNMATCHABLE.search(text)
    ]
    if unmatchable:
        raise InvalidRequest("parameters with text that cannot be matched", unmatchable)


def _texts(value: Any, name: str) -> Iterator[tuple[str, str]]:
    """Every string in a tree of dicts and lists, with its dotted name."""
    if isinstance(value, str):
        yield name, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(item, f"{name}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _texts(item, f"{name}[{index}]")


def exists(ctx: ReadContext, table: str, id_: str) -> bool:
    """Whether ``table`` has a row with this ``id`` (of the organisation ``ctx.org_id``,
    if given: another organisation's counts as missing)."""
    sql = getattr(EXISTS, ctx.data.dialect).format(table=table)
    with ctx.data.connect() as conn:
        return conn.execute(sql, {"id": id_, "org": ctx.org_id}).fetchone() is not None


def scalar(ctx: ReadContext, sql: str, args: dict[str, Any]) -> Any:
    """The one value that ``sql`` selects."""
    with ctx.data.connect() as conn:
        return conn.execute(sql, args).fetchone()[0]


def time_range(
    ctx: ReadContext, sql: str, args: dict[str, Any]
) -> tuple[datetime, datetime] | None:
    """The first and the last time that ``sql`` selects (one row of two stored times),
    or ``None`` when it finds none."""
    with ctx.data.connect() as conn:
        first, last = conn.execute(sql, args).fetchone()
    if first is None or last is None:
        return None
    if ctx.data.dialect == "sqlite":
        return datetime.fromisoformat(first), datetime.fromisoformat(last)
    return first, last


def read_arrow(
    ctx: ReadContext, sql: str, args: dict[str, Any], columns: Sequence[Column]
) -> Iterator[pa.RecordBatch]:
    """The rows of ``sql`` as record batches of ``columns``, ``ctx.batch_size`` rows each
    (:meth:`~exportd.DataStore.arrow`: SQLite's text times and 0/1 flags typed)."""
    with ctx.data.connect() as conn:
        yield from ctx.data.arrow(conn, sql, args, ctx.batch_size, columns)


def arrow_batch(rows: Sequence[tuple[Any, ...]], columns: Sequence[Column]) -> pa.RecordBatch:
    """A few rows of typed values (one per column) as a record batch of ``columns``."""
    arrays = [
        pa.array(values, arrow_type(column.type))
        for values, column in zip(zip(*rows, strict=True), columns, strict=True)
    ] or [pa.array([], arrow_type(column.type)) for column in columns]
    return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema(columns))
