"""The job state machine: every transition allowed or refused, and workers' updates in any order."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exportd.engine import lifecycle
from exportd.engine.lifecycle import (
    JOB_STATUSES,
    PART_STAGE,
    Change,
    Dropped,
    DropReason,
    JobState,
)
from exportd.errors import Conflict, ErrorBody, NotFound
from exportd.messages import (
    FileInfo,
    Interval,
    JobStatus,
    PartStatus,
    Progress,
    RequestFields,
    StatusUpdate,
    UpdateStatus,
)

REQUEST = RequestFields(source="rooms", interval=Interval("2024-05-01", "2024-05-02"))
NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
LIFETIME = timedelta(hours=24)
LATER = NOW + LIFETIME

# The job lifecycle of DESIGN.md: where one step takes a job of each status.
ONE_STEP: dict[JobStatus, set[JobStatus]] = {
    "created": {"processing", "uploading", "done", "failed", "canceled", "deleted"},
    "processing": {"uploading", "done", "failed", "canceled", "deleted"},
    "uploading": {"done", "failed", "canceled", "deleted"},
    "done": {"expired", "deleted"},
    "failed": {"created", "deleted"},
    "canceled": {"created", "deleted"},
    "expired": {"created", "deleted"},
    "deleted": set(),
}
OPERATIONS: dict[str, tuple[Callable[..., Change], set[JobStatus], JobStatus]] = {
    "cancel": (lifecycle.cancel, {"created", "processing", "uploading"}, "canceled"),
    "restart": (lifecycle.restart, {"failed", "canceled", "expired"}, "created"),
    "delete": (lifecycle.delete, set(JOB_STATUSES) - {"deleted"}, "deleted"),
    "expire": (lifecycle.expire, {"done"}, "expired"),
    # the part of a one-part job: the job goes with it
    "delete_part": (
        partial(lifecycle.delete_part, part=0, lifetime=LIFETIME),
        set(JOB_STATUSES) - {"deleted"},
        "deleted",
    ),
}


def file(part: int, attempt: int = 1) -> FileInfo:
    return FileInfo(f"job/{attempt}/{part}", f"part{part}.csv", "text/csv", 10, "ab" * 32, 3)


def update(
    status: UpdateStatus, seq: int, *, part: int = 0, attempt: int = 1, **fields: Any
) -> StatusUpdate:
    if status == "done":
        fields.setdefault("file", file(part, attempt))
    return StatusUpdate(job_id="job", part=part, attempt=attempt, seq=seq, status=status, **fields)


def new_job(parts: int = 1) -> JobState:
    return lifecycle.create("job", REQUEST, parts, now=NOW).state


def without_part(state: JobState, part: int) -> JobState:
    """``state`` with ``part`` deleted (at ``NOW``)."""
    return lifecycle.delete_part(state, part, now=NOW, lifetime=LIFETIME).state


def applied(state: JobState, *updates: StatusUpdate) -> JobState:
    """``state`` after ``updates``, each of which must apply."""
    for each in updates:
        outcome = lifecycle.apply_update(state, each, now=NOW, lifetime=LIFETIME)
        assert isinstance(outcome, Change), outcome
        state = outcome.state
    return state


def job_in(status: JobStatus) -> JobState:
    """A one-part job brought to ``status`` the way the engine would."""
    job = new_job()
    if status in ("processing", "uploading", "done", "failed"):
        return applied(job, update(status, 1))
    if status == "expired":
        return lifecycle.expire(applied(job, update("done", 1)), now=LATER).state
    if status == "canceled":
        return lifecycle.cancel(job, now=NOW).state
    if status == "deleted":
        return lifecycle.delete(job, now=NOW).state
    return job


@cache
def one_step_from(status: JobStatus) -> frozenset[JobStatus]:
    """Every status one operation or one worker's update takes a job of ``status`` to."""
    state = job_in(status)
    reached: set[JobStatus] = set()
    for operation, _, _ in OPERATIONS.values():
        with suppress(Conflict):
            reached.add(operation(state, now=LATER).job.status)
    for part_status in get_args(UpdateStatus):
        outcome = lifecycle.apply_update(state, update(part_status, 99), now=NOW, lifetime=LIFETIME)
        if isinstance(outcome, Change):
            reached.add(outcome.job.status)
    return frozenset(reached - {status})


