"""What the built-in sources share: the stored time form, store access, batching.

``data.db`` stores every time as ISO 8601 text in UTC (docs/data-model.md), so
window bounds are compared as text and values are read back with
``datetime.fromisoformat``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec

from exportd import Batch, ExportFailed, FieldError, InvalidRequest, ReadContext, Window

Rows = list[tuple[Any, ...]]

SQL_INT_MAX = 2**63 - 1
"""The largest integer SQLite stores: the bound of every integer parameter."""

_UNMATCHABLE = re.compile("[\x00\ud800-\udfff]")


def db_time(moment: datetime) -> str:
    """An aware datetime in the stored form: ``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00``."""
    return moment.astimezone(UTC).isoformat()


def window_args(window: Window) -> dict[str, str]:
    """The window's bounds as SQL parameters ``:start`` (inclusive) and ``:end`` (exclusive)."""
    return {"start": db_time(window.start), "end": db_time(window.end)}


def sql_limit(*limits: int | None) -> int:
    """The smallest of the limits that are set, for SQL ``LIMIT``; -1 means none."""
    return min((limit for limit in limits if limit is not None), default=-1)


def check_text(params: msgspec.Struct) -> None:
    """Raise :class:`~exportd.InvalidRequest` naming every text parameter with a NUL
    character or a lone surrogate.

    SQLite's JSON functions (which carry the list parameters) cut text at a NUL,
    and a lone surrogate (what Python makes of undecodable bytes on a command
    line) cannot be encoded for SQLite at all.
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


@contextmanager
def connection(ctx: ReadContext) -> Iterator[sqlite3.Connection]:
    """A read-only connection to ``data.db``, closed on exit.

    A missing or unreadable store is an :class:`~exportd.ExportFailed` that names
    the file, also at request time, where a plain ``sqlite3.Error`` would escape.
    """
    if not ctx.data_path.is_file():
        raise ExportFailed(
            f"no data store at {ctx.data_path}: run `exportd demo-data` "
            "or load your data (see docs/data-model.md)"
        )
    try:
        with closing(ctx.connect()) as conn:
            yield conn
    except sqlite3.Error as exc:
        raise ExportFailed(f"cannot read the data store {ctx.data_path}: {exc}") from exc


def exists(conn: sqlite3.Connection, table: str, id_: str, org_id: str | None = None) -> bool:
    """Whether ``table`` has a row with this ``id`` (of the organisation ``org_id``, if
    given: another organisation's counts as missing)."""
    query, args = f"SELECT 1 FROM {table} WHERE id = ?", [id_]
    if org_id is not None:
        query, args = f"{query} AND org_id = ?", [id_, org_id]
    return conn.execute(query, args).fetchone() is not None


def time_range(
    ctx: ReadContext, sql: str, args: dict[str, Any] | list[Any]
) -> tuple[datetime, datetime] | None:
    """The first and the last time that ``sql`` selects (one row of two stored times),
    or ``None`` when it finds none."""
    with connection(ctx) as conn:
        first, last = conn.execute(sql, args).fetchone()
    if first is None or last is None:
        return None
    return datetime.fromisoformat(first), datetime.fromisoformat(last)


def batches(cursor: sqlite3.Cursor, size: int, convert: Callable[[Rows], Batch]) -> Iterator[Batch]:
    """Fetch ``size`` rows at a time and convert each batch with one call."""
    while rows := cursor.fetchmany(size):
        yield convert(rows)
