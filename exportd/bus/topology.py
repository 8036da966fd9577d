"""The names and shapes of exportd's queues and exchanges, in one place.

::

    exportd.requests       queue    upstream -> engine: ExportRequest (reply_to gets the answer);
                                    a request refused is dead-lettered to exportd.requests.dead
    exportd.tasks          queue    engine -> workers: ExportTask; durable quorum queue with a
                                    delivery limit, then dead-lettered to exportd.tasks.dead
    exportd.status         queue    workers -> engine: StatusUpdate (durable classic: a
                                    quorum round trip costs twice as long here)
    exportd.control        queue    clients -> engine: JobCommand (reply_to gets the answer)
    exportd.cancel         fanout   engine -> every worker: CancelSignal
    exportd.events         topic    engine -> subscribers: JobEvent, key <org_id>.<source>.<status>

Every name can carry a prefix, so that tests (or two deployments sharing a
vhost) keep apart: ``Topology(prefix="test-1.")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DEFAULT_EXCHANGE = ""
TASK_DELIVERY_LIMIT = 5
"""Deliveries of one task before it is dead-lettered as poison (a worker crashing on it)."""
NO_ORG = "_"


@dataclass(frozen=True)
class QueueSpec:
    """A durable queue and where the messages it refuses go."""

    name: str
    quorum: bool = False
    delivery_limit: int | None = None
    dead_letter: str | None = None


@dataclass(frozen=True)
class ExchangeSpec:
    """A durable exchange."""

    name: str
    type: Literal["fanout", "topic"]


@dataclass(frozen=True)
class Topology:
    """exportd's queue and exchange names, with an optional prefix."""

    prefix: str = ""

    def _name(self, name: str) -> str:
        return f"{self.prefix}exportd.{name}"

    @property
    def requests(self) -> str:
        """Queue of export requests from upstream systems."""
        return self._name("requests")

    @property
    def requests_dead(self) -> str:
        """Queue of refused requests."""
        return self._name("requests.dead")

    @property
    def tasks(self) -> str:
        """Queue of export tasks for workers."""
        return self._name("tasks")

    @property
    def tasks_dead(self) -> str:
        """Queue of tasks delivered too often (poison) or refused by workers."""
        return self._name("tasks.dead")

    @property
    def status(self) -> str:
        """Queue of workers' status updates for the engine."""
        return self._name("status")

    @property
    def control(self) -> str:
        """Queue of commands on jobs (get, list, cancel, restart, delete) for the engine."""
        return self._name("control")

    @property
    def cancel(self) -> str:
        """Fanout exchange of cancel signals to every worker."""
        return self._name("cancel")

    @property
    def events(self) -> str:
        """Topic exchange of public job events."""
        return self._name("events")

    def queues(self) -> tuple[QueueSpec, ...]:
        """Every queue, dead-letter queues first (declaring is idempotent)."""
        return (
            QueueSpec(self.requests_dead),
            QueueSpec(self.requests, dead_letter=self.requests_dead),
            QueueSpec(self.tasks_dead, quorum=True),
            QueueSpec(
                self.tasks,
                quorum=True,
                delivery_limit=TASK_DELIVERY_LIMIT,
                dead_letter=self.tasks_dead,
            ),
            QueueSpec(self.status),
            QueueSpec(self.control),
        )

    def exchanges(self) -> tuple[ExchangeSpec, ...]:
        """Every exchange."""
        return (ExchangeSpec(self.cancel, "fanout"), ExchangeSpec(self.events, "topic"))


def event_routing_key(org_id: str | None, source: str, status: str) -> str:
    """``<org_id>.<source>.<status>``; dots in a word become ``_`` so the key keeps three."""
    words = (org_id or NO_ORG, source, status)
    return ".".join(word.replace(".", "_") for word in words)