@pytest.mark.parametrize("after", JOB_STATUSES)
@pytest.mark.parametrize("before", JOB_STATUSES)
def test_one_step_goes_exactly_where_the_lifecycle_allows(
    before: JobStatus, after: JobStatus
) -> None:
    assert (after in one_step_from(before)) == (after in ONE_STEP[before])


@pytest.mark.parametrize("status", JOB_STATUSES)
@pytest.mark.parametrize("name", OPERATIONS)
def test_each_operation_runs_from_its_statuses_and_refuses_the_rest(
    name: str, status: JobStatus
) -> None:
    operation, allowed, target = OPERATIONS[name]
    state = job_in(status)
    if status in allowed:
        change = operation(state, now=LATER)
        assert change.job.status == target
        assert change.event == f"job.{target}"
        assert change.job.updated_at == LATER
    else:
        with pytest.raises(Conflict, match=f"^cannot {name} a job that is {status}$") as caught:
            operation(state, now=LATER)
        assert caught.value.code == "conflict"


@pytest.mark.parametrize(
    ("parts", "job"),
    [
        (["created"], "created"),
        (["created", "created"], "created"),
        (["processing", "created"], "processing"),
        (["uploading", "created"], "processing"),
        (["done", "created"], "processing"),
        (["uploading", "processing"], "processing"),
        (["done", "processing"], "processing"),
        (["uploading", "uploading"], "uploading"),
        (["done", "uploading"], "uploading"),
        (["done", "done"], "done"),
        (["done", "failed"], "failed"),
        (["failed", "canceled"], "failed"),
        (["processing", "canceled"], "canceled"),
        (["done", "canceled"], "canceled"),
        (["deleted", "done"], "done"),
        (["deleted", "created", "processing"], "processing"),
        (["created", "deleted", "uploading"], "processing"),
        (["deleted", "uploading", "deleted"], "uploading"),
    ],
)
def test_a_jobs_status_derives_from_its_parts(parts: list[PartStatus], job: JobStatus) -> None:
    assert lifecycle.derive_status(parts) == job


def test_a_job_starts_created_with_a_task_per_part() -> None:
    change = lifecycle.create("job", REQUEST, 3, now=NOW)
    assert change.job.status == "created"
    assert change.job.attempt == 1
    assert [part.status for part in change.job.parts] == ["created"] * 3
    assert change.state.seqs == (0, 0, 0)
    assert (change.event, change.dispatch, change.stop_workers) == ("job.created", (0, 1, 2), False)
    with pytest.raises(ValueError, match="at least one part"):
        lifecycle.create("job", REQUEST, 0, now=NOW)


def test_progress_within_a_status_applies_without_an_event() -> None:
    state = applied(new_job(2), update("processing", 1, progress=Progress(10, 100, 50)))
    second = lifecycle.apply_update(
        state,
        update("processing", 1, part=1, progress=Progress(5, 40, None)),
        now=NOW,
        lifetime=LIFETIME,
    )
    assert isinstance(second, Change)
    assert second.event == "job.progress"  # a part moved, the job did not
    third = lifecycle.apply_update(
        second.state,
        update("processing", 2, progress=Progress(30, 300, 50)),
        now=NOW,
        lifetime=LIFETIME,
    )
    assert isinstance(third, Change)
    assert third.event is None
    assert third.job.parts[0].progress == Progress(30, 300, 50)
    assert third.job.progress == Progress(35, 340, None)  # part 1's total is unknown


def test_a_job_done_keeps_its_files_for_their_lifetime() -> None:
    state = applied(new_job(2), update("done", 1), update("uploading", 1, part=1))
    assert state.job.status == "uploading"
    change = lifecycle.apply_update(
        state, update("done", 2, part=1, progress=Progress(3, 10, 3)), now=LATER, lifetime=LIFETIME
    )
    assert isinstance(change, Change)
    job = change.job
    assert (job.status, change.event, change.discard) == ("done", "job.done", ())
    assert [part.file for part in job.parts] == [file(0), file(1)]
    assert job.completed_at == LATER
    assert job.expires_at == LATER + LIFETIME


