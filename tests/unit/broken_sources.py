"""Sources that each break one rule of the plugin guide, for the test kit's
check_source (and ``rows``, which breaks none)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from exportd import Batch, Column, NoParams, ReadContext, Source, arrow_schema, hookimpl

COLUMNS = [Column("n", "integer"), Column("label"), Column("at", "datetime", "time")]


class Rows(Source[NoParams]):
    """Three batches of two rows (n, "row n", a time) in any window: keeps every rule."""

    name = "rows"

    def columns(self, params: NoParams, ctx: ReadContext) -> Sequence[Column]:
        """:data:`COLUMNS`."""
        return COLUMNS

    def read(self, params: NoParams, ctx: ReadContext) -> Iterator[Batch]:
        """Rows 0 to 5, two a batch."""
        for first in range(0, 6, 2):
            yield [self.row(n, ctx) for n in (first, first + 1)]

    def row(self, n: int, ctx: ReadContext) -> tuple[Any, ...]:
        """Row ``n``, at the start of the window."""
        return (n, f"row {n}", ctx.window.start)


class ShortRows(Rows):
    """Rows of two values for three columns."""

    name = "short_rows"

    def row(self, n: int, ctx: ReadContext) -> tuple[Any, ...]:
        return (n, f"row {n}")


class NaiveTimes(Rows):
    """Times without a zone in the datetime column."""

    name = "naive_times"

    def row(self, n: int, ctx: ReadContext) -> tuple[Any, ...]:
        return (n, f"row {n}", ctx.window.start.replace(tzinfo=None))


class TextNumbers(Rows):
    """Numbers as text in the integer column."""

    name = "text_numbers"

    def row(self, n: int, ctx: ReadContext) -> tuple[Any, ...]:
        return (str(n), f"row {n}", ctx.window.start)


class MoneyColumn(Rows):
    """A column of a type exportd does not know."""

    name = "money_column"

    def columns(self, params: NoParams, ctx: ReadContext) -> Sequence[Column]:
        return [*COLUMNS[:2], Column("at", "money")]


class NegativeEstimate(Rows):
    """An estimate of fewer than no rows."""

    name = "negative_estimate"

    def estimate(self, params: NoParams, ctx: ReadContext) -> int:
        return -1


class NoRows(Rows):
    """Nothing, in any window: a check of it would check nothing."""

    name = "no_rows"

    def read(self, params: NoParams, ctx: ReadContext) -> Iterator[Batch]:
        yield from ()


class FailsLater(Rows):
    """One batch, then an exception."""

    name = "fails_later"

    def read(self, params: NoParams, ctx: ReadContext) -> Iterator[Batch]:
        yield [self.row(0, ctx)]
        raise ZeroDivisionError("division by zero")


class IgnoresCancel(Rows):
    """Goes on yielding when exportd closes it, as a canceled export does."""

    name = "ignores_cancel"

    def read(self, params: NoParams, ctx: ReadContext) -> Iterator[Batch]:
        for n in range(3):
            try:
                yield [self.row(n, ctx)]
            except GeneratorExit:
                yield [self.row(n, ctx)]


class FailsWhenEmpty(Rows):
    """A row per whole hour of the window, and a crash for a window without one."""

    name = "fails_when_empty"

    def read(self, params: NoParams, ctx: ReadContext) -> Iterator[Batch]:
        start, end = ctx.window.start, ctx.window.end
        first = start.replace(minute=0, second=0, microsecond=0)
        hours = [first + timedelta(hours=n) for n in range(48)]
        inside = [hour for hour in hours if start <= hour < end]
        opened = min(inside)
        yield [(n, f"{hour - opened} in", hour) for n, hour in enumerate(inside)]


class BadTimeRange(Rows):
    """A time range that ends before it starts."""

    name = "bad_time_range"

    def time_range(self, params: NoParams, ctx: ReadContext) -> tuple[datetime, datetime]:
        return (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC))


class ArrowRows(Rows):
    """The rows of :class:`Rows` in Arrow batches, n as int32 (which casts to int64), read
    in slices of whole batches: keeps every rule."""

    name = "arrow_rows"
    form = "arrow"
    sliceable = True

    def read(self, params: NoParams, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Its slice of the batches of :class:`Rows`, as record batches."""
        for index, rows in enumerate(super().read(params, ctx)):
            if index * ctx.slice_count // 3 == ctx.slice:
                n, label, at = zip(*rows, strict=True)
                yield pa.record_batch(
                    [pa.array(n, pa.int32()), pa.array(label), pa.array(at)],
                    schema=arrow_schema(COLUMNS).set(0, pa.field("n", pa.int32())),
                )


class ArrowTextNumbers(ArrowRows):
    """Record batches with numbers as text in the integer column."""

    name = "arrow_text_numbers"

    def read(self, params: NoParams, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        for batch in super().read(params, ctx):
            text = [f"#{n}" for n in batch.column(0).to_pylist()]
            yield batch.set_column(0, "n", pa.array(text))


class WholeSlices(ArrowRows):
    """A sliceable source whose every slice reads every row."""

    name = "whole_slices"

    def read(self, params: NoParams, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        for index in range(ctx.slice_count):
            ctx.slice = index
            yield from super().read(params, ctx)


@hookimpl
def exportd_sources() -> list[Source[Any]]:
    """Every source of this module."""
    return [
        cls()
        for cls in (
            Rows,
            ShortRows,
            NaiveTimes,
            TextNumbers,
            MoneyColumn,
            NegativeEstimate,
            NoRows,
            FailsLater,
            IgnoresCancel,
            FailsWhenEmpty,
            BadTimeRange,
            ArrowRows,
            ArrowTextNumbers,
            WholeSlices,
        )
    ]
