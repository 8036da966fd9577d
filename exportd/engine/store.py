"""The job store: every job, its parts, and the messages that announce their changes.

:class:`JobStore` is the engine's one way to change a job.  Each method that
changes one is one SQLite transaction: it loads the job, asks
:mod:`exportd.engine.lifecycle` for the change, writes it, and writes in the
same transaction the outbox rows that follow from it: the public
:class:`~exportd.messages.JobEvent`, one :class:`~exportd.messages.ExportTask`
per part when an attempt begins, a :class:`~exportd.messages.CancelSignal` when
one ends with parts unfinished.  The engine publishes the outbox
(:meth:`JobStore.outbox_batch`) and deletes the rows the broker confirmed
(:meth:`JobStore.outbox_done`: with the next write), so a change and its messages
are kept or lost together, and a message is published at least once.

Dropped updates are counted by reason in the file, so the counts survive restarts.
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

import msgspec
from msgspec.structs import replace

from exportd.bus.topology import DEFAULT_EXCHANGE, Topology, event_routing_key
from exportd.engine import lifecycle, rows
from exportd.engine.lifecycle import Change, Dropped, DropReason, JobState
from exportd.engine.schema import StoreFile, transaction
from exportd.errors import Conflict, FieldError, InvalidRequest, NotFound
from exportd.messages import (
    MIN_ID_PREFIX,
    CancelSignal,
    Column,
    ExportTask,
    JobEvent,
    JobSnapshot,
    RequestFields,
    StatusUpdate,
)

MAX_PAGE = 1000
"""The most jobs one :meth:`JobStore.list_jobs` call returns."""
MAX_OFFSET = 10**12
"""Far past any real listing, and far inside SQLite's integers."""

AMBIGUOUS_SHOWN = 3
"""How many of the ids a short one could be an error names."""

OutboxKind = Literal["task", "event", "cancel"]


def _insert(table: str, *columns: str) -> str:
    """An insert statement with a named parameter per column."""
    values = ", ".join(f":{column}" for column in columns)
    return f"insert into {table} ({', '.join(columns)}) values ({values})"


# Writes are plain statements, prepared once by sqlite3's statement cache: sqlite-utils'
# Table.insert and Table.update inspect the table on every call (Table.update also reads
# the row back), which doubled the time to create a job and made an update 10x slower.
_INSERT_JOB = _insert(
    "jobs",
    *("id", "org_id", "user_id", "source", "format", "name", "status", "attempt", "part_count"),
    *("request", "error", "created_at", "updated_at", "completed_at", "expires_at"),
    *("idempotency_key", "request_hash"),
)
_INSERT_PART = _insert("parts", "job_id", "part", "status", "params", "file_name", "columns")
_INSERT_LABEL = _insert("labels", "job_id", "key", "value")
_LABELLED = "id in (select job_id from labels where key = ? and value = ?)"
_INSERT_OUTBOX = _insert("outbox", "kind", "exchange", "routing_key", "body", "created_at")
_UPDATE_JOB = """
    update jobs set status = :status, attempt = :attempt, error = :error, updated_at = :updated_at,
        completed_at = :completed_at, expires_at = :expires_at
    where id = :id
"""
_UPDATE_PART = """
    update parts set status = :status, last_seq = :last_seq, lapses = :lapses,
        progress_rows = :progress_rows,
        progress_bytes = :progress_bytes, progress_total = :progress_total, file = :file,
        error = :error
    where job_id = :job_id and part = :part
"""
_HEARD = """
    update parts set detached = :detached, heard_at = :heard_at
    where job_id = :job_id and part = :part
"""
_RENEW = """
    update parts set heard_at = :heard_at, detached = detached or :detached
    where job_id = :job_id and part = :part
"""
_ALIVE: frozenset[DropReason] = frozenset({"duplicate", "backwards"})
"""Why the updates of a run that lives, but does not count, are dropped: a run overtaken by a
later one (duplicate), or one that starts over after a lapse of an uploading part (backwards)."""
_LAPSED = """
    select parts.job_id, parts.part from parts join jobs on jobs.id = parts.job_id
    where parts.detached and parts.heard_at <= ?
        and jobs.status in ('created', 'processing', 'uploading')
        and parts.status in ('created', 'processing', 'uploading')
"""
_UNFINISHED = """
    select parts.job_id, parts.part from parts join jobs on jobs.id = parts.job_id
    where jobs.status in ('created', 'processing', 'uploading')
        and parts.status in ('created', 'processing', 'uploading')
"""
_OVER = """
    select id from jobs
    where status in ('failed', 'canceled', 'expired', 'deleted') and completed_at <= ?
    order by completed_at limit ?
"""
"""The jobs that are over (no file left, no worker at work) and finished long enough ago;
the ``status in`` term is the index ``jobs_retention``'s own, so that it serves it."""
_COUNT_DROP = """
    insert into dropped_updates (reason, count) values (?, 1)
    on conflict (reason) do update set count = count + 1
"""
_COLUMNS = msgspec.json.Decoder(list[Column])
"""Reads a part's planned ``columns``."""
_IDEMPOTENCY_WHERE = "ifnull(org_id, '') = ? and idempotency_key = ?"
"""Matches the expression of the unique index ``jobs_idempotency``, so that it is used."""


