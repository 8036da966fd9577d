"""The job state machine: the one place that decides how a job may change.

Pure functions, no I/O: each takes a job's :class:`JobState` and returns a
:class:`Change` (the job after, and what has to follow from it) or refuses.
:mod:`exportd.engine.store` records the change and its messages.

Parts
-----
A job has one or more parts (numbered from 0); a worker exports each part and
reports on it with status updates (:class:`~exportd.messages.StatusUpdate`).
A part moves forward only::

    created -> processing -> uploading -> done
    (created, processing, uploading) -> failed | canceled
    (any but deleted) -> deleted   by delete_part

Skipping ahead is fine (``created -> done``); ``done``, ``failed``,
``canceled`` and ``deleted`` are final.  Workers report every status but
``deleted``: a user deletes one part (:func:`delete_part`, an API whose
tasks are parts), and the job goes on without it.

A job's status while it runs
----------------------------
It derives from the statuses of its parts that are not deleted; the first row
that matches decides:

==================================  ============
parts                               job status
==================================  ============
any part failed                     failed
any part canceled                   canceled
every part done                     done
every part not done is uploading    uploading
any part past created               processing
every part created                  created
==================================  ============

A job that fails or is canceled this way ends its attempt: its unfinished
parts become canceled.  Whenever an attempt ends (done too) the workers are
told to stop whatever run of it is still going (a copy of a task delivered
twice) and to take no more of its tasks, with one exception: a one-part job
made done by the run of its task's first delivery (``first_delivery``: no later
delivery of the task came to that run either), never lapsed, has had no other run
to stop (a fanout to every worker for every small job would cost more than it
could save).  A run on another worker that got the task again after that run's
channel dropped, with no delivery coming back to the first run, finishes
unstopped; its outcome is dropped (``job_finished``) and its file discarded.

What users (and the expiry sweeper) do
--------------------------------------
===========  ===================================  ==========================================
operation    allowed from                         to
===========  ===================================  ==========================================
cancel       created, processing, uploading       canceled (unfinished parts canceled)
restart      failed, canceled, expired            created, attempt + 1, every part reset
                                                  but the deleted ones
delete       any status but deleted               deleted (unfinished parts canceled)
expire       done, once ``expires_at`` has come   expired
delete_part  any status but deleted, of a part    see below
             not deleted
===========  ===================================  ==========================================

Deleting one part (:func:`delete_part`) makes it ``deleted``, its file gone:

==============================  ==================================================
the job                         then
==============================  ==================================================
has no other part left          deleted, as by ``delete`` (stopping it if it runs)
runs                            its status derives from the parts left (all of
                                them done: done, and its attempt ends)
is done, failed, canceled or    keeps its status
expired
==============================  ==================================================

A run of a deleted part that still goes on is not stopped (the job's other parts
run on); its outcome is dropped (``part_deleted``) and its file discarded.

Anything else raises :class:`~exportd.errors.Conflict`.  Together::

    created -> processing -> uploading -> done -> expired
    (created, processing, uploading) -> failed | canceled
    (any but deleted) -> deleted   by delete, or delete_part of the last part left
    (failed, canceled, expired) -> created   by restart

Parts whose worker the broker no longer watches
-----------------------------------------------
A worker acknowledges a task early (it is ``detached``) when the export runs past
``worker.ack_deadline``, when the task comes at its queue's delivery limit (the
broker's count includes every dropped connection, so it cannot tell a poison task
from a long one), and when the task was dispatched after a lapse.  From then on
the engine's lease watches the part: every update renews it.

====================================  ==================================================
what happens to a running part        then
====================================  ==================================================
its detached run is given back (its   :func:`apply_update` dispatches it again at once,
worker shuts down)                    its ``lapses`` unchanged
no update for ``engine.lease``        :func:`lapse`: ``lapses`` + 1; below the limit it
                                      is dispatched again (the task says so: the run is
                                      detached at once), at the limit the part fails
                                      (no worker finished it), and so the job
the engine restarts on a bus that     :func:`redispatch`: dispatched again
lost its queued tasks (embedded)
====================================  ==================================================

A lapse is a real attempt lost: a worker crashed, was killed or was cut off for
longer than the lease while on the part.  Connection drops that the worker
outlives are not lapses: its run goes on and keeps the lease.  A restart starts
the count over.

Workers' updates
----------------
An update is dropped for the first of these reasons that holds, and applied
otherwise (:func:`unknown_job` drops the updates of a job that does not exist,
:func:`apply_update` decides for the others):

* ``unknown_job``: there is no such job;
* ``unknown_part``: the job has no such part;
* ``stale_attempt``: the update belongs to another attempt of the job;
* ``job_finished``: the job is no longer created, processing or uploading;
* ``duplicate``: its ``seq`` is not above the last ``seq`` applied to the part
  (a redelivery, or an update overtaken by a later one), unless it is the
  outcome (done, failed, canceled) of a part still unfinished: a run overtaken
  by a later delivery of its task (it lost its connection, not its life) may
  still finish first, and its file is whole and its own (such a run is alive:
  the store renews the part's lease);
* ``backwards``: the part would move back (processing after uploading: a run
  that starts over after an uploading part lapsed, alive, so the store renews the
  lease for it too) or out of a final status;
* ``part_deleted``: the part was deleted (checked before ``duplicate``);
* ``part_finished``: the part is done, failed or canceled already (another run
  of its task reported its outcome first).

So a part's first outcome is the one that counts: a file is never swapped for
another run's once a part is done.

An update within the part's status only moves its progress: the change has no
``event`` and the engine throttles progress events itself.

Times and files
---------------
``completed_at`` is when the attempt stopped running (done, failed, canceled,
or deleted while running); ``expires_at`` is ``completed_at`` + the files'
lifetime, for a job that is done.  A part's ``file`` is set while the file
exists: a job keeps its files while it runs and once it is done, and loses
them when it fails, is canceled, deleted or expires.  Every run of a task
stores its file under a key of its own, so the file a dropped update brought
is no part's unless the job points at it (the same update, delivered twice).
Every :class:`Change` and :class:`Dropped` lists in ``discard`` the files that
nothing points at any more (including a file that a dropped update brought),
for the engine to delete.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

from msgspec.structs import replace

from exportd.errors import Conflict, ExportFailed, NotFound
from exportd.messages import (
    JobSnapshot,
    JobStatus,
    PartSnapshot,
    PartStatus,
    Progress,
    RequestFields,
    StatusUpdate,
)

JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
PART_STATUSES: tuple[PartStatus, ...] = get_args(PartStatus)
RUNNING: frozenset[JobStatus] = frozenset({"created", "processing", "uploading"})
"""The statuses of a job whose attempt is still running: workers' updates apply."""
FINAL_PART: frozenset[PartStatus] = frozenset({"done", "failed", "canceled", "deleted"})
PART_STAGE: dict[PartStatus, int] = {
    "created": 0,
    "processing": 1,
    "uploading": 2,
    "done": 3,
    "failed": 3,
    "canceled": 3,
    "deleted": 3,
}
"""How far each part status is along; a part never moves to a lower stage."""

