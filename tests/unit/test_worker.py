"""The worker on its own, over the in-process bus: what it says about a task, and how it
settles the task's message, on every path a run can take.

The RabbitMQ side of the same paths (killed processes, dropped connections, the broker's
acknowledgement timeout) is in ``tests/integration/test_faults.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

from exportd.bus.base import BusError, Message
from exportd.bus.local import LocalBus
from exportd.bus.topology import TASK_DELIVERY_LIMIT, QueueSpec, Topology
from exportd.config import Settings
from exportd.config.settings import WorkerSettings
from exportd.messages import CancelSignal, ExportTask, PartStatus, RequestFields, StatusUpdate
from exportd.plugins.manager import Plugins
from exportd.workers.worker import SEQ_PER_DELIVERY, Recent, Worker
from tests.unit import toy_plugins
from tests.work import partial_files

T = TypeVar("T")

QUICK = {"progress_interval": 0.05, "heartbeat_interval": 0.2, "shutdown_grace": 0.1}


def task(rows: int = 3, *, lapses: int = 0, **params: Any) -> ExportTask:
    """A task of a new job for the toy ``count`` source, in the ``lines`` format."""
    job_id = str(uuid.uuid4())
    request = msgspec.convert(
        {
            "source": "count",
            "format": "lines",
            "params": {"rows": rows, **params},
            "interval": {"start": "2024-01-01", "end": "2024-01-02"},
        },
        RequestFields,
    )
    key = f"{job_id}/1/0/count.txt"
    return ExportTask(
        job_id=job_id, part=0, part_count=1, attempt=1, request=request, key=key, lapses=lapses
    )


@dataclass
class Bench:
    """A local bus with workers on it, and every status update they sent."""

    bus: LocalBus
    settings: Settings
    updates: list[StatusUpdate] = field(default_factory=list)
    stops: dict[str, tuple[asyncio.Event, asyncio.Task[None]]] = field(default_factory=dict)

    async def start_worker(self, name: str) -> Worker:
        """A worker taking tasks (it has taken and done one, so it listens to cancels too)."""
        plugins = Plugins(settings=self.settings, extra=[toy_plugins])
        worker = Worker(self.bus, plugins, self.settings, name=name)
        stop = asyncio.Event()
        self.stops[name] = (stop, asyncio.create_task(worker.run(stop)))
        warm_up = await self.publish(task())
        await self.outcome(warm_up)
        return worker

    async def stop_worker(self, name: str) -> None:
        """Shut a worker down, as SIGTERM does, and wait until it has."""
        stop, running = self.stops.pop(name)
        stop.set()
        await running

    async def publish(self, exported: ExportTask) -> ExportTask:
        """Put ``exported`` on the task queue."""
        await self.bus.publish("", self.bus.topology.tasks, msgspec.json.encode(exported))
        return exported

    async def cancel(self, exported: ExportTask) -> None:
        """Send the cancel signal of ``exported``'s attempt, as the engine does."""
        signal = CancelSignal(job_id=exported.job_id, attempt=exported.attempt)
        await self.bus.publish(self.bus.topology.cancel, "", msgspec.json.encode(signal))

    def of(self, exported: ExportTask) -> list[StatusUpdate]:
        """The updates about ``exported``'s job, in the order they came."""
        return [update for update in self.updates if update.job_id == exported.job_id]

    def statuses(self, exported: ExportTask) -> list[PartStatus]:
        return [update.status for update in self.of(exported)]

    async def outcome(self, exported: ExportTask) -> StatusUpdate:
        """The first final update about ``exported``, once it came."""
        return await until(
            lambda: next(
                (u for u in self.of(exported) if u.status in ("done", "failed", "canceled")), None
            )
        )