def test_a_failed_part_fails_the_job_and_stops_the_others() -> None:
    state = applied(new_job(3), update("done", 1), update("processing", 1, part=1))
    error = ErrorBody("export_failed", "source 'rooms' failed: boom")
    change = lifecycle.apply_update(
        state, update("failed", 1, part=2, error=error), now=NOW, lifetime=LIFETIME
    )
    assert isinstance(change, Change)
    assert change.job.status == "failed"
    assert change.job.error == error
    assert [part.status for part in change.job.parts] == ["done", "canceled", "failed"]
    assert [part.file for part in change.job.parts] == [None, None, None]
    assert change.discard == (file(0).key,)
    assert change.stop_workers
    assert change.job.completed_at == NOW
    assert change.job.expires_at is None


def test_a_failure_without_an_error_still_says_which_part() -> None:
    job = applied(new_job(2), update("failed", 1, part=1)).job
    assert job.error == ErrorBody("export_failed", "part 1 failed")


@pytest.mark.parametrize("outcome", ["done", "failed"])
def test_an_attempt_that_ends_tells_the_workers_to_stop_any_run_still_on_it(
    outcome: PartStatus,
) -> None:
    """A copy of a task delivered twice may still run, or be queued: the workers are told
    to drop it, even when the job's parts are all finished."""
    change = lifecycle.apply_update(new_job(), update(outcome, 1), now=NOW, lifetime=LIFETIME)
    assert isinstance(change, Change)
    assert change.stop_workers
    progress = lifecycle.apply_update(
        new_job(2), update("done", 1), now=NOW, lifetime=LIFETIME
    )  # the job goes on
    assert isinstance(progress, Change) and not progress.stop_workers


def test_a_one_part_job_done_by_its_tasks_first_delivery_stops_nobody() -> None:
    """No other run of it can have started (unless that run's channel dropped, and then
    the other run's outcome is dropped); any other way, the workers are told."""

    def stops(state: JobState, outcome: UpdateStatus, *, first: bool) -> bool:
        change = lifecycle.apply_update(
            state, update(outcome, 1, first_delivery=first), now=NOW, lifetime=LIFETIME
        )
        assert isinstance(change, Change)
        return change.stop_workers

    assert not stops(new_job(), "done", first=True)
    done = lifecycle.apply_update(
        new_job(), update("done", 1, first_delivery=True), now=NOW, lifetime=LIFETIME
    )
    assert isinstance(done, Change) and done.ended  # ended all the same (and counted)
    alone = applied(new_job(), update("done", 1, first_delivery=True))
    twin = FileInfo("job/1/0/run-2", "part0.csv", "text/csv", 10, "cd" * 32, 3)
    # A copy that ran unstopped on another worker: its outcome dropped, its file deleted.
    late = lifecycle.apply_update(
        alone, update("done", 1_000_001, file=twin), now=NOW, lifetime=LIFETIME
    )
    assert late == Dropped("job_finished", (twin.key,))
    assert stops(new_job(), "done", first=False)  # a redelivery: another run may go on
    assert stops(new_job(), "failed", first=True)
    lapsed = lifecycle.lapse(applied(new_job(), update("processing", 1)), 0, limit=3, now=NOW)
    assert stops(lapsed.state, "done", first=True)  # the lapsed run may still be alive
    two = applied(new_job(2), update("done", 1, first_delivery=True))
    last = lifecycle.apply_update(
        two, update("done", 1, part=1, first_delivery=True), now=NOW, lifetime=LIFETIME
    )
    assert isinstance(last, Change) and last.stop_workers


def test_cancel_stops_the_unfinished_parts_and_drops_the_finished_files() -> None:
    state = applied(new_job(2), update("done", 1))
    change = lifecycle.cancel(state, now=LATER)
    assert [part.status for part in change.job.parts] == ["done", "canceled"]
    assert change.discard == (file(0).key,)
    assert change.stop_workers
    assert change.job.completed_at == LATER


def test_delete_of_a_done_job_discards_its_files_and_stops_nobody() -> None:
    state = applied(new_job(2), update("done", 1), update("done", 1, part=1))
    change = lifecycle.delete(state, now=LATER)
    assert change.discard == (file(0).key, file(1).key)
    assert not change.stop_workers
    assert change.job.completed_at == NOW  # when the export finished, not when it was deleted


