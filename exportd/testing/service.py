"""A running embedded exportd for tests: jobs through the engine and a worker, as
``exportd serve`` runs them."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Coroutine, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from exportd import Settings
from exportd.engine.lifecycle import RUNNING
from exportd.messages import JobSnapshot
from exportd.testing.exports import ExportedFile, PluginSet, export_request

if TYPE_CHECKING:
    from exportd.engine.service import Engine

T = TypeVar("T")
STARTUP_TIMEOUT = 30.0
"""Seconds the service may take to start."""
POLL_INTERVAL = 0.02
"""Seconds between two looks at a job that :meth:`Service.wait` waits for."""
CALL_TIMEOUT = 30.0
"""Seconds a call to the engine may take."""

Started = tuple[asyncio.AbstractEventLoop, "Engine", asyncio.Event]


class Service:
    """An embedded exportd running in a thread of its own: the engine, its job store and
    a worker on the in-process bus, as ``exportd serve`` runs them (without the HTTP API).

    Its methods block, so a test needs no event loop.  Build it with :func:`serve`, or
    take the ``exportd_service`` fixture.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, engine: Engine, home: Path) -> None:
        self._loop = loop
        self._engine = engine
        self.home = home
        """The service's ``EXPORTD_HOME``: its data store, job store and files."""

    def submit(
        self,
        source: str,
        params: Mapping[str, Any] | None = None,
        format: str = "csv",
        *,
        start: str | date,
        end: str | date,
        timezone: str = "UTC",
        options: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> JobSnapshot:
        """Submit the export (its fields as :func:`~exportd.testing.run_export` takes them)
        as a job; the job as created.  A request that exportd refuses raises its error."""
        request = export_request(
            source,
            params,
            format,
            start=start,
            end=end,
            timezone=timezone,
            options=options,
            limit=limit,
        )
        return self._call(self._engine.submit(request))

    def wait(self, job: JobSnapshot, timeout: float = 30.0) -> JobSnapshot:
        """``job`` once it has finished (done, failed, canceled...), waiting up to
        ``timeout`` seconds; an :class:`AssertionError` if it is still running then."""
        deadline = time.monotonic() + timeout
        while (current := self._call(self._engine.get(job.id))).status in RUNNING:
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job.id} is still {current.status} after {timeout} s")
            time.sleep(POLL_INTERVAL)
        return current

    def cancel(self, job: JobSnapshot) -> JobSnapshot:
        """Cancel ``job``: its worker stops and drops its partial file."""
        return self._call(self._engine.cancel(job.id))

    def files(self, job: JobSnapshot) -> list[ExportedFile]:
        """The files of the finished ``job``, one per part, copied out of the storage into
        ``home/downloads/JOB_ID/``; an :class:`AssertionError` with the job's error if
        it is not done."""
        if job.status != "done":
            why = job.error.message if job.error else "it gives no error"
            raise AssertionError(f"job {job.id} is {job.status}, not done: {why}")
        folder = self.home / "downloads" / job.id
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for part in job.parts:
            assert part.file is not None, f"part {part.part} of done job {job.id} has no file"
            path = folder / part.file.name
            with self._engine.storage.open(part.file.key) as stored, path.open("wb") as copy:
                shutil.copyfileobj(stored, copy)
            files.append(ExportedFile(path, part.file))
        return files

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the service's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT)


@contextmanager
def serve(
    home: Path, *, data: Path | None = None, plugins: PluginSet | None = None
) -> Iterator[Service]:
    """Run an embedded exportd with ``home`` as its ``EXPORTD_HOME`` (a copy of the data
    store ``data`` in it, if given) and ``plugins`` (default: :class:`PluginSet`'s), and
    stop it at the end, as ``exportd serve`` stops on SIGTERM."""
    from exportd.cli.serve import embedded  # the service's modules load only when used

    home.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=str(home))
    if data is not None:
        shutil.copyfile(data, settings.data_path)
    loaded = (plugins or PluginSet()).load(settings)
    started: Future[Started] = Future()

    async def run() -> None:
        stop = asyncio.Event()
        try:
            async with embedded(settings, loaded) as engine:
                started.set_result((asyncio.get_running_loop(), engine, stop))
                await engine.loops.wait(stop)
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise

    with ThreadPoolExecutor(1, thread_name_prefix="exportd-service") as thread:
        finished = thread.submit(asyncio.run, run())
        loop, engine, stop = started.result(STARTUP_TIMEOUT)
        try:
            yield Service(loop, engine, home)
        finally:
            loop.call_soon_threadsafe(stop.set)
            finished.result()