async def until(found: Callable[[], T | None], timeout: float = 5.0) -> T:
    """What ``found`` returns once it is not None, polling for up to ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while (value := found()) is None:
            await asyncio.sleep(0.01)
    return value


@asynccontextmanager
async def bench(tmp_path: Path, **worker: Any) -> AsyncIterator[Bench]:
    """A :class:`Bench` with quick timings (``worker`` changes them), stopped at the end."""
    storage = worker.pop("storage", "local")
    settings = Settings(
        home=str(tmp_path),
        batch_size=1,
        storage=storage,
        worker=WorkerSettings(**{**QUICK, **worker}),
    )
    async with LocalBus() as bus:
        assert isinstance(bus, LocalBus)
        seen = Bench(bus, settings)

        async def keep(message: Message) -> None:
            seen.updates.append(msgspec.json.decode(message.body, type=StatusUpdate))
            await message.ack()

        statuses = await bus.consume(bus.topology.status, keep, prefetch=100)
        try:
            yield seen
        finally:
            for name in list(seen.stops):
                await seen.stop_worker(name)
            await statuses.cancel()


async def give_back(bus: LocalBus, times: int) -> None:
    """Take the next task and give it back ``times`` times, as consumers whose connection
    dropped would (each counts as a delivery)."""
    given: list[int] = []

    async def refuse(message: Message) -> None:
        given.append(message.delivery_count)
        if len(given) < times:
            await message.reject(requeue=True)
        # the last one stays unsettled: the consumer's cancel gives it back

    refusing = await bus.consume(bus.topology.tasks, refuse, prefetch=1)
    await until(lambda: len(given) == times or None)
    await refusing.cancel()
    assert given == list(range(times))


async def test_a_short_export_reports_only_its_outcome(tmp_path: Path) -> None:
    async with bench(tmp_path, progress_interval=1.0) as seen:
        await seen.start_worker("w1")
        short = await seen.publish(task(3))
        done = await seen.outcome(short)
        await asyncio.sleep(0.1)  # time for another update, were there one
    assert seen.of(short) == [done]
    assert done.status == "done" and done.file is not None and done.file.rows == 3
    assert (done.seq, done.detached, done.worker) == (1, False, "w1")
    assert (seen.settings.files_path / done.file.key).stat().st_size == done.file.size


async def test_a_long_export_announces_itself_reports_progress_and_its_outcome(
    tmp_path: Path,
) -> None:
    async with bench(tmp_path) as seen:
        await seen.start_worker("w1")
        long = await seen.publish(task(8, pause=0.05))
        await seen.outcome(long)
    updates = seen.of(long)
    assert updates[0].status == "processing"
    assert updates[-1].status == "done"
    assert [u.seq for u in updates] == sorted({u.seq for u in updates})  # each once, in order
    rows = [u.progress.rows for u in updates if u.progress is not None]
    assert rows == sorted(rows) and rows[-1] == 8
    assert not any(update.detached for update in updates)


async def test_an_announced_run_says_uploading_as_soon_as_its_file_is_written(
    tmp_path: Path,
) -> None:
    """The slow storage takes half a second; progress is said only every second."""
    async with bench(tmp_path, progress_interval=1.0, storage="slow") as seen:
        await seen.start_worker("w1")
        long = await seen.publish(task(15, pause=0.1))
        uploading = await until(
            lambda: next((u for u in seen.of(long) if u.status == "uploading"), None)
        )
        written = uploading.at
        await seen.outcome(long)
    assert seen.statuses(long)[-2:] == ["uploading", "done"]
    done = seen.of(long)[-1]
    assert done.at is not None and written is not None
    # said when the file was written, not at the next tick: the storage's time before done
    assert (done.at - written).total_seconds() >= 0.4


async def test_a_storage_whose_server_is_down_is_tried_again_until_it_takes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(toy_plugins.FlakyStorage, "failures", 3)
    async with bench(tmp_path, storage="flaky") as seen:
        await seen.start_worker("w1")
        job = await seen.publish(task(3))
        done = await seen.outcome(job)
    assert toy_plugins.FlakyStorage.failures == 0
    assert done.status == "done"
    assert "failed" not in seen.statuses(job)
    assert done.file is not None
    assert (tmp_path / "files" / done.file.key).exists()
    assert partial_files(seen.settings) == []  # nothing left in the work area


async def test_a_storage_that_finds_the_key_taken_fails_the_run_at_once(tmp_path: Path) -> None:
    async with bench(tmp_path, storage="taken") as seen:
        await seen.start_worker("w1")
        job = await seen.publish(task(3))
        failed = await seen.outcome(job)
    assert failed.status == "failed"
    assert failed.error is not None and "FileExistsError" in failed.error.message


async def test_past_ack_deadline_the_task_is_acknowledged_and_its_updates_say_detached(
    tmp_path: Path,
) -> None:
    async with bench(tmp_path, ack_deadline=0.2) as seen:
        await seen.start_worker("w1")
        long = await seen.publish(task(10, pause=0.05))
        done = await seen.outcome(long)
        await seen.stop_worker("w1")
        await seen.start_worker("w2")  # the task is not delivered again
    detached = [update.detached for update in seen.of(long)]
    assert detached[0] is False and detached[-1] is True
    assert detached == sorted(detached)  # once detached, always
    assert done.status == "done"
    assert {update.worker for update in seen.of(long)} == {"w1"}


@pytest.mark.parametrize(
    "why", ["at the delivery limit", "after a lapse"], ids=["delivery-limit", "lapse"]
)
async def test_a_task_the_broker_cannot_watch_is_detached_at_once_and_run(
    tmp_path: Path, why: str
) -> None:
    async with bench(tmp_path, progress_interval=1.0) as seen:
        await seen.start_worker("w1")
        await seen.stop_worker("w1")
        watched = await seen.publish(task(3, lapses=1 if why == "after a lapse" else 0))
        if why == "at the delivery limit":
            await give_back(seen.bus, TASK_DELIVERY_LIMIT)
        await seen.start_worker("w2")
        done = await seen.outcome(watched)
    first, *_ = seen.of(watched)
    # announced at once, not after the progress interval, and the engine's lease has it
    assert (first.status, first.detached) == ("processing", True)
    assert done.status == "done" and done.detached
    if why == "at the delivery limit":
        assert first.seq > TASK_DELIVERY_LIMIT * SEQ_PER_DELIVERY


async def test_an_outcome_says_whether_its_run_took_the_tasks_first_delivery(
    tmp_path: Path,
) -> None:
    async with bench(tmp_path) as seen:
        await seen.start_worker("w1")
        first = await seen.outcome(await seen.publish(task(2)))
        await seen.stop_worker("w1")
        again = await seen.publish(task(2))
        await give_back(seen.bus, 1)  # a consumer took it and its connection dropped
        await seen.start_worker("w2")
        second = await seen.outcome(again)
    assert (first.status, first.first_delivery) == ("done", True)
    assert (second.status, second.first_delivery) == ("done", False)


async def test_a_shutdown_gives_a_task_back_to_its_queue_for_another_worker(
    tmp_path: Path,
) -> None:
    async with bench(tmp_path) as seen:
        await seen.start_worker("w1")
        long = await seen.publish(task(40, pause=0.05))
        await until(lambda: seen.of(long) or None)
        await seen.stop_worker("w1")  # its grace (0.1 s) ends well before the export
        assert "done" not in seen.statuses(long) and "canceled" not in seen.statuses(long)
        await seen.start_worker("w2")
        done = await seen.outcome(long)
    assert (done.status, done.worker) == ("done", "w2")
    assert done.seq > SEQ_PER_DELIVERY  # the task's second delivery
    assert not any(update.given_back for update in seen.of(long))
    assert partial_files(seen.settings) == []


async def test_a_shutdown_gives_a_detached_task_back_to_the_engine(tmp_path: Path) -> None:
    async with bench(tmp_path, ack_deadline=0.1) as seen:
        await seen.start_worker("w1")
        long = await seen.publish(task(40, pause=0.05))
        await until(lambda: [u for u in seen.of(long) if u.detached] or None)
        await seen.stop_worker("w1")
        last = seen.of(long)[-1]
        await seen.start_worker("w2")
        await asyncio.sleep(0.2)  # time for a delivery, were the task still queued
    assert (last.status, last.detached, last.given_back) == ("processing", True, True)
    assert seen.of(long)[-1] == last  # nobody runs it until the engine dispatches it again
    assert partial_files(seen.settings) == []


@dataclass(frozen=True)
class NoPiecesQueue(Topology):
    """A topology without the pieces queue: consuming it fails, as on a broker that
    refuses the queue."""

    def consumed_queues(self) -> tuple[QueueSpec, ...]:
        return tuple(spec for spec in super().consumed_queues() if spec.name != self.pieces)


async def test_a_worker_whose_start_fails_stops_what_started_and_raises(tmp_path: Path) -> None:
    """Its last consumer refused: its task consumer stops (a task goes to another
    consumer, not to it), its work area is closed and its pieces' threads shut down."""
    settings = Settings(home=str(tmp_path), worker=WorkerSettings(**QUICK))
    async with LocalBus(NoPiecesQueue()) as bus:
        worker = Worker(bus, Plugins(settings=settings, extra=[toy_plugins]), settings)
        with pytest.raises(BusError, match=r"no queue named 'exportd\.pieces'"):
            await worker.run(asyncio.Event())
        taken: list[Message] = []

        async def take(message: Message) -> None:
            taken.append(message)
            await message.ack()

        await bus.publish("", bus.topology.tasks, msgspec.json.encode(task()))
        other = await bus.consume(bus.topology.tasks, take, prefetch=1)
        await until(lambda: taken or None)
        await other.cancel()
    assert list(settings.work_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="after shutdown"):
        worker.piece_threads.submit(int)


