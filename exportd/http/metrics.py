"""The HTTP API's metrics: requests by route and status, and their latency; and the
``/metrics`` route, which shows the metrics of the whole process (the engine's, and in
``exportd serve`` its worker's too).

Requests are measured by an ASGI wrapper around the application (:func:`measured`),
labelled with the route's template (``/v1/jobs/{job_id:str}``), never the raw path, so
that ids do not make a series each; a request no route matched is ``unmatched``.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Response, get
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Histogram

from exportd.http.context import AnyRequest, api_of
from exportd.metrics.process import CONTENT_TYPE, ProcessMetrics

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
UNMATCHED = "unmatched"
"""The route of a request that no route matched (a 404 of the router)."""


class HttpMetrics:
    """The HTTP API's families, in a process's registry."""

    def __init__(self, process: ProcessMetrics) -> None:
        self.requests = Counter(
            "exportd_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=process.registry,
        )
        self.latency = Histogram(
            "exportd_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer (a download's "
            "included), by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=process.registry,
        )


def measured(app: ASGIApp, metrics: HttpMetrics) -> ASGIApp:
    """``app`` with every HTTP request counted and timed in ``metrics``."""

    async def measuring(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers for an app that raised before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            # The router writes the matched route's template into the scope.
            route = scope.get("path_template") or UNMATCHED
            method = scope["method"]
            metrics.requests.labels(method, route, str(status)).inc()
            metrics.latency.labels(method, route).observe(time.perf_counter() - started)

    return measuring


@get("/metrics", summary="Prometheus metrics of the process", include_in_schema=False)
async def metrics_route(request: AnyRequest) -> Response[Any]:
    """The process's metrics in Prometheus's text format."""
    body = await api_of(request).engine.metrics.process.exposition()
    # As a header: Litestar adds a second charset to a text/ media type that has one.
    return Response(body, headers={"content-type": CONTENT_TYPE})
