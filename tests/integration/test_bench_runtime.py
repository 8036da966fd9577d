"""``bench/runtime.py`` runs end to end at a tiny size on the shared broker.

It is run for its numbers by hand (bench/README.md); this checks that every part of it
still runs (exportd's engine and workers, the baseline, the floor, Celery) and that it
prints each of its tables, the bound beside Celery among them.  The bench declares
only names under a prefix of its own and deletes them at the end.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "runtime.py"


@pytest.mark.slow
def test_the_runtime_benchmark_measures_exportd_beside_its_peers(broker_url: str) -> None:
    command = [sys.executable, str(BENCH), "--url", broker_url]
    command += ["--jobs", "3", "--burst", "5", "--rounds", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode in (0, 1), done.stderr  # 1: a target missed, at this size
    for printed in (
        "overhead p50 ms",
        "the floor p50 ms",
        "exportd beside Celery 5",
        "5 at once, jobs/s",
        "the bound: the floor and the export alone",
        "  on classic hops",
        "left for exportd's own work",
        "where a job's time goes",
        "CPU ms per job, by process",
        "exportd, all at once",
        "celery, all at once",
    ):
        assert printed in done.stdout, printed
