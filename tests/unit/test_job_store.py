"""The job store on real SQLite files: changes and their outbox rows, idempotency, listing,
expiry, dropped updates, migrations, and readers beside the writer."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import replace
from sqlite_utils import Database

from exportd.bus.topology import Topology
from exportd.engine import schema
from exportd.engine import store as store_module
from exportd.engine.lifecycle import Change, Dropped
from exportd.engine.store import JobQuery, JobStore, NewPart
from exportd.errors import (
    ConfigError,
    Conflict,
    ErrorBody,
    InvalidRequest,
    NotFound,
    Unavailable,
)
from exportd.messages import (
    CancelSignal,
    Column,
    ExportTask,
    FileInfo,
    JobEvent,
    JobSnapshot,
    PartStatus,
    Progress,
    RequestFields,
    StatusUpdate,
)

TOPOLOGY = Topology(prefix="test.")
NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
LIFETIME = timedelta(hours=24)


def request(**changes: Any) -> RequestFields:
    fields: dict[str, Any] = {
        "source": "rooms",
        "format": "csv",
        "params": {"room_id": "r1", "min_messages": 2},
        "interval": {"start": "2024-04-01", "end": "2024-05-01"},
        "org_id": "acme",
        "user_id": "u1",
    }
    fields.update(changes)
    return msgspec.convert(fields, RequestFields)


def parts(count: int) -> list[NewPart]:
    return [NewPart({"room_id": f"r{n}"}, f"rooms-r{n}.csv") for n in range(count)]


def file(job_id: str, part: int, attempt: int = 1) -> FileInfo:
    """What the worker reports for a part done: the file at the task's key."""
    name = f"rooms-r{part}.csv"
    return FileInfo(f"{job_id}/{attempt}/{part}/{name}", name, "text/csv", 10, "ab" * 32, 3)


def update(
    job: JobSnapshot, status: PartStatus, seq: int, *, part: int = 0, **fields: Any
) -> StatusUpdate:
    if status == "done":
        fields.setdefault("file", file(job.id, part, job.attempt))
    fields.setdefault("attempt", job.attempt)
    return StatusUpdate(job_id=job.id, part=part, seq=seq, status=status, **fields)


