"""A worker: takes export tasks from the bus, runs each in a thread, reports as it goes.

Workers are stateless and may run on any number of hosts.  For each task a
worker publishes ``processing`` once the export has run a ``progress_interval``
(then progress at most once a ``progress_interval``, and a heartbeat at least
once a ``heartbeat_interval``), ``uploading`` while the storage takes the file,
and ``done`` with the file's description or ``failed`` with the error.  An
export that ends within its first ``progress_interval`` reports only its
outcome: most exports are small, and two updates (and two public events) fewer
per job is a third of the messages the job costs.  It acknowledges the task only after
its final update is confirmed by the broker (it sends that one until it is), so a
worker killed outright loses nothing: the broker delivers the task again.

A task may come more than once: published twice, or delivered again because its
acknowledgement was lost or its worker's connection dropped while the export ran on.
Each run stores its file under a key of its own (:func:`run_key`), so that no run
replaces another's file; the engine keeps the first one it hears of.  A delivery of a
task this worker is running already is taken by that run (it settles both), not run
twice; one whose attempt is over (the engine's cancel signal says so, for a job done
too) or whose outcome this worker reported is acknowledged without running.

A task that runs longer than ``ack_deadline`` is acknowledged early (RabbitMQ
would otherwise close the channel at its ``consumer_timeout`` and deliver the
task twice); its updates then say ``detached`` and the engine re-dispatches the
part if they stop coming (a lapse: see :mod:`exportd.engine.lifecycle`).  Two kinds
of task are acknowledged at once and run detached from the start: one that comes at
its queue's delivery limit, since RabbitMQ counts every connection drop as a delivery
and so cannot tell a task that crashes its workers from a long one whose workers lost
the broker for a moment (the engine's lease counts only runs that fell silent), and
one that the engine dispatched after a lapse.  A detached run stopped by a shutdown
says it gives its part back, and the engine dispatches it again at once.

A worker says every ``heartbeat_interval`` that it is alive, what it can export and what
it runs, and says goodbye when it shuts down (:mod:`exportd.workers.heartbeats`).

The handlers of the task queue and of the cancel signals, the worker's heartbeats, and
each task's reporter (progress, heartbeats, the early acknowledgement), go on through
any :class:`Exception`, logging it once per streak and backing off
(:mod:`exportd.supervision`); a reporter that ends anyway ends :meth:`Worker.run`
with :class:`~exportd.supervision.LoopEnded`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Generic, TypeVar

import msgspec

from exportd.bus.base import Bus, BusError, Handler, Message, Subscription
from exportd.bus.topology import TASK_DELIVERY_LIMIT
from exportd.config import Settings
from exportd.errors import Cancelled, ErrorBody, ExportError, Unavailable
from exportd.kernel.datastores import data_store
from exportd.kernel.pipeline import Written, run_export
from exportd.kernel.plan import plan_task
from exportd.kernel.workarea import WorkArea
from exportd.logs.context import job_context
from exportd.messages import (
    CancelSignal,
    ExportTask,
    FileInfo,
    PieceTask,
    Progress,
    RunningTask,
    StatusUpdate,
    UpdateStatus,
)
from exportd.metrics.process import ProcessMetrics
from exportd.plugins.api import PASSING_FAILURES, Storage
from exportd.plugins.manager import Plugins
from exportd.supervision import Backoff, Guard, Loops, guarded
from exportd.workers.heartbeats import Heartbeats
from exportd.workers.metrics import WorkerMetrics
from exportd.workers.pieces import JoiningRun, PieceRun

log = logging.getLogger(__name__)


def try_storing(storage: Storage, key: str, path: Path, sha256: str) -> Exception | None:
    """Hand the file at ``path`` to ``storage`` under ``key``: ``None`` once it took it,
    or the passing failure (:data:`~exportd.plugins.api.PASSING_FAILURES`) it raised;
    anything else is raised."""
    try:
        storage.store_checked(key, path, sha256)
    except PASSING_FAILURES as exc:
        return exc
    return None


REMEMBERED_CANCELS = 1000
REMEMBERED_OUTCOMES = 1000
SEQ_PER_DELIVERY = 1_000_000
"""Updates of a later delivery of a task must sort after those of earlier ones."""
OUTCOME_BACKOFF = Backoff(first=0.2, cap=5.0)
"""The waits between tries at sending a run's outcome that the broker did not confirm:
capped low, since the job waits on it once the broker is back."""
STORE_BACKOFF = Backoff(first=0.5, cap=30.0)
"""The waits between tries at handing a file to a storage that failed (its server down)."""

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
M = TypeVar("M", ExportTask, PieceTask)

PartRef = tuple[str, int, int]
"""A part of one attempt of a job: (job id, attempt, part)."""


def run_key(task_key: str, run: str) -> str:
    """Where one run of a task stores its file: the task's key with the run's own folder
    before the file's name, so that no two runs of a task write the same key."""
    folder, _, name = task_key.rpartition("/")
    return f"{folder}/{run}/{name}" if folder else f"{run}/{name}"


