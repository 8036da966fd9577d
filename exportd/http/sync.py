"""Synchronous exports: the file is the answer to the request itself.

For small exports only (``http.sync_max_rows``); larger ones go through a job.
The file is written to the server's work area first (so a failed export
answers with an error, not with half a file), then streamed and removed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
from litestar.background_tasks import BackgroundTask
from litestar.response import File

from exportd.errors import InvalidRequest
from exportd.messages import RequestFields
from exportd.plan import plan_export
from exportd.plugins.manager import Plugins
from exportd.workers.pipeline import run_export
from exportd.workers.workarea import WorkArea


async def export_now(
    request: RequestFields,
    plugins: Plugins,
    *,
    data_path: Path,
    work_area: WorkArea,
    max_rows: int,
    batch_size: int,
) -> File:
    """Run ``request`` here and answer with its file; :class:`InvalidRequest` naming
    ``limit`` if it holds more than ``max_rows`` rows."""
    asked = request.limit
    capped = msgspec.structs.replace(request, limit=min(asked or max_rows + 1, max_rows + 1))
    plan = await asyncio.to_thread(plan_export, capped, plugins, data_path)
    name = plan.file_name()
    path = work_area.new_path(name)
    try:
        written = await asyncio.to_thread(run_export, plan, path, batch_size=batch_size)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
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
