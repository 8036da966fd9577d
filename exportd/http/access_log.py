"""The HTTP access log: a line at INFO per request answered, on ``exportd.http.access``.

A line holds the method, the route's template (``/v1/jobs/{job_id}``: never the
path as sent, nor its query string, where download URLs carry their signature), the
status, the time to the end of the answer in milliseconds and the caller's org (``-``
for requests without a token, such as downloads); never a token or another header.  The
same values are the record's ``method``, ``route``, ``status``, ``duration_ms`` and
``org`` fields, which ``log.format = "json"`` writes out as such.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]
"""An ASGI application (typed loosely: Litestar types its scopes as TypedDicts)."""

log = logging.getLogger("exportd.http.access")

NO_ROUTE = "(no route)"
"""The route of a request that matched none (answered 404 or 405)."""
NO_ORG = "-"


class AccessLog:
    """ASGI middleware around the whole application (so that requests no route matched
    are logged too): logs each HTTP request once its answer is sent, or its handling
    failed (status 500 if no answer started)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, then log its line."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            fields = {
                "method": scope["method"],
                "route": scope.get("path_template") or NO_ROUTE,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "org": org_of(scope),
            }
            log.info(
                "%(method)s %(route)s %(status)d %(duration_ms).1f ms org=%(org)s",
                fields,
                extra=fields,
            )


def org_of(scope: Scope) -> str:
    """The org of the caller a route's guard identified (see
    :func:`exportd.http.context.requires`), or :data:`NO_ORG`."""
    state: dict[str, Any] = scope.get("state") or {}
    caller = state.get("caller")
    return NO_ORG if caller is None else str(caller.org.id)