def outbox(store: JobStore) -> list[tuple[str, str, str, Any]]:
    """The waiting messages, decoded, and then forgotten as if published."""
    types = {"event": JobEvent, "task": ExportTask, "cancel": CancelSignal}
    rows = store.outbox_batch(limit=1000)
    store.outbox_done(row.id for row in rows)
    return [
        (
            row.kind,
            row.exchange,
            row.routing_key,
            msgspec.json.decode(row.body, type=types[row.kind]),
        )
        for row in rows
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    with JobStore(tmp_path / "jobs.db", TOPOLOGY) as opened:
        yield opened


def created(store: JobStore, part_count: int = 1, **changes: Any) -> JobSnapshot:
    """A new job, its creation's messages already published."""
    job = store.create(request(**changes), parts(part_count), now=NOW)
    outbox(store)
    return job


def apply(store: JobStore, *updates: StatusUpdate, now: datetime = NOW) -> Change | Dropped:
    outcome: Change | Dropped | None = None
    for each in updates:
        outcome = store.apply_update(each, now=now, lifetime=LIFETIME)
    assert outcome is not None
    return outcome


def test_create_records_the_job_and_its_messages_together(store: JobStore) -> None:
    job = store.create(request(), parts(2), now=NOW)
    assert store.get(job.id) == job
    assert (job.status, job.attempt, job.part_count) == ("created", 1, 2)
    assert job.request == request()
    messages = outbox(store)
    assert [message[:3] for message in messages] == [
        ("event", "test.exportd.events", "acme.rooms.created"),
        ("task", "", "test.exportd.tasks"),
        ("task", "", "test.exportd.tasks"),
    ]
    event = messages[0][3]
    assert (event.type, event.occurred_at, event.job) == ("job.created", NOW, job)
    tasks = [message[3] for message in messages[1:]]
    assert [(task.part, task.part_count, task.attempt) for task in tasks] == [(0, 2, 1), (1, 2, 1)]
    assert [task.request.params for task in tasks] == [{"room_id": "r0"}, {"room_id": "r1"}]
    assert [task.key for task in tasks] == [file(job.id, 0).key, file(job.id, 1).key]
    assert tasks[0].request.interval == job.request.interval


def test_a_job_of_another_org_is_not_found(store: JobStore) -> None:
    job = created(store)
    assert store.get(job.id, org_id="acme") == job
    for job_id, org_id in [(job.id, "other"), ("nope", None)]:
        with pytest.raises(NotFound) as caught:
            store.get(job_id, org_id)
        assert [field.name for field in caught.value.fields] == ["job_id"]
    with pytest.raises(NotFound):
        store.cancel(job.id, "other", now=NOW)
    assert store.get(job.id).status == "created"


def test_the_same_idempotency_key_and_request_give_the_same_job(store: JobStore) -> None:
    first = created(store, idempotency_key="k1")
    reordered = request(idempotency_key="k1", params={"min_messages": 2, "room_id": "r1"})
    again = store.create(reordered, parts(1), now=NOW + timedelta(minutes=1))
    assert again == first
    assert outbox(store) == []  # nothing new to announce or dispatch


def test_the_same_idempotency_key_with_other_parameters_is_a_conflict(store: JobStore) -> None:
    first = created(store, idempotency_key="k1")
    with pytest.raises(Conflict) as caught:
        store.create(request(idempotency_key="k1", format="xlsx"), parts(1), now=NOW)
    assert [field.name for field in caught.value.fields] == ["idempotency_key"]
    assert first.id in caught.value.fields[0].message
    assert store.list_jobs(JobQuery()).total == 1


def test_an_idempotency_key_belongs_to_its_org(store: JobStore) -> None:
    ours = created(store, idempotency_key="k1")
    theirs = created(store, idempotency_key="k1", org_id="globex")
    nobodys = created(store, idempotency_key="k1", org_id=None)
    assert len({ours.id, theirs.id, nobodys.id}) == 3
    assert created(store, idempotency_key="k1", org_id=None) == nobodys


def test_listing_is_newest_first_in_pages_with_filters(store: JobStore) -> None:
    jobs = [
        store.create(
            request(org_id=org, user_id=user, source=source),
            parts(1),
            now=NOW + timedelta(seconds=n // 2),  # two jobs per instant: newest inserted first
        )
        for n, (org, user, source) in enumerate(
            [
                ("acme", "u1", "rooms"),
                ("acme", "u2", "rooms"),
                ("acme", "u1", "workflows"),
                ("globex", "u1", "rooms"),
                ("acme", "u1", "rooms"),
            ]
        )
    ]
    ids = [job.id for job in jobs]
    store.cancel(ids[4], now=NOW)

    def listed(**filters: Any) -> tuple[list[str], int]:
        page = store.list_jobs(JobQuery(**filters))
        return [job.id for job in page.jobs], page.total

    assert listed() == (ids[::-1], 5)
    assert listed(limit=2) == ([ids[4], ids[3]], 5)
    assert listed(limit=2, offset=2) == ([ids[2], ids[1]], 5)
    assert listed(offset=5) == ([], 5)
    assert listed(org_id="acme") == ([ids[4], ids[2], ids[1], ids[0]], 4)
    assert listed(org_id="acme", user_id="u1") == ([ids[4], ids[2], ids[0]], 3)
    assert listed(org_id="acme", source="rooms", limit=1) == ([ids[4]], 3)
    assert listed(status=("canceled",)) == ([ids[4]], 1)
    assert listed(status=("canceled", "created"), org_id="acme", user_id="u2") == ([ids[1]], 1)
    assert listed(org_id="globex", status=("canceled",)) == ([], 0)
    assert store.list_jobs(JobQuery(org_id="globex")).jobs == [store.get(ids[3])]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (JobQuery(limit=0), "limit"),
        (JobQuery(limit=1001), "limit"),
        (JobQuery(offset=-1), "offset"),
        (JobQuery(status=("finished",)), "status"),
        (JobQuery(status=("done", "finished")), "status"),
    ],
)
def test_bad_listing_arguments_name_their_field(
    store: JobStore, query: JobQuery, field: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        store.list_jobs(query)
    assert [error.name for error in caught.value.fields] == [field]


def test_a_listing_holds_the_jobs_with_every_label_it_names(store: JobStore) -> None:
    jobs = [
        store.create(request(labels=labels, **changes), parts(1), now=NOW + timedelta(seconds=n))
        for n, (labels, changes) in enumerate(
            [
                ({"api": "a", "kind": "x"}, {}),
                ({"api": "a", "kind": "y"}, {}),
                ({"api": "b", "kind": "x"}, {}),
                ({"api": "a", "kind": "x"}, {"org_id": "globex"}),
                ({}, {}),
                ({"api": "a", "kind": "x"}, {}),
            ]
        )
    ]
    ids = [job.id for job in jobs]
    store.delete(ids[5], now=NOW)

    def listed(**filters: Any) -> tuple[list[str], int]:
        page = store.list_jobs(JobQuery(**filters))
        found = [job.id for job in page.jobs]
        assert page.numbers == store.numbers(found)
        return found, page.total

    assert listed(labels={"api": "a"}) == ([ids[5], ids[3], ids[1], ids[0]], 4)
    assert listed(org_id="acme", labels={"api": "a", "kind": "x"}) == ([ids[5], ids[0]], 2)
    assert listed(labels={"api": "a", "kind": "x"}, limit=1, offset=1) == ([ids[3]], 3)
    assert listed(labels={"kind": "x"}, status=("created",)) == ([ids[3], ids[2], ids[0]], 3)
    assert listed(labels={"api": "c"}) == ([], 0)
    assert listed(labels={"ap": "a"}) == ([], 0)
    assert store.get(ids[0]).request.labels == {"api": "a", "kind": "x"}


STATUSES = ("created", "done", "failed")


def test_a_listing_by_label_is_served_by_the_label_index(store: JobStore) -> None:
    for n in range(40):
        created(store, labels={"api": f"a{n % 4}", "channel_id": f"c{n % 8}"}, user_id=f"u{n}")
    statements: list[str] = []
    store._db.conn.set_trace_callback(statements.append)
    try:
        page = store.list_jobs(
            JobQuery(org_id="acme", status=STATUSES, labels={"api": "a1", "channel_id": "c1"})
        )
    finally:
        store._db.conn.set_trace_callback(None)
    assert page.total == 5
    listings = [s for s in statements if "from labels" in s]
    assert len(listings) == 2  # the page and its count
    for listing in listings:
        plan = [row[3] for row in store._db.execute(f"explain query plan {listing}").fetchall()]
        assert any("USING COVERING INDEX labels_lookup (key=? AND value=?)" in r for r in plan)
        assert not any(r.startswith("SCAN") for r in plan), plan  # no table nor index read whole
        assert not any("TEMP B-TREE" in r for r in plan), plan  # an index gives the order


def test_the_labelling_migration_labels_existing_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jobs.db"
    before = schema.MIGRATIONS.index(schema._label_jobs)
    with monkeypatch.context() as patched:
        patched.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:before])
        db = schema.open_database(path, busy_timeout=1)
        for job_id, fields in [("labelled", request(labels={"api": "a"})), ("plain", request())]:
            db.execute(
                "insert into jobs (id, source, format, status, attempt, part_count, request,"
                " created_at, updated_at, request_hash) values"
                " (?, 'rooms', 'csv', 'created', 1, 1, ?, ?, ?, 'h')",
                [job_id, msgspec.json.encode(fields).decode(), NOW.isoformat(), NOW.isoformat()],
            )
        db.close()
    assert schema_version(path) == before
    with JobStore(path, TOPOLOGY) as store:
        assert store.get("labelled").request.labels == {"api": "a"}
        assert [job.id for job in store.list_jobs(JobQuery(labels={"api": "a"})).jobs] == [
            "labelled"
        ]
        assert store.list_jobs(JobQuery()).total == 2
    assert schema_version(path) == len(schema.MIGRATIONS)


