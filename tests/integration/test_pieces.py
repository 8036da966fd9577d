"""Pieces of one file across worker processes, over the real RabbitMQ: one worker's run
joins the pieces that another writes at the same time, and a piece whose worker is
killed with SIGKILL is written by the joining run, so the job is done once with the file
of one run.

The workers share the test's home (the local storage), as workers on several hosts share
an object store; the engine runs in the test's process (:func:`watched_engine`).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import signal
import subprocess
from pathlib import Path

from exportd.bus.topology import Topology
from tests.integration.processes import (
    Processes,
    count_request,
    stored,
    tuned,
    until,
    wait_for_consumers,
    watched_engine,
)

PID = re.compile(r"^\S+ \S+ (\d+) ", re.MULTILINE)


def log_lines(processes: Processes, needle: str) -> list[tuple[int, str]]:
    """The lines of the processes' logs that hold ``needle``, with each process's id."""
    found = []
    for log in sorted(processes.logs.glob("worker-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if needle in line and (match := PID.match(line)):
                found.append((int(match.group(1)), line))
    return found


def pieces_left(processes: Processes) -> list[Path]:
    """The stored pieces that the local storage still holds."""
    return [path for path in processes.settings.files_path.rglob("*.piece*") if path.is_file()]


async def test_pieces_run_on_two_worker_processes_and_a_killed_ones_piece_is_written_again(
    processes: Processes, topology: Topology, broker_url: str
) -> None:
    """Nine rows of the toy count source in csv, a row every 0.5 s, in three pieces of
    three rows: the worker that takes the task writes piece 1 and joins; the other takes a
    piece and is killed while it writes it, and the piece is written again once."""
    processes.settings = tuned(
        processes.settings, worker={"pieces": 3, "piece_rows": 3, "piece_silence": 2.0}
    )
    workers: dict[int, subprocess.Popen[bytes]] = {
        worker.pid: worker for worker in (processes.start("worker") for _ in range(2))
    }
    async with watched_engine(processes.settings, topology) as (runtime, bus):
        await wait_for_consumers(broker_url, topology.pieces, 2)
        job = await runtime.submit(**{**count_request(9, pause=0.5), "format": "csv"})
        joining = (await until(lambda: log_lines(processes, "is written in 3 pieces") or None))[0]
        joiner = joining[0]
        other, line = await until(
            lambda: next(
                (
                    (pid, line)
                    for pid, line in log_lines(processes, "writes piece")
                    if pid != joiner
                ),
                None,
            )
        )
        lost = line.split("writes piece ")[1].split()[0]  # the piece the killed worker had
        await asyncio.sleep(0.3)  # both mid-piece now: the joining run's first, the other's
        workers[other].send_signal(signal.SIGKILL)
        workers[other].wait(timeout=5)

        done = await runtime.events.wait_for(job.id, "job.done", timeout=60)
        await asyncio.sleep(0.3)  # time for a second done event, were there one
        assert [event.type for event in runtime.events.of(job.id)].count("job.done") == 1
        reported = {update.worker for update in bus.of(job.id)}
        assert len(reported) == 1  # the joining run alone reported the task
    assert done.job is not None and done.job.parts[0].file is not None
    content = stored(processes.settings, done.job.parts[0].file)
    rows = list(csv.reader(io.StringIO(content.decode())))
    assert rows == [["n", "square", "label"]] + [[str(n), str(n * n), f"row {n}"] for n in range(9)]
    # The broker delivers the unacknowledged piece again (here, to the joining worker), or
    # the joining run, hearing nothing for piece_silence, writes it itself.
    again = log_lines(processes, f"writes piece {lost} of 3") + log_lines(
        processes, f"piece {lost} of 3 written by the joining run"
    )
    assert [pid for pid, _ in again if pid != other] == [joiner]
    await until(lambda: pieces_left(processes) == [] or None)
