"""A SQLite statement's rows as Arrow record batches of a source's columns, by ADBC.

ADBC's SQLite driver types each result column from the values of its first batch
(text if any of them is text, an integer if all are null) and fails on a later
value of another type; SQLite stores times as ISO 8601 text and flags as 0/1.
:func:`read_arrow` types each batch's arrays as the columns say (the text times
parsed as one column, the flags compared with 1).  After a later value of another
type (text after a batch of nulls, say) it reads again from there, so that the new
first batch types the column.  A batch that does not fit (a column ADBC typed as
text for stray text in it, a time Arrow does not parse) is read with :mod:`sqlite3`
as Python values, converted one by one as the row-form sources always did, so that
stray text stays text (a stray-text union); after :data:`RESTARTS` such restarts the
rest is read so.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

# Arrow's compute functions called by name: pyarrow.compute (which Array.cast imports)
# makes a wrapper of each of its 280-odd functions as it loads, 20-30 ms of start-up.
from pyarrow._compute import CastOptions, call_function

from exportd.errors import ExportFailed
from exportd.kernel.batches import to_arrow
from exportd.plugins.api import Column, SqlArgs, arrow_type

if TYPE_CHECKING:
    from exportd.kernel.datastores import SqliteStore

BATCH_ROWS = "adbc.sqlite.query.batch_rows"
RESTARTS = 8
"""How many times a read starts again, after a batch ADBC could not type, before it
reads the rest with sqlite3."""
_MISMATCH = "Type mismatch"


def read_arrow(
    store: SqliteStore,
    conn: sqlite3.Connection,
    sql: str,
    args: SqlArgs,
    size: int,
    *,
    columns: Sequence[Column],
) -> Iterator[pa.RecordBatch]:
    """The rows of ``sql`` (one statement, no trailing ``;``) in record batches of
    ``size`` rows of ``columns``, read by an ADBC connection of ``store``'s; ``conn``
    reads the batches that do not fit the columns."""
    delivered = 0
    for _ in range(RESTARTS):
        misfit = False
        try:
            with closing(_adbc_batches(store, _after(sql, delivered), args, size)) as batches:
                for batch in batches:
                    typed = _typed(batch, columns)
                    if typed is None:
                        misfit = True
                        break
                    delivered += typed.num_rows
                    yield typed
                else:
                    return
        except OSError as exc:  # the reader's error for a value of another type
            if _MISMATCH not in str(exc):
                raise ExportFailed(f"cannot read the data store {store.path}: {exc}") from None
        if misfit:
            rows = _row_batches(conn, sql, args, size, columns=columns, skip=delivered)
            if (batch := next(rows, None)) is None:
                return
            delivered += batch.num_rows
            yield batch
    yield from _row_batches(conn, sql, args, size, columns=columns, skip=delivered)


def _after(sql: str, skip: int) -> str:
    """``sql`` without its first ``skip`` rows (SQLite reads a subquery in its order)."""
    return f"SELECT * FROM ({sql}) LIMIT -1 OFFSET {skip:d}" if skip else sql


def _adbc_batches(
    store: SqliteStore, sql: str, args: SqlArgs, size: int
) -> Generator[pa.RecordBatch]:
    from exportd.kernel import adbc

    try:
        with store.adbc_connection() as connection:
            yield from connection.batches(sql, args, {BATCH_ROWS: str(size)})
    except adbc.Error as exc:
        raise ExportFailed(f"cannot read the data store {store.path}: {exc}") from None


def _typed(batch: pa.RecordBatch, columns: Sequence[Column]) -> pa.RecordBatch | None:
    """``batch`` with each array of its column's Arrow type, or ``None`` if one does not
    convert as a whole."""
    arrays = []
    for array, column in zip(batch.columns, columns, strict=True):
        wanted = arrow_type(column.type)
        if array.type == wanted:
            arrays.append(array)
        elif pa.types.is_null(array.type):
            arrays.append(pa.nulls(len(array), wanted))
        elif column.type == "boolean" and pa.types.is_integer(array.type):
            arrays.append(call_function("equal", [array, 1]))
        elif column.type == "float" and pa.types.is_integer(array.type):
            arrays.append(_cast(array, wanted))
        elif column.type == "datetime" and pa.types.is_string(array.type):
            try:
                arrays.append(_cast(array, wanted))
            except pa.ArrowInvalid:
                return None
        else:
            return None
    return pa.RecordBatch.from_arrays(arrays, names=[column.name for column in columns])


def _cast(array: pa.Array, wanted: pa.DataType) -> pa.Array:
    """``array.cast(wanted)``, checked as it checks (overflow, truncation, bad text)."""
    return call_function("cast", [array], CastOptions.safe(wanted))


def _row_batches(
    conn: sqlite3.Connection,
    sql: str,
    args: SqlArgs,
    size: int,
    *,
    columns: Sequence[Column],
    skip: int,
) -> Iterator[pa.RecordBatch]:
    """The rows of ``sql`` after the first ``skip``, converted value by value."""
    kinds = [column.type for column in columns]
    cursor = conn.execute(_after(sql, skip), args)
    while rows := cursor.fetchmany(size):
        values = [tuple(map(_value, row, kinds)) for row in rows]
        yield to_arrow(values, columns)


def _value(value: Any, kind: str) -> Any:
    """A stored value as its column's type takes it; one that does not fit stays as it is."""
    if kind == "datetime" and isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    if kind == "boolean" and isinstance(value, int):
        return value == 1
    return value
