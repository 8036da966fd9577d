"""Batches from one form to the other (see :data:`~exportd.Form`): row tuples to Arrow
record batches and back, for a source and a format that speak different forms.

Rows to Arrow keeps every value as it is: a column whose values all fit its type
becomes an array of that type; one that mixes in text (SQLite keeps text in a
column of any type) or values of another type becomes a stray-text union
(:func:`~exportd.arrow_type`), so that a format writes each value as its kind says,
exactly as it would the row tuple's.  The one exception: Arrow's text is UTF-8, which
cannot hold a lone surrogate, so each becomes U+FFFD, as every built-in format writes it.
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
    """``batch``, row tuples of ``columns``, as a record batch of their Arrow schema
    (lone surrogates in its text and names as U+FFFD)."""
    names = [_encodable(column.name) for column in columns]
    if not batch:
        return pa.RecordBatch.from_arrays(
            [pa.array([], arrow_type(column.type)) for column in columns], names=names
        )
    by_column: list[Sequence[Any]] = list(zip(*batch, strict=True))
    try:
        arrays = [
            _array(values, column.type) for values, column in zip(by_column, columns, strict=True)
        ]
    except UnicodeEncodeError:  # only a batch holding a lone surrogate pays for this
        by_column = [[_encodable(v) for v in values] for values in by_column]
        arrays = [
            _array(values, column.type) for values, column in zip(by_column, columns, strict=True)
        ]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _encodable(value: Any) -> Any:
    """``value`` with each lone surrogate as U+FFFD if it is text."""
    return _SURROGATES.sub("\ufffd", value) if value.__class__ is str else value


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
    """``values`` as an array of the column's type, if they all fit it (an integer beyond
    64 bits does not); else ``None``."""
    kinds = set(map(type, values))
    try:
        if kinds <= _FITTING[column_type]:
            return pa.array(values, arrow_type(column_type))
        if (
            column_type == "boolean"
            and kinds <= {bool, int, _NONE}
            and all(v in (0, 1) for v in values if v is not None)  # SQLite's 0 and 1
        ):
            return pa.array([v if v is None else bool(v) for v in values], pa.bool_())
    except (pa.ArrowInvalid, OverflowError):
        pass
    return None


def _numbers(values: list[Any]) -> pa.Array | None:
    """``values``, numbers in a numeric or boolean column, as the array Arrow infers for
    them (floats in an integer column stay floats); ``None`` for any other values."""
    try:
        inferred = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None
    kind = inferred.type
    return inferred if pa.types.is_integer(kind) or pa.types.is_floating(kind) else None


def _stray_text_union(values: Sequence[Any], column_type: ColumnType) -> pa.Array:
    """``values`` as a dense union of their typed values (child 0) and text (child 1).

    The typed values are of the column's type where they fit it; numbers in a numeric or
    boolean column that do not (floats among integers, a 2 among 0s and 1s) are of the
    type Arrow infers for them.  Any others (an integer in a datetime column, numbers
    beside times) join the text, as ``str()`` writes them, rather than change meaning.
    """
    others = [v for v in values if v.__class__ is not str]
    typed = _typed(others, column_type)
    if typed is None and column_type in {"integer", "float", "boolean"}:
        typed = _numbers(others)
    if typed is None:
        values = [v if v is None or v.__class__ is str else str(v) for v in values]
        typed = pa.array([v for v in values if v is None], arrow_type(column_type))
    codes = [_TEXT if v.__class__ is str else _TYPED for v in values]
    offsets, counts = [], [0, 0]
    for code in codes:
        offsets.append(counts[code])
        counts[code] += 1
    text = [v for v in values if v.__class__ is str]
    return pa.UnionArray.from_dense(
        pa.array(codes, pa.int8()),
        pa.array(offsets, pa.int32()),
        [typed, pa.array(text, pa.string())],
    )
