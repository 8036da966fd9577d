"""Exports written in pieces by several workers and joined by one, over the in-process
bus: the joined file is the file of one run, byte for byte, on every path a piece can
take (written by another worker, by nobody, by a worker that falls silent, failing),
and no piece is left in the storage or the work areas.

Two workers in one process share one local storage, as workers on several hosts share
an object store; the same over RabbitMQ, with real worker processes and one killed, is
in ``tests/integration/test_pieces.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import pytest

from exportd.bus.base import Message
from exportd.data.demo import DemoSummary
from exportd.errors import ErrorBody, FieldError
from exportd.messages import ExportTask, PieceNews, PieceTask, RequestFields, StatusUpdate
from exportd.plugins.storages.local import LocalStorage
from exportd.workers import pieces
from tests.unit.test_worker import Bench, bench, until
from tests.work import partial_files

EXTENSIONS = {"csv": "csv", "json_bulk": "ndjson", "txt": "txt"}
SMALL_PIECES = {"piece_rows": 100, "piece_silence": 0.5}


def rooms_task(demo: DemoSummary, fmt: str, **request: Any) -> ExportTask:
    """A task of a new job: the demo's busiest room's logs in ``fmt``."""
    job_id = str(uuid.uuid4())
    fields = msgspec.convert(
        {
            "source": "rooms",
            "format": fmt,
            "params": {"room_id": demo.room_id, "type": "logs"},
            "interval": {"start": demo.start.isoformat(), "end": demo.end.isoformat()},
            "timezone": "Europe/Helsinki",
            **request,
        },
        RequestFields,
    )
    key = f"{job_id}/1/0/room.{EXTENSIONS[fmt]}"
    return ExportTask(job_id=job_id, part=0, part_count=1, attempt=1, request=fields, key=key)


def stored_pieces(seen: Bench) -> list[str]:
    """The keys of the stored pieces the storage holds."""
    root = seen.settings.files_path
    keys = (str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())
    return sorted(key for key in keys if ".piece" in key)


async def exported(seen: Bench, task: ExportTask) -> tuple[StatusUpdate, bytes]:
    """The outcome of ``task`` once it came, and its file's bytes (checked against it)."""
    await seen.publish(task)
    outcome = await seen.outcome(task)
    assert outcome.status == "done", outcome.error
    assert outcome.file is not None
    content = (seen.settings.files_path / outcome.file.key).read_bytes()
    assert len(content) == outcome.file.size
    assert hashlib.sha256(content).hexdigest() == outcome.file.sha256
    return outcome, content


async def whole_file(tmp_path: Path, demo: DemoSummary, fmt: str) -> tuple[int, bytes]:
    """The rows and the file of ``fmt`` that one run writes, in one piece."""
    folder = tmp_path / "whole"
    folder.mkdir()
    shutil.copy(demo.path, folder / "data.db")
    async with bench(folder, pieces=1) as seen:
        await seen.start_worker("alone")
        outcome, content = await exported(seen, rooms_task(demo, fmt))
    assert outcome.file is not None
    return outcome.file.rows, content


async def no_piece_left(seen: Bench) -> None:
    """Wait until the storage holds no piece and the work areas nothing."""
    await until(lambda: stored_pieces(seen) == [] or None)
    await until(lambda: partial_files(seen.settings) == [] or None)


@pytest.fixture
def home(tmp_path: Path, exportd_demo: DemoSummary) -> Path:
    """A home for the workers, with the demo data."""
    folder = tmp_path / "pieces"
    folder.mkdir()
    shutil.copy(exportd_demo.path, folder / "data.db")
    return folder


