"""The workers an engine hears from, kept in memory from their heartbeats.

Every worker publishes a :class:`~exportd.messages.WorkerHeartbeat` each
``worker.heartbeat_interval`` on the fanout ``exportd.workers``; every engine hears them
all.  A worker is ``live`` while its last heartbeat is at most ``engine.worker_timeout``
old, ``lost`` after that, and forgotten once silent :data:`FORGET_AFTER` times as long.
One that says goodbye (a clean shutdown) is forgotten at once.  Nothing is stored: after
a restart the engine knows the workers again within one heartbeat interval.

The registry is pure: every call is given the time, so tests need no clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from exportd.messages import WorkerFacts, WorkerHeartbeat, WorkerSnapshot

log = logging.getLogger(__name__)

FORGET_AFTER = 10
"""A lost worker is forgotten once silent this many ``engine.worker_timeout``."""


@dataclass(frozen=True)
class Capabilities:
    """What the live workers can export at one moment: for each, its sources and formats.
    Frozen, so the job store's thread may read it while heartbeats keep coming.

    ``settled`` is false while the engine has not run long enough to have heard from
    every worker: then nothing is missing, to raise no false alarm at start-up."""

    kits: tuple[tuple[frozenset[str], frozenset[str]], ...]
    settled: bool = True

    def missing(self, source: str, format_: str) -> str | None:
        """Why no live worker can run an export of ``source`` to ``format_`` (naming what
        none has), or ``None`` if one can, or if it is too early to tell."""
        if not self.settled or any(source in s and format_ in f for s, f in self.kits):
            return None
        if not self.kits:
            return "no worker is live (none heard from within engine.worker_timeout)"
        lacking = [
            f"{kind} {name}"
            for kind, name, column in (("source", source, 0), ("format", format_, 1))
            if not any(name in kit[column] for kit in self.kits)
        ]
        if not lacking:
            return f"no live worker has both source {source} and format {format_}"
        return f"no live worker has {' / '.join(lacking)}"


@dataclass
class _Seen:
    """A worker's last heartbeat, when it came, and whether its loss was logged."""

    beat: WorkerHeartbeat
    at: datetime
    lost: bool = False


class WorkerRegistry:
    """The workers heard from (see the module docstring): ``timeout`` is
    ``engine.worker_timeout``; ``settle`` the time after ``started`` before
    :meth:`capabilities` may tell that no worker can run an export (a heartbeat
    interval: by then every running worker has been heard from)."""

    def __init__(self, *, timeout: float, settle: float, started: datetime) -> None:
        self.timeout = timedelta(seconds=timeout)
        self._settled_at = started + timedelta(seconds=settle)
        self._seen: dict[str, _Seen] = {}

    def heard(self, beat: WorkerHeartbeat, at: datetime) -> None:
        """Record a heartbeat that came ``at``; a goodbye forgets its worker."""
        known = self._seen.get(beat.name)
        if beat.leaving:
            if self._seen.pop(beat.name, None) is not None:
                log.info("worker %s said goodbye: it shut down", beat.name)
            return
        if known is None:
            log.info(
                "worker %s joined: exportd %s on %s (pid %d), %d at once, %d source(s), "
                "%d format(s)",
                *(beat.name, beat.version, beat.host, beat.pid, beat.concurrency),
                *(len(beat.sources), len(beat.formats)),
            )
        elif self._is_lost(known, at):
            log.info(
                "worker %s is back after %.0f s of silence",
                beat.name,
                (at - known.at).total_seconds(),
            )
        self._seen[beat.name] = _Seen(beat, at)

    def snapshot(self, at: datetime) -> list[WorkerSnapshot]:
        """Every worker known ``at``, live or lost, by name."""
        self._forget(at)
        return [
            WorkerSnapshot(
                **{name: getattr(seen.beat, name) for name in WorkerFacts.__struct_fields__},
                state="lost" if self._is_lost(seen, at) else "live",
                last_seen=seen.at,
            )
            for _, seen in sorted(self._seen.items())
        ]

    def live_count(self, at: datetime) -> int:
        """How many workers are live ``at`` (for a gauge)."""
        return sum(not self._is_lost(seen, at) for seen in self._seen.values())

    def capabilities(self, at: datetime) -> Capabilities:
        """What the workers live ``at`` can export."""
        kits = tuple(
            (
                frozenset(p.name for p in seen.beat.sources),
                frozenset(p.name for p in seen.beat.formats),
            )
            for seen in self._seen.values()
            if not self._is_lost(seen, at)
        )
        return Capabilities(kits, settled=at >= self._settled_at)

    def log_lost(self, at: datetime) -> None:
        """Log a warning for each worker that became lost since the last call, and forget
        those silent for long."""
        for seen in self._seen.values():
            if not seen.lost and self._is_lost(seen, at):
                seen.lost = True
                log.warning(
                    "worker %s lost: not heard from for %.0f s (engine.worker_timeout)",
                    *(seen.beat.name, (at - seen.at).total_seconds()),
                )
        self._forget(at)

    def _is_lost(self, seen: _Seen, at: datetime) -> bool:
        return at - seen.at > self.timeout

    def _forget(self, at: datetime) -> None:
        horizon = self.timeout * FORGET_AFTER
        for name in [name for name, seen in self._seen.items() if at - seen.at > horizon]:
            del self._seen[name]