def test_listing_reads_a_page_in_the_same_few_queries_however_long(store: JobStore) -> None:
    def queries_to_list(limit: int) -> int:
        statements: list[str] = []
        store._db.conn.set_trace_callback(statements.append)
        try:
            page = store.list_jobs(JobQuery(limit=limit))
        finally:
            store._db.conn.set_trace_callback(None)
        assert len(page.jobs) == limit
        return len(statements)

    for _ in range(30):
        created(store, part_count=3)
    assert queries_to_list(2) == queries_to_list(30)


def test_updates_move_the_job_and_announce_status_changes_only(store: JobStore) -> None:
    job = created(store, part_count=2)
    first = apply(store, update(job, "processing", 1, progress=Progress(10, 100, 40)))
    assert isinstance(first, Change)
    assert store.get(job.id) == first.job
    progress = apply(store, update(job, "processing", 2, progress=Progress(20, 200, 40)))
    assert isinstance(progress, Change)
    assert progress.event is None
    assert store.get(job.id).parts[0].progress == Progress(20, 200, 40)
    assert [(kind, key, event.type) for kind, _, key, event in outbox(store)] == [
        ("event", "acme.rooms.processing", "job.processing")
    ]
    later = NOW + timedelta(minutes=5)
    apply(store, update(job, "done", 3), update(job, "uploading", 1, part=1), now=later)
    done = apply(store, update(job, "done", 2, part=1), now=later)
    assert isinstance(done, Change)
    assert store.get(job.id) == done.job
    assert done.job.expires_at == later + LIFETIME
    events = [(kind, key, message) for kind, _, key, message in outbox(store)]
    assert [(kind, key, getattr(message, "type", None)) for kind, key, message in events] == [
        ("event", "acme.rooms.processing", "job.progress"),
        ("event", "acme.rooms.uploading", "job.uploading"),
        ("event", "acme.rooms.done", "job.done"),
        ("cancel", "", None),  # any run of the attempt still going stops
    ]
    assert events[2][2].job == done.job
    assert events[3][2] == CancelSignal(job_id=job.id, attempt=1)


def test_updates_applied_together_each_get_their_outcome_in_order(store: JobStore) -> None:
    first, second = created(store), created(store, part_count=2)
    outcomes = store.apply_updates(
        [
            update(first, "done", 1),
            update(second, "processing", 1),
            update(second, "processing", 1),  # the same one, redelivered
            StatusUpdate(job_id="no-such-job", part=0, attempt=1, seq=1, status="processing"),
        ],
        now=NOW,
        lifetime=LIFETIME,
    )
    assert [type(outcome) for outcome in outcomes] == [Change, Change, Dropped, Dropped]
    assert [getattr(outcome, "reason", None) for outcome in outcomes[2:]] == [
        "duplicate",
        "unknown_job",
    ]
    assert store.get(first.id).status == "done"
    assert store.get(second.id).status == "processing"
    assert store.dropped() == {"duplicate": 1, "unknown_job": 1}
    assert [getattr(message, "type", kind) for kind, _, _, message in outbox(store)] == [
        "job.done",
        "cancel",
        "job.processing",
    ]


def test_an_update_that_fails_among_others_is_rolled_back_alone(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    fine, failing = created(store), created(store, org_id="other")

    def routing_key(org_id: str | None, source: str, status: str) -> str:
        if org_id == "other":
            raise RuntimeError("a bug in announcing other's jobs")
        return f"{org_id}.{source}.{status}"

    monkeypatch.setattr(store_module, "event_routing_key", routing_key)
    outcomes = store.apply_updates(
        [update(failing, "processing", 1), update(fine, "processing", 1)],
        now=NOW,
        lifetime=LIFETIME,
    )
    assert isinstance(outcomes[0], RuntimeError)
    assert isinstance(outcomes[1], Change)
    assert store.get(failing.id) == failing
    assert store.get(fine.id).status == "processing"
    assert [key for _, _, key, _ in outbox(store)] == ["acme.rooms.processing"]


def test_updates_applied_together_on_a_locked_store_are_all_unavailable(tmp_path: Path) -> None:
    with JobStore(tmp_path / "jobs.db", TOPOLOGY, busy_timeout=0.1) as store:
        jobs = [created(store), created(store)]
        updates = [update(job, "processing", 1) for job in jobs]
        other = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(Unavailable):
            store.apply_updates(updates, now=NOW, lifetime=LIFETIME)
        other.execute("ROLLBACK")
        other.close()
        assert [store.get(job.id) for job in jobs] == jobs
        outcomes = store.apply_updates(updates, now=NOW, lifetime=LIFETIME)
        assert [type(outcome) for outcome in outcomes] == [Change, Change]


def test_dropped_updates_are_counted_by_reason_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with JobStore(path, TOPOLOGY) as store:
        job = created(store, part_count=2)
        apply(store, update(job, "uploading", 5))
        outbox(store)
        drops = [
            update(job, "uploading", 5),  # duplicate
            update(job, "processing", 6),  # backwards
            update(job, "processing", 1, attempt=2),  # stale_attempt
            update(job, "processing", 1, part=7),  # unknown_part
            StatusUpdate(job_id="nope", part=0, attempt=1, seq=1, status="processing"),
            update(job, "processing", 4),  # duplicate
        ]
        outcomes = [store.apply_update(each, now=NOW, lifetime=LIFETIME) for each in drops]
        assert all(isinstance(outcome, Dropped) for outcome in outcomes)
        assert outbox(store) == []
        store.cancel(job.id, now=NOW)
        apply(store, update(job, "done", 9, part=1))  # job_finished
    with JobStore(path, TOPOLOGY) as reopened:
        assert reopened.dropped() == {
            "duplicate": 2,
            "backwards": 1,
            "stale_attempt": 1,
            "unknown_part": 1,
            "unknown_job": 1,
            "job_finished": 1,
        }
        assert reopened.get(job.id).parts[0].status == "canceled"


def worker_updates(job: JobSnapshot, steps: list[int]) -> list[StatusUpdate]:
    """What each part's worker sends, in order: processing with progress, uploading, done."""
    sent = []
    for part, processing in enumerate(steps):
        final = Progress(9, 90, 9)
        sent += [
            update(job, "processing", seq, part=part, progress=Progress(seq, seq * 10, 9))
            for seq in range(1, processing + 1)
        ]
        sent += [
            update(job, "uploading", processing + 1, part=part, progress=final),
            update(job, "done", processing + 2, part=part, progress=final),
        ]
    return sent


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobStore]:
    with JobStore(tmp_path_factory.mktemp("shared") / "jobs.db", TOPOLOGY) as opened:
        yield opened


