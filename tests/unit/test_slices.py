"""Slices of a sliceable source read at once: the file is the one a single read writes.

Each test runs in a format that joins (csv: each slice is read and encoded by a thread
of its own, as a piece, :class:`~exportd.kernel.pieces.ThreadedJoin`) and in one that
does not (json: the slices are read in threads and encoded one after the other).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO, ClassVar

import msgspec
import pyarrow as pa
import pytest

from exportd import Cancelled, Column, ExportFailed, ReadContext, Source, hookimpl
from exportd.kernel import slices
from exportd.kernel.batches import to_arrow
from exportd.kernel.datastores import SqliteStore
from exportd.kernel.pieces import Join, Pieces
from exportd.kernel.pipeline import run_export
from exportd.kernel.plan import ExportPlan, plan_export
from exportd.messages import ExportRequest
from exportd.plugins.manager import Plugins


class NumbersParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    rows: Annotated[int, msgspec.Meta(ge=0)]
    explode_in: int | None = None
    """The slice whose read fails after its first batch."""
    slow: float = 0.0
    """Seconds slice 0 sleeps before each batch."""
    stray_at: int | None = None
    """The number whose label is an integer, among text: a stray-text union there."""


class NumbersSource(Source[NumbersParams]):
    """The numbers below ``rows`` and their labels, in Arrow batches; each slice a range."""

    name = "numbers"
    Params = NumbersParams
    form = "arrow"
    sliceable = True
    read_by: ClassVar[list[tuple[int, int, str]]] = []
    """(slice, slice count, thread name) of every read, for the tests."""
    slicings: ClassVar[list[tuple[int, str]]] = []
    """(slice count, thread name) of every call of slicing()."""

    def columns(self, params: NumbersParams, ctx: ReadContext) -> Sequence[Column]:
        return [Column("n", "integer"), Column("label")]

    def estimate(self, params: NumbersParams, ctx: ReadContext) -> int | None:
        return params.rows

    def slicing(self, params: NumbersParams, ctx: ReadContext) -> Any:
        self.slicings.append((ctx.slice_count, threading.current_thread().name))
        return ("bounds of", ctx.slice_count)

    def read(self, params: NumbersParams, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        assert ctx.slicing == (None if ctx.slice_count == 1 else ("bounds of", ctx.slice_count))
        self.read_by.append((ctx.slice, ctx.slice_count, threading.current_thread().name))
        size = -(-params.rows // ctx.slice_count)
        start, stop = ctx.slice * size, min(params.rows, (ctx.slice + 1) * size)
        for low in range(start, stop, ctx.batch_size):
            if ctx.slice == params.explode_in and low > start:
                raise RuntimeError(f"slice {ctx.slice} broke")
            if ctx.slice == 0:
                time.sleep(params.slow)
            rows = [
                (n, n if n == params.stray_at else f"#{n}")
                for n in range(low, min(stop, low + ctx.batch_size))
            ]
            batch = to_arrow(rows, self.columns(params, ctx))
            # An int32 the pipeline casts, and a union in the batch holding stray_at.
            yield batch.set_column(0, "n", batch.column(0).cast(pa.int32()))


class ChatsParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    held: list[int]
    """Which of the conversations 0 to 3 have messages."""


class ChatsSource(Source[ChatsParams]):
    """A transcript of up to four conversations of three messages; slice ``i`` of
    ``count`` holds those whose number times ``count`` over four is ``i``: in four
    slices, one conversation each, and a slice of one that has none is empty."""

    name = "chats"
    Params = ChatsParams
    sliceable = True
    read_by: ClassVar[list[tuple[int, int]]] = []
    """(slice, slice count) of every read, for the tests."""

    def columns(self, params: ChatsParams, ctx: ReadContext) -> Sequence[Column]:
        return [
            Column("conversation_id", "integer", "conversation"),
            Column("sent_at", "datetime", "time"),
            Column("sender", "text", "author"),
            Column("body", "text", "text"),
        ]

    def estimate(self, params: ChatsParams, ctx: ReadContext) -> int | None:
        return 400

    def read(self, params: ChatsParams, ctx: ReadContext) -> Iterator[list[tuple[Any, ...]]]:
        self.read_by.append((ctx.slice, ctx.slice_count))
        for conversation in sorted(params.held):
            if conversation * ctx.slice_count // 4 == ctx.slice:
                sent = datetime(2024, 3, 1, conversation, tzinfo=UTC)
                yield [(conversation, sent, f"author {n}", f"message {n}") for n in range(3)]


@hookimpl
def exportd_sources() -> list[Source[Any]]:
    return [NumbersSource(), ChatsSource()]


PLUGINS = Plugins(entry_points=False, extra=[__import__(__name__, fromlist=["_"])])


FORMAT = "csv"


@pytest.fixture(autouse=True, params=["csv", "json"])
def small_slices(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """A slice for every 100 estimated rows, so that small exports are sliced; the
    format of the test's exports."""
    monkeypatch.setattr(slices, "SLICE_ROWS", 100)
    monkeypatch.setitem(globals(), "FORMAT", request.param)
    NumbersSource.read_by.clear()
    NumbersSource.slicings.clear()
    ChatsSource.read_by.clear()


def numbers(limit: int | None = None, **params: Any) -> ExportPlan:
    return plan_of("numbers", limit, params)


def plan_of(source: str, limit: int | None, params: dict[str, Any]) -> ExportPlan:
    request = msgspec.convert(
        {
            "source": source,
            "format": FORMAT,
            "params": params,
            "limit": limit,
            "interval": {"start": "2024-03-01", "end": "2024-03-02"},
        },
        ExportRequest,
    )
    plan = plan_export(request, PLUGINS, SqliteStore(Path("unused.db")))
    return dataclasses.replace(plan, generated_at=datetime(2024, 3, 2, tzinfo=UTC))