def test_restart_begins_a_new_attempt_from_scratch() -> None:
    failed = applied(
        new_job(2), update("processing", 4, progress=Progress(5, 5, 9)), update("failed", 1, part=1)
    )
    change = lifecycle.restart(failed, now=LATER)
    job = change.job
    assert (job.status, job.attempt, job.error) == ("created", 2, None)
    assert [part.status for part in job.parts] == ["created", "created"]
    assert job.progress == Progress()
    assert (job.completed_at, job.expires_at) == (None, None)
    assert change.state.seqs == (0, 0)
    assert change.dispatch == (0, 1)
    assert job.created_at == NOW
    # the old attempt's late news no longer counts, and its file goes
    late = lifecycle.apply_update(change.state, update("done", 9), now=LATER, lifetime=LIFETIME)
    assert late == Dropped("stale_attempt", (file(0).key,))


def test_a_part_redispatched_counts_its_updates_from_the_start() -> None:
    state = applied(new_job(2), update("processing", 5), update("done", 1, part=1))
    change = lifecycle.redispatch(state, 0)
    assert (change.job, change.event, change.dispatch) == (state.job, None, (0,))
    assert change.state.seqs == (0, 1)
    assert applied(change.state, update("processing", 1)).seqs == (1, 1)
    with pytest.raises(Conflict, match="part 1, done, of a job that is processing"):
        lifecycle.redispatch(state, 1)
    with pytest.raises(Conflict, match="part 0, canceled, of a job that is canceled"):
        lifecycle.redispatch(lifecycle.cancel(state, now=NOW).state, 0)


def test_a_part_that_lapses_is_dispatched_again_until_its_limit_then_fails() -> None:
    state = applied(new_job(2), update("processing", 5, detached=True), update("done", 1, part=1))
    first = lifecycle.lapse(state, 0, limit=2, now=LATER)
    assert (first.job, first.event, first.dispatch) == (state.job, None, (0,))
    assert (first.state.seqs, first.state.lapses) == ((0, 1), (1, 0))
    again = applied(first.state, update("processing", 1, detached=True))
    last = lifecycle.lapse(again, 0, limit=2, now=LATER)
    job = last.job
    assert (job.status, last.event, last.dispatch, last.stop_workers) == (
        *("failed", "job.failed", ()),
        True,
    )
    assert [part.status for part in job.parts] == ["failed", "done"]
    assert job.error is not None and job.error.code == "export_failed"
    assert "its run fell silent 2 times" in job.error.message
    assert (job.completed_at, job.expires_at) == (LATER, None)
    assert last.discard == (file(1).key,)  # the done part's file goes with the attempt
    with pytest.raises(Conflict, match="cannot lapse part 1, done"):
        lifecycle.lapse(state, 1, limit=2, now=LATER)


def test_a_restart_counts_lapses_from_zero() -> None:
    lapsed = lifecycle.lapse(applied(new_job(), update("processing", 1)), 0, limit=1, now=NOW)
    assert lapsed.job.status == "failed"
    restarted = lifecycle.restart(lapsed.state, now=LATER)
    assert restarted.state.lapses == (0,)


def test_a_part_given_back_by_its_run_is_dispatched_again_without_a_lapse() -> None:
    state = applied(new_job(), update("processing", 5, detached=True))
    lapsed = lifecycle.lapse(state, 0, limit=3, now=NOW).state
    running = applied(lapsed, update("processing", 2, detached=True))
    back = lifecycle.apply_update(
        running, update("processing", 3, given_back=True), now=NOW, lifetime=LIFETIME
    )
    assert isinstance(back, Change)
    assert (back.job, back.event, back.dispatch) == (running.job, None, (0,))
    assert (back.state.seqs, back.state.lapses) == ((0,), (1,))
    late = update("processing", 9, given_back=True, attempt=2)
    assert lifecycle.apply_update(running, late, now=NOW, lifetime=LIFETIME) == Dropped(
        "stale_attempt"
    )


def test_expire_waits_for_expires_at() -> None:
    done = job_in("done")
    with pytest.raises(Conflict, match="before"):
        lifecycle.expire(done, now=LATER - timedelta(seconds=1))
    change = lifecycle.expire(done, now=LATER)
    assert change.discard == (file(0).key,)
    assert change.job.expires_at == LATER