@pytest.mark.parametrize("fmt", ["csv", "json_bulk", "txt"])
async def test_pieces_written_by_two_workers_join_into_the_file_of_one_run(
    tmp_path: Path,
    home: Path,
    exportd_demo: DemoSummary,
    fmt: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows, whole = await whole_file(tmp_path, exportd_demo, fmt)
    caplog.set_level(logging.INFO, "exportd.workers")
    async with bench(home, pieces=3, concurrency=2, **SMALL_PIECES) as seen:
        await seen.start_worker("w1")
        await seen.start_worker("w2")
        outcome, content = await exported(seen, rooms_task(exportd_demo, fmt))
        await no_piece_left(seen)
    assert content == whole
    assert outcome.file is not None and outcome.file.rows == rows
    assert "is written in 3 pieces" in caplog.text
    writers = {r.getMessage().split()[1] for r in caplog.records if "writes piece" in r.msg}
    assert writers, "no piece was written by a worker"
    assert "written by the joining run" not in caplog.text


async def test_a_piece_nobody_takes_is_written_by_the_joining_run(
    tmp_path: Path, home: Path, exportd_demo: DemoSummary, caplog: pytest.LogCaptureFixture
) -> None:
    """A consumer holds the piece and says nothing, as a worker busy with others (or one
    that died before it started the piece); once the run is over, the piece goes back to
    the queue, and a worker that takes it then finds the run gone and drops it."""
    _, whole = await whole_file(tmp_path, exportd_demo, "csv")
    caplog.set_level(logging.INFO, "exportd.workers")
    held: list[Message] = []

    async def hold(message: Message) -> None:
        held.append(message)

    async with bench(home, pieces=2, **SMALL_PIECES) as seen:
        await seen.start_worker("w1")
        holder = await seen.bus.consume(seen.bus.topology.pieces, hold, prefetch=10)
        _, content = await exported(seen, rooms_task(exportd_demo, "csv"))
        assert len(held) == 1  # (the local bus hands messages out in turn: to the holder)
        await seen.stop_worker("w1")
        await seen.start_worker("w2")
        await holder.cancel()
        await until(lambda: "to its joining run: its joining run ended" in caplog.text or None)
        await no_piece_left(seen)
    assert content == whole
    assert "no other worker took it" in caplog.text


async def test_a_piece_whose_worker_falls_silent_is_written_by_the_joining_run(
    tmp_path: Path, home: Path, exportd_demo: DemoSummary, caplog: pytest.LogCaptureFixture
) -> None:
    """A consumer that takes the piece, says it runs and is heard of no more, as a worker
    that died or lost the broker."""
    _, whole = await whole_file(tmp_path, exportd_demo, "txt")
    caplog.set_level(logging.INFO, "exportd.workers")
    taken: list[int] = []

    async def fall_silent(message: Message) -> None:
        piece = msgspec.json.decode(message.body, type=PieceTask)
        taken.append(piece.piece)
        news = PieceNews(piece=piece.piece, status="running", worker="silent")
        await seen.bus.publish("", piece.reply_to, msgspec.json.encode(news))
        await message.ack()

    async with bench(home, pieces=2, **SMALL_PIECES) as seen:
        await seen.start_worker("w1")
        silent = await seen.bus.consume(seen.bus.topology.pieces, fall_silent, prefetch=10)
        _, content = await exported(seen, rooms_task(exportd_demo, "txt"))
        await silent.cancel()
        await no_piece_left(seen)
    assert content == whole
    assert taken == [1]
    assert "its worker was silent 0.5 s" in caplog.text


@pytest.mark.parametrize("fmt", ["csv", "txt"])
async def test_a_piece_that_fails_for_the_export_fails_the_run_with_its_error(
    home: Path, exportd_demo: DemoSummary, fmt: str
) -> None:
    """A piece whose worker's export fails (here a plugin that raised, as one of another
    version would) fails the run with the piece's error, its code and fields kept."""
    field = FieldError(name="options.delimiter", message="no")
    error = ErrorBody("plugin_error", f"format {fmt!r} failed", [field])

    async def fail(message: Message) -> None:
        piece = msgspec.json.decode(message.body, type=PieceTask)
        news = PieceNews(piece=piece.piece, status="failed", error=error, worker="other")
        await seen.bus.publish("", piece.reply_to, msgspec.json.encode(news))
        await message.ack()

    async with bench(home, pieces=2, **SMALL_PIECES) as seen:
        await seen.start_worker("w1")
        failing = await seen.bus.consume(seen.bus.topology.pieces, fail, prefetch=10)
        task = rooms_task(exportd_demo, fmt)
        await seen.publish(task)
        outcome = await seen.outcome(task)
        await failing.cancel()
    assert outcome.status == "failed" and outcome.error is not None
    assert outcome.error.message == f"piece 2 of 2 failed: format {fmt!r} failed"
    assert (outcome.error.code, outcome.error.fields) == ("plugin_error", [field])
    await no_piece_left(seen)


async def test_a_cancel_stops_the_pieces_and_leaves_nothing(
    home: Path, exportd_demo: DemoSummary, caplog: pytest.LogCaptureFixture
) -> None:
    """Canceled while the other worker writes its piece (a row a batch: slow enough)."""
    caplog.set_level(logging.INFO, "exportd.workers")
    async with bench(home, pieces=3, concurrency=2, **SMALL_PIECES) as seen:
        await seen.start_worker("w1")
        await seen.start_worker("w2")
        task = rooms_task(exportd_demo, "csv")
        await seen.publish(task)
        await until(lambda: "w2 writes piece" in caplog.text or None)
        await seen.cancel(task)
        outcome = await seen.outcome(task)
        await until(lambda: "dropped: " in caplog.text or None)
        await no_piece_left(seen)
    assert outcome.status == "canceled"


async def test_pieces_have_threads_of_their_own_that_runs_waiting_for_pieces_never_hold(
    home: Path, exportd_demo: DemoSummary
) -> None:
    """The event loop's default pool of one thread, held by the run that waits for its
    piece, as a worker's pool full of joining runs would be."""
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(1))
    async with bench(home, pieces=2, **SMALL_PIECES) as seen:
        await seen.start_worker("w1")
        outcome, _ = await exported(seen, rooms_task(exportd_demo, "csv"))
    assert outcome.status == "done"


@pytest.mark.parametrize(
    "refusal",
    [ConnectionError("the storage is down"), FileNotFoundError("removed by a lifecycle rule")],
)
async def test_a_stored_piece_the_storage_fails_to_give_is_written_here_and_deleted(
    home: Path,
    exportd_demo: DemoSummary,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    refusal: OSError,
) -> None:
    """The storage refuses to give stored pieces: its server down for longer than the
    tries (a passing failure), or the piece not there (removed, or stored on another
    host's disk)."""
    monkeypatch.setattr(pieces, "FETCH_BACKOFF", ())
    give = LocalStorage.open

    def refuse_pieces(storage: LocalStorage, key: str) -> BinaryIO:
        if ".piece" in key:
            raise refusal
        return give(storage, key)

    monkeypatch.setattr(LocalStorage, "open", refuse_pieces)
    caplog.set_level(logging.INFO, "exportd.workers")
    async with bench(home, pieces=2, concurrency=2, **SMALL_PIECES) as seen:
        await seen.start_worker("w1")
        await seen.start_worker("w2")
        await exported(seen, rooms_task(exportd_demo, "csv"))
        await no_piece_left(seen)
    assert "its stored file could not be read" in caplog.text