def anonymous(job: JobSnapshot) -> JobSnapshot:
    """``job`` without its id (nor its files' keys, which hold it), to compare two jobs."""
    parts = [replace(part, file=part.file and replace(part.file, key="")) for part in job.parts]
    return replace(job, id="", parts=parts)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), steps=st.lists(st.integers(1, 3), min_size=3, max_size=3))
def test_updates_shuffled_and_repeated_are_stored_as_in_order(
    shared_store: JobStore, data: st.DataObject, steps: list[int]
) -> None:
    store = shared_store
    reference = created(store, part_count=3)
    apply(store, *worker_updates(reference, steps))
    job = created(store, part_count=3)
    in_order = worker_updates(job, steps)
    repeats = data.draw(st.lists(st.sampled_from(in_order), max_size=6))
    arrivals = data.draw(st.permutations(in_order + repeats))
    dropped_before = sum(store.dropped().values())
    stages = {"created": 0, "processing": 1, "uploading": 2, "done": 3}
    seen = store.get(job.id)
    drops = 0
    for each in arrivals:
        drops += isinstance(store.apply_update(each, now=NOW, lifetime=LIFETIME), Dropped)
        now_seen = store.get(job.id)
        assert stages[now_seen.status] >= stages[seen.status]
        for old, new in zip(seen.parts, now_seen.parts, strict=True):
            assert stages[new.status] >= stages[old.status]
        seen = now_seen
    assert drops >= len(repeats)
    assert sum(store.dropped().values()) - dropped_before == drops
    assert anonymous(seen) == anonymous(store.get(reference.id))
    assert [part.file for part in seen.parts] == [file(job.id, part) for part in range(3)]


def failing_routing_key(*args: object) -> str:
    raise RuntimeError("the disk is full")


@pytest.mark.parametrize(
    "change",
    [
        lambda store, job: store.create(request(), parts(1), now=NOW),
        lambda store, job: store.apply_update(
            update(job, "processing", 1), now=NOW, lifetime=LIFETIME
        ),
        lambda store, job: store.cancel(job.id, now=NOW),
        lambda store, job: store.delete(job.id, now=NOW),
    ],
    ids=["create", "apply_update", "cancel", "delete"],
)
def test_a_change_and_its_outbox_rows_are_kept_or_lost_together(
    store: JobStore, monkeypatch: pytest.MonkeyPatch, change: Callable[[JobStore, JobSnapshot], Any]
) -> None:
    job = created(store, part_count=2)
    monkeypatch.setattr(store_module, "event_routing_key", failing_routing_key)
    with pytest.raises(RuntimeError, match="disk is full"):
        change(store, job)
    assert store.outbox_batch() == []
    assert store.list_jobs(JobQuery()).jobs == [job]
    monkeypatch.undo()
    change(store, job)  # the store is still whole: the change goes through now
    assert outbox(store)[0][0] == "event"


def test_cancel_tells_the_workers_to_stop(store: JobStore) -> None:
    job = created(store, part_count=2)
    apply(store, update(job, "done", 3))
    outbox(store)
    change = store.cancel(job.id, "acme", now=NOW)
    assert change.discard == (file(job.id, 0).key,)
    assert [part.status for part in store.get(job.id).parts] == ["done", "canceled"]
    messages = outbox(store)
    assert [message[:3] for message in messages] == [
        ("event", "test.exportd.events", "acme.rooms.canceled"),
        ("cancel", "test.exportd.cancel", ""),
    ]
    assert messages[1][3] == CancelSignal(job_id=job.id, attempt=1)
    with pytest.raises(Conflict, match="cannot cancel a job that is canceled"):
        store.cancel(job.id, now=NOW)