def part_of(task: ExportTask) -> PartRef:
    """The part of an attempt that ``task`` exports."""
    return (task.job_id, task.attempt, task.part)


class Recent(Generic[K, V]):
    """The last ``size`` keys put, each with its value: what a worker remembers of the
    engine's signals and of its own outcomes, looked up in constant time."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def put(self, key: K, value: V) -> None:
        """Remember ``key`` (as the latest) with ``value``, forgetting the oldest beyond
        the size."""
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def get(self, key: K, default: V) -> V:
        """The value of ``key``, or ``default`` if it is not remembered."""
        return self._items.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._items


class Worker:
    """Consumes ``exportd.tasks`` and runs up to ``worker.concurrency`` exports at once.

    Its tasks' reporters run in ``loops`` (its own, or those of the engine it runs beside);
    its metrics go to ``metrics``, the process's (a registry of its own if not given).
    """

    def __init__(
        self,
        bus: Bus,
        plugins: Plugins,
        settings: Settings,
        *,
        name: str | None = None,
        loops: Loops | None = None,
        metrics: ProcessMetrics | None = None,
    ) -> None:
        self.bus = bus
        self.plugins = plugins
        self.settings = settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.storage = plugins.storage(settings.storage)
        self.work_area = WorkArea(settings.work_path)
        # One run per part: a task delivered again while its run goes on (the broker took it
        # back when the channel dropped) is taken by that run (TaskRun.take).
        self._running: set[TaskRun] = set()
        self._pieces: set[PieceRun] = set()
        self.piece_threads = ThreadPoolExecutor(
            settings.worker.concurrency, thread_name_prefix="exportd-piece-run"
        )
        """The threads of pieces of other runs' files (as many as the prefetch of pieces):
        never those that runs of tasks, which may wait for pieces, hold."""
        self._cancelled = Recent[str, int](REMEMBERED_CANCELS)
        """The latest attempt of each job the engine ended, by job."""
        self._reported = Recent[PartRef, None](REMEMBERED_OUTCOMES)
        self.loops = loops or Loops()
        self.metrics = (metrics or ProcessMetrics()).part(WorkerMetrics)
        self.taking = False
        """Whether its consumers started (``shutting_down`` says when they stop)."""
        self.shutting_down = False
        self.heartbeats = Heartbeats(
            bus,
            plugins,
            name=self.name,
            concurrency=settings.worker.concurrency,
            interval=settings.worker.heartbeat_interval,
            running=self.running_tasks,
        )

    def running_tasks(self) -> list[RunningTask]:
        """The parts this worker is exporting now, by job and part."""
        parts = sorted(part_of(run.task) for run in self._running)
        return [RunningTask(job_id=job, part=part, attempt=attempt) for job, attempt, part in parts]

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then shut down gracefully (see :meth:`shutdown`).
        Raises :class:`~exportd.supervision.LoopEnded` (once shut down) if a reporter ended
        on its own.  A start that fails (the broker refuses a queue) raises too, once what
        had started is stopped and closed."""
        # Unwound last in, first out: the shutdown first, the work area last.
        async with contextlib.AsyncExitStack() as started:
            self.work_area.open()
            started.callback(self.work_area.close)
            started.callback(self.piece_threads.shutdown)
            topology = self.bus.topology
            cancels = await self._started(
                started,
                self.bus.subscribe(
                    topology.cancel, "", guarded("the handler of cancel signals", self._on_cancel)
                ),
            )
            tasks = await self._consuming(started, topology.tasks, self._on_task)
            pieces = await self._consuming(started, topology.pieces, self._on_piece)
            # Whatever the shutdown raises, the engine hears the worker is gone.
            started.push_async_callback(self.heartbeats.say_goodbye)
            beating = self.loops.keep_running(
                f"the heartbeats of worker {self.name}", self.heartbeats.beat
            )
            started.push_async_callback(self.loops.stop, beating)
            started.push_async_callback(self.shutdown, tasks, cancels, pieces)
            self.taking = True
            log.info("worker %s taking tasks", self.name)
            await self.loops.wait(stop)

    async def _consuming(
        self,
        stack: contextlib.AsyncExitStack,
        queue: str,
        handler: Handler,
    ) -> Subscription:
        """A consumer of ``queue`` (``worker.concurrency`` at a time) whose messages go to
        ``handler`` under :func:`guarded`, stopped as ``stack`` unwinds."""
        consuming = self.bus.consume(
            queue,
            guarded(f"the handler of {queue}", handler),
            prefetch=self.settings.worker.concurrency,
        )
        return await self._started(stack, consuming)

    async def _started(
        self, stack: contextlib.AsyncExitStack, starting: Awaitable[Subscription]
    ) -> Subscription:
        """The subscription ``starting`` gives, to be stopped as ``stack`` unwinds (see
        :meth:`_left`)."""
        subscription = await starting
        stack.push_async_callback(self._left, subscription)
        return subscription

    async def _left(self, subscription: Subscription) -> None:
        """Stop ``subscription``, and the runs its handler began (their tasks go back to
        the queue, their pieces to their joining runs): after a start that failed, before
        the graceful :meth:`shutdown` could run.  After the shutdown, nothing is left."""
        self.shutting_down = True
        for run in self._runs():
            run.stop()
        await subscription.stop()

    def _runs(self) -> list[TaskRun | PieceRun]:
        """The runs of tasks and of pieces going on now."""
        return [*self._running, *self._pieces]

    async def shutdown(
        self, tasks: Subscription, cancels: Subscription, pieces: Subscription
    ) -> None:
        """Take no new task; let running ones finish within ``shutdown_grace``, then
        stop them and give them back to the queue for another worker.  Pieces stop at
        once: their joining runs write them."""
        self.shutting_down = True
        await tasks.cancel()
        await pieces.cancel()
        for piece in self._pieces:
            piece.stop()
        running = [run.done for run in self._running]
        if running:
            log.info("worker %s finishing %d task(s)", self.name, len(running))
            _, late = await asyncio.wait(running, timeout=self.settings.worker.shutdown_grace)
            for run in self._running:
                run.stop()
            if late:
                await asyncio.wait(late)
        await pieces.stop()  # the pieces' runs, stopped above, end
        await cancels.cancel()

    def health(self) -> str | None:
        """Why the worker is not live (for ``/healthz`` on its metrics listener), or
        ``None`` while its consumers run and none of its loops ended.  That the answer
        comes at all says its event loop turns."""
        if self.loops.ended is not None:
            return str(self.loops.ended)
        if self.shutting_down:
            return "shutting down"
        if not self.taking:
            return "not taking tasks yet"
        return None

    async def _on_cancel(self, message: Message) -> None:
        """Have the runs of the signalled job stop.  Any :class:`Exception` gives the
        signal back to its queue after a back-off."""
        try:
            signal = msgspec.json.decode(message.body, type=CancelSignal)
        except msgspec.DecodeError:
            log.warning("worker %s dropped a malformed cancel signal", self.name)
        else:
            ended = self._cancelled.get(signal.job_id, signal.attempt)
            self._cancelled.put(signal.job_id, max(signal.attempt, ended))
            for run in self._runs():
                if run.task.job_id == signal.job_id and run.task.attempt <= signal.attempt:
                    run.stop()
        await message.ack()

    async def _on_piece(self, message: Message) -> None:
        """Write a piece of another run's file (see :mod:`exportd.workers.pieces`).  One that
        cannot be read is dead-lettered; one whose attempt is over is acknowledged
        unwritten; any failure of the piece is told to its joining run."""
        piece = await self._read(message, PieceTask, "piece")
        if piece is None:
            return
        with job_context(piece.task.job_id, piece.task.part, piece.task.attempt):
            await self._run_piece(piece, message)

    async def _run_piece(self, piece: PieceTask, message: Message) -> None:
        """:meth:`_on_piece` for a piece that could be read."""
        if self.shutting_down:  # for another worker
            await message.reject(requeue=True)
            return
        if self._over(piece.task):
            await message.ack()
            return
        run = PieceRun(self, piece, message)
        self._pieces.add(run)
        try:
            await run.execute()
        finally:
            self._pieces.discard(run)

    async def _on_task(self, message: Message) -> None:
        """Run a task and report it.  An :class:`Exception` from the export fails the task;
        any other (its final update not confirmed) gives the task back to its queue after
        a back-off, unless it was acknowledged early."""
        task = await self._read(message, ExportTask, "task")
        if task is None:
            return
        with job_context(task.job_id, task.part, task.attempt):
            await self._run_task(task, message)

    async def _run_task(self, task: ExportTask, message: Message) -> None:
        """:meth:`_on_task` for a task that could be read."""
        if self._over(task):
            log.info(
                "worker %s acknowledges task %s part %d unrun: its attempt or part is over",
                *(self.name, task.job_id, task.part),
            )
            with contextlib.suppress(BusError):  # its channel dropped: it comes again
                await message.ack()
            return
        live = next((run for run in self._running if part_of(run.task) == part_of(task)), None)
        if live is not None:  # delivered again while its run goes on (the channel dropped)
            await live.take(message)
            return
        run = TaskRun(self, task, message)
        self._running.add(run)
        in_progress = self.metrics.tasks_in_progress.labels(self.name)
        in_progress.inc()
        try:
            await run.execute()
        finally:
            in_progress.dec()
            self._running.discard(run)
            run.done.set_result(None)

    async def _read(self, message: Message, kind: type[M], what: str) -> M | None:
        """The ``kind`` of message that ``message`` holds, or ``None`` once it is
        dead-lettered as malformed."""
        try:
            return msgspec.json.decode(message.body, type=kind)
        except msgspec.DecodeError as exc:
            log.error("worker %s dead-letters a malformed %s: %s", self.name, what, exc)
            await message.dead_letter(f"malformed {what}: {exc}")
            self.metrics.process.dead_lettered.labels(message.routing_key).inc()
            return None

    def reported(self, task: ExportTask) -> None:
        """The outcome of ``task``'s part is confirmed sent: no delivery of it needs a run."""
        self._reported.put(part_of(task), None)

    def _over(self, task: ExportTask) -> bool:
        """Whether ``task`` needs no run: the engine ended its attempt (or a later one), or
        this worker reported the outcome of its part."""
        ended = self._cancelled.get(task.job_id, -1)
        return part_of(task) in self._reported or ended >= task.attempt


