"""run_export: the file appears whole or not at all, with its hash, size and rows."""

from __future__ import annotations

import dataclasses
import hashlib
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import pytest
from openpyxl.worksheet._writer import ALL_TEMP_FILES

from exportd import (
    Batch,
    Cancelled,
    Column,
    ExportFailed,
    ExportInfo,
    ReadContext,
    RowWriter,
    hookimpl,
)
from exportd.kernel.datastores import SqliteStore
from exportd.kernel.pipeline import run_export
from exportd.kernel.plan import ExportPlan, plan_export
from exportd.messages import ExportRequest, Progress
from exportd.plugins.manager import Plugins
from tests.unit import toy_plugins

PLUGINS = Plugins(builtins=False, entry_points=False, extra=[toy_plugins])

NOWHERE = SqliteStore(Path("unused.db"))
"""A data store the toy plugins never read."""


def plan(**params: Any) -> ExportPlan:
    limit = params.pop("limit", None)
    request = msgspec.convert(
        {
            "source": "count",
            "format": "lines",
            "params": params,
            "limit": limit,
            "interval": {"start": "2024-03-01", "end": "2024-03-02"},
        },
        ExportRequest,
    )
    return plan_export(request, PLUGINS, NOWHERE)


def test_the_file_holds_every_row_and_its_description_is_true(tmp_path: Path) -> None:
    target = tmp_path / "out" / "count.lines"
    info = run_export(plan(rows=25), target, batch_size=10)
    lines = target.read_text().splitlines()
    assert lines[0] == "n|square|label"
    assert lines[1:-1] == [f"{n}|{n * n}|row {n}" for n in range(25)]
    assert lines[-1] == "-- end"
    assert info.rows == 25
    assert info.size == target.stat().st_size
    assert info.sha256 == hashlib.sha256(target.read_bytes()).hexdigest()
    assert info.media_type == "text/plain"
    assert list(target.parent.iterdir()) == [target]


def test_progress_is_reported_after_every_batch(tmp_path: Path) -> None:
    seen: list[Progress] = []
    run_export(plan(rows=25), tmp_path / "f", batch_size=10, on_progress=seen.append)
    assert [(p.rows, p.total) for p in seen] == [(10, 25), (20, 25), (25, 25)]
    assert seen[-1].bytes > seen[0].bytes > 0


def test_the_limit_cuts_the_rows_and_the_estimate(tmp_path: Path) -> None:
    seen: list[Progress] = []
    info = run_export(
        plan(rows=25, limit=12), tmp_path / "f", batch_size=10, on_progress=seen.append
    )
    assert info.rows == 12
    assert len((tmp_path / "f").read_text().splitlines()) == 12 + 2
    assert [(p.rows, p.total) for p in seen] == [(10, 12), (12, 12)]


def test_a_cancelled_export_leaves_no_file(tmp_path: Path) -> None:
    calls = 0

    def cancelled() -> bool:
        nonlocal calls
        calls += 1
        return calls > 2

    with pytest.raises(Cancelled):
        run_export(plan(rows=100), tmp_path / "f", batch_size=10, cancelled=cancelled)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_source_fails_the_export_naming_it_and_leaves_no_file(
    tmp_path: Path,
) -> None:
    with pytest.raises(ExportFailed) as caught:
        run_export(plan(rows=100, explode_at=35), tmp_path / "f", batch_size=10)
    assert str(caught.value) == "source 'count' failed: RuntimeError: boom at 35"
    assert list(tmp_path.iterdir()) == []


