"""Synchronous exports: the file is the answer to the request itself.

For small exports only (``http.sync_max_rows``); larger ones go through a job.
At most ``http.sync_concurrency`` run at once, in threads of their own, so that
one caller's exports cannot hold the threads every other request needs; more
answer 503.  The file is written to the server's work area first (so a failed
export answers with an error, not with half a file), then streamed and removed;
a request that goes away stops its export and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import msgspec
from litestar.background_tasks import BackgroundTask
from litestar.response import File

from exportd.config import Settings
from exportd.errors import InvalidRequest, Unavailable
from exportd.kernel.datastores import data_store
from exportd.kernel.pipeline import run_export
from exportd.kernel.plan import ExportPlan, plan_export
from exportd.kernel.workarea import WorkArea
from exportd.messages import FileInfo, RequestFields
from exportd.plugins.manager import Plugins

T = TypeVar("T")


class SyncExports:
    """Runs synchronous exports in the server's work area, a few at a time."""

    def __init__(self, plugins: Plugins, settings: Settings, work_area: WorkArea) -> None:
        self.plugins = plugins
        self.settings = settings
        self.work_area = work_area
        limit = settings.http.sync_concurrency
        self._slots = asyncio.Semaphore(limit)
        self._threads = ThreadPoolExecutor(limit, thread_name_prefix="exportd-sync")

    def close(self) -> None:
        """Let the running exports end, then release the threads."""
        self._threads.shutdown(wait=True)

    async def answer(self, request: RequestFields) -> File:
        """Run ``request`` and answer with its file; :class:`InvalidRequest` naming
        ``limit`` if it holds more than ``http.sync_max_rows`` rows, :class:`Unavailable`
        while ``http.sync_concurrency`` exports run already."""
        if self._slots.locked():
            raise Unavailable(
                "too many synchronous exports at once: try again shortly, or create a job"
            )
        async with self._slots:
            max_rows = self.settings.http.sync_max_rows
            capped = msgspec.structs.replace(
                request, limit=min(request.limit or max_rows + 1, max_rows + 1)
            )
            plan = await self._in_thread(
                lambda: plan_export(capped, self.plugins, data_store(self.settings))
            )
            name = plan.file_name()
            path = self.work_area.new_path(name)
            written = await self._write(plan, path)
        if written.rows > max_rows:
            path.unlink(missing_ok=True)
            raise InvalidRequest.field(
                "limit",
                f"a synchronous export holds at most {max_rows} rows and this one has more: "
                "set a limit, or create a job for it",
            )
        return File(
            path,
            filename=name,
            headers={"Content-Type": plan.format.media_type},
            background=BackgroundTask(path.unlink, missing_ok=True),
        )

    async def _write(self, plan: ExportPlan, path: Path) -> FileInfo:
        """Write the file at ``path`` in a thread; stop it and remove what it wrote if the
        request is cancelled (the client went away) or the export fails."""
        stop = threading.Event()
        writing = asyncio.ensure_future(
            self._in_thread(
                lambda: run_export(
                    plan,
                    path,
                    batch_size=self.settings.batch_size,
                    slices=self.settings.read_slices,
                    cancelled=stop.is_set,
                ).file(key=path.name, name=path.name)
            )
        )
        try:
            return await asyncio.shield(writing)
        except BaseException:
            stop.set()
            with contextlib.suppress(BaseException):
                await writing  # the thread ends at its next batch
            path.unlink(missing_ok=True)
            raise

    async def _in_thread(self, work: Callable[[], T]) -> T:
        """``work()`` in one of the synchronous exports' own threads."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, work)