async def test_a_task_whose_attempt_was_canceled_before_it_came_is_acknowledged_unrun(
    tmp_path: Path,
) -> None:
    async with bench(tmp_path) as seen:
        await seen.start_worker("w1")
        late = task(3)
        await seen.cancel(late)
        await seen.publish(late)
        after = await seen.publish(task(2))  # queued behind it, on the one worker
        await seen.outcome(after)
        await seen.stop_worker("w1")
        await seen.start_worker("w2")
    assert seen.of(late) == []


async def test_a_cancel_mid_export_stops_it_removes_its_file_and_reports_canceled(
    tmp_path: Path,
) -> None:
    async with bench(tmp_path) as seen:
        await seen.start_worker("w1")
        long = await seen.publish(task(100, pause=0.05))
        await until(lambda: seen.of(long) or None)
        await seen.cancel(long)
        canceled = await seen.outcome(long)
        after = await seen.publish(task(2))
        assert (await seen.outcome(after)).status == "done"  # the worker goes on
    assert canceled.status == "canceled" and canceled.file is None
    assert canceled.progress is not None and canceled.progress.rows < 100
    assert partial_files(seen.settings) == []
    assert not (seen.settings.files_path / long.job_id).exists()


async def test_a_plugin_that_raises_fails_the_part_naming_it_and_the_worker_goes_on(
    tmp_path: Path,
) -> None:
    async with bench(tmp_path) as seen:
        await seen.start_worker("w1")
        broken = await seen.publish(task(5, explode_at=2))
        failed = await seen.outcome(broken)
        after = await seen.publish(task(2))
        assert (await seen.outcome(after)).status == "done"
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "export_failed"
    assert "source 'count'" in failed.error.message and "boom at 2" in failed.error.message
    assert partial_files(seen.settings) == []


def test_a_worker_remembers_the_latest_keys_up_to_its_size() -> None:
    recent = Recent[str, int](2)
    recent.put("a", 1)
    recent.put("b", 2)
    recent.put("a", 3)  # the latest again: "b" is now the oldest
    recent.put("c", 4)
    assert ("a" in recent, "b" in recent, "c" in recent) == (True, False, True)
    assert (recent.get("a", -1), recent.get("b", -1)) == (3, -1)


async def test_a_late_cancel_of_an_earlier_attempt_leaves_a_later_attempt_ended(
    tmp_path: Path,
) -> None:
    async with bench(tmp_path) as seen:
        await seen.start_worker("w1")
        second = msgspec.structs.replace(task(3), attempt=2)
        await seen.cancel(second)
        await seen.cancel(msgspec.structs.replace(second, attempt=1))
        await seen.publish(second)
        after = await seen.publish(task(2))  # queued behind it, on the one worker
        await seen.outcome(after)
    assert seen.of(second) == []