class OutboxRow(NamedTuple):
    """A message waiting to be published: ``body`` to ``exchange`` with ``routing_key``."""

    id: int
    kind: OutboxKind
    exchange: str
    routing_key: str
    body: bytes
    created_at: datetime


class NewPart(NamedTuple):
    """One part of a job to create, as the engine planned it: its own source parameters,
    its file's name and its columns."""

    params: dict[str, Any]
    file_name: str
    columns: list[Column] | None = None


class JobQuery(msgspec.Struct, kw_only=True, frozen=True):
    """Which jobs a listing holds, and which page of them (newest first).

    A filter left out (``None``, empty) holds every job: ``status`` holds the jobs in
    any of its statuses, ``labels`` those with every one of its labels, and
    ``completed_since`` those finished at that time or later.
    """

    org_id: str | None = None
    user_id: str | None = None
    status: tuple[str, ...] = ()
    source: str | None = None
    labels: dict[str, str] = {}
    completed_since: datetime | None = None
    limit: int = 50
    offset: int = 0


class JobPage(NamedTuple):
    """One page of a listing of jobs, newest first, and how many jobs the listing holds.

    ``numbers`` has the ``number`` of each job of the page (see :meth:`JobStore.numbers`).
    """

    jobs: list[JobSnapshot]
    total: int
    numbers: dict[str, int]


def part_key(job_id: str, attempt: int, part: int, file_name: str) -> str:
    """Where the storage is to keep the file of one part of one attempt of a job: a path
    that ends in the file's name."""
    return f"{job_id}/{attempt}/{part}/{file_name}"


def request_hash(request: RequestFields) -> str:
    """The SHA-256 of the request's canonical JSON (keys sorted): equal for equal requests."""
    return hashlib.sha256(msgspec.json.encode(request, order="sorted")).hexdigest()


