"""The job store's SQLite file: how it is opened, its transactions, its schema migrations.

The schema version is SQLite's ``PRAGMA user_version``: the number of entries
of :data:`MIGRATIONS` the file has had.  Opening a file applies the ones it
lacks, in order, each in its own transaction, so that a file of any earlier
version (or a new, empty one) comes up to date, and one that is up to date is
left alone.  A migration, once released, never changes: a new schema is a new
function appended to the list.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

from sqlite_utils import Database

from exportd.errors import ConfigError, Unavailable

NO_SPACE = "no space left for the job store"
LOCKED = "the job store is locked by another connection"


@contextmanager
def transaction(db: Database, *, write: bool = True) -> Iterator[None]:
    """One transaction: committed at the end of the block, rolled back if it raises.

    A write transaction takes the write lock at once (``BEGIN IMMEDIATE``), so
    that it waits for another writer, up to the busy timeout, rather than
    failing half-way through; a read transaction sees one consistent state of
    the file however many queries it makes.  A failure that passes (see
    :func:`passing_failure`) is raised as :class:`~exportd.errors.Unavailable`.
    """
    try:
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield
            db.execute("COMMIT")
        except BaseException:
            db.rollback()
            raise
    except sqlite3.OperationalError as exc:
        unavailable = passing_failure(exc)
        if unavailable is None:
            raise
        raise unavailable from exc


def passing_failure(error: sqlite3.OperationalError) -> Unavailable | None:
    """What ``error`` means to whoever asked the store, if it is a failure that passes
    with time rather than with a change of the request: its disk is full, or another
    connection held the lock longer than the busy timeout."""
    code = error.sqlite_errorcode & 0xFF  # the primary code of an extended one
    if code == sqlite3.SQLITE_FULL:
        return Unavailable(NO_SPACE)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return Unavailable(LOCKED)
    return None


def open_database(path: Path, *, busy_timeout: float) -> Database:
    """Open (creating if need be) the job store at ``path`` and bring its schema up to date.

    WAL mode lets readers read while the engine writes.  ``synchronous=NORMAL``
    keeps every commit through a crash of the process (a power cut may lose
    the last ones).  The connection runs in autocommit mode: transactions are
    only those of :func:`transaction`.  It may be handed between threads but
    used by one at a time.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db = Database(connection, execute_plugins=False)
    db.execute(f"PRAGMA busy_timeout = {round(busy_timeout * 1000)}")
    db.enable_wal()
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = ON")
    migrate(db, path)
    return db


class StoreFile:
    """A store kept in the job store's file: opened (and migrated) on creation, closed
    by :meth:`close` or at the end of a ``with`` block."""

    def __init__(self, path: Path, *, busy_timeout: float = 5.0) -> None:
        self._db = open_database(path, busy_timeout=busy_timeout)

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def schema_version(db: Database) -> int:
    """How many migrations the file has had."""
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(db: Database, path: Path) -> None:
    """Apply the migrations the file lacks, each in one transaction.

    Each one checks the version again inside its transaction, so that two
    processes opening the file at once apply it once; a file that is up to date
    is only read.  A file newer than this exportd is refused.
    """
    current = schema_version(db)
    if current > len(MIGRATIONS):
        raise ConfigError(
            f"the job store {path} has schema version {current}, newer than this "
            f"exportd knows ({len(MIGRATIONS)}): upgrade exportd"
        )
    for version in range(current, len(MIGRATIONS)):
        with transaction(db):
            if schema_version(db) == version:
                MIGRATIONS[version](db)
                db.execute(f"PRAGMA user_version = {version + 1}")


def _create_tables(db: Database) -> None:
    """Version 1: jobs, their parts, the outbox and the counts of dropped updates.

    Times are ISO 8601 text in UTC with microseconds, so that they sort as text.
    ``request``, ``error``, ``file`` and ``params`` are JSON.  A part is
    ``detached`` while its worker runs it past acknowledging the task; it is
    redispatched if ``heard_at`` (its last update, or its dispatch) gets too old.  Jobs are listed
    newest first (``created_at``, then ``rowid`` for jobs created at the same
    instant): each index serves one listing filter.  The idempotency index
    counts a job without an org as org ``''``, since SQLite keeps NULLs apart
    in a unique index.
    """
    statements = [
        """
        create table jobs (
            id text primary key,
            org_id text,
            user_id text,
            source text not null,
            format text not null,
            name text,
            status text not null,
            attempt integer not null,
            part_count integer not null,
            request text not null,
            error text,
            created_at text not null,
            updated_at text not null,
            completed_at text,
            expires_at text,
            idempotency_key text,
            request_hash text not null
        )
        """,
        "create index jobs_newest on jobs (created_at)",
        "create index jobs_org on jobs (org_id, created_at)",
        "create index jobs_org_user on jobs (org_id, user_id, created_at)",
        "create index jobs_org_status on jobs (org_id, status, created_at)",
        "create index jobs_org_source on jobs (org_id, source, created_at)",
        "create index jobs_expiry on jobs (expires_at) where status = 'done'",
        """
        create unique index jobs_idempotency on jobs (ifnull(org_id, ''), idempotency_key)
        where idempotency_key is not null
        """,
        """
        create table parts (
            job_id text not null references jobs (id) on delete cascade,
            part integer not null,
            status text not null,
            last_seq integer not null default 0,
            progress_rows integer not null default 0,
            progress_bytes integer not null default 0,
            progress_total integer,
            file text,
            error text,
            params text not null,
            file_name text not null,
            detached integer not null default 0,
            heard_at text,
            primary key (job_id, part)
        ) without rowid
        """,
        "create index parts_lease on parts (heard_at) where detached",
        """
        create table outbox (
            id integer primary key autoincrement,
            kind text not null,
            exchange text not null,
            routing_key text not null,
            body blob not null,
            created_at text not null
        )
        """,
        "create table dropped_updates (reason text primary key, count integer not null)",
    ]
    for statement in statements:
        db.execute(statement)