def test_tasks_carry_each_part_as_planned_at_creation_and_at_restart(store: JobStore) -> None:
    columns = [[Column("room"), Column("n", "integer", role=None)], [Column("other")]]
    planned = [NewPart({"room_id": f"r{n}"}, f"rooms-r{n}.csv", columns[n]) for n in range(2)]
    job = store.create(request(), planned, now=NOW)
    created_tasks = [task for kind, *_, task in outbox(store) if kind == "task"]
    store.cancel(job.id, now=NOW)
    store.restart(job.id, now=NOW)
    restarted_tasks = [task for kind, *_, task in outbox(store) if kind == "task"]
    for tasks in (created_tasks, restarted_tasks):
        assert [(task.file_name, task.columns) for task in tasks] == [
            ("rooms-r0.csv", columns[0]),
            ("rooms-r1.csv", columns[1]),
        ]
        assert [task.request.params for task in tasks] == [{"room_id": "r0"}, {"room_id": "r1"}]
    # a part made before columns were planned: its workers ask the source
    unplanned = created(store)
    store.cancel(unplanned.id, now=NOW)
    store.restart(unplanned.id, now=NOW)
    assert [task.columns for kind, *_, task in outbox(store) if kind == "task"] == [None]


def test_restart_resets_the_parts_and_dispatches_the_next_attempt(store: JobStore) -> None:
    job = created(store, part_count=2)
    apply(store, update(job, "done", 2), update(job, "failed", 1, part=1))
    assert store.get(job.id).status == "failed"
    outbox(store)
    with pytest.raises(Conflict, match="cannot restart a job that is created"):
        store.restart(created(store).id, now=NOW)
    later = NOW + timedelta(hours=1)
    change = store.restart(job.id, "acme", now=later)
    restarted = store.get(job.id)
    assert restarted == change.job
    assert (restarted.status, restarted.attempt, restarted.error) == ("created", 2, None)
    assert [(p.status, p.progress, p.file) for p in restarted.parts] == [
        ("created", Progress(), None)
    ] * 2
    messages = outbox(store)
    assert [message[0] for message in messages] == ["event", "task", "task"]
    tasks = [message[3] for message in messages[1:]]
    assert [(task.attempt, task.key) for task in tasks] == [
        (2, file(job.id, 0, attempt=2).key),
        (2, file(job.id, 1, attempt=2).key),
    ]
    assert [task.request.params for task in tasks] == [{"room_id": "r0"}, {"room_id": "r1"}]
    # the first attempt's news is stale; the second attempt's counts from seq 1 again
    stale = apply(store, update(job, "done", 9))
    assert stale == Dropped("stale_attempt", (file(job.id, 0, 1).key,))
    assert isinstance(apply(store, update(restarted, "processing", 1)), Change)


def test_delete_removes_the_files_of_a_done_job_at_once(store: JobStore) -> None:
    job = created(store)
    apply(store, update(job, "done", 1))
    outbox(store)
    change = store.delete(job.id, now=NOW)
    assert change.discard == (file(job.id, 0).key,)
    assert store.get(job.id).status == "deleted"
    assert [message[2] for message in outbox(store)] == ["acme.rooms.deleted"]
    with pytest.raises(Conflict, match="cannot delete a job that is deleted"):
        store.delete(job.id, now=NOW)


def test_deleting_one_part_keeps_the_others_and_the_last_deletes_the_job(
    store: JobStore,
) -> None:
    job = created(store, part_count=3)
    apply(store, update(job, "done", 1, part=0), update(job, "processing", 1, part=1))
    outbox(store)
    change = store.delete_part(job.id, 0, "acme", now=NOW, lifetime=LIFETIME)
    assert change.discard == (file(job.id, 0).key,)
    kept = store.get(job.id)
    assert [part.status for part in kept.parts] == ["deleted", "processing", "created"]
    assert kept.status == "processing"
    assert store.list_jobs(JobQuery()).jobs == [kept]
    assert [(kind, key) for kind, _, key, _ in outbox(store)] == [
        ("event", "acme.rooms.processing")
    ]
    # after a restart of the engine on a bus that lost its tasks, the deleted part stays
    redispatched = store.redispatch_unfinished(NOW)
    assert sorted(change.dispatch[0] for change in redispatched) == [1, 2]
    with pytest.raises(NotFound):
        store.delete_part(job.id, 1, "globex", now=NOW, lifetime=LIFETIME)
    store.delete_part(job.id, 1, now=NOW, lifetime=LIFETIME)
    last = store.delete_part(job.id, 2, now=NOW, lifetime=LIFETIME)
    assert last.job.status == store.get(job.id).status == "deleted"


def test_done_jobs_expire_when_their_time_comes(store: JobStore) -> None:
    jobs = [created(store) for _ in range(3)]
    for n, job in enumerate(jobs):
        apply(store, update(job, "done", 1), now=NOW + timedelta(minutes=n))
    outbox(store)
    assert store.expire_due(NOW + LIFETIME - timedelta(seconds=1)) == []
    first = store.expire_due(NOW + LIFETIME + timedelta(minutes=1), limit=1)
    second = store.expire_due(NOW + LIFETIME + timedelta(minutes=1))
    expired = first + second
    assert sorted(change.job.id for change in expired) == sorted(job.id for job in jobs[:2])
    assert [len(first), len(second)] == [1, 1]
    for change in expired:
        assert change.discard == (file(change.job.id, 0).key,)
        assert store.get(change.job.id).status == "expired"
    assert [message[2] for message in outbox(store)] == ["acme.rooms.expired"] * 2
    assert store.get(jobs[2].id).status == "done"
    assert store.expire_due(NOW + 2 * LIFETIME)[0].job.id == jobs[2].id


