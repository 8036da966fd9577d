"""run_export: the file appears whole or not at all, with its hash, size and rows."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import pytest
from openpyxl.worksheet._writer import ALL_TEMP_FILES

from exportd import Cancelled, Column, ExportFailed, ExportInfo, RowWriter
from exportd.kernel.pipeline import Progress, run_export
from exportd.kernel.plan import ExportPlan, plan_export
from exportd.messages import ExportRequest
from exportd.plugins.manager import Plugins
from tests.unit import toy_plugins

PLUGINS = Plugins(builtins=False, entry_points=False, extra=[toy_plugins])


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
    return plan_export(request, PLUGINS, Path("unused.db"))


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
    assert (info.name, info.media_type) == ("count.lines", "text/plain")
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
        data_path=bad.data_path,
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
        run_export(plan_export(request, plugins, Path("unused.db")), tmp_path / "f", batch_size=10)
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
    guarded = dataclasses.replace(plan(rows=3), data_path=store)
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
