"""One process's metrics: a registry of its own, and the families every process has.

A registry per process (per :class:`ProcessMetrics`), not prometheus_client's global
one: the tests run engines and workers side by side in one Python, each with its own
figures, and ``exportd serve`` puts its engine's and its worker's families in one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The media type of :meth:`ProcessMetrics.exposition`: Prometheus's text format."""

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
"""Seconds of an export (a job's, a run's): from one answered at once to one of hours."""
ROWS_BUCKETS = (10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)
"""Rows of an export."""

P = TypeVar("P")
Refresh = Callable[[], Awaitable[None]]


class ProcessMetrics:
    """The metrics of one process: its registry, the families of every kind of process
    (broker reconnects, dead-lettered messages), and the parts that services add
    (:meth:`part`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.broker_reconnects = Counter(
            "exportd_broker_reconnects",
            "Times the process's connection to RabbitMQ was restored after it dropped.",
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "exportd_messages_dead_lettered",
            "Messages this process refused to their queue's dead-letter queue (malformed, "
            "or refused requests and commands), by queue.",
            ["queue"],
            registry=self.registry,
        )
        self._parts: dict[Callable[[ProcessMetrics], object], object] = {}
        self._refreshes: list[Refresh] = []

    def part(self, kind: Callable[[ProcessMetrics], P]) -> P:
        """The families of ``kind`` (a class taking this object) in this registry, made on
        first use: a registry refuses a family twice, and the engine and a worker of
        ``exportd serve`` share one."""
        if kind not in self._parts:
            self._parts[kind] = kind(self)
        return cast(P, self._parts[kind])

    def on_scrape(self, refresh: Refresh) -> Callable[[], None]:
        """Have ``refresh`` (figures read from a store) run before each exposition; the
        function that stops it."""
        self._refreshes.append(refresh)
        return lambda: self._refreshes.remove(refresh)

    async def exposition(self) -> bytes:
        """The registry in Prometheus's text format, refreshed first.  A refresh that fails
        (the job store locked) is logged and leaves its figures as they were: the other
        families are still worth a scrape."""
        for refresh in tuple(self._refreshes):
            try:
                await refresh()
            except Exception as exc:
                log.warning("metrics not refreshed: %s", exc)
        return generate_latest(self.registry)