class TaskRun:
    """One delivery of one task: the export, its updates and the settling of the message.

    The export runs in a thread of its own and reads only :attr:`cancel`.  How far it got
    it leaves where the reporter reads it at its next tick (one reference assigned: the
    loop is not woken for it); that its file is written it tells the event loop
    (``call_soon_threadsafe``), whose reporter may say ``uploading`` at once.
    On the loop, while the export runs, the run's reporter (:meth:`_report`) is the one
    that says anything: the announcement, progress, heartbeats, ``uploading`` and the
    early acknowledgement.  Once the export ends, :meth:`execute` stops the reporter and
    sends the outcome.
    """

    def __init__(self, worker: Worker, task: ExportTask, message: Message) -> None:
        self.worker = worker
        self.task = task
        self.message = message
        self.taken: list[Message] = []
        """Later deliveries of the task, taken while this run went on: settled with it."""
        self.delivered_again = False
        """Whether a later delivery of the task came (to :meth:`take`): the broker took it
        back once, and may have given it to another worker too."""
        self.run = f"{message.delivery_count}-{uuid.uuid4().hex[:8]}"
        """This run's name, in the key its file is stored under."""
        self.cancel = threading.Event()
        """Set to stop the export before its next batch (a cancel signal, a shutdown)."""
        self.detached = False
        self.detach_at_once = task.lapses > 0 or message.delivery_count >= TASK_DELIVERY_LIMIT
        """The engine's lease, not the broker, is to watch this run from its start."""
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq = message.delivery_count * SEQ_PER_DELIVERY
        # What the export told the loop.
        self._progress = Progress()
        self._written = False
        self._file_news = asyncio.Event()
        self._may_start = asyncio.Event()
        """Set once the engine watches the run (its detach confirmed), or the run is to stop:
        a run detached at once starts its export only then."""
        self._detaching: asyncio.Future[None] | None = None
        # What the reporter said: whether it announced the run, and its last update.
        self._announced = False
        self._reported: UpdateStatus = "processing"
        self._reported_progress = Progress()
        self._started = self._last_sent = time.monotonic()
        first_turn = 0.0 if self.detach_at_once else worker.settings.worker.progress_interval
        self._next_turn = self._started + first_turn

    async def execute(self) -> None:
        """Run the export and report it; settle the message once the outcome is confirmed."""
        task = self.task
        loops = self.worker.loops
        log.info(
            "worker %s runs task %s part %d of attempt %d (run %s)",
            *(self.worker.name, task.job_id, task.part, task.attempt, self.run),
        )
        if self.detach_at_once:
            log.info(
                "task %s part %d (delivery %d, %d lapse(s)) runs under the engine's lease",
                *(task.job_id, task.part, self.message.delivery_count + 1, task.lapses),
            )
        reporter = loops.keep_running(
            f"the reporter of task {task.job_id}/{task.part}", self._report
        )
        file: FileInfo | None = None
        error: ErrorBody | None = None
        given_back = False
        try:
            if self.detach_at_once:
                await self._may_start.wait()
            file = await self._export_while_the_data_answers()
        except Cancelled:
            given_back = self.worker.shutting_down
        except ExportError as exc:
            error = exc.body()
        except Exception as exc:
            log.exception("task %s part %s failed", self.task.job_id, self.task.part)
            error = ErrorBody("internal_error", f"the worker failed: {type(exc).__name__}: {exc}")
        finally:
            await loops.stop(reporter)
            if self._detaching is not None:  # a detach under way ends first: it settles
                await asyncio.gather(self._detaching, return_exceptions=True)
        if given_back:
            await self._give_back()
            return
        status: UpdateStatus = "done" if file else "failed" if error else "canceled"
        await self._send_outcome(status, file=file, error=error)
        self.worker.metrics.ran(task, status, time.monotonic() - self._started, file)
        log.info(
            "worker %s ran task %s part %d: %s (run %s)",
            *(self.worker.name, task.job_id, task.part, status, self.run),
        )
        self.worker.reported(self.task)
        await self._ack(self.taken if self.detached else [self.message, *self.taken])

    def stop(self) -> None:
        """Have the export stop before its next batch (a cancel signal, a shutdown)."""
        self.cancel.set()
        self._may_start.set()

    async def take(self, message: Message) -> None:
        """Take a later delivery of this run's task: settled as this run settles its own
        (at once if it is detached: the engine, not the broker, watches it now)."""
        log.info(
            "worker %s: task %s part %d delivered again (%d) while its run goes on: taken",
            *(self.worker.name, self.task.job_id, self.task.part, message.delivery_count),
        )
        self.delivered_again = True
        if self.detached:
            await message.ack()
        else:
            self.taken.append(message)

    async def _ack(self, messages: list[Message]) -> None:
        """Acknowledge deliveries of the task.  One whose channel dropped cannot be: the
        broker delivers it again, to this worker (which knows it is over) or another."""
        for message in messages:
            try:
                await message.ack()
            except BusError as exc:
                log.warning("task %s not acknowledged: %s", self.task.job_id, exc)

    async def _send_outcome(
        self, status: UpdateStatus, *, file: FileInfo | None, error: ErrorBody | None
    ) -> None:
        """Send the run's final update until the broker confirms it (a broker restart
        outlasts the confirm timeout), backing off between tries, or until the worker shuts
        down (then :class:`BusError`: the task goes back to its queue)."""
        update = self._update(status, file=file, error=error)
        task = self.task
        guard = Guard(f"the outcome of task {task.job_id}/{task.part}", OUTCOME_BACKOFF)
        while not await guard.run(partial(self._deliver, update)):
            if self.worker.shutting_down:
                raise BusError(f"the outcome of task {task.job_id} is not confirmed: shutting down")

    async def _give_back(self) -> None:
        """Stopped by a shutdown (the reporter stopped first): the broker (or, once detached,
        the engine, told so) hands the task to another worker."""
        if self.detached:
            try:
                await self._deliver(self._update(self._status_now(), given_back=True))
            except BusError as exc:  # the part lapses instead, once the lease runs out
                log.warning("task %s not given back: %s", self.task.job_id, exc)
            return
        for message in [self.message, *self.taken]:
            with contextlib.suppress(BusError):  # its channel dropped: requeued already
                await message.reject(requeue=True)

    async def _export_while_the_data_answers(self) -> FileInfo:
        """Run the export; one that loses its data store (:class:`Unavailable`: the server
        down or restarting) starts again from its first row once the store answers,
        backing off between tries, as a storage that fails is tried again: the job says
        ``processing`` and the reporter keeps it alive meanwhile."""
        return await self._until_it_works(
            "the data store", self._export, (Unavailable,), "its data store was away"
        )

    async def _export(self) -> FileInfo:
        """Plan and write the file, then hand it to the storage, in one thread hop; a
        storage that fails (its server down) is tried again until it takes the file."""
        worker, task = self.worker, self.task
        name = task.file_name or task.key.rsplit("/", 1)[-1]  # (from an older engine)
        key = run_key(task.key, self.run)
        path = worker.work_area.new_path(name)
        loop = asyncio.get_running_loop()
        join = None
        if worker.settings.worker.pieces > 1:
            join = JoiningRun(worker, task, key, loop, self.cancel.is_set)

        def write_and_store() -> tuple[Written, Exception | None]:
            plan = plan_task(task, worker.plugins, data_store(worker.settings), worker=worker.name)
            failure: Exception | None = None
            try:
                written = run_export(
                    plan,
                    path,
                    batch_size=worker.settings.batch_size,
                    slices=worker.settings.read_slices,
                    on_progress=self._progressed,
                    cancelled=self.cancel.is_set,
                    part=task.part,
                    part_count=task.part_count,
                    join=join,
                )
                loop.call_soon_threadsafe(self._file_written)
                failure = try_storing(worker.storage, key, path, written.sha256)
                return written, failure
            finally:
                if failure is None:
                    path.unlink(missing_ok=True)  # the storage moved it, or it is no use

        written, failure = await asyncio.to_thread(write_and_store)
        if failure is not None:
            try:
                await self._store_again(key, path, written.sha256, failure)
            finally:
                path.unlink(missing_ok=True)
        return written.file(key=key, name=name)

    async def _store_again(self, key: str, path: Path, sha256: str, failure: Exception) -> None:
        """Hand the file to the storage until it takes it (the job says ``uploading`` and
        the reporter keeps it alive meanwhile), backing off between tries: a storage's
        server that is down loses no job.  A cancel or a shutdown stops the tries
        (:class:`Cancelled`: a shutdown gives the task back, for another worker)."""
        storage, task = self.worker.storage, self.task
        log.warning(
            "task %s part %d: the %s storage failed (%s: %s); trying again",
            *(task.job_id, task.part, storage.name, type(failure).__name__, failure),
        )
        await self._until_it_works(
            f"the {storage.name} storage",
            partial(asyncio.to_thread, storage.store_checked, key, path, sha256),
            PASSING_FAILURES,
            "storing its file",
        )

    async def _until_it_works(
        self,
        what: str,
        attempt: Callable[[], Awaitable[T]],
        passing: tuple[type[Exception], ...],
        doing: str,
    ) -> T:
        """What ``attempt()`` returns, trying again under a :class:`Guard` named after
        ``what``, backing off (:data:`STORE_BACKOFF`), for as long as it raises one of
        ``passing`` (its server down).  A cancel or a shutdown stops the tries
        (:class:`Cancelled`, saying the task stopped while ``doing``); any other
        exception ends them, raised."""
        task = self.task
        guard = Guard(f"{what} (task {task.job_id}/{task.part})", STORE_BACKOFF)
        outcome: list[T | Exception] = []

        def stopped() -> bool:
            if self.cancel.is_set():
                outcome.append(Cancelled(f"task {task.job_id} stopped while {doing}"))
            return self.cancel.is_set()

        async def step() -> None:
            if stopped():
                return
            try:
                outcome.append(await attempt())
            except passing:
                if not stopped():
                    raise  # the guard logs it, backs off, and has it tried again
            except Exception as exc:  # not worth another try
                outcome.append(exc)

        while not await guard.run(step):
            pass
        if isinstance(outcome[0], Exception):
            raise outcome[0]
        return outcome[0]

    def _progressed(self, progress: Progress) -> None:
        """News from the export's thread (called in it): how far it got."""
        self._progress = progress

    def _file_written(self) -> None:
        """News from the export's thread: its file is written, the storage takes it now."""
        self._written = True
        self._file_news.set()

    def _status_now(self) -> UpdateStatus:
        """What the export is at: writing the file, or handing it to the storage."""
        return "uploading" if self._written else "processing"

    async def _report(self) -> None:
        """One turn of the reporter: wait for its next tick, or for the file written (an
        announced run says ``uploading`` at once), then say what is due.

        Any :class:`Exception` (an update not confirmed) ends the turn; the reporter logs
        it, backs off and takes the next (:func:`~exportd.supervision.keep_running`):
        one update lost is no reason to stop the heartbeat.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, self._next_turn - time.monotonic())):
                await self._file_news.wait()
        self._file_news.clear()
        now = time.monotonic()
        if now < self._next_turn:  # the file is written
            if self._announced and self._reported != "uploading":
                await self._send("uploading")
            return
        self._next_turn = now + self.worker.settings.worker.progress_interval
        await self._tick(now)

    async def _tick(self, now: float) -> None:
        """Announce the run, then publish progress when it moved and a heartbeat when it did
        not; detach when due (``ack_deadline`` passed, or at once: see the module docstring)."""
        settings = self.worker.settings.worker
        due_heartbeat = now - self._last_sent >= settings.heartbeat_interval
        due_detach = not self.detached and (
            self.detach_at_once or now - self._started >= settings.ack_deadline
        )
        moved = self._progress != self._reported_progress or self._status_now() != self._reported
        if not self._announced or moved or due_heartbeat or due_detach:
            self._last_sent = now
            if due_detach:
                # Shielded: execute() stops the reporter when the export ends, and waits
                # for a detach under way, which must not stop half-way.
                self._detaching = asyncio.ensure_future(self._detach())
                await asyncio.shield(self._detaching)
            else:
                await self._send(self._status_now())

    async def _detach(self) -> None:
        """Say the task is detached, then acknowledge it (see the module docstring); if the
        broker does not confirm the update, the next tick tries again.

        Once it is confirmed the engine's lease watches the run, whatever becomes of the
        acknowledgement: a delivery whose channel dropped goes back to its queue, and is
        dead-lettered at its limit or taken by a run that loses to this one.
        """
        self.detached = True
        try:
            await self._send(self._status_now())
        except BusError:
            self.detached = False
            raise
        await self._ack([self.message, *self.taken])
        self.taken.clear()
        self._may_start.set()  # after the ack: a run that kills its worker leaves none

    async def _send(
        self, status: UpdateStatus, *, file: FileInfo | None = None, error: ErrorBody | None = None
    ) -> None:
        """Send an update and wait for the broker's confirm."""
        await self._deliver(self._update(status, file=file, error=error))

    def _update(
        self,
        status: UpdateStatus,
        *,
        file: FileInfo | None = None,
        error: ErrorBody | None = None,
        given_back: bool = False,
    ) -> StatusUpdate:
        self._seq += 1
        self._reported, self._reported_progress = status, self._progress
        self._announced = True
        return StatusUpdate(
            job_id=self.task.job_id,
            part=self.task.part,
            attempt=self.task.attempt,
            seq=self._seq,
            status=status,
            progress=self._reported_progress,
            file=file,
            error=error,
            worker=self.worker.name,
            at=datetime.now(UTC),
            detached=self.detached,
            given_back=given_back,
            first_delivery=(
                self.message.delivery_count == 0
                and not self.message.redelivered
                and not self.delivered_again
            ),
        )

    async def _deliver(self, update: StatusUpdate) -> None:
        """Publish ``update`` to the status queue and wait for the broker's confirm."""
        bus = self.worker.bus
        await bus.publish("", bus.topology.status, msgspec.json.encode(update))