def test_a_failing_format_fails_the_export_naming_it(tmp_path: Path) -> None:
    bad = plan(rows=3)
    bad = ExportPlan(
        request=bad.request,
        source=bad.source,
        format=bad.format,
        params=bad.params,
        options=toy_plugins.LinesOptions(separator=None),  # type: ignore[arg-type]
        window=bad.window,
        data=bad.data,
        columns=bad.columns,
    )
    with pytest.raises(ExportFailed, match="format 'lines' failed: AttributeError"):
        run_export(bad, tmp_path / "f")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_replaced_only_when_the_new_one_is_complete(
    tmp_path: Path,
) -> None:
    target = tmp_path / "f"
    target.write_text("previous")
    with pytest.raises(ExportFailed):
        run_export(plan(rows=100, explode_at=50), target, batch_size=10)
    assert target.read_text() == "previous"
    run_export(plan(rows=1), target)
    assert target.read_text().startswith("n|square|label")


def test_a_failed_xlsx_export_leaves_no_temporary_sheet_files(tmp_path: Path) -> None:
    plugins = Plugins(entry_points=False, extra=[toy_plugins])
    request = msgspec.convert(
        {
            "source": "count",
            "format": "xlsx",
            "params": {"rows": 100, "explode_at": 50},
            "interval": {"start": "2024-03-01", "end": "2024-03-02"},
        },
        ExportRequest,
    )
    before = {Path(p) for p in ALL_TEMP_FILES if Path(p).exists()}
    with pytest.raises(ExportFailed):
        run_export(plan_export(request, plugins, NOWHERE), tmp_path / "f", batch_size=10)
    assert {Path(p) for p in ALL_TEMP_FILES if Path(p).exists()} == before
    assert list(tmp_path.iterdir()) == []


def test_only_a_regular_file_is_ever_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    link = tmp_path / "link"
    link.symlink_to(victim)
    for target in (folder, link, Path("/dev/null")):
        with pytest.raises(ExportFailed, match="it is not a regular file"):
            run_export(plan(rows=3), target)
    assert victim.read_text() == "keep me"
    assert Path("/dev/null").is_char_device()


def test_the_data_store_is_never_replaced(tmp_path: Path) -> None:
    store = tmp_path / "data.db"
    store.write_text("precious")
    guarded = dataclasses.replace(plan(rows=3), data=SqliteStore(store))
    with pytest.raises(ExportFailed, match="it is the data store"):
        run_export(guarded, tmp_path / "." / "data.db")
    assert store.read_text() == "precious"