class JobStore(StoreFile):
    """Jobs, their parts, the outbox and the counts of dropped updates, in one SQLite file.

    The engine is the only writer.  Readers (another process listing jobs)
    may open their own store on the same file and read while it writes.
    Every ``now`` is a timezone-aware datetime.  One store serves one thread
    at a time.
    """

    def __init__(self, path: Path, topology: Topology, *, busy_timeout: float = 5.0) -> None:
        super().__init__(path, busy_timeout=busy_timeout)
        self.topology = topology
        self._jobs = self._db.table("jobs")
        self._parts = self._db.table("parts")
        self._outbox = self._db.table("outbox")
        self._dropped = self._db.table("dropped_updates")
        self._published: set[int] = set()
        """Outbox rows the broker confirmed, deleted with the next write (:meth:`outbox_done`)."""

    def create(
        self, request: RequestFields, parts: Sequence[NewPart], *, now: datetime
    ) -> JobSnapshot:
        """Record a new job of ``parts``, and its tasks.

        A request with an ``idempotency_key`` its org used before gets that job
        back if the requests are the same, and :class:`~exportd.errors.Conflict`
        naming ``idempotency_key`` if they are not.
        """
        if type(request) is not RequestFields:  # kept as exportd's own messages carry it
            request = RequestFields(**msgspec.structs.asdict(request))
        encoded = msgspec.json.encode(request)
        digest = request_hash(request)
        with self._writing():
            if request.idempotency_key is not None:
                earlier = self._idempotent_job(request, digest)
                if earlier is not None:
                    return earlier
            change = lifecycle.create(str(uuid.uuid4()), request, len(parts), now=now)
            job = change.job
            self._db.execute(
                _INSERT_JOB,
                {
                    **rows.job_columns(job),
                    "org_id": request.org_id,
                    "user_id": request.user_id,
                    "source": request.source,
                    "format": request.format,
                    "name": request.name,
                    "part_count": job.part_count,
                    "request": encoded.decode(),
                    "created_at": rows.to_text(job.created_at),
                    "idempotency_key": request.idempotency_key,
                    "request_hash": digest,
                },
            )
            self._db.conn.executemany(
                _INSERT_PART,
                [
                    {
                        "job_id": job.id,
                        "part": part.part,
                        "status": part.status,
                        "params": msgspec.json.encode(new.params).decode(),
                        "file_name": new.file_name,
                        "columns": None
                        if new.columns is None
                        else msgspec.json.encode(new.columns).decode(),
                    }
                    for part, new in zip(job.parts, parts, strict=True)
                ],
            )
            self._db.conn.executemany(
                _INSERT_LABEL,
                [
                    {"job_id": job.id, "key": key, "value": value}
                    for key, value in request.labels.items()
                ],
            )
            self._announce(change, parts)
        return job

    def get(self, job_id: str, org_id: str | None = None) -> JobSnapshot:
        """The job ``job_id``; :class:`~exportd.errors.NotFound` naming ``job_id`` if there is
        none, or if ``org_id`` is given and the job belongs to another org."""
        with transaction(self._db, write=False):
            return self._state(job_id, org_id).job

    def resolve_id(self, job_id: str, org_id: str | None = None) -> str:
        """The id of the one job (of ``org_id``, if given) whose id is ``job_id`` or, for
        ``job_id`` of :data:`MIN_ID_PREFIX` characters or more, starts with it.

        No such job raises :class:`~exportd.errors.NotFound` naming ``job_id``; a start
        that more than one id shares, or a shorter one that is no id,
        :class:`~exportd.errors.InvalidRequest`.
        """
        # A range of the primary key, so that the index serves it and no character of
        # job_id is a wildcard; the ids are UUIDs, so no id sorts past the upper bound.
        where, args = "id >= ? and id < ?", [job_id, job_id + "\U0010ffff"]
        if org_id is not None:
            where, args = where + " and org_id = ?", [*args, org_id]
        query = f"select id from jobs where {where} order by id limit ?"
        with transaction(self._db, write=False):
            found = [id_ for (id_,) in self._db.execute(query, [*args, AMBIGUOUS_SHOWN + 1])]
        if job_id in found:
            return job_id
        if found and len(job_id) < MIN_ID_PREFIX:
            raise InvalidRequest.field(
                "job_id",
                f"{job_id!r} is too short to stand for a job id: give at least "
                f"{MIN_ID_PREFIX} characters",
            )
        if len(found) > 1:
            shown = ", ".join(found[:AMBIGUOUS_SHOWN])
            more = ", ..." if len(found) > AMBIGUOUS_SHOWN else ""
            raise InvalidRequest.field(
                "job_id", f"{job_id!r} is the start of more than one job id: {shown}{more}"
            )
        if not found:
            raise NotFound.field("job_id", f"no job {job_id!r}")
        return str(found[0])

    def numbers(self, job_ids: Iterable[str]) -> dict[str, int]:
        """The ``number`` of each of the jobs ``job_ids`` that exists: a whole number that
        stays the job's, for APIs whose ids are numeric."""
        ids = list(job_ids)
        if not ids:
            return {}
        placeholders = ", ".join("?" * len(ids))
        query = f"select id, number from jobs where id in ({placeholders})"
        return dict(self._db.execute(query, ids).fetchall())

    def get_by_number(self, number: int, org_id: str | None = None) -> JobSnapshot:
        """The job whose ``number`` is ``number``; :class:`~exportd.errors.NotFound` naming
        ``job_id`` if there is none, or if ``org_id`` is given and it is another org's."""
        where = "number = ?" if org_id is None else "number = ? and org_id = ?"
        args = [number] if org_id is None else [number, org_id]
        with transaction(self._db, write=False):
            states = self._states(where, args)
        if not states:
            raise NotFound.field("job_id", f"no job number {number}")
        return states[0].job

    def list_jobs(self, query: JobQuery) -> JobPage:
        """The page of the jobs ``query`` asks for, newest first, and the listing's size.

        Each label of ``query.labels`` is found through the index ``labels_lookup``.
        """
        if not 1 <= query.limit <= MAX_PAGE:
            raise InvalidRequest.field("limit", f"must be from 1 to {MAX_PAGE}")
        if not 0 <= query.offset <= MAX_OFFSET:
            raise InvalidRequest.field("offset", f"must be from 0 to {MAX_OFFSET}")
        for value in query.status:
            if value not in lifecycle.JOB_STATUSES:
                statuses = ", ".join(lifecycle.JOB_STATUSES)
                raise InvalidRequest.field("status", f"unknown status {value!r}; one of {statuses}")
        conditions: list[tuple[str, list[str]]] = [
            (f"{name} = ?", [value])
            for name, value in [
                ("org_id", query.org_id),
                ("user_id", query.user_id),
                ("source", query.source),
            ]
            if value is not None
        ]
        if query.status:
            conditions.append(
                (f"status in ({', '.join('?' * len(query.status))})", [*query.status])
            )
        if query.completed_since is not None:
            conditions.append(("completed_at >= ?", [rows.to_text(query.completed_since)]))
        conditions.extend((_LABELLED, [key, value]) for key, value in sorted(query.labels.items()))
        where = " and ".join(condition for condition, _ in conditions) or None
        args = [value for _, values in conditions for value in values]
        with transaction(self._db, write=False):
            jobs = self._job_rows(where, args, limit=query.limit, offset=query.offset)
            count = f"select count(*) from jobs{f' where {where}' if where else ''}"
            total: int = self._db.execute(count, args).fetchone()[0]
            states = self._with_parts(jobs)
        numbers = {job["id"]: job["number"] for job in jobs}
        return JobPage([state.job for state in states], total, numbers)

    def apply_update(
        self,
        update: StatusUpdate,
        *,
        now: datetime,
        lifetime: timedelta,
        no_worker: lifecycle.NoWorker | None = None,
    ) -> Change | Dropped:
        """Apply a worker's update to its job, or drop it and count the reason.

        A job that becomes done keeps its files for ``lifetime``.  An update
        applied also renews the part's lease (see :meth:`redispatch_lapsed`).  A part
        that failed says in its error what ``no_worker`` tells of its export.
        """
        with self._writing():
            return self._apply(update, now=now, lifetime=lifetime, no_worker=no_worker)

    def apply_updates(
        self,
        updates: Sequence[StatusUpdate],
        *,
        now: datetime,
        lifetime: timedelta,
        no_worker: lifecycle.NoWorker | None = None,
    ) -> list[Change | Dropped | Exception]:
        """Apply several updates as :meth:`apply_update` does, in one transaction (one
        commit for all the updates that arrived together): the outcome of each, in order.

        Each update is applied within a savepoint of its own: one whose apply raises
        anything but an error of the database is rolled back alone, and its exception
        is its outcome.  An error of the database (the file locked past the busy timeout,
        its disk full) raises for all of them, none applied.  An update alone needs no
        savepoint: it is applied by :meth:`apply_update`, which raises what it raises.
        """
        if len(updates) == 1:
            return [self.apply_update(updates[0], now=now, lifetime=lifetime, no_worker=no_worker)]
        outcomes: list[Change | Dropped | Exception] = []
        with self._writing():
            for update in updates:
                self._db.execute("SAVEPOINT one_update")
                try:
                    outcome = self._apply(update, now=now, lifetime=lifetime, no_worker=no_worker)
                    outcomes.append(outcome)
                except sqlite3.Error:
                    raise
                except Exception as exc:
                    self._db.execute("ROLLBACK TO one_update")
                    outcomes.append(exc)
                self._db.execute("RELEASE one_update")
        return outcomes

    def _apply(
        self,
        update: StatusUpdate,
        *,
        now: datetime,
        lifetime: timedelta,
        no_worker: lifecycle.NoWorker | None,
    ) -> Change | Dropped:
        """:meth:`apply_update` within a transaction begun."""
        before = self._find(update.job_id)
        if before is None:
            outcome: Change | Dropped = lifecycle.unknown_job(update)
        else:
            outcome = lifecycle.apply_update(
                before, update, now=now, lifetime=lifetime, no_worker=no_worker
            )
            if isinstance(outcome, Change):
                self._record(before, outcome, now)
                if not outcome.dispatch:  # a part given back: its lease starts anew
                    self._hear(before.job.id, [update.part], detached=update.detached, now=now)
        if isinstance(outcome, Dropped):
            self._db.execute(_COUNT_DROP, [outcome.reason])
            if outcome.reason in _ALIVE:  # its run is alive: it keeps the lease
                self._db.execute(
                    _RENEW,
                    {
                        "heard_at": rows.to_text(now),
                        "detached": update.detached,
                        "job_id": update.job_id,
                        "part": update.part,
                    },
                )
        return outcome

    def cancel(self, job_id: str, org_id: str | None = None, *, now: datetime) -> Change:
        """Cancel a running job and tell the workers to stop it."""
        return self._operate(lifecycle.cancel, job_id, org_id, now)

    def restart(self, job_id: str, org_id: str | None = None, *, now: datetime) -> Change:
        """Run a failed, canceled or expired job again, as a new attempt."""
        return self._operate(lifecycle.restart, job_id, org_id, now)

    def delete(self, job_id: str, org_id: str | None = None, *, now: datetime) -> Change:
        """Mark a job deleted, stopping it if it runs; ``discard`` lists its files."""
        return self._operate(lifecycle.delete, job_id, org_id, now)

    def delete_part(
        self,
        job_id: str,
        part: int,
        org_id: str | None = None,
        *,
        now: datetime,
        lifetime: timedelta,
    ) -> Change:
        """Delete one part of a job (:func:`lifecycle.delete_part`), the job with its last
        part; ``discard`` lists the part's file.  A running job that becomes done keeps its
        files for ``lifetime``."""
        operation = partial(lifecycle.delete_part, part=part, lifetime=lifetime)
        return self._operate(operation, job_id, org_id, now)

    def expire_due(self, now: datetime, *, limit: int = 100) -> list[Change]:
        """Expire up to ``limit`` done jobs whose ``expires_at`` has come; each change's
        ``discard`` lists the files to delete."""
        with self._writing():
            due = self._states(
                "status = 'done' and expires_at <= ?", [rows.to_text(now)], limit=limit
            )
            changes = [lifecycle.expire(state, now=now) for state in due]
            for before, change in zip(due, changes, strict=True):
                self._record(before, change, now)
        return changes

    def remove_finished(self, before: datetime, *, limit: int) -> list[str]:
        """Remove from the file up to ``limit`` jobs that are over (failed, canceled,
        expired or deleted: none runs, none has a file) and finished before ``before``,
        oldest first, with their parts and labels, in one transaction; their ids.

        A done job is not over until it expires: its files go first.  Nothing is
        announced: the job's last event was its end."""
        with self._writing():
            ids = [id_ for (id_,) in self._db.execute(_OVER, [rows.to_text(before), limit])]
            if ids:
                placeholders = ", ".join("?" * len(ids))
                # Parts and labels go with their job (on delete cascade).
                self._db.execute(f"delete from jobs where id in ({placeholders})", ids)
        return ids

    def redispatch_lapsed(
        self,
        now: datetime,
        lease: timedelta,
        *,
        limit: int,
        no_worker: lifecycle.NoWorker | None = None,
    ) -> list[Change]:
        """The parts of running jobs whose worker acknowledged the task early (``detached``)
        and has not been heard from for ``lease``: each lapses (:func:`lifecycle.lapse`),
        dispatched again or, at its ``limit``-th lapse, failed (with what ``no_worker``
        says of its export in the error)."""
        return self._change_parts(
            _LAPSED,
            [rows.to_text(now - lease)],
            partial(lifecycle.lapse, limit=limit, now=now, no_worker=no_worker),
            now,
        )

    def redispatch_unfinished(self, now: datetime) -> list[Change]:
        """Dispatch again every unfinished part of every running job: after a restart on a
        bus whose queued tasks died with the process (the embedded mode)."""
        return self._change_parts(_UNFINISHED, [], lifecycle.redispatch, now)

    def _change_parts(
        self,
        query: str,
        args: list[Any],
        change: Callable[[JobState, int], Change],
        now: datetime,
    ) -> list[Change]:
        """Make ``change`` to each (job, part) pair that ``query`` selects and that still
        runs: a change to one part (a lapse at its limit) may end its job's other parts."""
        with self._writing():
            changes = []
            for job_id, part in self._db.execute(query, args).fetchall():
                before = self._state(job_id, None)
                if lifecycle.part_runs(before, part):
                    changes.append(change(before, part))
                    self._record(before, changes[-1], now)
        return changes

    def ping(self) -> None:
        """Read the file once: raises if it cannot be read."""
        self._db.execute("select 1 from jobs limit 1").fetchall()

    def outbox_batch(self, limit: int = 100) -> list[OutboxRow]:
        """The oldest ``limit`` messages waiting to be published, oldest first."""
        waiting = self._outbox.rows_where(order_by="id", limit=limit + len(self._published))
        return [
            OutboxRow(**{**row, "created_at": datetime.fromisoformat(row["created_at"])})
            for row in waiting
            if row["id"] not in self._published
        ][:limit]

    def outbox_figures(self) -> tuple[int, datetime | None]:
        """How many messages wait in the outbox, and when the oldest of them was written
        (``None`` when none waits)."""
        count, oldest = self._db.execute("select count(*), min(created_at) from outbox").fetchone()
        return count, None if oldest is None else datetime.fromisoformat(oldest)

    def outbox_done(self, ids: Iterable[int]) -> None:
        """Forget published messages (once the broker confirmed them): :meth:`outbox_batch`
        no longer gives them, and the store's next write deletes them in its own
        transaction (or :meth:`delete_published` does), rather than a commit of their own
        for every publish.  Until then, a crash of the process leaves them to be published
        again (with their event ids), as a crash between a confirm and the delete always
        could."""
        self._published.update(ids)

    def delete_published(self) -> None:
        """Delete the published messages that no write has deleted yet."""
        if self._published:
            with self._writing():
                pass

    def close(self) -> None:
        """Delete the published messages, then close the file (were the file locked, they
        are published again at the next start)."""
        try:
            self.delete_published()
        finally:
            super().close()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A write transaction (:func:`~exportd.engine.schema.transaction`) that deletes the
        published outbox rows too, forgotten once it commits."""
        published = list(self._published)
        with transaction(self._db):
            if published:
                self._db.conn.executemany(
                    "delete from outbox where id = ?", [(id_,) for id_ in published]
                )
            yield
        self._published.difference_update(published)

    def dropped(self) -> dict[str, int]:
        """How many workers' updates were dropped, by reason, since the store was created."""
        return {row["reason"]: row["count"] for row in self._dropped.rows}

    def _operate(
        self,
        operation: Callable[..., Change],
        job_id: str,
        org_id: str | None,
        now: datetime,
    ) -> Change:
        with self._writing():
            before = self._state(job_id, org_id)
            change = operation(before, now=now)
            self._record(before, change, now)
        return change

    def _idempotent_job(self, request: RequestFields, digest: str) -> JobSnapshot | None:
        """The job created before with ``request``'s idempotency key in its org, if any."""
        earlier = next(
            self._jobs.rows_where(
                _IDEMPOTENCY_WHERE,
                [request.org_id or "", request.idempotency_key],
                select="id, request_hash",
            ),
            None,
        )
        if earlier is None:
            return None
        if earlier["request_hash"] != digest:
            message = f"already used for job {earlier['id']}, with other parameters"
            raise Conflict(
                "idempotency_key reused for a different request",
                [FieldError("idempotency_key", message)],
            )
        return self._state(earlier["id"], request.org_id).job

    def _find(self, job_id: str, org_id: str | None = None) -> JobState | None:
        where, args = "id = ?", [job_id]
        if org_id is not None:
            where, args = "id = ? and org_id = ?", [job_id, org_id]
        states = self._states(where, args)
        return states[0] if states else None

    def _state(self, job_id: str, org_id: str | None) -> JobState:
        state = self._find(job_id, org_id)
        if state is None:
            raise NotFound.field("job_id", f"no job {job_id!r}")
        return state

    def _states(
        self,
        where: str | None,
        args: Sequence[Any],
        *,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[JobState]:
        """The jobs ``where`` matches, newest first, read with all their parts in two queries."""
        return self._with_parts(self._job_rows(where, args, limit=limit, offset=offset))

    def _job_rows(
        self,
        where: str | None,
        args: Sequence[Any],
        *,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[dict[str, Any]]:
        """The rows of the jobs ``where`` matches, newest first.

        Plain statements, with the page bound as parameters: sqlite-utils' ``rows_where``
        asks ``sqlite_master`` whether the table exists on every call, and writes the
        limit and offset into the text, so that each page was a statement to prepare.
        """
        query = "select * from jobs"
        if where is not None:
            query += f" where {where}"
        query += " order by created_at desc, rowid desc"
        if limit is not None or offset is not None:
            query += " limit ? offset ?"
            args = [*args, -1 if limit is None else limit, offset or 0]
        return self._dicts(query, args)

    def _dicts(self, query: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        """The rows ``query`` selects, each a dict by column name."""
        cursor = self._db.execute(query, args)
        columns = [column[0] for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor]

    def _with_parts(self, jobs: Sequence[dict[str, Any]]) -> list[JobState]:
        """The jobs of rows ``jobs``, with their parts read in one query."""
        ids = [job["id"] for job in jobs]
        parts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        if ids:
            placeholders = ", ".join("?" * len(ids))
            query = f"select * from parts where job_id in ({placeholders}) order by job_id, part"
            for row in self._dicts(query, ids):
                parts[row["job_id"]].append(row)
        return [rows.job_state(job, parts[job["id"]]) for job in jobs]

    def _record(self, before: JobState, change: Change, now: datetime) -> None:
        """Write ``change`` of the job that was ``before`` (its parts that changed), and
        announce it.  A part dispatched starts its lease, not detached, at ``now``."""
        after = change.state
        self._db.execute(_UPDATE_JOB, rows.job_columns(after.job))
        changed = [
            rows.part_columns(after.job.id, *new)
            for new, old in zip(
                zip(after.job.parts, after.seqs, after.lapses, strict=True),
                zip(before.job.parts, before.seqs, before.lapses, strict=True),
                strict=True,
            )
            if new != old
        ]
        self._db.conn.executemany(_UPDATE_PART, changed)
        self._hear(after.job.id, change.dispatch, detached=False, now=now)
        self._announce(change)

    def _hear(self, job_id: str, parts: Iterable[int], *, detached: bool, now: datetime) -> None:
        """Start or renew the lease of a job's ``parts``: a worker was heard from (or they
        were dispatched) at ``now``."""
        heard_at = rows.to_text(now)
        self._db.conn.executemany(
            _HEARD,
            [
                {"job_id": job_id, "part": part, "detached": detached, "heard_at": heard_at}
                for part in parts
            ],
        )

    def _announce(self, change: Change, planned: Sequence[NewPart] = ()) -> None:
        """Write the outbox rows that follow from ``change`` (a new job's tasks from the
        parts ``planned``, the others' from their rows)."""
        job = change.job
        messages: list[tuple[OutboxKind, str, str, msgspec.Struct]] = []
        if change.event is not None:
            event = JobEvent(
                id=str(uuid.uuid4()), type=change.event, occurred_at=job.updated_at, job=job
            )
            key = event_routing_key(job.request.org_id, job.request.source, job.status)
            messages.append(("event", self.topology.events, key, event))
        messages.extend(
            ("task", DEFAULT_EXCHANGE, self.topology.tasks, task)
            for task in self._tasks(change.state, change.dispatch, planned)
        )
        if change.stop_workers:
            signal = CancelSignal(job_id=job.id, attempt=job.attempt)
            messages.append(("cancel", self.topology.cancel, "", signal))
        created_at = rows.to_text(job.updated_at)
        self._db.conn.executemany(
            _INSERT_OUTBOX,
            [
                {
                    "kind": kind,
                    "exchange": exchange,
                    "routing_key": routing_key,
                    "body": msgspec.json.encode(message),
                    "created_at": created_at,
                }
                for kind, exchange, routing_key, message in messages
            ],
        )

    def _tasks(
        self, state: JobState, parts: Sequence[int], planned: Sequence[NewPart]
    ) -> list[ExportTask]:
        """A task for each of ``parts`` in the job's current attempt, as planned: from
        ``planned`` (all of a new job's parts), else from the parts' rows."""
        if not parts:
            return []
        job = state.job
        if not planned:
            planned = [
                NewPart(
                    msgspec.json.decode(row["params"]),
                    row["file_name"],
                    None if row["columns"] is None else _COLUMNS.decode(row["columns"]),
                )
                for row in self._parts.rows_where(
                    "job_id = ?", [job.id], select="params, file_name, columns", order_by="part"
                )
            ]
        return [
            ExportTask(
                job_id=job.id,
                part=part,
                part_count=job.part_count,
                attempt=job.attempt,
                request=replace(job.request, params=new.params),
                key=part_key(job.id, job.attempt, part, new.file_name),
                created_at=job.created_at,
                file_name=new.file_name,
                columns=new.columns,
                lapses=state.lapses[part],
            )
            for part, new in ((part, planned[part]) for part in parts)
        ]
