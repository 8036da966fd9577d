"""The benchmarks stay runnable as ``python bench/X.py``.

They are run for their numbers by hand (bench/README.md); these only check that
each starts, and that none is named like a standard module: run as a script,
bench/ comes first on the path, and ``bench/http.py`` once stood for the
standard ``http`` for every import of the run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_a_benchmark_script_starts(script: Path) -> None:
    command = [sys.executable, str(script), "--help"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_no_benchmark_script_shadows_a_standard_module() -> None:
    assert {script.stem for script in SCRIPTS} & set(sys.stdlib_module_names) == set()


def ran(script: str, *args: str) -> str:
    """What ``bench/SCRIPT ARGS...`` printed; it must end with 0 or 1 (a target missed)."""
    command = [sys.executable, str(BENCH / script), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode in (0, 1), done.stderr
    return done.stdout


@pytest.mark.slow
def test_the_formats_benchmark_runs_every_peer_at_a_tiny_size(tmp_path: Path) -> None:
    # A target missed at 200 rows (start-up against work) is expected.
    printed = ran("formats.py", "--rows", "200", "--data-dir", str(tmp_path))
    for peer in (
        "duckdb COPY csv",
        "duckdb COPY json array",
        "duckdb COPY json",
        "polars write_csv",
        "polars write_json",
        "polars write_ndjson",
        "polars write_excel",
        "csv.writer loop",
        "sqlite3 -csv shell",
        "msgspec loop",
        "f-string lines",
        "html.escape table",
        "rustpy-xlsxwriter",
        "xlsxwriter constant_memory",
        "openpyxl write-only loop",
    ):
        assert peer in printed
    for fmt in ("csv", "xlsx", "json", "json_bulk", "txt", "html"):
        assert f"\n{fmt} " in printed


@pytest.mark.slow
def test_the_startup_benchmark_times_the_export_and_every_peer(tmp_path: Path) -> None:
    # The target may be missed on a loaded machine.
    printed = ran("startup.py", "--repeat", "1", "--data-dir", str(tmp_path), "--why")
    for measured in (
        "exportd export ",
        "python -c pass",
        "import pyarrow, pyarrow.compute",
        "exportd --help",
        "duckdb COPY (sqlite scanner)",
        "polars read_database+write_csv",
        "target 0.15 s",
        "-X importtime",
    ):
        assert measured in printed
    assert (tmp_path / "exportd.csv").read_text().count("\n") == 11  # the header, 10 rows