Operation = Literal["cancel", "restart", "delete", "expire", "delete_part"]
ALLOWED: dict[Operation, frozenset[JobStatus]] = {
    "cancel": RUNNING,
    "restart": frozenset({"failed", "canceled", "expired"}),
    "delete": frozenset(JOB_STATUSES) - {"deleted"},
    "expire": frozenset({"done"}),
    "delete_part": frozenset(JOB_STATUSES) - {"deleted"},
}
"""The statuses each operation starts from."""

DropReason = Literal[
    "unknown_job",
    "unknown_part",
    "stale_attempt",
    "job_finished",
    "duplicate",
    "backwards",
    "part_deleted",
    "part_finished",
]


@dataclass(frozen=True, slots=True)
class JobState:
    """A job as the engine keeps it: its public snapshot and, per part, the last ``seq``
    applied and how many of its runs fell silent in this attempt (its ``lapses``)."""

    job: JobSnapshot
    seqs: tuple[int, ...]
    lapses: tuple[int, ...]

    @classmethod
    def fresh(cls, job: JobSnapshot) -> JobState:
        """A job at the start of an attempt: no update applied, no lapse yet."""
        return cls(job, (0,) * job.part_count, (0,) * job.part_count)


@dataclass(frozen=True, slots=True)
class Change:
    """A job after a change, and what has to follow from the change."""

    state: JobState
    event: str | None
    """The type of the public event that announces the change: ``job.<status>`` when the job's
    status changed, ``job.progress`` when only a part's did, ``None`` when only progress moved."""
    dispatch: tuple[int, ...] = ()
    """The parts that go to the workers as tasks: every part when an attempt begins."""
    ended: bool = False
    """The change ended the job's attempt (it ran, and no longer does)."""
    stop_workers: bool = False
    """The workers are told to stop whatever run of the ended attempt still goes, and to
    take no more of its tasks (every end but one, see the module docstring)."""
    discard: tuple[str, ...] = ()
    """Storage keys of files that nothing points at any more: delete them."""

    @property
    def job(self) -> JobSnapshot:
        """The job after the change."""
        return self.state.job


