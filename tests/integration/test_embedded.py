"""The engine and workers in one process over the in-process bus: the embedded mode."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from exportd.bus.base import Bus, BusError, Message
from exportd.bus.local import LocalBus
from exportd.bus.topology import DEFAULT_EXCHANGE
from exportd.config import Settings
from exportd.engine.lifecycle import Change, Dropped
from exportd.engine.store import JobQuery
from exportd.errors import Conflict, InvalidRequest, Unavailable
from exportd.messages import ExportRequest, JobCommand, JobSnapshot, RequestReply, StatusUpdate
from exportd.plugins.manager import Plugins
from tests.integration.runtime import running, settings_in
from tests.unit import toy_plugins
from tests.unit.datastore import ORG, ROOM, WINDOW


@pytest.fixture
def home(tmp_path: Path, datastore: Path) -> Path:
    shutil.copy(datastore, tmp_path / "data.db")
    return tmp_path


def logs_request(**changes: object) -> dict[str, object]:
    request: dict[str, object] = {
        "source": "rooms",
        "format": "csv",
        "params": {"room_id": ROOM, "type": "logs"},
        "interval": {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat()},
        "org_id": ORG,
    }
    request.update(changes)
    return request


async def test_a_request_becomes_a_done_job_with_a_whole_file(home: Path) -> None:
    async with running(LocalBus(), settings_in(home)) as runtime:
        job = await runtime.submit(**logs_request())
        assert job.status == "created"
        done = await runtime.events.wait_for(job.id, "job.done")
        assert done.job is not None
        runtime.check_files(done.job)
        assert runtime.file_bytes(done.job)[0].startswith(b"conversation_id,")
        types = [event.type for event in runtime.events.of(job.id)]
        assert types[0] == "job.created"
        assert types.count("job.done") == 1
        assert (await runtime.engine.get(job.id)).status == "done"


async def test_a_bad_request_is_refused_before_anything_is_queued(home: Path) -> None:
    async with running(LocalBus(), settings_in(home)) as runtime:
        with pytest.raises(InvalidRequest) as caught:
            await runtime.submit(**logs_request(params={"room_id": ROOM, "type": "lgos"}))
        assert caught.value.fields[0].name == "params.type"
        assert (await runtime.engine.list_jobs(JobQuery())).total == 0


async def test_the_same_idempotency_key_gives_the_same_job(home: Path) -> None:
    async with running(LocalBus(), settings_in(home)) as runtime:
        first = await runtime.submit(**logs_request(idempotency_key="k1"))
        again = await runtime.submit(**logs_request(idempotency_key="k1"))
        assert again.id == first.id
        with pytest.raises(Conflict):
            await runtime.submit(**logs_request(idempotency_key="k1", format="json"))


def count_request(**params: object) -> dict[str, object]:
    return {
        "source": "count",
        "format": "lines",
        "params": params,
        "interval": {"start": "2024-01-01", "end": "2024-01-02"},
    }


def toy_plugins_in(home: Path) -> Plugins:
    return Plugins(settings=settings_in(home), extra=[toy_plugins])


async def test_a_worker_without_the_source_or_format_of_a_task_says_so(home: Path) -> None:
    settings = settings_in(home)
    lacking = Plugins(settings=settings)  # the engine has the toy plugins; the worker has not
    async with running(
        LocalBus(), settings, plugins=toy_plugins_in(home), worker_plugins=lacking
    ) as runtime:
        job = await runtime.submit(**count_request(rows=3))
        failed = await runtime.events.wait_for(job.id, "job.failed")
        mixed = await runtime.submit(**count_request(rows=3) | {"format": "csv"})
        mixed_failed = await runtime.events.wait_for(mixed.id, "job.failed")
    assert failed.job is not None and failed.job.error is not None
    assert failed.job.error.code == "export_failed"
    assert failed.job.error.message.startswith(
        "worker worker-0 has no source 'count' and no format 'lines': install the plugin"
    )
    assert mixed_failed.job is not None and mixed_failed.job.error is not None
    assert mixed_failed.job.error.message.startswith("worker worker-0 has no source 'count':")


async def test_cancel_stops_a_running_export_and_leaves_no_file(home: Path) -> None:
    settings = settings_in(home, batch_size=10)
    async with running(LocalBus(), settings, plugins=toy_plugins_in(home)) as runtime:
        job = await runtime.submit(**count_request(rows=100_000, pause=0.05))
        await runtime.events.wait_for(job.id, "job.processing")
        await runtime.engine.cancel(job.id)
        canceled = await runtime.events.wait_for(job.id, "job.canceled")
        assert canceled.job is not None
        assert all(part.file is None for part in canceled.job.parts)
        await asyncio.sleep(0.3)  # the worker's own update comes after: dropped
        assert (await runtime.engine.get(job.id)).status == "canceled"
    assert not any(path.is_file() for path in (home / "files").rglob("*"))
    assert not any(path.is_file() for path in (home / "work").rglob("*"))


async def test_a_quick_export_reports_its_outcome_only_a_longer_one_every_status(
    home: Path,
) -> None:
    settings = settings_in(home, batch_size=2, worker={"progress_interval": 0.1})
    async with running(LocalBus(), settings, plugins=toy_plugins_in(home)) as runtime:
        quick = await runtime.submit(**count_request(rows=3))
        await runtime.events.wait_for(quick.id, "job.done")
        longer = await runtime.submit(**count_request(rows=8, pause=0.1))  # 0.4 s
        await runtime.events.wait_for(longer.id, "job.done")
    assert [event.type for event in runtime.events.of(quick.id)] == ["job.created", "job.done"]
    changes = [event.type for event in runtime.events.of(longer.id)]
    assert [type_ for type_ in changes if type_ != "job.progress"] == [
        "job.created",
        "job.processing",
        "job.uploading",
        "job.done",
    ]


async def test_an_export_written_before_the_first_tick_is_announced_uploading_if_storing_lasts(
    home: Path,
) -> None:
    settings = settings_in(home, storage="slow", worker={"progress_interval": 0.1})
    async with running(LocalBus(), settings, plugins=toy_plugins_in(home)) as runtime:
        job = await runtime.submit(**count_request(rows=3))
        done = await runtime.events.wait_for(job.id, "job.done")
    changes = [event.type for event in runtime.events.of(job.id)]
    assert changes == ["job.created", "job.uploading", "job.done"]
    assert done.job is not None and done.job.parts[0].file is not None
    assert (home / "files" / done.job.parts[0].file.key).is_file()


async def test_a_failed_job_restarts_as_a_new_attempt(home: Path) -> None:
    async with running(LocalBus(), settings_in(home), plugins=toy_plugins_in(home)) as runtime:
        job = await runtime.submit(**count_request(rows=20, explode_at=5))
        failed = await runtime.events.wait_for(job.id, "job.failed")
        assert failed.job is not None and failed.job.error is not None
        assert "boom at 5" in failed.job.error.message
        restarted = await runtime.engine.restart(job.id)
        assert (restarted.status, restarted.attempt) == ("created", 2)


async def test_commands_list_get_and_refuse_what_the_status_does_not_allow(home: Path) -> None:
    async with running(LocalBus(), settings_in(home), plugins=toy_plugins_in(home)) as runtime:
        first = await runtime.submit(**count_request(rows=3))
        await runtime.events.wait_for(first.id, "job.done")
        second = await runtime.submit(**count_request(rows=4))
        await runtime.events.wait_for(second.id, "job.done")
        listing = await runtime.engine.command(JobCommand(op="list"))
        assert [job.id for job in listing.jobs or []] == [second.id, first.id]
        assert listing.total == 2
        with pytest.raises(Conflict, match="cannot restart a job that is done"):
            await runtime.engine.command(JobCommand(op="restart", job_id=first.id))
        with pytest.raises(InvalidRequest, match="job_id"):
            await runtime.engine.command(JobCommand(op="get"))
        deleted = await runtime.engine.command(JobCommand(op="delete", job_id=first.id))
        assert deleted.job is not None and deleted.job.status == "deleted"
        assert not list((home / "files" / first.id).rglob("*.lines"))


async def test_unfinished_jobs_go_on_after_the_embedded_mode_restarts(home: Path) -> None:
    settings = settings_in(home, batch_size=10, worker={"shutdown_grace": 0.1})
    async with running(LocalBus(), settings, plugins=toy_plugins_in(home)) as runtime:
        job = await runtime.submit(**count_request(rows=200, pause=0.05))
        await runtime.events.wait_for(job.id, "job.processing")
    async with running(LocalBus(), settings, plugins=toy_plugins_in(home)) as runtime:
        done = await runtime.events.wait_for(job.id, "job.done")
        assert done.job is not None
        assert sum(part.file.rows for part in done.job.parts if part.file) == 200
        runtime.check_files(done.job)


async def test_a_multi_part_job_names_its_files_like_a_local_export(home: Path) -> None:
    async with running(LocalBus(), settings_in(home), plugins=toy_plugins_in(home)) as runtime:
        job = await runtime.submit(**count_request(rows=11))
        done = await runtime.events.wait_for(job.id, "job.done")
        assert done.job is not None
        names = [part.file.name for part in done.job.parts if part.file]
        assert names == [
            "count-11-20240101-20240102-part1of2.lines",
            "count-11-20240101-20240102-part2of2.lines",
        ]


async def test_the_files_of_a_job_record_its_creation_time_whenever_it_runs(
    home: Path,
) -> None:
    async with running(LocalBus(), settings_in(home)) as runtime:
        job = await runtime.submit(**logs_request(format="json"))
        done = await runtime.events.wait_for(job.id, "job.done")
        assert done.job is not None
        [data] = runtime.file_bytes(done.job)
    generated = msgspec.json.decode(data)["export"]["generated_at"]
    assert datetime.fromisoformat(generated) == job.created_at


async def dead_requests(bus: Bus) -> asyncio.Queue[bytes]:
    """The bodies of the requests ``bus`` dead-letters from now on."""
    dead: asyncio.Queue[bytes] = asyncio.Queue()

    async def keep(message: Message) -> None:
        dead.put_nowait(message.body)
        await message.ack()

    await bus.consume(bus.topology.requests_dead, keep, prefetch=1)
    return dead


async def test_a_request_whose_handling_fails_is_refused_as_an_internal_error_at_once(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure on exportd's side (a bug, the job store) refuses the request: announced
    and dead-lettered at its first delivery, never requeued."""
    calls: list[ExportRequest] = []

    async def failing(request: ExportRequest) -> JobSnapshot:
        calls.append(request)
        raise RuntimeError("the job store is gone")

    async with running(LocalBus(), settings_in(home)) as runtime:
        monkeypatch.setattr(runtime.engine, "submit", failing)
        dead = await dead_requests(runtime.bus)
        body = msgspec.json.encode(logs_request())
        await runtime.bus.publish(DEFAULT_EXCHANGE, runtime.bus.topology.requests, body)
        assert await asyncio.wait_for(dead.get(), 5) == body
        await asyncio.sleep(0.1)  # time for a redelivery, were there one
        assert len(calls) == 1
    [rejected] = [event for event in runtime.events.seen if event.type == "request.rejected"]
    assert rejected.error is not None
    assert (rejected.error.code, rejected.error.fields) == ("internal_error", [])
    assert "see its log" in rejected.error.message