class SquattingFormat(toy_plugins.LinesFormat):
    """Lines, but a folder takes the target's place while the file is written."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def open(
        self,
        file: BinaryIO,
        columns: Sequence[Column],
        options: toy_plugins.LinesOptions,
        info: ExportInfo,
    ) -> RowWriter:
        self.target.mkdir()
        return super().open(file, columns, options, info)


def test_an_error_names_the_target_never_the_unfinished_file(tmp_path: Path) -> None:
    target = tmp_path / "count.lines"
    squatted = dataclasses.replace(plan(rows=3), format=SquattingFormat(target))
    with pytest.raises(IsADirectoryError) as caught:
        run_export(squatted, target)
    assert (caught.value.filename, caught.value.filename2) == (str(target), None)
    assert ".partial" not in str(caught.value)
    assert [path.name for path in tmp_path.iterdir()] == ["count.lines"]  # the folder


class RaggedParams(toy_plugins.CountParams, kw_only=True):
    """How many rows, which one lacks its label and which one is a number."""

    short_at: int | None = None
    junk_at: int | None = None


class RaggedSource(toy_plugins.CountSource):
    """Counts, but row ``short_at`` lacks its label and row ``junk_at`` is a number."""

    name = "ragged"
    Params = RaggedParams

    def read(self, params: toy_plugins.CountParams, ctx: ReadContext) -> Iterator[Batch]:
        assert isinstance(params, RaggedParams)
        for batch in super().read(params, ctx):
            yield [
                row[:2] if row[0] == params.short_at else 7 if row[0] == params.junk_at else row
                for row in batch
            ]


class ClosingWriter(toy_plugins.LinesWriter):
    """Lines, closing the file it was given at ``close`` (or at the first ``write``)."""

    def __init__(self, file: BinaryIO, columns: Sequence[Column], *, at_write: bool) -> None:
        super().__init__(file, columns, "|")
        self.at_write = at_write

    def write(self, batch: Batch) -> None:
        super().write(batch)
        if self.at_write:
            self.file.close()

    def close(self) -> None:
        super().close()
        self.file.close()


class ClosingFormat(toy_plugins.LinesFormat):
    """A format that closes the file it writes into, as ``with file:`` in ``close`` would."""

    name = "closing"

    def open(
        self,
        file: BinaryIO,
        columns: Sequence[Column],
        options: toy_plugins.LinesOptions,
        info: ExportInfo,
    ) -> RowWriter:
        return ClosingWriter(file, columns, at_write=options.stamp)


def rogue_plugins() -> Plugins:
    rogue = types.ModuleType("rogue_plugin")

    @hookimpl
    def exportd_sources() -> list[Any]:
        return [RaggedSource()]

    @hookimpl
    def exportd_formats() -> list[Any]:
        return [ClosingFormat()]

    rogue.exportd_sources = exportd_sources  # type: ignore[attr-defined]
    rogue.exportd_formats = exportd_formats  # type: ignore[attr-defined]
    return Plugins(builtins=False, entry_points=False, extra=[toy_plugins, rogue])


def rogue_plan(source: str, format_: str, **fields: Any) -> ExportPlan:
    request = msgspec.convert(
        {
            "source": source,
            "format": format_,
            "interval": {"start": "2024-03-01", "end": "2024-03-02"},
        }
        | fields,
        ExportRequest,
    )
    return plan_export(request, rogue_plugins(), NOWHERE)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"rows": 30, "short_at": 23},
            "source 'ragged' failed: row 24 has 2 values for its 3 columns",
        ),
        (
            {"rows": 30, "junk_at": 4},
            "source 'ragged' failed: row 5 is int, not a tuple of its 3 columns",
        ),
    ],
)
def test_a_row_of_the_wrong_shape_is_blamed_on_the_source(
    tmp_path: Path, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ExportFailed) as caught:
        run_export(rogue_plan("ragged", "lines", params=params), tmp_path / "f", batch_size=10)
    assert str(caught.value) == message
    assert list(tmp_path.iterdir()) == []


def test_rows_of_the_right_shape_pass_whatever_their_type(tmp_path: Path) -> None:
    info = run_export(rogue_plan("ragged", "lines", params={"rows": 30}), tmp_path / "f")
    assert info.rows == 30


@pytest.mark.parametrize("at_write", [False, True])
def test_a_format_that_closes_its_file_is_blamed_for_it(tmp_path: Path, at_write: bool) -> None:
    plan = rogue_plan("count", "closing", params={"rows": 30}, format_options={"stamp": at_write})
    with pytest.raises(ExportFailed) as caught:
        run_export(plan, tmp_path / "f", batch_size=10)
    assert str(caught.value) == (
        "format 'closing' failed: it closed the file it writes into, which exportd owns "
        "(RowWriter.close must leave it open)"
    )
    assert list(tmp_path.iterdir()) == []


def test_the_stream_a_format_writes_counts_its_bytes_and_does_not_seek(tmp_path: Path) -> None:
    """The file is hashed as it is written, so a format streams: ``tell()`` counts what
    it wrote (progress reports it), ``seek`` is refused, and the hash is the file's."""
    seen: list[Progress] = []
    target = tmp_path / "f"
    info = run_export(plan(rows=40), target, batch_size=10, on_progress=seen.append)
    assert seen[-1].bytes <= info.size == target.stat().st_size  # the end line comes last
    assert info.sha256 == hashlib.sha256(target.read_bytes()).hexdigest()

    plan_seeking = rogue_plan("count", "closing", params={"rows": 3})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ClosingWriter, "close", lambda writer: writer.file.seek(0))
        with pytest.raises(ExportFailed, match=r"format 'closing' failed: .*seek"):
            run_export(plan_seeking, tmp_path / "g")
    assert list(tmp_path.iterdir()) == [target]