@dataclass(frozen=True, slots=True)
class Dropped:
    """An update that was not applied, and why."""

    reason: DropReason
    discard: tuple[str, ...] = ()
    """The file the update brought, when nothing points at it."""


def derive_status(parts: Iterable[PartStatus]) -> JobStatus:
    """A running job's status from its parts' statuses (the table in the module docstring),
    of which one at least is not deleted."""
    statuses = set(parts) - {"deleted"}
    if "failed" in statuses:
        return "failed"
    if "canceled" in statuses:
        return "canceled"
    if statuses == {"done"}:
        return "done"
    if statuses <= {"uploading", "done"}:
        return "uploading"
    if statuses != {"created"}:
        return "processing"
    return "created"


def total_progress(parts: Sequence[PartSnapshot]) -> Progress:
    """The parts' progress added up; the total is known only when every part's is."""
    totals = [part.progress.total for part in parts]
    return Progress(
        rows=sum(part.progress.rows for part in parts),
        bytes=sum(part.progress.bytes for part in parts),
        total=None if None in totals else sum(total for total in totals if total is not None),
    )


def create(job_id: str, request: RequestFields, part_count: int, *, now: datetime) -> Change:
    """A new job of ``part_count`` parts, all created, in its first attempt."""
    if part_count < 1:
        raise ValueError(f"a job has at least one part, not {part_count}")
    parts = _fresh_parts(part_count)
    job = JobSnapshot(
        id=job_id,
        status="created",
        request=request,
        attempt=1,
        part_count=part_count,
        parts=parts,
        progress=Progress(),
        created_at=now,
        updated_at=now,
    )
    return Change(JobState.fresh(job), event="job.created", dispatch=tuple(range(part_count)))


def apply_update(
    state: JobState,
    update: StatusUpdate,
    *,
    now: datetime,
    lifetime: timedelta,
    no_worker: NoWorker | None = None,
) -> Change | Dropped:
    """Apply a worker's update to its job, or drop it.

    ``lifetime`` is how long the files of a job that becomes done are kept.  The error
    of a part that failed says, if ``no_worker`` tells, that no live worker can run the
    export (its worker lacked the source or the format, say).
    """
    reason = _drop_reason(state, update)
    if reason is not None:
        return Dropped(reason, _stray_file(state, update))
    if update.given_back:
        return redispatch(state, update.part)
    part = _updated_part(state.job.parts[update.part], update)
    if part.error is not None and update.error is not None:
        message = _told_of_workers(state, part.error.message, no_worker)
        part = replace(part, error=replace(part.error, message=message))
    alone = update.first_delivery and len(state.job.parts) == 1 and not state.lapses[update.part]
    return _moved(state, part, update.seq, now=now, lifetime=lifetime, alone=alone)


def _moved(
    state: JobState,
    part: PartSnapshot,
    seq: int,
    *,
    now: datetime,
    lifetime: timedelta,
    alone: bool = False,
) -> Change:
    """``state``'s job with ``part`` (one of its parts, changed) brought by ``seq``: the
    job's status and progress derived, its attempt ended if the part failed or was
    canceled.  A job that becomes done keeps its files for ``lifetime``, and tells the
    workers to stop unless the part's run was ``alone`` (see the module docstring)."""
    job = state.job
    old = job.parts[part.part]
    parts = list(job.parts)
    parts[part.part] = part
    status = derive_status(part.status for part in parts)
    if status in ("failed", "canceled"):
        parts = _close(parts)
    after = replace(
        job,
        status=status,
        parts=parts,
        progress=total_progress(parts),
        error=parts[part.part].error if status == "failed" else None,
        updated_at=now,
        completed_at=None if status in RUNNING else now,
        expires_at=now + lifetime if status == "done" else None,
    )
    seqs = list(state.seqs)
    seqs[part.part] = max(seq, state.seqs[part.part])
    if status != job.status:
        event: str | None = f"job.{status}"
    else:
        event = "job.progress" if parts[part.part].status != old.status else None
    return Change(
        JobState(after, tuple(seqs), state.lapses),
        event=event,
        ended=status not in RUNNING,
        stop_workers=status not in RUNNING and not (status == "done" and alone),
        discard=_discarded(job, after),
    )