async def test_a_request_refused_for_a_passing_condition_is_answered_not_dead_lettered(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data store (or the job store) unavailable refuses the request with
    ``unavailable``, which tells the caller to retry: answered and announced, settled at
    its first delivery, but not dead-lettered, as the request was not at fault."""
    calls: list[ExportRequest] = []
    replies: list[RequestReply] = []

    async def unreachable(request: ExportRequest) -> JobSnapshot:
        calls.append(request)
        raise Unavailable("cannot connect to the data store (data.url postgresql://db/x)")

    async def reply(message: Message, answer: RequestReply) -> None:
        replies.append(answer)

    async with running(LocalBus(), settings_in(home)) as runtime:
        monkeypatch.setattr(runtime.engine, "submit", unreachable)
        monkeypatch.setattr(runtime.engine, "_reply", reply)
        dead = await dead_requests(runtime.bus)
        body = msgspec.json.encode(logs_request())
        await runtime.bus.publish(DEFAULT_EXCHANGE, runtime.bus.topology.requests, body)
        async with asyncio.timeout(5):
            while not replies:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # time for a dead letter or a redelivery, were there one
        assert dead.empty() and len(calls) == 1
    [rejected] = [event for event in runtime.events.seen if event.type == "request.rejected"]
    assert rejected.error is not None and rejected.error.code == "unavailable"
    [answer] = replies
    assert not answer.ok and answer.error is not None
    assert answer.error.code == "unavailable" and "data.url" in answer.error.message


async def test_a_status_update_that_fails_to_apply_is_tried_again(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures: list[StatusUpdate] = []
    async with running(LocalBus(), settings_in(home)) as runtime:
        apply_update = runtime.engine.store.apply_update

        def flaky(update: StatusUpdate, **kwargs: Any) -> Change | Dropped:
            if not failures:
                failures.append(update)
                raise sqlite3.OperationalError("database is locked")
            return apply_update(update, **kwargs)

        monkeypatch.setattr(runtime.engine.store, "apply_update", flaky)
        job = await runtime.submit(**logs_request())
        done = await runtime.events.wait_for(job.id, "job.done")
    assert [update.job_id for update in failures] == [job.id]
    assert done.job is not None and done.job.parts[0].file is not None


async def test_status_updates_that_arrive_together_are_applied_in_one_transaction(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    async with running(LocalBus(), settings_in(home)) as runtime:
        store = runtime.engine.store
        apply_updates = store.apply_updates

        def counted(updates: list[StatusUpdate], **kwargs: Any) -> list[Any]:
            outcomes = apply_updates(updates, **kwargs)
            batches.append(len(updates))
            return outcomes

        monkeypatch.setattr(store, "apply_updates", counted)
        bus = runtime.engine.bus
        strays = [
            StatusUpdate(job_id=f"stray-{n}", part=0, attempt=1, seq=1, status="processing")
            for n in range(20)
        ]
        await asyncio.gather(
            *(
                bus.publish(DEFAULT_EXCHANGE, bus.topology.status, msgspec.json.encode(update))
                for update in strays
            )
        )
        async with asyncio.timeout(10):
            while sum(batches) < len(strays):
                await asyncio.sleep(0.01)
        job = await runtime.submit(**logs_request())
        await runtime.events.wait_for(job.id, "job.done")  # and the engine goes on
    assert max(batches) > 1


def waiting_in_outbox(settings: Settings) -> int:
    """How many messages the job store's outbox holds, read beside the engine."""
    with contextlib.closing(sqlite3.connect(settings.jobs_path)) as db:
        count: int = db.execute("select count(*) from outbox").fetchone()[0]
    return count


async def test_a_change_publishes_its_own_messages_before_it_returns(home: Path) -> None:
    """Confirmed, they wait for nothing; their rows go with the store's next write, or at
    the relay's next turn (within a second) when none comes."""
    settings = settings_in(home)
    async with running(LocalBus(), settings) as runtime:
        engine = runtime.engine
        job = await runtime.submit(**logs_request())
        assert await engine._stored(engine.store.outbox_batch) == []  # the task, job.created
        async with asyncio.timeout(5):
            await runtime.events.wait_for(job.id, "job.done")
            while waiting_in_outbox(settings):
                await asyncio.sleep(0.05)


async def test_a_change_whose_messages_are_not_confirmed_leaves_them_to_the_relay(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change is recorded, so the caller gets its job; the relay publishes the
    messages once the bus takes them, each once."""
    refused: list[str] = []
    async with running(LocalBus(), settings_in(home)) as runtime:
        publish = runtime.bus.publish

        async def flaky(exchange: str, routing_key: str, body: bytes, **kwargs: Any) -> None:
            if len(refused) < 2:  # the new job's task and its job.created
                refused.append(routing_key)
                raise BusError("RabbitMQ did not confirm the publish within 5 s")
            await publish(exchange, routing_key, body, **kwargs)

        monkeypatch.setattr(runtime.bus, "publish", flaky)
        job = await runtime.submit(**logs_request())
        assert job.status == "created"
        await runtime.events.wait_for(job.id, "job.done")
    assert len(refused) == 2
    assert [event.type for event in runtime.events.of(job.id)].count("job.created") == 1
    assert [event.type for event in runtime.events.of(job.id)].count("job.done") == 1


async def test_a_change_whose_caller_stops_waiting_leaves_its_messages_to_the_relay(
    home: Path,
) -> None:
    """A request cancelled while the job store records it (a client gone, a timeout of
    the caller's): the job is recorded all the same, and its task and events go out."""
    async with running(LocalBus(), settings_in(home)) as runtime:
        busy = threading.Event()
        runtime.engine._store_thread.submit(busy.wait, 5)  # the store's thread is busy
        submitted = asyncio.create_task(runtime.submit(**logs_request()))
        await asyncio.sleep(0.1)
        submitted.cancel()
        busy.set()
        with pytest.raises(asyncio.CancelledError):
            await submitted
        async with asyncio.timeout(30):
            while not [event for event in runtime.events.seen if event.type == "job.done"]:
                await asyncio.sleep(0.05)
        [job_id] = {event.job.id for event in runtime.events.seen if event.job is not None}
        assert [event.type for event in runtime.events.of(job_id)].count("job.created") == 1