def _create_tenancy(db: Database) -> None:
    """Version 2: organisations, their users and the users' API tokens.

    An org's ``active`` is its subscription; ``benefits`` is a JSON list (``qna``,
    say).  A token is kept only as the SHA-256 of its secret (tokens are random and
    long, so a plain hash is enough); ``permissions`` is a JSON list.
    """
    statements = [
        """
        create table orgs (
            id text primary key,
            name text not null,
            active integer not null default 1,
            benefits text not null default '[]',
            created_at text not null
        )
        """,
        """
        create table users (
            id text primary key,
            org_id text not null references orgs (id),
            name text not null,
            email text,
            created_at text not null
        )
        """,
        "create index users_org on users (org_id)",
        """
        create table tokens (
            hash text primary key,
            user_id text not null references users (id),
            name text not null,
            permissions text not null,
            created_at text not null
        )
        """,
    ]
    for statement in statements:
        db.execute(statement)


def _number_jobs(db: Database) -> None:
    """Version 3: a job's ``number``, a stable whole number for APIs whose ids are numeric.

    It is the job's ``rowid`` when it was inserted (set by a trigger, so that inserts
    need not know of it), kept in a column because ``VACUUM`` may renumber the rowids
    of a table without an ``integer primary key``.
    """
    statements = [
        "alter table jobs add column number integer",
        "update jobs set number = rowid",
        "create unique index jobs_number on jobs (number)",
        """
        create trigger jobs_number after insert on jobs when new.number is null
        begin
            update jobs set number = new.rowid where rowid = new.rowid;
        end
        """,
    ]
    for statement in statements:
        db.execute(statement)


def _index_channels(db: Database) -> None:
    """Version 4: an index of each org's jobs by the ``channel_id`` parameter of their
    request (the ``qna`` source's), newest first, for listings of a channel's exports.

    It holds only the jobs that have the parameter.  Listings filtered on request
    parameters until version 7; they filter on labels since, and this index serves none.
    """
    db.execute(
        """
        create index jobs_org_channel
        on jobs (org_id, json_extract(request, '$.params.channel_id'), created_at)
        where json_extract(request, '$.params.channel_id') is not null
        """
    )


def _count_lapses(db: Database) -> None:
    """Version 5: a part's ``lapses``, how many of its runs fell silent in this attempt
    (their worker stopped reporting for the lease); at the limit the part fails."""
    db.execute("alter table parts add column lapses integer not null default 0")


def _plan_columns(db: Database) -> None:
    """Version 6: a part's ``columns`` as the engine planned them (JSON), which its tasks
    carry to the workers; ``null`` for the parts made before (their workers ask the
    source)."""
    db.execute("alter table parts add column columns text")


def _label_jobs(db: Database) -> None:
    """Version 7: a job's labels (its request's ``labels``), a row per label, for listings
    by label.  Index ``labels_lookup`` finds the jobs of a label; the jobs made before
    get the labels their requests have.
    """
    statements = [
        """
        create table labels (
            job_id text not null references jobs (id) on delete cascade,
            key text not null,
            value text not null,
            primary key (job_id, key)
        ) without rowid
        """,
        "create index labels_lookup on labels (key, value, job_id)",
        """
        insert into labels (job_id, key, value)
        select jobs.id, label.key, label.value
        from jobs, json_each(jobs.request, '$.labels') as label
        """,
    ]
    for statement in statements:
        db.execute(statement)


def _drop_channel_index(db: Database) -> None:
    """Version 8: no listing filters on a source's parameter any more (facades find their
    jobs by their labels): the index of version 4 goes."""
    db.execute("drop index if exists jobs_org_channel")


def _index_retention(db: Database) -> None:
    """Version 9: an index of the jobs that are over (failed, canceled, expired, deleted) by
    ``completed_at``, for the sweep that removes them after ``engine.job_retention``."""
    db.execute(
        """
        create index jobs_retention on jobs (completed_at)
        where status in ('failed', 'canceled', 'expired', 'deleted')
        """
    )


Migration = Callable[[Database], None]
MIGRATIONS: list[Migration] = [
    _create_tables,
    _create_tenancy,
    _number_jobs,
    _index_channels,
    _count_lapses,
    _plan_columns,
    _label_jobs,
    _drop_channel_index,
    _index_retention,
]
"""Every schema change, oldest first; a file at version N has had the first N."""
