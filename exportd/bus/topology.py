"""The names and shapes of exportd's queues and exchanges, in one place.

::

    exportd.requests       queue    upstream -> engine: ExportRequest (reply_to gets the answer);
                                    a request refused is dead-lettered to exportd.requests.dead
    exportd.tasks          queue    engine -> workers: ExportTask; at the delivery limit a
                                    worker takes it off the queue and the engine's lease
                                    watches it; an unreadable one goes to exportd.tasks.dead
    exportd.pieces         queue    worker -> workers: PieceTask, a piece of a task's file for
                                    another worker to write; an unreadable one, or one that
                                    ended its workers too often, goes to exportd.pieces.dead
    exportd.status         queue    workers -> engine: StatusUpdate; one the engine cannot
                                    read or apply is dead-lettered to exportd.status.dead
    exportd.control        queue    clients -> engine: JobCommand (reply_to gets the answer);
                                    a malformed one is dead-lettered to exportd.control.dead
    exportd.cancel         fanout   engine -> every worker: CancelSignal
    exportd.events         topic    engine -> subscribers: JobEvent, key <org_id>.<source>.<status>
    exportd.workers        fanout   workers -> every engine: WorkerHeartbeat, into each engine's
                                    private queue (none while no engine runs: nothing piles up)

Every queue exportd consumes is a durable quorum queue with a delivery limit
(only quorum queues count deliveries) and a dead-letter queue, so that no
message goes round for ever, whatever its consumer does with it.  A message exportd
refuses itself reaches its dead-letter queue with the ``x-exportd-*`` headers below
(why, from where, when, by whom); one the broker dead-letters at the delivery limit
carries RabbitMQ's ``x-death``.  A dead-letter queue keeps ``dead_letter_max``
messages, dropping the oldest.  Every name
can carry a prefix, so that tests (or two deployments sharing a
vhost) keep apart: ``Topology(prefix="test-1.")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from exportd.config.settings import DEAD_LETTER_MAX

DEFAULT_EXCHANGE = ""
TASK_DELIVERY_LIMIT = 5
"""Redeliveries of one task that the broker watches; a worker acknowledges the one that
comes at the limit and runs it under the engine's lease instead (RabbitMQ 3.x counts
every dropped connection as a delivery, so the count alone cannot tell poison)."""
PIECE_DELIVERY_LIMIT = 3
"""Deliveries of a piece before it is dead-lettered: its workers died writing it (or shut
down) that often; the worker that joins the pieces writes a piece nobody finished itself."""
ENGINE_DELIVERY_LIMIT = 5
"""Deliveries of a request, command or status update before it is dead-lettered: one
that failed to apply that often, or that the engine died holding."""
NO_ORG = "_"

ERROR_HEADER = "x-exportd-error"
"""Header of a message exportd dead-lettered itself: why it was refused."""
QUEUE_HEADER = "x-exportd-queue"
"""Header of a message exportd dead-lettered itself: the queue it was refused from."""
REFUSED_AT_HEADER = "x-exportd-refused-at"
"""Header of a message exportd dead-lettered itself: when (ISO 8601, UTC)."""
REFUSED_BY_HEADER = "x-exportd-refused-by"
"""Header of a message exportd dead-lettered itself: the process (its connection name)."""


@dataclass(frozen=True)
class QueueSpec:
    """A durable queue and where the messages it refuses go."""

    name: str
    quorum: bool = False
    delivery_limit: int | None = None
    dead_letter: str | None = None
    max_length: int | None = None
    """Messages it keeps at most, dropping the oldest (``x-overflow: drop-head``)."""


@dataclass(frozen=True)
class ExchangeSpec:
    """A durable exchange."""

    name: str
    type: Literal["fanout", "topic"]


@dataclass(frozen=True)
class Topology:
    """exportd's queue and exchange names, with an optional prefix, and the length
    of its dead-letter queues (``broker.dead_letter_max``)."""

    prefix: str = ""
    dead_letter_max: int = DEAD_LETTER_MAX

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
    def pieces(self) -> str:
        """Queue of pieces of tasks' files, for workers to write."""
        return self._name("pieces")

    @property
    def pieces_dead(self) -> str:
        """Queue of pieces delivered too often, or refused by workers."""
        return self._name("pieces.dead")

    @property
    def status(self) -> str:
        """Queue of workers' status updates for the engine."""
        return self._name("status")

    @property
    def status_dead(self) -> str:
        """Queue of status updates the engine could not read or apply."""
        return self._name("status.dead")

    @property
    def control(self) -> str:
        """Queue of commands on jobs (get, list, cancel, restart, delete) for the engine."""
        return self._name("control")

    @property
    def control_dead(self) -> str:
        """Queue of malformed commands, and of commands the engine failed to carry out."""
        return self._name("control.dead")

    @property
    def cancel(self) -> str:
        """Fanout exchange of cancel signals to every worker."""
        return self._name("cancel")

    @property
    def events(self) -> str:
        """Topic exchange of public job events."""
        return self._name("events")

    @property
    def workers(self) -> str:
        """Fanout exchange of workers' heartbeats to every engine."""
        return self._name("workers")

    def queues(self) -> tuple[QueueSpec, ...]:
        """Every queue, dead-letter queues first (declaring is idempotent)."""
        return (*self.dead_letter_queues(), *self.consumed_queues())

    def consumed_queues(self) -> tuple[QueueSpec, ...]:
        """The queues exportd consumes, each with its dead-letter queue."""
        return (
            self._consumed(self.requests, ENGINE_DELIVERY_LIMIT, self.requests_dead),
            self._consumed(self.control, ENGINE_DELIVERY_LIMIT, self.control_dead),
            self._consumed(self.status, ENGINE_DELIVERY_LIMIT, self.status_dead),
            self._consumed(self.tasks, TASK_DELIVERY_LIMIT, self.tasks_dead),
            self._consumed(self.pieces, PIECE_DELIVERY_LIMIT, self.pieces_dead),
        )

    def dead_letter_queues(self) -> tuple[QueueSpec, ...]:
        """The dead-letter queues, each kept to :attr:`dead_letter_max` messages."""
        limit = self.dead_letter_max
        return (
            QueueSpec(self.requests_dead, max_length=limit),
            QueueSpec(self.control_dead, max_length=limit),
            QueueSpec(self.status_dead, max_length=limit),
            QueueSpec(self.tasks_dead, quorum=True, max_length=limit),
            QueueSpec(self.pieces_dead, max_length=limit),
        )

    def source_of(self, dead_letter: str) -> str | None:
        """The queue whose refused messages go to the queue ``dead_letter``, if any."""
        return next((q.name for q in self.consumed_queues() if q.dead_letter == dead_letter), None)

    @staticmethod
    def _consumed(name: str, delivery_limit: int, dead_letter: str) -> QueueSpec:
        """A queue exportd consumes: quorum, so that the broker counts deliveries."""
        return QueueSpec(name, quorum=True, delivery_limit=delivery_limit, dead_letter=dead_letter)

    def exchanges(self) -> tuple[ExchangeSpec, ...]:
        """Every exchange."""
        return (
            ExchangeSpec(self.cancel, "fanout"),
            ExchangeSpec(self.events, "topic"),
            ExchangeSpec(self.workers, "fanout"),
        )


def event_routing_key(org_id: str | None, source: str, status: str) -> str:
    """``<org_id>.<source>.<status>``; dots in a word become ``_`` so the key keeps three."""
    words = (org_id or NO_ORG, source, status)
    return ".".join(word.replace(".", "_") for word in words)