def unknown_job(update: StatusUpdate) -> Dropped:
    """Drop an update for a job that does not exist (and the file it brought)."""
    return Dropped("unknown_job", _stray_file(None, update))


def cancel(state: JobState, *, now: datetime) -> Change:
    """Stop a running job: it becomes canceled, its unfinished parts too."""
    _allow("cancel", state.job)
    return _end(state, "canceled", now=now)


def delete(state: JobState, *, now: datetime) -> Change:
    """Delete a job (stopping it if it runs); its files go."""
    _allow("delete", state.job)
    return _end(state, "deleted", now=now)


def expire(state: JobState, *, now: datetime) -> Change:
    """Expire a done job whose ``expires_at`` has come; its files go."""
    job = state.job
    _allow("expire", job)
    if job.expires_at is None or now < job.expires_at:
        raise Conflict(f"cannot expire job {job.id} before {job.expires_at}")
    return _end(state, "expired", now=now)


def restart(state: JobState, *, now: datetime) -> Change:
    """Run a failed, canceled or expired job again: a new attempt with every part reset."""
    job = state.job
    _allow("restart", job)
    parts = [
        part if part.status == "deleted" else PartSnapshot(part=part.part, status="created")
        for part in job.parts
    ]
    after = replace(
        job,
        status="created",
        attempt=job.attempt + 1,
        parts=parts,
        progress=Progress(),
        error=None,
        updated_at=now,
        completed_at=None,
        expires_at=None,
    )
    live = tuple(part.part for part in parts if part.status != "deleted")
    return Change(JobState.fresh(after), event="job.created", dispatch=live)


def delete_part(state: JobState, part: int, *, now: datetime, lifetime: timedelta) -> Change:
    """Delete one part of a job: it becomes ``deleted`` and its file goes; the job goes on
    without it, or is deleted with its last part (the table in the module docstring).

    ``lifetime`` is how long the files of a running job that becomes done are kept.
    """
    job = state.job
    _allow("delete_part", job)
    if not 0 <= part < job.part_count:
        raise NotFound.field("part", f"job {job.id} has no part {part}")
    if job.parts[part].status == "deleted":
        raise Conflict(f"cannot delete part {part} of job {job.id}: it is deleted")
    parts = list(job.parts)
    parts[part] = replace(parts[part], status="deleted", file=None)
    if all(each.status == "deleted" for each in parts):
        unlisted = JobState(replace(job, parts=parts), state.seqs, state.lapses)
        ended = _end(unlisted, "deleted", now=now)
        return dataclasses.replace(ended, discard=_discarded(job, ended.job))
    if job.status in RUNNING:
        return _moved(state, parts[part], state.seqs[part], now=now, lifetime=lifetime)
    after = replace(job, parts=parts, updated_at=now)
    return Change(
        JobState(after, state.seqs, state.lapses),
        event="job.progress",
        discard=_discarded(job, after),
    )


def redispatch(state: JobState, part: int) -> Change:
    """Hand an unfinished part of a running job to a worker again (nothing public changes):
    its run was given back, or lost with the bus's queued tasks.

    The part's last ``seq`` goes back to 0: the next worker counts from the start.
    """
    _allow_part("redispatch", state, part)
    seqs = list(state.seqs)
    seqs[part] = 0
    return Change(JobState(state.job, tuple(seqs), state.lapses), event=None, dispatch=(part,))


NoWorker = Callable[[str, str], str | None]
"""Why no live worker can export a source to a format, or ``None`` if one can (see
:meth:`exportd.engine.worker_registry.Capabilities.missing`)."""


def lapse(
    state: JobState, part: int, *, limit: int, now: datetime, no_worker: NoWorker | None = None
) -> Change:
    """A running part's run fell silent for the lease: dispatch the part again, with one
    lapse more, or fail it (and with it the job) once it has lapsed ``limit`` times; the
    error then says, if ``no_worker`` tells, that no live worker can run the export."""
    _allow_part("lapse", state, part)
    lapses = list(state.lapses)
    lapses[part] += 1
    state = JobState(state.job, state.seqs, tuple(lapses))
    if lapses[part] < limit:
        return redispatch(state, part)
    message = (
        f"no worker finished this export: its run fell silent {limit} times (each worker "
        "crashed, was killed, or was cut off from the broker for longer than engine.lease)"
    )
    message = _told_of_workers(state, message, no_worker)
    failed = replace(state.job.parts[part], status="failed", error=ExportFailed(message).body())
    # A failed part never makes the job done: no file lifetime to give.
    return _moved(state, failed, state.seqs[part], now=now, lifetime=timedelta(0))


