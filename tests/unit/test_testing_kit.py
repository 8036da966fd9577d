"""The test kit's exports (exportd.testing): the pipeline, the plugin sets, the embedded
service and the fixtures of exportd's pytest plugin."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from exportd import InvalidRequest, NotFound
from exportd.testing import DemoSummary, ExportedFile, PluginSet, Service, run_export
from tests.unit import toy_plugins


@pytest.fixture
def exportd_plugins() -> PluginSet:
    """The service's plugins: the built-ins, the installed ones and the toys."""
    return PluginSet(toy_plugins)


def export_logs(demo: DemoSummary, folder: Path, format_name: str = "csv") -> ExportedFile:
    """The chat logs of the demo's busiest room, exported into ``folder``."""
    [file] = run_export(
        "rooms",
        {"room_id": demo.room_id, "type": "logs"},
        format_name,
        into=folder,
        start=demo.start,
        end=demo.end,
        data=demo.path,
    )
    return file


def test_run_export_writes_the_file_that_exportd_describes(
    tmp_path: Path, exportd_demo: DemoSummary
) -> None:
    file = export_logs(exportd_demo, tmp_path)
    content = file.path.read_bytes()
    assert file.path == tmp_path / f"rooms-{exportd_demo.room_id}-logs-20241002-20241101.csv"
    assert file.info.name == file.path.name
    assert (file.info.size, file.info.sha256) == (len(content), hashlib.sha256(content).hexdigest())
    with file.path.open(newline="", encoding="utf-8") as opened:
        assert len(list(csv.reader(opened))) - 1 == file.info.rows > 0


def test_the_same_export_writes_the_same_bytes(tmp_path: Path, exportd_demo: DemoSummary) -> None:
    first = export_logs(exportd_demo, tmp_path / "first", "json")
    again = export_logs(exportd_demo, tmp_path / "again", "json")
    assert first.path.read_bytes() == again.path.read_bytes()


def test_run_export_writes_one_file_per_part(tmp_path: Path, exportd_demo: DemoSummary) -> None:
    files = run_export(
        "qna",
        {"channel_id": exportd_demo.channel_id},
        "json_bulk",
        into=tmp_path,
        start=exportd_demo.start,
        end=exportd_demo.end,
        data=exportd_demo.path,
    )
    assert [file.path.name.rpartition("-")[2] for file in files] == [
        "part1of3.ndjson",
        "part2of3.ndjson",
        "part3of3.ndjson",
    ]
    assert all(file.path.is_file() for file in files)


def test_run_export_raises_what_exportd_raises(tmp_path: Path, exportd_demo: DemoSummary) -> None:
    with pytest.raises(NotFound) as unknown:
        run_export(
            "rooms",
            {"room_id": "nope", "type": "logs"},
            into=tmp_path,
            start="2024-10-02",
            end="2024-10-03",
            data=exportd_demo.path,
        )
    assert unknown.value.fields[0].name == "params.room_id"
    with pytest.raises(InvalidRequest) as bad:
        run_export("count", {"rows": 1}, into=tmp_path, start="2024-10-02", end="2024-10-03")
    assert "unknown source 'count'" in bad.value.fields[0].message
    assert not any(tmp_path.iterdir())


def test_a_plugin_set_loads_what_it_names() -> None:
    toys_alone = PluginSet(toy_plugins, builtins=False, installed=False).load()
    assert (set(toys_alone.sources), set(toys_alone.formats)) == ({"count"}, {"lines"})
    with_builtins = PluginSet(toy_plugins, installed=False).load()
    assert {"count", "rooms"} <= set(with_builtins.sources)


def test_the_service_runs_a_job_to_the_file_run_export_writes(
    tmp_path: Path, exportd_service: Service, exportd_demo: DemoSummary
) -> None:
    job = exportd_service.submit(
        "rooms",
        {"room_id": exportd_demo.room_id, "type": "logs"},
        start=exportd_demo.start,
        end=exportd_demo.end,
    )
    done = exportd_service.wait(job)
    assert done.status == "done"
    [file] = exportd_service.files(done)
    assert file.path.parent == exportd_service.home / "downloads" / job.id
    assert file.path.read_bytes() == export_logs(exportd_demo, tmp_path).path.read_bytes()


def test_the_service_cancels_a_job_and_says_why_a_job_has_no_files(
    exportd_service: Service,
) -> None:
    window = {"start": "2024-01-01", "end": "2024-01-02"}
    slow = exportd_service.submit("count", {"rows": 100_000, "pause": 0.05}, "lines", **window)
    exportd_service.cancel(slow)
    canceled = exportd_service.wait(slow)
    assert canceled.status == "canceled"
    with pytest.raises(AssertionError, match=f"job {slow.id} is canceled, not done"):
        exportd_service.files(canceled)
    failing = exportd_service.submit("count", {"rows": 10, "explode_at": 3}, "lines", **window)
    failed = exportd_service.wait(failing)
    with pytest.raises(AssertionError, match="source 'count' failed: RuntimeError: boom at 3"):
        exportd_service.files(failed)


def test_the_demo_fixture_is_a_small_demo_store(exportd_demo: DemoSummary) -> None:
    assert exportd_demo.path.is_file()
    assert exportd_demo.messages == 2000


def test_loading_the_pytest_plugin_loads_neither_the_kit_nor_its_dependencies() -> None:
    # (exportd itself loads the kernel's validation, for its settings)
    heavy = ("exportd.testing", "exportd.kernel.plan", "exportd.data", "hypothesis", "litestar")
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, exportd.pytest_plugin; print(*sorted(sys.modules))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert [name for name in loaded if name.startswith(heavy)] == []
