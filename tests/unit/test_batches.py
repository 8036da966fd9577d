"""Batches from one form to the other: rows to Arrow keeps every value and its kind."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from exportd import Column, ExportFailed, arrow_schema
from exportd.kernel.batches import conform, in_form, to_arrow, to_rows
from exportd.plugins.formats.common import by_kind

COLUMNS = [
    Column("t"),
    Column("i", "integer"),
    Column("f", "float"),
    Column("b", "boolean"),
    Column("at", "datetime"),
    Column("d", "date"),
]
MOMENT = datetime(2024, 3, 5, 12, tzinfo=UTC)


def test_rows_that_fit_their_columns_become_arrays_of_the_columns_types() -> None:
    rows = [("a", 1, 1.5, True, MOMENT, date(2024, 3, 5)), (None,) * 6]
    batch = to_arrow(rows, COLUMNS)
    assert batch.schema == arrow_schema(COLUMNS)
    assert to_rows(batch) == rows


def test_times_in_any_zone_come_back_in_utc() -> None:
    helsinki = timezone(timedelta(hours=2))
    [(at,)] = to_rows(to_arrow([(MOMENT.astimezone(helsinki),)], [Column("at", "datetime")]))
    assert (at, at.utcoffset()) == (MOMENT, timedelta(0))


def test_sqlite_booleans_become_booleans() -> None:
    batch = to_arrow([(1,), (0,), (None,), (True,)], [Column("b", "boolean")])
    assert batch.column(0).to_pylist() == [True, False, None, True]


@pytest.mark.parametrize("column", COLUMNS[1:], ids=lambda column: column.type)
def test_text_in_a_typed_column_is_a_union_that_keeps_each_value(column: Column) -> None:
    typed = {"integer": 2, "float": 2.5, "boolean": False, "datetime": MOMENT}
    value = typed.get(column.type, date(2024, 3, 5))
    rows = [(value,), ("=1+1",), (None,), ("",), (value,)]
    batch = to_arrow(rows, [column])
    assert pa.types.is_union(batch.column(0).type)
    assert to_rows(batch) == rows


def test_values_of_another_type_keep_their_own() -> None:
    rows = [(1.5,), ("x",), (2.5,)]
    assert to_rows(to_arrow(rows, [Column("n", "integer")])) == rows


def test_by_kind_makes_the_cells_of_each_kind_in_the_rows_order() -> None:
    [array] = to_arrow([(1,), ("x",), (None,), (3,), ("y",)], [Column("n", "integer")]).columns
    cells = by_kind(array, lambda a: pc.cast(a, pa.string()), pc.utf8_upper)
    assert cells.to_pylist() == ["1", "X", None, "3", "Y"]
    # A slice, as a limit or a sheet's end cuts a batch.
    cells = by_kind(array.slice(2), lambda a: pc.cast(a, pa.string()), pc.utf8_upper)
    assert cells.to_pylist() == [None, "3", "Y"]


def test_arrow_batches_are_cast_to_the_columns_types() -> None:
    batch = pa.record_batch(
        [pa.array([1], pa.int32()), pa.array(["a"], pa.large_string())], names=["i", "t"]
    )
    cast = conform(batch, [Column("i", "integer"), Column("t")], "source 'x'")
    assert cast.schema == arrow_schema([Column("i", "integer"), Column("t")])


def test_an_arrow_batch_that_does_not_fit_blames_the_source() -> None:
    batch = pa.record_batch([pa.array(["a"])], names=["i"])
    with pytest.raises(ExportFailed, match=r"source 'x' failed: column 'i' \(integer\) came as"):
        conform(batch, [Column("i", "integer")], "source 'x'")
    with pytest.raises(ExportFailed, match="source 'x' failed: a batch has 1 arrays for its 2"):
        conform(batch, [Column("i"), Column("j")], "source 'x'")
    with pytest.raises(ExportFailed, match="yields Arrow batches, and gave a list"):
        conform([("a",)], [Column("i")], "source 'x'")  # type: ignore[arg-type]


def test_in_form_converts_only_what_is_in_the_other_form() -> None:
    rows = [("a", 1)]
    columns = [Column("t"), Column("i", "integer")]
    batch = in_form(rows, "arrow", columns)
    assert in_form(batch, "arrow", columns) is batch
    assert in_form(rows, "rows", columns) is rows
    assert in_form(batch, "rows", columns) == rows
