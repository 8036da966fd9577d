"""Work areas: a worker that starts removes what killed workers left, and nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from exportd.kernel.workarea import LOCK_SUFFIX, WorkArea

HOLD = """
import sys, time
from pathlib import Path
from exportd.kernel.workarea import WorkArea
area = WorkArea(Path(sys.argv[1]))
area.open()
area.new_path("partial.csv").write_text("half a file")
print(area.name, flush=True)
time.sleep(60)
"""


def start_worker_area(root: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def test_a_starting_worker_removes_the_folder_of_a_killed_one_and_keeps_a_live_ones(
    tmp_path: Path,
) -> None:
    killed, killed_name = start_worker_area(tmp_path)
    alive, alive_name = start_worker_area(tmp_path)
    try:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=10)
        assert list((tmp_path / killed_name).glob("*-partial.csv"))

        area = WorkArea(tmp_path)
        area.open()

        assert not (tmp_path / killed_name).exists()
        assert not (tmp_path / f"{killed_name}{LOCK_SUFFIX}").exists()
        assert list((tmp_path / alive_name).glob("*-partial.csv"))
        area.close()
        assert not area.folder.exists()
        assert sorted(path.name for path in tmp_path.iterdir()) == [
            alive_name,
            f"{alive_name}{LOCK_SUFFIX}",
        ]
    finally:
        for process in (killed, alive):
            process.kill()
            process.wait(timeout=10)


def test_task_files_live_inside_the_workers_folder_under_names_of_their_own(
    tmp_path: Path,
) -> None:
    area = WorkArea(tmp_path)
    area.open()
    first, second = area.new_path("logs.csv"), area.new_path("logs.csv")
    assert first != second
    assert first.parent == second.parent == area.folder
    assert first.name.endswith("-logs.csv")
    first.write_text("a file")
    area.close()
    assert list(tmp_path.iterdir()) == []
