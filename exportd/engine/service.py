"""The engine: accepts requests, records jobs, dispatches tasks, follows workers, announces.

It is the only writer of the job store.  Requests come from the request queue
(each answered on its ``reply_to``) or from the Python API (:meth:`Engine.submit`
and friends, which the CLI and the HTTP API use).  Every change of a job is
written to the store together with the messages it implies (tasks, cancel
signals, the public event); a relay publishes those with confirms and deletes
them only then, so none is lost when the engine or the broker restarts.
Progress within a status is announced at most once a second per job, directly.
A sweeper expires finished jobs and makes the parts whose early-acknowledged task
fell silent lapse: dispatched again, or failed at ``engine.lapses``.
The workers' heartbeats keep :attr:`Engine.workers` (see
:mod:`exportd.engine.worker_registry`): a job that no live worker can run is logged as a
warning when it is dispatched, and says so in its error if it fails.

The relay, the sweeper, the handlers of the three queues and that of heartbeats go
on through any :class:`Exception` (the broker gone, the job store locked or full),
logging it once per streak and backing off (:mod:`exportd.supervision`); a loop that ends
anyway fails :meth:`Engine.ready` and ends :meth:`Engine.run` with
:class:`~exportd.supervision.LoopEnded`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import msgspec

from exportd.bus.base import Bus, BusError, Message, Subscription
from exportd.bus.topology import DEFAULT_EXCHANGE, event_routing_key
from exportd.config import Settings
from exportd.engine.batching import Batcher
from exportd.engine.lifecycle import Change, Dropped
from exportd.engine.metrics import EngineMetrics
from exportd.engine.readers import StoreReaders
from exportd.engine.store import JobPage, JobQuery, JobStore, NewPart, OutboxRow
from exportd.engine.throttle import Throttle
from exportd.engine.worker_registry import WorkerRegistry
from exportd.errors import (
    ErrorBody,
    ExportError,
    InternalError,
    InvalidRequest,
    Unavailable,
    error_line,
)
from exportd.kernel.datastores import data_store
from exportd.kernel.plan import plan_export
from exportd.kernel.validation import decode_json
from exportd.logs.context import job_context
from exportd.messages import (
    ExportRequest,
    JobCommand,
    JobEvent,
    JobSnapshot,
    RequestReply,
    StatusUpdate,
    WorkerHeartbeat,
    WorkerSnapshot,
)
from exportd.metrics.process import ProcessMetrics
from exportd.plugins.manager import Plugins
from exportd.supervision import Loops, guarded

log = logging.getLogger(__name__)
T = TypeVar("T")

OUTBOX_BATCH = 200
OUTBOX_POLL = 1.0
"""Seconds between two looks at the outbox when nothing woke the relay."""
PROGRESS_EVENT_INTERVAL = 1.0
RETENTION_BATCH = 500
"""Jobs the sweep removes in one transaction of the job store: a long backlog is removed
in many short ones, other writes going between them."""


def now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


DEAD_LETTERED_COMMANDS = frozenset({InvalidRequest.code, InternalError.code})
"""The errors of a command that is malformed or failed on exportd's side, which the
control queue dead-letters; a command refused on its merits is only answered."""


def refusal(exc: Exception, what: str) -> ErrorBody:
    """The error that refuses a request or command (``what``) for ``exc``: exportd's own
    error as it is; anything else is a failure on exportd's side, logged with its
    traceback and answered without it."""
    if isinstance(exc, ExportError):
        return exc.body()
    log.error("a %s failed; refused as an internal error", what, exc_info=exc)
    return InternalError(f"exportd failed to handle this {what}; see its log").body()


class Engine:
    """exportd's engine over a bus, with its job store under ``settings.home``.

    ``loops`` holds the engine's background loops while it runs, and those of whatever
    runs beside it in the process (the delivery service, the workers of the embedded
    mode): one that ends makes the engine unready and ends :meth:`run`.

    Its metrics go to ``metrics``, the process's (a registry of its own if not given).
    """

    def __init__(
        self,
        bus: Bus,
        plugins: Plugins,
        settings: Settings,
        *,
        metrics: ProcessMetrics | None = None,
    ) -> None:
        self.bus = bus
        self.plugins = plugins
        self.settings = settings
        self.storage = plugins.storage(settings.storage)
        self.store = JobStore(settings.jobs_path, bus.topology)
        self.readers = StoreReaders(settings.jobs_path, bus.topology)
        # Reads go to the readers' threads, everything else to the store's one thread: a
        # call that waits for the store's lock (up to its busy timeout) must not stop the
        # event loop, and with it replies, confirms and HTTP.
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="exportd job store")
        self._lifetime = timedelta(seconds=settings.engine.file_lifetime)
        self._outbox_ready = asyncio.Event()
        self._claimed: set[int] = set()
        """Outbox rows being published: touched in the store's thread only, so that a row
        taken by one publisher (a change's own, the relay) is not taken by the other."""
        self._updates: Batcher[StatusUpdate, Change | Dropped] = Batcher(self._apply_updates)
        self._progress_events: Throttle[str] = Throttle(PROGRESS_EVENT_INTERVAL)
        self.workers = WorkerRegistry(
            timeout=settings.engine.worker_timeout,
            settle=settings.worker.heartbeat_interval,
            started=now(),
        )
        """The workers heard from: :meth:`live_workers` counts the live ones."""
        self.loops = Loops()
        self._running = asyncio.Event()
        self.on_removed: list[Callable[[list[str]], None]] = []
        """Called on the event loop with the ids of each batch of jobs the sweep removed
        (``engine.job_retention``), for what keeps records of jobs elsewhere (the
        delivery ledger) to forget them."""
        self.metrics = (metrics or ProcessMetrics()).part(EngineMetrics)
        self.metrics.process.on_scrape(self._refresh_metrics)

    # -- the Python API -------------------------------------------------------------------

    async def submit(self, request: ExportRequest) -> JobSnapshot:
        """Validate ``request``, record the job and queue its tasks; the new job (or, for a
        repeated idempotency key, the existing one)."""
        parts = await asyncio.to_thread(self._plan_parts, request)
        moment = now()
        job = await self._written(partial(self.store.create, request, parts, now=moment))
        if job.created_at == moment:  # not the earlier job of a repeated idempotency key
            self.metrics.created(job)
            self._warn_if_no_worker(job)
        return job

    def list_workers(self) -> list[WorkerSnapshot]:
        """Every worker heard from, live or lost, by name."""
        return self.workers.snapshot(now())

    def live_workers(self) -> int:
        """How many workers are live now (heard from within ``engine.worker_timeout``)."""
        return self.workers.live_count(now())

    def _warn_if_no_worker(self, job: JobSnapshot) -> None:
        """Log a warning when no live worker can run ``job``'s export (once the engine has
        run a heartbeat interval: before, it may not have heard from every worker)."""
        if job.status != "created":
            return
        request = job.request
        reason = self.workers.capabilities(now()).missing(request.source, request.format)
        if reason is not None:
            self.metrics.jobs_without_worker.labels(request.source, request.format).inc()
            log.warning("job %s (%s to %s): %s", job.id, request.source, request.format, reason)

    @property
    def running(self) -> bool:
        """Whether :meth:`run` serves: its consumers are on and its loops run."""
        return self._running.is_set()

    async def until_running(self, run: asyncio.Task[None]) -> None:
        """Wait until ``run``, the task of :meth:`run`, serves; if it ends first, raise
        what it raised."""
        serving = asyncio.create_task(self._running.wait())
        try:
            await asyncio.wait({serving, run}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            serving.cancel()
        if not self.running:
            run.result()

    async def ready(self) -> None:
        """Raise :class:`Unavailable` unless the engine runs, none of its loops ended, and
        its job store answers."""
        self.loops.check()
        if not self.running:
            raise Unavailable("the engine is not running")
        await self._stored(self.store.ping)

    async def get(self, job_id: str, org_id: str | None = None) -> JobSnapshot:
        """The job ``job_id`` (of ``org_id``, if given), read off the event loop."""
        return await self.readers.read(lambda store: store.get(job_id, org_id))

    async def get_by_number(self, number: int, org_id: str | None = None) -> JobSnapshot:
        """The job whose number is ``number`` (of ``org_id``, if given)."""
        return await self.readers.read(lambda store: store.get_by_number(number, org_id))

    async def job_numbers(self, job_ids: Iterable[str]) -> dict[str, int]:
        """The number of each job of ``job_ids`` that exists (see :meth:`JobStore.numbers`)."""
        ids = list(job_ids)
        return await self.readers.read(lambda store: store.numbers(ids))

    async def list_jobs(self, query: JobQuery) -> JobPage:
        """A page of jobs, with their numbers (see :meth:`JobStore.list_jobs`), read off
        the event loop."""
        return await self.readers.read(lambda store: store.list_jobs(query))

    async def cancel(self, job_id: str, org_id: str | None = None) -> JobSnapshot:
        """Cancel a job; its workers stop within a second and drop their partial files."""
        return await self._change(partial(self.store.cancel, job_id, org_id, now=now()))

    async def restart(self, job_id: str, org_id: str | None = None) -> JobSnapshot:
        """Run a failed, canceled or expired job again as a new attempt."""
        job = await self._change(partial(self.store.restart, job_id, org_id, now=now()))
        self._warn_if_no_worker(job)
        return job

    async def delete(self, job_id: str, org_id: str | None = None) -> JobSnapshot:
        """Delete a job and its files at once."""
        return await self._change(partial(self.store.delete, job_id, org_id, now=now()))

    async def delete_part(self, job_id: str, part: int, org_id: str | None = None) -> JobSnapshot:
        """Delete one part of a job and its file at once; the job is deleted with its last
        part left (see :meth:`JobStore.delete_part`)."""
        delete = partial(
            self.store.delete_part, job_id, part, org_id, now=now(), lifetime=self._lifetime
        )
        return await self._change(delete)

    def _plan_parts(self, request: ExportRequest) -> list[NewPart]:
        plan = plan_export(request, self.plugins, data_store(self.settings))
        parts = plan.parts(self.settings.batch_size)
        names = plan.part_file_names(len(parts))
        return [
            NewPart(params=part.request.params, file_name=name, columns=list(part.columns))
            for part, name in zip(parts, names, strict=True)
        ]

    async def _stored(self, call: Callable[[], T]) -> T:
        """What ``call`` (of the job store) returns, called in the store's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._store_thread, call)

    async def _written(self, write: Callable[[], T]) -> T:
        """What ``write`` (a change of the job store, committed with its outbox rows)
        returns, once the rows it wrote are published: taken in the same call of the
        store's thread, with no turn of the relay between.  A row not confirmed stays in
        the outbox for the relay, which is woken: the change is recorded, so the caller
        gets what ``write`` returned all the same."""

        def write_and_take() -> tuple[T, list[OutboxRow]]:
            result = write()
            try:
                return result, self._take(OUTBOX_BATCH)
            except Exception as exc:  # the change is committed: the relay sends its rows
                log.warning("the outbox relay publishes what a change wrote: %s", exc)
                return result, []

        taken = asyncio.get_running_loop().run_in_executor(self._store_thread, write_and_take)
        try:
            result, rows = await asyncio.shield(taken)
        except asyncio.CancelledError:
            # The write goes on in the store's thread: what it claims is the relay's.
            taken.add_done_callback(self._unclaim)
            raise
        if not rows:
            self._outbox_ready.set()
        try:
            await self._publish_rows(rows)
        except Exception as exc:
            log.info("the outbox relay publishes what a change could not: %s", exc)
            self._outbox_ready.set()
        return result

    def _unclaim(self, taken: asyncio.Future[tuple[Any, list[OutboxRow]]]) -> None:
        """Give the rows a change took, whose caller stopped waiting, back to the relay."""
        if taken.cancelled() or taken.exception() is not None:
            return
        _, rows = taken.result()
        ids = [row.id for row in rows]
        self._store_thread.submit(self._claimed.difference_update, ids)
        self._outbox_ready.set()

    def _take(self, limit: int) -> list[OutboxRow]:
        """Claim up to ``limit`` of the oldest outbox rows no publisher claimed (in the
        store's thread)."""
        waiting = self.store.outbox_batch(limit + len(self._claimed))
        rows = [row for row in waiting if row.id not in self._claimed][:limit]
        self._claimed.update(row.id for row in rows)
        return rows

    def _settle(self, rows: list[OutboxRow], confirmed: list[int]) -> None:
        """Forget the ``confirmed`` rows (see :meth:`JobStore.outbox_done`) and release the
        claim on ``rows`` (in the store's thread): the others wait for the relay's next
        turn."""
        self.store.outbox_done(confirmed)
        self._claimed.difference_update(row.id for row in rows)

    async def _publish_rows(self, rows: list[OutboxRow]) -> None:
        """Publish claimed outbox ``rows`` at once (one wait for all their confirms), delete
        the confirmed ones and release the claim on all; raise the first failure."""
        if not rows:
            return
        confirmed: list[int] = []
        try:
            results = await asyncio.gather(
                *(self.bus.publish(row.exchange, row.routing_key, row.body) for row in rows),
                return_exceptions=True,
            )
            confirmed = [
                row.id
                for row, result in zip(rows, results, strict=True)
                if not isinstance(result, BaseException)
            ]
        finally:
            # Cancelled too: a row whose confirm was not seen waits for the relay.  Not
            # awaited: the store's one thread settles it before anything asked of it later.
            self._store_thread.submit(self._settle, rows, confirmed)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _change(self, operation: Callable[[], Change]) -> JobSnapshot:
        change = await self._written(operation)
        self.metrics.changed(change)
        with job_context(change.job.id, attempt=change.job.attempt):
            await self._discard(change.discard)
        return change.job

    async def _discard(self, keys: Iterable[str]) -> None:
        """Delete files the job store no longer refers to.  The change is recorded
        already, so a delete that fails (the storage's server down) is logged, not raised:
        the file stays behind (docs/runtime.md, "Storage")."""
        for key in keys:
            try:
                await asyncio.to_thread(self.storage.delete, key)
            except Exception as exc:
                log.warning("the stored file %s stays: deleting it failed: %s", key, exc)

    # -- running ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set: consume requests and updates, relay the outbox,
        sweep.  The bus must be started.  Raises :class:`~exportd.supervision.LoopEnded`
        (once it stopped) if one of :attr:`loops` ended on its own, and what stopped its
        start (a consumer the bus refused, say) once it closed what it had opened."""
        topology = self.bus.topology
        prefetch = self.settings.broker.prefetch
        handlers = {
            topology.requests: self._on_request,
            topology.control: self._on_command,
            topology.status: self._on_status,
        }
        held = {topology.status: (Unavailable,)}  # an outage must not use up its limit
        subscriptions: list[Subscription] = []
        try:
            for queue, handler in handlers.items():
                hold = held.get(queue, ())
                guard = guarded(f"the handler of {queue}", handler, hold=hold)
                subscriptions.append(await self.bus.consume(queue, guard, prefetch=prefetch))
            heartbeats = guarded(f"the handler of {topology.workers}", self._on_heartbeat)
            subscriptions.append(await self.bus.subscribe(topology.workers, "", heartbeats))
            if not self.bus.durable:
                await self._redispatch_unfinished()
            self._running.set()
            self.loops.keep_running("exportd outbox relay", self._relay)
            self.loops.keep_running("exportd sweeper", self._sweep)
            log.info("engine running: jobs in %s", self.settings.jobs_path)
            await self.loops.wait(stop)
        finally:
            self._running.clear()
            for subscription in subscriptions:
                await subscription.stop()
            await self._updates.drained()
            await self.loops.close()
            try:
                await self._publish_outbox()  # what the last handlers wrote
            except (BusError, Unavailable) as exc:
                log.warning("the outbox waits for the next start: %s", exc)
            await self._stored(self.store.close)
            self._store_thread.shutdown()
            await asyncio.to_thread(self.readers.close)

    async def _redispatch_unfinished(self) -> None:
        """On a bus that keeps no messages (the embedded mode), the tasks of a previous run
        died with it: send those of every unfinished part again."""
        changes = await self._stored(partial(self.store.redispatch_unfinished, now()))
        if changes:
            log.info("dispatched again %d unfinished part(s) of a previous run", len(changes))
            self._outbox_ready.set()

    async def _on_request(self, message: Message) -> None:
        """Answer a request with its job, or refuse it: whatever fails (a bad request, a
        bug) is a refusal (answered, announced, dead-lettered), never a requeue.  A passing
        condition (:class:`Unavailable`: the job store locked or its disk full, the data
        store unreachable) is answered ``unavailable``, which tells the caller to retry,
        and announced, but not dead-lettered: the request was not at fault."""
        try:
            request = decode_json(message.body, ExportRequest)
            job = await self.submit(request)
        except Exception as exc:
            error = refusal(exc, "request")
            await self._announce_rejection(error)
            if isinstance(exc, Unavailable):
                log.info("refused %s for now: %s", message.routing_key, error.message)
                await self._reply(message, RequestReply(ok=False, error=error))
                await message.ack()
            else:
                await self._refuse(message, error)
            return
        await self._reply(message, RequestReply(ok=True, job=job))
        await message.ack()

    async def _on_command(self, message: Message) -> None:
        """Carry out a command and answer it.  One that is malformed, or that fails on
        exportd's side, is refused (answered and dead-lettered); one refused on its merits
        (no such job, a change the job's status does not allow) is answered."""
        reply = await self.answer(message.body)
        if reply.error is not None and reply.error.code in DEAD_LETTERED_COMMANDS:
            await self._refuse(message, reply.error)
            return
        await self._reply(message, reply)
        await message.ack()

    async def answer(self, body: bytes) -> RequestReply:
        """The reply to the :class:`JobCommand` in JSON ``body``, from the control queue or
        the control socket: what :meth:`command` returns, or the error that refused it."""
        try:
            return await self.command(decode_json(body, JobCommand))
        except Exception as exc:
            return RequestReply(ok=False, error=refusal(exc, "command"))

    async def command(self, command: JobCommand) -> RequestReply:
        """Carry out an operation on jobs, as the control queue (or the control socket of
        the embedded mode) asks for it.  A command may name a job by the start of its id,
        as the command line prints it (see :meth:`JobStore.resolve_id`)."""
        if command.op == "workers":
            return RequestReply(ok=True, workers=self.list_workers())
        if command.op == "list":
            query = JobQuery(
                org_id=command.org_id,
                user_id=command.user_id,
                status=() if command.status is None else (command.status,),
                source=command.source,
                limit=command.limit,
                offset=command.offset,
            )
            page = await self.list_jobs(query)
            return RequestReply(ok=True, jobs=page.jobs, total=page.total)
        if command.job_id is None:
            raise InvalidRequest.field("job_id", f"{command.op} needs a job_id")
        operations = {
            "get": self.get,
            "cancel": self.cancel,
            "restart": self.restart,
            "delete": self.delete,
        }
        job_id = await self._stored(partial(self.store.resolve_id, command.job_id, command.org_id))
        job = await operations[command.op](job_id, command.org_id)
        return RequestReply(ok=True, job=job)

    async def _refuse(self, message: Message, error: ErrorBody) -> None:
        """Answer a refused request or command with the error, and dead-letter it."""
        log.info("refused %s: %s", message.routing_key, error.message)
        await self._reply(message, RequestReply(ok=False, error=error))
        await self._dead_letter(message, message.routing_key, f"{error.code}: {error_line(error)}")

    async def _dead_letter(self, message: Message, queue: str, reason: str) -> None:
        """Refuse ``message`` of ``queue`` to its dead-letter queue with ``reason``, and
        count it."""
        await message.dead_letter(reason)
        self.metrics.process.dead_lettered.labels(queue).inc()

    async def _refresh_metrics(self) -> None:
        """Read the outbox's figures and the counts of dropped updates from the job store
        (off the event loop), and count the workers heard from, for a scrape of the
        metrics."""

        def read(store: JobStore) -> tuple[tuple[int, datetime | None], dict[str, int]]:
            return store.outbox_figures(), store.dropped()

        (outbox, oldest), dropped = await self.readers.read(read)
        self.metrics.store_figures(outbox, oldest, dropped, now())
        self.metrics.worker_figures(self.list_workers())

    async def _announce_rejection(self, error: ErrorBody) -> None:
        """Publish ``request.rejected`` for a refused request."""
        event = JobEvent(
            id=str(uuid.uuid4()), type="request.rejected", occurred_at=now(), error=error
        )
        key = event_routing_key(None, "request", "rejected")
        with contextlib.suppress(BusError):
            await self.bus.publish(self.bus.topology.events, key, msgspec.json.encode(event))

    async def _reply(self, message: Message, reply: RequestReply) -> None:
        if not message.reply_to:
            return
        try:
            await self.bus.publish(
                DEFAULT_EXCHANGE,
                message.reply_to,
                msgspec.json.encode(reply),
                correlation_id=message.correlation_id,
            )
        except BusError as exc:  # the caller's reply queue is gone: it stopped waiting
            log.warning("no reply delivered to %s: %s", message.reply_to, exc)

    async def _on_status(self, message: Message) -> None:
        """Apply a worker's update.  One that cannot be read (malformed, or of a version
        this engine does not speak) is dead-lettered.  While the job store is unavailable
        (locked, its disk full) the update is held and tried again after a back-off, for
        as long as that lasts; one that fails to apply otherwise goes back to its queue
        after a back-off, up to the queue's delivery limit (see :func:`guarded`)."""
        try:
            update = decode_json(message.body, StatusUpdate)
        except InvalidRequest as exc:
            log.error("dead-lettered a status update it cannot read: %s", exc)
            reason = f"{exc.code}: {error_line(exc.body())}"
            await self._dead_letter(message, self.bus.topology.status, reason)
            return
        with job_context(update.job_id, update.part, update.attempt):
            outcome = await self._updates.call(update)
            if isinstance(outcome, Dropped):
                log.debug("dropped update %s/%s: %s", update.job_id, update.part, outcome.reason)
            else:
                self.metrics.changed(outcome)
                if outcome.event is None:
                    await self._announce_progress(outcome.job)
            await self._discard(outcome.discard)
        await message.ack()

    async def _on_heartbeat(self, message: Message) -> None:
        """Record a worker's heartbeat (see :mod:`exportd.engine.worker_registry`), and log
        the workers that fell silent.  One that cannot be read is logged and dropped: the
        next one comes within a heartbeat interval."""
        moment = now()
        try:
            beat = decode_json(message.body, WorkerHeartbeat)
        except InvalidRequest as exc:
            log.warning("dropped a worker heartbeat it cannot read: %s", exc)
        else:
            self.workers.heard(beat, moment)
        self.workers.log_lost(moment)
        await message.ack()

    async def _apply_updates(
        self, updates: Sequence[StatusUpdate]
    ) -> list[Change | Dropped | Exception]:
        """Apply the updates that arrived together in one transaction of the job store (see
        :meth:`JobStore.apply_updates`)."""
        moment = now()
        apply = partial(
            self.store.apply_updates,
            updates,
            now=moment,
            lifetime=self._lifetime,
            no_worker=self.workers.capabilities(moment).missing,
        )
        return await self._written(apply)

    async def _announce_progress(self, job: JobSnapshot) -> None:
        """Publish ``job.progress``, at most once a :data:`PROGRESS_EVENT_INTERVAL` per job."""
        if not self._progress_events.passes(job.id, time.monotonic()):
            return
        event = JobEvent(id=str(uuid.uuid4()), type="job.progress", occurred_at=now(), job=job)
        key = event_routing_key(job.request.org_id, job.request.source, job.status)
        with contextlib.suppress(BusError):  # progress is news, not state: a lost one is fine
            await self.bus.publish(self.bus.topology.events, key, msgspec.json.encode(event))

    async def _relay(self) -> None:
        """One turn of the outbox relay: publish the outbox, oldest first, forgetting each
        message once it is confirmed, and delete what was published since the store's last
        write; then wait until a change wakes the relay, or :data:`OUTBOX_POLL` seconds.

        Any :class:`Exception` (a publish not confirmed, the store locked or full) ends
        the turn; the relay logs it, backs off and starts the next
        (:func:`~exportd.supervision.keep_running`), so every message goes out once
        the broker and the store are back.
        """
        self._outbox_ready.clear()
        await self._publish_outbox()
        await self._stored(self.store.delete_published)  # what no write deleted meanwhile
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(OUTBOX_POLL):
                await self._outbox_ready.wait()

    async def _publish_outbox(self) -> None:
        """Publish every outbox message no change is publishing; raise :class:`BusError` if
        one is not confirmed (the confirmed ones are deleted, the others wait for the next
        try).  A batch shorter than :data:`OUTBOX_BATCH` was all there was: a message
        written since then is its change's to publish, or has woken the relay."""
        while rows := await self._stored(partial(self._take, OUTBOX_BATCH)):
            await self._publish_rows(rows)
            if len(rows) < OUTBOX_BATCH:
                return

    async def _sweep(self) -> None:
        """One turn of the sweeper: expire finished jobs whose time has come, make silent
        detached parts lapse, remove the jobs over for ``engine.job_retention``, then wait
        ``engine.sweep_interval`` seconds.

        Any :class:`Exception` (the store locked or full, a storage that cannot delete)
        ends the turn; the sweeper logs it, backs off and starts the next
        (:func:`~exportd.supervision.keep_running`).  A job whose files the storage
        failed to delete is expired all the same; the files stay.  The batches removed
        before a failure stay removed; the next turn removes the rest.
        """
        engine = self.settings.engine
        lease = timedelta(seconds=engine.lease)
        moment = now()
        self.workers.log_lost(moment)
        no_worker = self.workers.capabilities(moment).missing
        changes = await self._stored(
            lambda: [
                *self.store.expire_due(moment),
                *self.store.redispatch_lapsed(
                    moment, lease, limit=engine.lapses, no_worker=no_worker
                ),
            ]
        )
        if changes:
            self._outbox_ready.set()
        for change in changes:
            self.metrics.changed(change)
            with job_context(change.job.id, attempt=change.job.attempt):
                await self._discard(change.discard)
        if engine.job_retention:
            await self._remove_finished(moment - timedelta(seconds=engine.job_retention))
        await asyncio.sleep(engine.sweep_interval)

    async def _remove_finished(self, before: datetime) -> None:
        """Remove the jobs over that finished before ``before``, :data:`RETENTION_BATCH`
        at a time (see :meth:`JobStore.remove_finished`), telling :attr:`on_removed` of
        each batch."""
        removed = 0
        while True:
            remove = partial(self.store.remove_finished, before, limit=RETENTION_BATCH)
            ids = await self._stored(remove)
            if ids:
                for forget in self.on_removed:
                    forget(ids)
            removed += len(ids)
            if len(ids) < RETENTION_BATCH:
                break
        if removed:
            log.info(
                "removed %d job(s) finished before %s (engine.job_retention)",
                removed,
                before.isoformat(timespec="seconds"),
            )