def test_a_detached_part_whose_worker_falls_silent_is_dispatched_again(store: JobStore) -> None:
    lease = timedelta(minutes=2)
    lapsed = partial(store.redispatch_lapsed, lease=lease, limit=3)
    job = created(store, part_count=3)
    apply(store, update(job, "processing", 5, detached=True))
    apply(store, update(job, "processing", 3, part=1))
    apply(store, update(job, "done", 9, part=2, detached=True))
    outbox(store)
    assert lapsed(NOW + lease - timedelta(seconds=1)) == []
    [change] = lapsed(NOW + lease)
    assert change.job == store.get(job.id)  # nothing public changed
    assert change.dispatch == (0,)
    [(kind, _, _, task)] = outbox(store)
    assert (kind, task.part, task.attempt, task.key) == ("task", 0, 1, file(job.id, 0).key)
    assert task.lapses == 1  # its worker detaches at once
    assert lapsed(NOW + 3 * lease) == []  # not detached any more
    # the next worker counts from seq 1; once it detaches and falls silent, it is replaced too
    assert isinstance(apply(store, update(job, "processing", 1, detached=True)), Change)
    assert len(lapsed(NOW + lease)) == 1
    assert [task.lapses for *_, task in outbox(store)] == [2]
    apply(store, update(job, "processing", 1, detached=True))
    store.cancel(job.id, now=NOW)
    assert lapsed(NOW + 9 * lease) == []


def test_a_part_that_lapses_at_the_limit_fails_its_job_and_a_restart_counts_anew(
    store: JobStore,
) -> None:
    lease = timedelta(minutes=2)
    job = created(store, part_count=2)
    for lapse in (1, 2):
        apply(store, update(job, "processing", 1, detached=True))
        [change] = store.redispatch_lapsed(NOW + lease * lapse, lease, limit=2)
        messages = outbox(store)
    assert change.job.status == "failed" == store.get(job.id).status
    assert change.job.error is not None
    assert change.job.error.message.startswith("no worker finished this export")
    assert [message[0] for message in messages] == ["event", "cancel"]
    assert messages[0][3].type == "job.failed"
    store.restart(job.id, now=NOW + 9 * lease)
    assert [task.lapses for kind, *_, task in outbox(store) if kind == "task"] == [0, 0]


def test_a_part_lapsed_at_its_limit_names_what_no_live_worker_has(store: JobStore) -> None:
    lease = timedelta(minutes=2)
    job = created(store)
    apply(store, update(job, "processing", 1, detached=True))
    asked: list[tuple[str, str]] = []

    def no_worker(source: str, format_: str) -> str:
        asked.append((source, format_))
        return f"no live worker has format {format_}"

    [change] = store.redispatch_lapsed(NOW + lease, lease, limit=1, no_worker=no_worker)
    assert asked == [(job.request.source, job.request.format)]
    error = store.get(job.id).error
    assert error is not None and error == change.job.error
    assert error.message.endswith(f"; no live worker has format {job.request.format}")


def test_a_failed_part_names_what_no_live_worker_has_alone_or_among_others(
    store: JobStore,
) -> None:
    """A worker that refused the task for want of its format: the error it sent, then the
    words; a part that fails without an error of its own is left as it is."""

    def no_worker(source: str, format_: str) -> str:
        return f"no live worker has format {format_}"

    refused = ErrorBody("plugin_error", "this worker has no such format")
    jobs = [created(store) for _ in range(3)]
    alone = update(jobs[0], "failed", 1, error=refused)
    store.apply_update(alone, now=NOW, lifetime=LIFETIME, no_worker=no_worker)
    together = [update(jobs[1], "failed", 1, error=refused), update(jobs[2], "failed", 1)]
    store.apply_updates(together, now=NOW, lifetime=LIFETIME, no_worker=no_worker)

    words = f"this worker has no such format; no live worker has format {jobs[0].request.format}"
    errors = [store.get(job.id).error for job in jobs]
    assert [(e.code, e.message) for e in errors if e is not None] == [
        ("plugin_error", words),
        ("plugin_error", words),
        ("export_failed", "part 0 failed"),
    ]


def test_a_run_overtaken_by_a_later_delivery_keeps_the_lease(store: JobStore) -> None:
    lease = timedelta(minutes=2)
    job = created(store)
    apply(store, update(job, "processing", 100, detached=True))
    # the later run died; the earlier one (lower seqs: dropped) goes on
    early = update(job, "processing", 7, detached=True)
    assert apply(store, early, now=NOW + lease) == Dropped("duplicate")
    assert store.redispatch_lapsed(NOW + lease + timedelta(seconds=1), lease, limit=3) == []
    assert len(store.redispatch_lapsed(NOW + 2 * lease, lease, limit=3)) == 1


def test_parts_lapsing_together_fail_their_job_once_and_the_sweeper_goes_on(
    store: JobStore,
) -> None:
    """Both parts of a poison job lapse on the same sweeps: at the limit the first fails
    the job (and cancels the second), which then lapses no more."""
    lease = timedelta(minutes=2)
    job = created(store, part_count=2)
    for lapse in (1, 2):
        for part in (0, 1):
            apply(store, update(job, "processing", 1, part=part, detached=True))
        changes = store.redispatch_lapsed(NOW + lease * lapse, lease, limit=2)
    assert [change.job.status for change in changes] == ["failed"]
    assert [part.status for part in store.get(job.id).parts] == ["failed", "canceled"]
    other = created(store)
    apply(store, update(other, "processing", 1, detached=True))
    assert len(store.redispatch_lapsed(NOW + lease * 9, lease, limit=2)) == 1


def test_a_run_starting_over_after_an_uploading_part_lapsed_keeps_the_lease(
    store: JobStore,
) -> None:
    lease = timedelta(minutes=2)
    job = created(store)
    apply(store, update(job, "uploading", 5, detached=True))
    assert len(store.redispatch_lapsed(NOW + lease, lease, limit=3)) == 1
    # the next run says processing (dropped: backwards) and is detached at once
    late = NOW + 2 * lease
    assert apply(store, update(job, "processing", 1, detached=True), now=late) == Dropped(
        "backwards"
    )
    assert store.redispatch_lapsed(late + lease - timedelta(seconds=1), lease, limit=3) == []
    assert len(store.redispatch_lapsed(late + lease, lease, limit=3)) == 1  # watched


