"""What each HTTP request got, for those who watch: the access log
(:mod:`exportd.http.access_log`) and the request metrics (:mod:`exportd.http.metrics`).

:func:`watched` wraps the whole application (so that requests no route matched count
too) and, once a request's answer is sent or its handling failed, hands an
:class:`Answer` to each watcher.  An answer holds the route's template
(``/v1/jobs/{job_id}``), never the path as sent nor its query string, where download
URLs carry their signature.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NamedTuple

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]
"""An ASGI application (typed loosely: Litestar types its scopes as TypedDicts)."""

UNMATCHED = "unmatched"
"""The route of a request that matched none (answered 404 or 405)."""
NO_ORG = "-"
"""The org of a request without a token (a download, a health check)."""


class Answer(NamedTuple):
    """One HTTP request and what it got."""

    method: str
    route: str
    """The matched route's template, or :data:`UNMATCHED`."""
    status: int
    """The answer's status; 500 for a handler that raised before answering."""
    seconds: float
    """From the request's arrival to the end of its answer (a download's body too)."""
    org: str
    """The org of the caller a route's guard identified, or :data:`NO_ORG`."""


Watcher = Callable[[Answer], None]


def watched(app: ASGIApp, *watchers: Watcher) -> ASGIApp:
    """``app``, each HTTP request's :class:`Answer` handed to every one of ``watchers``."""

    async def watching(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_noting_status)
        finally:
            # The router writes the matched route's template into the scope.
            route = scope.get("path_template") or UNMATCHED
            answer = Answer(
                scope["method"], route, status, time.perf_counter() - started, org_of(scope)
            )
            for watcher in watchers:
                watcher(answer)

    return watching


def org_of(scope: Scope) -> str:
    """The org of the caller a route's guard identified (see
    :func:`exportd.http.context.requires`), or :data:`NO_ORG`."""
    state: dict[str, Any] = scope.get("state") or {}
    caller = state.get("caller")
    return NO_ORG if caller is None else str(caller.org.id)