@pytest.mark.parametrize(
    ("state", "news", "reason"),
    [
        (new_job(), update("processing", 1, part=1), "unknown_part"),
        (new_job(), update("processing", 1, attempt=2), "stale_attempt"),
        (job_in("canceled"), update("processing", 2), "job_finished"),
        (job_in("done"), update("processing", 2), "job_finished"),
        (job_in("processing"), update("uploading", 1), "duplicate"),
        (applied(new_job(), update("uploading", 2)), update("processing", 3), "backwards"),
        (applied(new_job(2), update("done", 2)), update("failed", 3), "backwards"),
        (without_part(new_job(2), 1), update("processing", 1, part=1), "part_deleted"),
        (without_part(new_job(2), 1), update("failed", 1, part=1), "part_deleted"),
    ],
)
def test_updates_that_must_not_apply_are_dropped(
    state: JobState, news: StatusUpdate, reason: DropReason
) -> None:
    assert lifecycle.apply_update(state, news, now=NOW, lifetime=LIFETIME) == Dropped(reason)


def test_a_dropped_update_discards_its_file_unless_the_job_holds_it() -> None:
    done = job_in("done")
    again = lifecycle.apply_update(done, update("done", 1), now=NOW, lifetime=LIFETIME)
    assert again == Dropped("job_finished")  # the job's own file: kept
    canceled = job_in("canceled")
    late = lifecycle.apply_update(canceled, update("done", 5), now=NOW, lifetime=LIFETIME)
    assert late == Dropped("job_finished", (file(0).key,))
    assert lifecycle.unknown_job(update("done", 1)) == Dropped("unknown_job", (file(0).key,))


def test_the_outcome_of_an_earlier_delivery_still_finishes_an_unfinished_part() -> None:
    """The run that lost its connection went on and finished first: its file is whole and
    its own, so it counts, however far a later delivery's run has reported."""
    redelivered = applied(new_job(), update("processing", 1_000_001))
    late = lifecycle.apply_update(redelivered, update("done", 7), now=NOW, lifetime=LIFETIME)
    assert isinstance(late, Change)
    assert (late.job.status, late.event, late.job.parts[0].file) == ("done", "job.done", file(0))
    assert late.state.seqs == (1_000_001,)


def test_a_second_run_s_outcome_of_a_finished_part_is_dropped_and_its_file_discarded() -> None:
    state = applied(new_job(2), update("done", 1))
    other_run = FileInfo("job/1/0/run-b", "part0.csv", "text/csv", 11, "cd" * 32, 3)
    second = update("done", 1_000_002, file=other_run)
    outcome = lifecycle.apply_update(state, second, now=NOW, lifetime=LIFETIME)
    assert outcome == Dropped("part_finished", (other_run.key,))
    again = lifecycle.apply_update(state, update("done", 1), now=NOW, lifetime=LIFETIME)
    assert again == Dropped("duplicate")  # the same update twice: its file is the job's
    done = applied(state, update("done", 1, part=1))
    late = lifecycle.apply_update(done, second, now=NOW, lifetime=LIFETIME)
    assert late == Dropped("job_finished", (other_run.key,))
    assert [part.file for part in done.job.parts] == [file(0), file(1)]


def test_deleting_parts_of_a_done_job_discards_each_ones_file_and_the_last_ends_it() -> None:
    state = applied(new_job(3), *(update("done", 1, part=part) for part in range(3)))
    first = lifecycle.delete_part(state, 0, now=LATER, lifetime=LIFETIME)
    assert [part.status for part in first.job.parts] == ["deleted", "done", "done"]
    assert (first.job.status, first.event, first.discard) == (
        "done",
        "job.progress",
        (file(0).key,),
    )
    assert (first.job.updated_at, first.job.expires_at) == (LATER, state.job.expires_at)
    assert not first.stop_workers and not first.dispatch
    assert [part.file for part in first.job.parts] == [None, file(1), file(2)]
    with pytest.raises(Conflict, match="cannot delete part 0 of job job: it is deleted"):
        lifecycle.delete_part(first.state, 0, now=LATER, lifetime=LIFETIME)
    with pytest.raises(NotFound) as unknown:
        lifecycle.delete_part(first.state, 3, now=LATER, lifetime=LIFETIME)
    assert [field.name for field in unknown.value.fields] == ["part"]
    second = lifecycle.delete_part(first.state, 2, now=LATER, lifetime=LIFETIME)
    assert (second.job.status, second.discard) == ("done", (file(2).key,))
    last = lifecycle.delete_part(second.state, 1, now=LATER, lifetime=LIFETIME)
    assert [part.status for part in last.job.parts] == ["deleted"] * 3
    assert (last.job.status, last.event, last.discard) == ("deleted", "job.deleted", (file(1).key,))
    assert not last.stop_workers