def test_a_part_given_back_is_dispatched_again_at_once(store: JobStore) -> None:
    job = created(store)
    apply(store, update(job, "processing", 1, detached=True))
    outbox(store)
    change = apply(store, update(job, "processing", 2, detached=True, given_back=True))
    assert isinstance(change, Change) and change.dispatch == (0,)
    [(kind, _, _, task)] = outbox(store)
    assert (kind, task.lapses) == ("task", 0)
    assert store.get(job.id).parts[0].status == "processing"
    # the task waits in its queue for a worker: the broker, not the lease, has it now
    assert store.redispatch_lapsed(NOW + timedelta(days=1), timedelta(minutes=2), limit=3) == []


def test_the_outbox_hands_out_the_oldest_messages_and_forgets_the_published(
    store: JobStore,
) -> None:
    store.create(request(), parts(3), now=NOW)
    rows = store.outbox_batch(limit=2)
    assert [row.kind for row in rows] == ["event", "task"]
    assert rows[0].created_at == NOW
    store.outbox_done([rows[1].id])
    assert [row.id for row in store.outbox_batch()] == [rows[0].id, rows[1].id + 1, rows[1].id + 2]


def test_naive_times_are_refused_and_change_nothing(store: JobStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.create(request(), parts(1), now=datetime(2024, 5, 1))
    assert store.list_jobs(JobQuery()).total == 0
    assert store.outbox_batch() == []


def schema_version(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        version: int = connection.execute("PRAGMA user_version").fetchone()[0]
    return version


def test_no_index_serves_one_source_or_one_facade(store: JobStore) -> None:
    """Facades find their jobs by labels: the index on the qna source's channel_id that
    version 4 made is gone."""
    indexes = {row[0] for row in store._db.execute("select name from sqlite_master")}
    assert "jobs_org_channel" not in indexes
    assert "labels_lookup" in indexes


def test_a_store_of_an_older_schema_is_migrated_once_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jobs.db"
    with JobStore(path, TOPOLOGY) as store:
        job = created(store)
    version = schema_version(path)
    assert version == len(schema.MIGRATIONS)
    runs: list[int] = []

    def add_notes(db: Database) -> None:
        runs.append(1)
        db.execute("create table notes (job_id text references jobs (id), note text)")
        db.execute("insert into notes select id, 'migrated' from jobs")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, add_notes])
    for _ in range(2):
        with JobStore(path, TOPOLOGY) as store:
            assert store.get(job.id) == job
    assert runs == [1]
    assert schema_version(path) == version + 1
    with sqlite3.connect(path) as connection:
        assert connection.execute("select * from notes").fetchall() == [(job.id, "migrated")]


def test_a_failing_migration_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jobs.db"
    JobStore(path, TOPOLOGY).close()

    def half_done(db: Database) -> None:
        db.execute("create table notes (note text)")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, half_done])
    with pytest.raises(RuntimeError, match="migration bug"):
        JobStore(path, TOPOLOGY)
    assert schema_version(path) == len(schema.MIGRATIONS) - 1
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master")}
    assert "notes" not in tables


def test_a_store_newer_than_exportd_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")
    with pytest.raises(ConfigError, match="schema version 99"):
        JobStore(path, TOPOLOGY)


def test_readers_read_while_the_engine_writes(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    writer = JobStore(path, TOPOLOGY)
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for n in range(150):
                job = writer.create(request(), parts(2), now=NOW + timedelta(milliseconds=n))
                writer.apply_update(update(job, "processing", 1), now=NOW, lifetime=LIFETIME)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    thread = threading.Thread(target=write)
    with JobStore(path, TOPOLOGY, busy_timeout=0.01) as reader:
        thread.start()
        totals = []
        while thread.is_alive():
            page = reader.list_jobs(JobQuery(limit=20))
            totals.append(page.total)
            assert all(len(job.parts) == job.part_count == 2 for job in page.jobs)
        thread.join()
        assert totals == sorted(totals)
        assert len(set(totals)) > 1  # the reader did read while the writer wrote
        assert reader.list_jobs(JobQuery()).total == 150
    writer.close()
    assert failures == []
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_jobs_have_stable_numbers_that_find_them_in_their_org(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with JobStore(path, TOPOLOGY) as store:
        first, second = created(store), created(store, org_id="globex")
        numbers = store.numbers([first.id, second.id, "no-such-job"])
        assert set(numbers) == {first.id, second.id}
        assert numbers[second.id] > numbers[first.id] >= 1
        assert store.get_by_number(numbers[first.id], "acme") == first
        assert store.get_by_number(numbers[second.id]) == second
        with pytest.raises(NotFound) as found:
            store.get_by_number(numbers[second.id], "acme")
        assert second.id not in str(found.value)
        with pytest.raises(NotFound):
            store.get_by_number(numbers[second.id] + 1)
    connection = sqlite3.connect(path, isolation_level=None)  # VACUUM renumbers rowids
    connection.execute("delete from jobs where id = ?", [first.id])
    connection.execute("VACUUM")
    connection.close()
    with JobStore(path, TOPOLOGY) as store:
        assert store.numbers([second.id]) == {second.id: numbers[second.id]}
        assert store.numbers([]) == {}


def test_the_numbering_migration_numbers_existing_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jobs.db"
    before = schema.MIGRATIONS.index(schema._number_jobs)
    with monkeypatch.context() as patched:
        patched.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:before])
        db = schema.open_database(path, busy_timeout=1)
        db.execute(
            "insert into jobs (id, source, format, status, attempt, part_count, request,"
            " created_at, updated_at, request_hash) values"
            " ('old', 'rooms', 'csv', 'created', 1, 1, '{}', 'x', 'x', 'h')"
        )
        db.close()
    with JobStore(path, TOPOLOGY) as store:
        [old] = store.numbers(["old"]).values()
        job = created(store)
        assert store.numbers([job.id]) == {job.id: old + 1}


