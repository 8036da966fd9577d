"""Batches from one form to the other (see :data:`~exportd.Form`): row tuples to Arrow
record batches and back, for a source and a format that speak different forms.

Rows to Arrow keeps every value as it is: a column whose values all fit its type
becomes an array of that type; one that mixes in text (SQLite keeps text in a
column of any type) or values of another type becomes a stray-text union
(:func:`~exportd.arrow_type`), so that a format writes each value as its kind says,
exactly as it would the row tuple's.  Arrow's strings are UTF-8, which cannot hold a
lone surrogate: each becomes U+FFFD, as every built-in format writes it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa

from exportd.errors import ExportFailed
from exportd.plugins.api import Batch, Column, ColumnType, Form, arrow_type

_NONE = type(None)
# The Python types whose values an array of the column's type holds as they are.
_FITTING: dict[ColumnType, frozenset[type]] = {
    "text": frozenset({str, _NONE}),
    "integer": frozenset({int, _NONE}),
    "float": frozenset({float, int, _NONE}),
    "boolean": frozenset({bool, _NONE}),
    "datetime": frozenset({datetime, _NONE}),
    "date": frozenset({date, _NONE}),
}
_TYPED, _TEXT = 0, 1
_UTC_MICROSECONDS = arrow_type("datetime")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SURROGATES = re.compile("[\ud800-\udfff]")


def in_form(batch: Any, form: Form, columns: Sequence[Column]) -> Any:
    """``batch`` (row tuples of ``columns``, or a record batch of them) in ``form``."""
    arrow = isinstance(batch, pa.RecordBatch)
    if form == "arrow":
        return batch if arrow else to_arrow(batch, columns)
    return to_rows(batch) if arrow else batch


def to_arrow(batch: Batch, columns: Sequence[Column]) -> pa.RecordBatch:
    """``batch``, row tuples of ``columns``, as a record batch of their Arrow schema."""
    names = [_encodable(column.name) for column in columns]
    if not batch:
        return pa.RecordBatch.from_arrays(
            [pa.array([], arrow_type(column.type)) for column in columns], names=names
        )
    by_column = list(zip(*batch, strict=True))
    arrays = [
        _array(values, column.type) for values, column in zip(by_column, columns, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def to_rows(batch: pa.RecordBatch) -> Batch:
    """``batch`` as row tuples: Arrow's values as Python objects (times aware, in UTC)."""
    return list(zip(*map(_values, batch.columns), strict=True))


def _values(array: pa.Array) -> list[Any]:
    """``array``'s values as Python objects.  Arrow makes an aware datetime of a timestamp
    through the zone database, value by value: the epoch plus a timedelta is 5x faster."""
    if array.type != _UTC_MICROSECONDS:
        values: list[Any] = array.to_pylist()
        return values
    epoch, micro = _EPOCH, timedelta(microseconds=1)
    return [None if v is None else epoch + v * micro for v in array.cast(pa.int64()).to_pylist()]


def conform(batch: pa.RecordBatch, columns: Sequence[Column], source: str) -> pa.RecordBatch:
    """``batch``, from the source labelled ``source``, with each array of the type its
    column's is (an ``int32`` cast to ``int64``, say; a stray-text union kept as it is);
    an :class:`~exportd.ExportFailed` naming the source if it does not fit ``columns``."""
    if not isinstance(batch, pa.RecordBatch):
        raise ExportFailed(
            f"{source} failed: it yields Arrow batches, and gave a {type(batch).__name__}"
        )
    if batch.num_columns != len(columns):
        raise ExportFailed(
            f"{source} failed: a batch has {batch.num_columns} arrays for its "
            f"{len(columns)} columns"
        )
    arrays = [
        _cast(array, column, source) for array, column in zip(batch.columns, columns, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, names=[column.name for column in columns])


def _cast(array: pa.Array, column: Column, source: str) -> pa.Array:
    wanted = arrow_type(column.type)
    if array.type == wanted or pa.types.is_union(array.type):
        return array
    try:
        return array.cast(wanted)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ExportFailed(
            f"{source} failed: column {column.name!r} ({column.type}) came as {array.type}: {exc}"
        ) from None


def _array(values: Sequence[Any], column_type: ColumnType) -> pa.Array:
    """One column's values as an array of its type, or a stray-text union."""
    typed = _typed(values, column_type)
    return typed if typed is not None else _stray_text_union(values, column_type)


def _typed(values: Sequence[Any], column_type: ColumnType) -> pa.Array | None:
    """``values`` as an array of the column's type, if they all fit it; else ``None``."""
    kinds = set(map(type, values))
    if kinds <= _FITTING[column_type]:
        if column_type == "text":
            return _strings(values)
        return pa.array(values, arrow_type(column_type))
    if column_type == "boolean" and kinds <= {bool, int, _NONE}:  # SQLite's 0 and 1
        return pa.array([v if v is None else bool(v) for v in values], pa.bool_())
    return None


def _stray_text_union(values: Sequence[Any], column_type: ColumnType) -> pa.Array:
    """``values`` as a dense union of their typed values (child 0) and text (child 1).

    The typed values are of the column's type where they fit it, else of the type Arrow
    infers for them (floats in an integer column stay floats); values Arrow cannot put
    in one array (numbers beside times, say) join the text, as ``str()`` writes them.
    """
    others = [v for v in values if v.__class__ is not str]
    typed = _typed(others, column_type)
    if typed is None:
        try:
            typed = pa.array(others)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            values = [v if v is None or v.__class__ is str else str(v) for v in values]
            others = [v for v in values if v.__class__ is not str]
            typed = pa.array(others, arrow_type(column_type))
    codes = [_TEXT if v.__class__ is str else _TYPED for v in values]
    offsets, counts = [], [0, 0]
    for code in codes:
        offsets.append(counts[code])
        counts[code] += 1
    text = [v for v in values if v.__class__ is str]
    return pa.UnionArray.from_dense(
        pa.array(codes, pa.int8()),
        pa.array(offsets, pa.int32()),
        [typed, _strings(text)],
    )


def _strings(values: Sequence[str | None]) -> pa.Array:
    """``values`` as a string array, each lone surrogate as U+FFFD."""
    try:
        return pa.array(values, pa.string())
    except UnicodeEncodeError:
        return pa.array([v if v is None else _encodable(v) for v in values], pa.string())


def _encodable(text: str) -> str:
    return _SURROGATES.sub("\ufffd", text)