def _told_of_workers(state: JobState, message: str, no_worker: NoWorker | None) -> str:
    """``message``, and after it why no live worker can run ``state``'s export, if
    ``no_worker`` tells."""
    request = state.job.request
    reason = no_worker(request.source, request.format) if no_worker is not None else None
    return message if reason is None else f"{message}; {reason}"


def _allow(operation: Operation, job: JobSnapshot) -> None:
    if job.status not in ALLOWED[operation]:
        raise Conflict(f"cannot {operation} a job that is {job.status}")


def part_runs(state: JobState, part: int) -> bool:
    """Whether ``part`` of ``state``'s job, and the job, still run."""
    return state.job.status in RUNNING and state.job.parts[part].status not in FINAL_PART


def _allow_part(operation: str, state: JobState, part: int) -> None:
    """Refuse ``operation`` on ``part`` unless the part, and its job, still run."""
    if not part_runs(state, part):
        status, job_status = state.job.parts[part].status, state.job.status
        raise Conflict(f"cannot {operation} part {part}, {status}, of a job that is {job_status}")


def _drop_reason(state: JobState, update: StatusUpdate) -> DropReason | None:
    job = state.job
    if not 0 <= update.part < job.part_count:
        return "unknown_part"
    if update.attempt != job.attempt:
        return "stale_attempt"
    if job.status not in RUNNING:
        return "job_finished"
    return _part_drop_reason(job.parts[update.part].status, state.seqs[update.part], update)


def _part_drop_reason(
    current: PartStatus, last_seq: int, update: StatusUpdate
) -> DropReason | None:
    """Why an update of a running attempt does not apply to its part, whose status is
    ``current`` and last ``seq`` applied ``last_seq``; ``None`` if it does."""
    if current == "deleted":
        return "part_deleted"
    outcome_of_unfinished = update.status in FINAL_PART and current not in FINAL_PART
    if update.seq <= last_seq and not outcome_of_unfinished:
        return "duplicate"
    if PART_STAGE[update.status] < PART_STAGE[current] or (
        current in FINAL_PART and update.status != current
    ):
        return "backwards"
    if current in FINAL_PART:
        return "part_finished"
    return None


def _updated_part(part: PartSnapshot, update: StatusUpdate) -> PartSnapshot:
    """``part`` after ``update``: its status, its progress if it brings any, its file or error."""
    error = None
    if update.status == "failed":
        error = update.error or ExportFailed(f"part {part.part} failed").body()
    return PartSnapshot(
        part=part.part,
        status=update.status,
        progress=part.progress if update.progress is None else update.progress,
        file=update.file if update.status == "done" else None,
        error=error,
    )


def _end(state: JobState, status: JobStatus, *, now: datetime) -> Change:
    """``state``'s job moved to a final ``status``: unfinished parts canceled, files gone."""
    job = state.job
    parts = _close(job.parts)
    after = replace(
        job, status=status, parts=parts, updated_at=now, completed_at=job.completed_at or now
    )
    return Change(
        JobState(after, state.seqs, state.lapses),
        event=f"job.{status}",
        ended=job.status in RUNNING,
        stop_workers=job.status in RUNNING,
        discard=_discarded(job, after),
    )


def _close(parts: Sequence[PartSnapshot]) -> list[PartSnapshot]:
    """The parts of an attempt that ends: unfinished ones canceled, none with a file."""
    return [
        replace(part, file=None, status=part.status if part.status in FINAL_PART else "canceled")
        for part in parts
    ]


def _fresh_parts(part_count: int) -> list[PartSnapshot]:
    return [PartSnapshot(part=number, status="created") for number in range(part_count)]


def _files(job: JobSnapshot) -> set[str]:
    return {part.file.key for part in job.parts if part.file is not None}


def _discarded(before: JobSnapshot, after: JobSnapshot) -> tuple[str, ...]:
    return tuple(sorted(_files(before) - _files(after)))


def _stray_file(state: JobState | None, update: StatusUpdate) -> tuple[str, ...]:
    """The file a dropped update brought, unless the job points at it (the update applied
    once already): every run of a task stores under a key of its own."""
    if update.file is None or (state is not None and update.file.key in _files(state.job)):
        return ()
    return (update.file.key,)
