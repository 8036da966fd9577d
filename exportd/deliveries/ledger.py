"""The record of deliveries, kept in ``EXPORTD_HOME/deliveries.db`` (SQLite).

A delivery is recorded as ``pending`` before it is tried and marked ``sent``
only once its method returned, so a process that stops mid-way finds it again
at its next start.  ``given_up`` ones are those whose method said retrying
cannot help, or whose job lost its files first.  Closed ones are kept only
until their jobs' files are long gone (:meth:`Ledger.prune`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    method TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    tries INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    error TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
Outcome = Literal["sent", "given_up"]


class Pending(NamedTuple):
    """A delivery still to make: which attempt of which job, by which method."""

    job_id: str
    attempt: int
    method: str
    tries: int


class Entry(NamedTuple):
    """What the ledger holds of one delivery: its status, how many tries it had, and the
    error of the last failed one (why it was given up, for a ``given_up`` one)."""

    status: str
    tries: int
    error: str | None


class Ledger:
    """The deliveries of one exportd home."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('since', ?)",
            [datetime.now(UTC).isoformat()],
        )

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def mark(self, moment: datetime) -> None:
        """Note that every job done from ``moment`` on will reach this ledger by its event
        (the service listens since then): a later start catches up from there."""
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'since'", [moment.isoformat()])

    @property
    def since(self) -> datetime:
        """Since when the done jobs may lack a record here: when the ledger was made, or
        when the last run of the service started listening."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'since'").fetchone()
        return datetime.fromisoformat(row[0])

    def add(self, job_id: str, attempt: int, method: str) -> bool:
        """Record a delivery to make now, unless it is recorded already; whether it was new."""
        now = time.time()
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO deliveries (job_id, attempt, method, next_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [job_id, attempt, method, now, now],
        )
        return cursor.rowcount == 1

    def due(self, now: float) -> Pending | None:
        """The pending delivery that has waited longest for its turn at ``now``, if any."""
        row = self._db.execute(
            "SELECT job_id, attempt, method, tries FROM deliveries "
            "WHERE status = 'pending' AND next_at <= ? ORDER BY next_at LIMIT 1",
            [now],
        ).fetchone()
        return None if row is None else Pending(*row)

    def next_at(self) -> float | None:
        """When the next pending delivery is to be tried, if there is one."""
        row = self._db.execute(
            "SELECT min(next_at) FROM deliveries WHERE status = 'pending'"
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def pending_by_method(self) -> dict[str, int]:
        """How many deliveries are pending, by method."""
        rows = self._db.execute(
            "SELECT method, count(*) FROM deliveries WHERE status = 'pending' GROUP BY method"
        )
        return dict(rows.fetchall())

    def retry(self, pending: Pending, at: float, error: str) -> None:
        """Count a failed try and have the delivery tried again at ``at``."""
        self._db.execute(
            "UPDATE deliveries SET tries = tries + 1, next_at = ?, error = ?, updated_at = ? "
            "WHERE job_id = ? AND attempt = ?",
            [at, error, time.time(), pending.job_id, pending.attempt],
        )

    def finish(self, pending: Pending, outcome: Outcome, error: str | None = None) -> None:
        """Close a delivery: ``sent``, or ``given_up`` because of ``error``."""
        self._db.execute(
            "UPDATE deliveries SET status = ?, tries = tries + 1, error = ?, updated_at = ? "
            "WHERE job_id = ? AND attempt = ?",
            [outcome, error, time.time(), pending.job_id, pending.attempt],
        )

    def prune(self, before: float) -> int:
        """Forget the deliveries closed (sent or given up) before ``before``; how many."""
        cursor = self._db.execute(
            "DELETE FROM deliveries WHERE status != 'pending' AND updated_at < ?", [before]
        )
        return cursor.rowcount

    def forget(self, job_ids: Sequence[str]) -> None:
        """Forget every delivery of the jobs ``job_ids`` (removed from the job store), in
        one statement."""
        if job_ids:
            placeholders = ", ".join("?" * len(job_ids))
            self._db.execute(f"DELETE FROM deliveries WHERE job_id IN ({placeholders})", job_ids)

    def status(self, job_id: str, attempt: int) -> str | None:
        """``pending``, ``sent`` or ``given_up``; None if no delivery is recorded."""
        entry = self.entry(job_id, attempt)
        return None if entry is None else entry.status

    def entry(self, job_id: str, attempt: int) -> Entry | None:
        """The delivery of ``attempt`` of ``job_id``; None if none is recorded."""
        row = self._db.execute(
            "SELECT status, tries, error FROM deliveries WHERE job_id = ? AND attempt = ?",
            [job_id, attempt],
        ).fetchone()
        return None if row is None else Entry(*row)