def test_a_job_id_may_be_shortened_to_a_start_only_one_id_has(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each job takes an id, then its created event another
    ids = [f"{start}-0000-4000-8000-{n:012d}" for n, start in enumerate(
        ["201c91a0", "e1", "201c91b7", "e2", "9f00aa11", "e3"]
    )]  # fmt: skip
    given = iter(ids)
    monkeypatch.setattr(store_module, "uuid", SimpleNamespace(uuid4=lambda: next(given)))
    first, second, other = (created(store, org_id=org) for org in ("acme", "acme", "beta"))
    assert (first.id, second.id, other.id) == (ids[0], ids[2], ids[4])

    assert store.resolve_id(first.id) == first.id
    assert store.resolve_id("201c91a") == store.resolve_id("201c91a0") == first.id
    assert store.resolve_id("9f00aa") == other.id
    with pytest.raises(InvalidRequest, match=r"'201c91' is the start of more than one job id: "):
        store.resolve_id("201c91")
    with pytest.raises(InvalidRequest, match="too short to stand for a job id: give at least 6"):
        store.resolve_id("9f00a")
    with pytest.raises(NotFound, match="no job '201c91ff'"):
        store.resolve_id("201c91ff")
    with pytest.raises(NotFound, match="no job '9f00aa'"):
        store.resolve_id("9f00aa", "acme")  # another org's
    with pytest.raises(NotFound, match="no job '%'"):
        store.resolve_id("%")


def table_counts(store: JobStore, job_ids: list[str]) -> dict[str, int]:
    """How many rows of ``job_ids`` each table that refers to jobs holds."""
    marks = ", ".join("?" * len(job_ids))
    return {
        table: store._db.execute(
            f"select count(*) from {table} where {column} in ({marks})", job_ids
        ).fetchone()[0]
        for table, column in [("jobs", "id"), ("parts", "job_id"), ("labels", "job_id")]
    }


def test_remove_finished_removes_the_jobs_over_before_the_time_with_their_rows(
    store: JobStore,
) -> None:
    labels = {"api": "reports"}
    over = [created(store, part_count=2, labels=labels) for _ in range(3)]
    store.cancel(over[0].id, now=NOW)
    apply(store, update(over[1], "failed", 1), now=NOW)
    store.delete(over[2].id, now=NOW)
    expired = created(store, labels=labels)
    apply(store, update(expired, "done", 1), now=NOW)
    store.expire_due(NOW + LIFETIME)  # finished at NOW, expired a day later
    running = created(store, labels=labels)
    done = created(store, labels=labels)
    apply(store, update(done, "done", 1), now=NOW)  # finished long ago, but has its file
    later = created(store, labels=labels)
    store.cancel(later.id, now=NOW + timedelta(hours=2))

    removed = store.remove_finished(NOW + timedelta(hours=1), limit=100)

    gone = [job.id for job in [*over, expired]]
    assert sorted(removed) == sorted(gone)
    assert table_counts(store, gone) == {"jobs": 0, "parts": 0, "labels": 0}
    kept = [running.id, done.id, later.id]
    assert table_counts(store, kept) == {"jobs": 3, "parts": 3, "labels": 3}
    assert store.get(running.id).status == "created"
    assert store.remove_finished(NOW + timedelta(hours=1), limit=100) == []


def test_remove_finished_takes_the_oldest_first_a_batch_at_a_time(store: JobStore) -> None:
    jobs = [created(store) for _ in range(5)]
    for n, job in enumerate(jobs):
        store.cancel(job.id, now=NOW + timedelta(minutes=n))
    later = NOW + timedelta(hours=1)
    assert store.remove_finished(later, limit=2) == [jobs[0].id, jobs[1].id]
    assert store.remove_finished(later, limit=2) == [jobs[2].id, jobs[3].id]
    assert store.remove_finished(later, limit=2) == [jobs[4].id]


def test_remove_finished_is_served_by_the_retention_index(store: JobStore) -> None:
    plan = [
        row[3]
        for row in store._db.execute(
            f"explain query plan {store_module._OVER}", [NOW.isoformat(), 10]
        ).fetchall()
    ]
    assert any("USING INDEX jobs_retention (completed_at<?)" in row for row in plan), plan
    assert not any("TEMP B-TREE" in row for row in plan), plan  # the index gives the order


def test_published_messages_go_with_the_next_write_and_stay_if_it_fails(
    store: JobStore, tmp_path: Path
) -> None:
    def in_file() -> int:
        with closing(sqlite3.connect(tmp_path / "jobs.db")) as db:
            count: int = db.execute("select count(*) from outbox").fetchone()[0]
        return count

    store.create(request(), parts(1), now=NOW)
    published = store.outbox_batch()
    store.outbox_done(row.id for row in published)
    assert store.outbox_batch() == [] and in_file() == 2  # forgotten, not yet deleted
    with pytest.raises(ValueError, match="timezone-aware"):  # a write that fails
        store.create(request(), parts(1), now=datetime(2024, 5, 1))
    assert store.outbox_batch() == [] and in_file() == 2
    job = store.create(request(), parts(1), now=NOW)  # the next write deletes them
    assert in_file() == 2  # its own two
    store.outbox_done(row.id for row in store.outbox_batch())
    store.delete_published()  # what the relay does when no write comes
    assert in_file() == 0
    assert store.get(job.id).status == "created"