def test_a_running_job_goes_on_without_a_deleted_part() -> None:
    state = applied(new_job(3), update("processing", 1), update("done", 1, part=1))
    change = lifecycle.delete_part(state, 2, now=NOW, lifetime=LIFETIME)
    assert [part.status for part in change.job.parts] == ["processing", "done", "deleted"]
    assert (change.job.status, change.event, change.stop_workers) == (
        "processing",
        "job.progress",
        False,
    )
    # the part's run goes on: its outcome is dropped, its file discarded
    late = lifecycle.apply_update(
        change.state, update("done", 3, part=2), now=NOW, lifetime=LIFETIME
    )
    assert late == Dropped("part_deleted", (file(2).key,))
    # once every part left is done, the job is done and its attempt ends
    done = applied(change.state, update("done", 2))
    assert (done.job.status, done.job.expires_at) == ("done", NOW + LIFETIME)
    unfinished = lifecycle.delete_part(change.state, 0, now=LATER, lifetime=LIFETIME)
    assert (unfinished.job.status, unfinished.event) == ("done", "job.done")
    assert (unfinished.job.completed_at, unfinished.job.expires_at) == (LATER, LATER + LIFETIME)
    assert unfinished.stop_workers  # the deleted part's run, still going
    assert unfinished.discard == ()
    # deleting the last part left of a running job deletes it, and stops its runs
    alone = lifecycle.delete_part(without_part(new_job(2), 0), 1, now=LATER, lifetime=LIFETIME)
    assert (alone.job.status, alone.stop_workers) == ("deleted", True)
    assert [part.status for part in alone.job.parts] == ["deleted", "deleted"]


def test_a_restart_leaves_deleted_parts_deleted() -> None:
    failed = applied(without_part(new_job(3), 0), update("failed", 1, part=2))
    assert [part.status for part in failed.job.parts] == ["deleted", "canceled", "failed"]
    change = lifecycle.restart(failed, now=LATER)
    assert [part.status for part in change.job.parts] == ["deleted", "created", "created"]
    assert change.dispatch == (1, 2)
    assert change.job.status == "created"


def test_total_progress_knows_the_total_only_when_every_part_does() -> None:
    state = applied(
        new_job(2),
        update("processing", 1, progress=Progress(1, 2, 3)),
        update("processing", 1, part=1, progress=Progress(4, 5, 6)),
    )
    assert state.job.progress == Progress(5, 7, 9)


def valid_updates(part_count: int, steps: list[int]) -> list[StatusUpdate]:
    """What each part's worker sends, in order: processing with growing progress, then
    uploading, then done; parts one after another."""
    updates = []
    for part, processing in zip(range(part_count), steps, strict=True):
        seq = 0
        for rows in range(processing):
            seq += 1
            updates.append(
                update("processing", seq, part=part, progress=Progress(rows, rows * 10, 9))
            )
        final = Progress(9, 90, 9)
        updates.append(update("uploading", seq + 1, part=part, progress=final))
        updates.append(update("done", seq + 2, part=part, progress=final))
    return updates


JOB_STAGE = {"created": 0, "processing": 1, "uploading": 2, "done": 3}


@settings(max_examples=100, deadline=None)
@given(data=st.data(), steps=st.lists(st.integers(1, 4), min_size=3, max_size=3))
def test_updates_shuffled_and_repeated_end_where_updates_in_order_do(
    data: st.DataObject, steps: list[int]
) -> None:
    in_order = valid_updates(3, steps)
    repeats = data.draw(st.lists(st.sampled_from(in_order), max_size=8))
    arrivals = data.draw(st.permutations(in_order + repeats))
    expected = applied(new_job(3), *in_order)
    state = new_job(3)
    for news in arrivals:
        outcome = lifecycle.apply_update(state, news, now=NOW, lifetime=LIFETIME)
        if isinstance(outcome, Dropped):
            assert outcome.reason in ("duplicate", "job_finished")
            assert outcome.discard == ()
            continue
        after = outcome.state
        assert JOB_STAGE[after.job.status] >= JOB_STAGE[state.job.status]
        for old, new in zip(state.job.parts, after.job.parts, strict=True):
            assert PART_STAGE[new.status] >= PART_STAGE[old.status]
        state = after
    assert state == expected
    assert state.job.status == "done"
