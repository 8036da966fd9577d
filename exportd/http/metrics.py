"""The HTTP API's metrics: requests by route and status, and their latency; and the
``/metrics`` route, which shows the metrics of the whole process (the engine's, and in
``exportd serve`` its worker's too).

Requests are counted and timed as :mod:`exportd.http.answers` sees them
(:meth:`HttpMetrics.observe`), labelled with the route's template (``/v1/jobs/{job_id}``),
never the raw path, so that ids do not make a series each; a request no route matched
is ``unmatched``.
"""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from prometheus_client import Counter, Histogram

from exportd.http.answers import Answer
from exportd.http.context import AnyRequest, api_of
from exportd.metrics.process import CONTENT_TYPE, ProcessMetrics

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


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

    def observe(self, answer: Answer) -> None:
        """Count and time ``answer`` (a :data:`~exportd.http.answers.Watcher`)."""
        self.requests.labels(answer.method, answer.route, str(answer.status)).inc()
        self.latency.labels(answer.method, answer.route).observe(answer.seconds)


@get("/metrics", summary="Prometheus metrics of the process", include_in_schema=False)
async def metrics_route(request: AnyRequest) -> Response[Any]:
    """The process's metrics in Prometheus's text format."""
    body = await api_of(request).engine.metrics.process.exposition()
    # As a header: Litestar adds a second charset to a text/ media type that has one.
    return Response(body, headers={"content-type": CONTENT_TYPE})