def export(tmp_path: Path, plan: ExportPlan, count: int, **options: Any) -> bytes:
    target = tmp_path / f"{count}.{FORMAT}"
    info = run_export(plan, target, batch_size=30, slices=count, **options)
    content = target.read_bytes()
    assert info.size == len(content)
    return content


def test_slices_read_in_threads_of_their_own_write_the_file_of_one_read(tmp_path: Path) -> None:
    whole = export(tmp_path, numbers(rows=1000, stray_at=512), 1)
    assert NumbersSource.read_by == [(0, 1, threading.current_thread().name)]
    NumbersSource.read_by.clear()

    assert export(tmp_path, numbers(rows=1000, stray_at=512), 3) == whole
    # The bounds the slices agree on are worked out once, before the slices start.
    assert NumbersSource.slicings == [(3, threading.current_thread().name)]
    assert sorted(one[:2] for one in NumbersSource.read_by) == [(0, 3), (1, 3), (2, 3)]
    readers = {one[:2]: one[2] for one in NumbersSource.read_by}
    here = threading.current_thread().name
    # As a piece, slice 0 is read and written here; else every slice has a thread.
    assert (readers[0, 3] == here) is (FORMAT == "csv")
    assert here not in (readers[1, 3], readers[2, 3])
    if FORMAT == "csv":
        assert whole.decode().splitlines()[513] == "512,512"
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"1.{FORMAT}", f"3.{FORMAT}"]


@pytest.mark.parametrize("small_slices", ["csv", "json_bulk", "txt"], indirect=True)
@pytest.mark.parametrize(
    "held",
    [[1, 2, 3], [0, 3], [3], [0], []],
    ids=[
        "first-empty",
        "middle-empty",
        "all-but-the-last-empty",
        "all-but-the-first-empty",
        "all-empty",
    ],
)
def test_slices_without_rows_join_into_the_file_of_one_read(
    tmp_path: Path, small_slices: None, held: list[int]
) -> None:
    """Each format that joins writes the same file in four pieces, whichever are empty:
    no piece's separator or header depends on whether the pieces before it hold rows."""
    whole = export(tmp_path, plan_of("chats", None, {"held": held}), 1)
    assert export(tmp_path, plan_of("chats", None, {"held": held}), 4) == whole
    assert sorted(ChatsSource.read_by) == [(0, 1), (0, 4), (1, 4), (2, 4), (3, 4)]


def test_no_more_slices_than_the_estimate_fills_and_none_with_a_limit(tmp_path: Path) -> None:
    export(tmp_path, numbers(rows=250), 8)
    assert sorted(one[:2] for one in NumbersSource.read_by) == [(0, 2), (1, 2)]
    NumbersSource.read_by.clear()

    content = export(tmp_path, numbers(limit=500, rows=1000), 4)
    assert [one[:2] for one in NumbersSource.read_by] == [(0, 1)]
    assert content.count(b"\n") == 501 if FORMAT == "csv" else content.count(b'{"n":') == 500


@pytest.mark.parametrize("broken", [0, 2])
def test_a_slice_that_fails_fails_the_export_and_leaves_no_file(
    tmp_path: Path, broken: int
) -> None:
    with pytest.raises(
        ExportFailed, match=f"source 'numbers' failed: RuntimeError: slice {broken} broke"
    ):
        export(tmp_path, numbers(rows=1000, explode_in=broken), 3)
    assert list(tmp_path.iterdir()) == []


def test_a_slice_that_fails_stops_the_others_at_once(tmp_path: Path) -> None:
    written: list[int] = []
    with pytest.raises(ExportFailed, match="slice 2 broke"):
        run_export(
            numbers(rows=3000, explode_in=2, slow=0.05),
            tmp_path / f"out.{FORMAT}",
            batch_size=30,
            slices=3,
            on_progress=lambda progress: written.append(progress.rows),
        )
    # Slice 0 (1,000 rows, 20 s at its pace) was cut short, not read to its end first.
    assert max(written, default=0) < 1000
    assert list(tmp_path.iterdir()) == []


def test_a_cancel_stops_every_slice_and_leaves_no_file(tmp_path: Path) -> None:
    written: list[int] = []

    def cancelled() -> bool:
        return len(written) > 3

    with pytest.raises(Cancelled):
        run_export(
            numbers(rows=3000),
            tmp_path / f"out.{FORMAT}",
            batch_size=30,
            slices=3,
            cancelled=cancelled,
            on_progress=lambda progress: written.append(progress.rows),
        )
    assert list(tmp_path.iterdir()) == []
    assert not [
        thread
        for thread in threading.enumerate()
        if thread.name.startswith(("exportd-slice", "exportd-piece"))
    ]


class FarPieces(Join):
    """Other workers' pieces, each worth far more rows than the export has."""

    most, piece_rows = 4, 10**9

    def start(self, pieces: Pieces) -> None:
        raise AssertionError("too small an export for these pieces")

    def finish(self, file: BinaryIO, rows: int, progressed: Callable[[int], None]) -> int:
        raise AssertionError("too small an export for these pieces")

    def abandon(self) -> None:
        raise AssertionError("too small an export for these pieces")


def test_an_export_too_small_for_its_joins_pieces_is_still_sliced_here(tmp_path: Path) -> None:
    """With ``worker.pieces`` on, an export below two of its pieces' rows keeps the
    threads of this host's cores."""
    whole = export(tmp_path, numbers(rows=1000), 1)
    NumbersSource.read_by.clear()

    assert export(tmp_path, numbers(rows=1000), 3, join=FarPieces()) == whole
    assert sorted(one[:2] for one in NumbersSource.read_by) == [(0, 3), (1, 3), (2, 3)]
