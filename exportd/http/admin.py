"""The operator's routes of the native API: ``GET /v1/workers``.

They need a token with the ``admin`` permission, and show the whole deployment, not
one organisation's part of it: give that permission only to the operators' own tokens.
"""

from __future__ import annotations

import msgspec
from litestar import Router, get

from exportd.http.context import AnyRequest, api_of, requires
from exportd.messages import WorkerSnapshot

PERMISSION = "admin"


class WorkerList(msgspec.Struct, kw_only=True):
    """The workers the engine hears from, and those it lost, by name."""

    live: int
    lost: int
    workers: list[WorkerSnapshot]


@get("/workers", summary="List the workers, live and lost")
async def list_workers(request: AnyRequest) -> WorkerList:
    """Every worker the engine heard from within ``engine.worker_timeout`` (``live``) and
    those silent for longer (``lost``), with what each runs and can export."""
    workers = api_of(request).engine.list_workers()
    lost = sum(worker.state == "lost" for worker in workers)
    return WorkerList(live=len(workers) - lost, lost=lost, workers=workers)


admin = Router(
    "/v1",
    route_handlers=[list_workers],
    guards=[requires(PERMISSION)],
    tags=["admin"],
    security=[{"token": []}],
)
"""The routes for operators' tokens."""
