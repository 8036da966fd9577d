"""The delivery service's metrics: deliveries waiting, made and failed
(``docs/operations.md``, "Metrics")."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge

from exportd.metrics.process import ProcessMetrics


class DeliveryMetrics:
    """The delivery service's families, in a process's registry."""

    def __init__(self, process: ProcessMetrics) -> None:
        registry = process.registry
        self.process = process
        self.pending = Gauge(
            "exportd_deliveries_pending",
            "Deliveries recorded and not yet made (waiting for their turn or a retry), by method.",
            ["method"],
            registry=registry,
        )
        self._methods: set[str] = set()
        self.sent = Counter(
            "exportd_deliveries_sent",
            "Deliveries made (the method took the files), by method.",
            ["method"],
            registry=registry,
        )
        self.failed = Counter(
            "exportd_deliveries_failed",
            "Tries of deliveries that failed, by method and outcome: retry (a passing "
            "failure, tried again) or given_up (retrying cannot help, or the files are gone).",
            ["method", "outcome"],
            registry=registry,
        )

    def pending_now(self, counts: Mapping[str, int]) -> None:
        """Take the ledger's pending deliveries by method (a method seen before with none
        left is 0)."""
        self._methods.update(counts)
        for method in self._methods:
            self.pending.labels(method).set(counts.get(method, 0))
