"""The job store's failures that pass with time (its lock held by another connection, its
disk full) are :class:`~exportd.errors.Unavailable`, which every caller reports as such;
the others stay what they are."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from exportd.bus.topology import Topology
from exportd.engine.schema import LOCKED, NO_SPACE, passing_failure
from exportd.engine.store import JobStore
from exportd.errors import Unavailable
from tests.unit.test_job_store import NOW, parts, request


def test_a_store_locked_past_its_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    with JobStore(tmp_path / "jobs.db", Topology(), busy_timeout=0.1) as store:
        other = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(Unavailable, match=LOCKED) as raised:
            store.create(request(), parts(1), now=NOW)
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        other.execute("ROLLBACK")
        other.close()
        assert store.create(request(), parts(1), now=NOW).status == "created"


def error(code: int, message: str) -> sqlite3.OperationalError:
    """An error as sqlite3 raises it for SQLite's result ``code``."""
    raised = sqlite3.OperationalError(message)
    raised.sqlite_errorcode = code
    return raised


def test_which_sqlite_errors_pass() -> None:
    full = passing_failure(error(sqlite3.SQLITE_FULL, "database or disk is full"))
    assert full is not None and full.body().message == NO_SPACE == "no space left for the job store"
    assert full.code == "unavailable"
    busy_snapshot = 5 | (2 << 8)  # SQLITE_BUSY_SNAPSHOT, an extended code
    assert passing_failure(error(busy_snapshot, "database is locked")) is not None
    assert passing_failure(error(sqlite3.SQLITE_IOERR, "disk I/O error")) is None
