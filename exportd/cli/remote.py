"""``exportd export --broker``: the engine's workers run the export; the files are then
copied out of the storage, which this machine must share with them."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from pathlib import Path
from typing import BinaryIO, TextIO

import msgspec

from exportd.bus.topology import event_routing_key
from exportd.cli.export import COPY_CHUNK, Targets, make_all
from exportd.cli.progress import progress_bar
from exportd.cli.runtime import connect
from exportd.client import FINAL_STATUSES
from exportd.config import Settings
from exportd.errors import ExportError, ExportFailed, from_body
from exportd.messages import ExportRequest, FileInfo, JobSnapshot, Progress
from exportd.plugins.api import Storage

NO_WORKER_AFTER = 3.0
"""Seconds after which a job no worker has started makes ``run_job`` look for workers."""


def run_job(settings: Settings, request: ExportRequest, stream: TextIO) -> JobSnapshot:
    """Have the engine run ``request`` and wait for it, showing its progress on ``stream``
    if that is a terminal; the done job, with the file of each part.  Ctrl-C cancels it.
    A job still waiting after :data:`NO_WORKER_AFTER` seconds with no worker to take it
    says so on ``stream``.

    A job that does not end done raises its error.
    """
    # Ctrl-C while the engine's reply is on its way leaves a job whose id is not known
    # here: the key finds it again (or makes it, to be canceled at once).
    key = request.idempotency_key or uuid.uuid4().hex
    request = msgspec.structs.replace(request, idempotency_key=key)
    # The subscription comes first, so that no event of the job can be missed.
    pattern = event_routing_key(request.org_id, request.source, "*")
    with connect(settings) as client, client.events(pattern) as events:
        job: JobSnapshot | None = None
        bar = None
        looked = False
        try:
            job = client.submit(request)
            bar = progress_bar(stream, f"job {job.id[:8]}")
            while job.status not in FINAL_STATUSES:
                event = events.receive(None if looked else NO_WORKER_AFTER)
                if event is None:  # once, a few seconds after the job was created
                    looked = True
                    if job.status == "created" and client.task_consumers() == 0:
                        if bar is not None:
                            bar.close()
                        print(no_worker(client.topology.tasks), file=stream, flush=True)
                elif event.job is not None and event.job.id == job.id:
                    job = event.job
                    if bar is not None:
                        progress = job.progress
                        bar.update(Progress(progress.rows, progress.bytes, progress.total))
        except KeyboardInterrupt:
            # This connection was interrupted mid-read: cancel on a fresh one.
            # A job that ended meanwhile refuses to be canceled: nothing to do then.
            with connect(settings) as other, contextlib.suppress(ExportError):
                other.cancel((job or other.submit(request)).id)
            raise
        finally:
            if bar is not None:
                bar.close()
    if job.status != "done":
        raise from_body(job.error) if job.error else ExportFailed(f"job {job.id} was {job.status}")
    return job


def no_worker(queue: str) -> str:
    """What a job that no worker takes is waiting for."""
    return f"no worker is taking tasks from {queue}; waiting (start one with exportd worker)"


def fetch_files(
    job: JobSnapshot, storage: Storage, targets: Targets
) -> list[tuple[Path, FileInfo]]:
    """Copy each file of the done ``job`` out of ``storage`` into ``targets(name, count)``."""
    exported = [part.file for part in job.parts if part.file is not None]
    paths = targets(exported[0].name, len(exported))
    made = make_all(paths, lambda number, target: fetch(storage, exported[number], target))
    return list(zip(paths, made, strict=True))


def fetch(storage: Storage, file: FileInfo, target: Path) -> FileInfo:
    """Copy ``file`` out of ``storage`` to ``target``, which appears only once whole and
    checked against the file's SHA-256."""
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _opened(storage, file) as source, partial.open("wb") as copy:
            digest = _copy(source, copy)
        if digest != file.sha256:
            raise ExportFailed(
                f"{file.key} in the storage has sha256 {digest}, not {file.sha256} as exported"
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return file


def _opened(storage: Storage, file: FileInfo) -> BinaryIO:
    try:
        return storage.open(file.key)
    except FileNotFoundError:
        raise ExportFailed(
            f"{file.key} is not in the {storage.name} storage here: run this where the "
            "workers' files are (the same EXPORTD_HOME, or a shared volume)"
        ) from None


def _copy(source: BinaryIO, copy: BinaryIO) -> str:
    """Copy ``source`` into ``copy``; the SHA-256 of what was copied."""
    digest = hashlib.sha256()
    while chunk := source.read(COPY_CHUNK):
        digest.update(chunk)
        copy.write(chunk)
    return digest.hexdigest()
