"""The engine: accepts requests, records jobs, dispatches tasks, follows workers, announces.

It is the only writer of the job store.  Requests come from the request queue
(each answered on its ``reply_to``) or from the Python API (:meth:`Engine.submit`
and friends, which the CLI and the HTTP API use).  Every change of a job is
written to the store together with the messages it implies (tasks, cancel
signals, the public event); a relay publishes those with confirms and deletes
them only then, so none is lost when the engine or the broker restarts.
Progress within a status is announced at most once a second per job, directly.
A sweeper expires finished jobs and re-dispatches parts whose early-acknowledged
task fell silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

import msgspec

from exportd.bus.base import Bus, BusError, Message
from exportd.bus.topology import DEFAULT_EXCHANGE, event_routing_key
from exportd.config import Settings
from exportd.engine.lifecycle import Change, Dropped
from exportd.engine.readers import StoreReaders
from exportd.engine.store import JobPage, JobStore, NewPart, ParamValue
from exportd.errors import ErrorBody, ExportError, InvalidRequest, Unavailable
from exportd.messages import (
    ExportRequest,
    JobCommand,
    JobEvent,
    JobSnapshot,
    RequestReply,
    StatusUpdate,
)
from exportd.plan import plan_export
from exportd.plugins.manager import Plugins
from exportd.validation import decode_json

log = logging.getLogger(__name__)

OUTBOX_BATCH = 200
OUTBOX_POLL = 1.0
"""Seconds between two looks at the outbox when nothing woke the relay."""
RETRY_PAUSE = 1.0
"""Seconds to wait before publishing again after the broker failed a publish."""
PROGRESS_EVENT_INTERVAL = 1.0


def now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class Engine:
    """exportd's engine over a bus, with its job store under ``settings.home``."""

    def __init__(self, bus: Bus, plugins: Plugins, settings: Settings) -> None:
        self.bus = bus
        self.plugins = plugins
        self.settings = settings
        self.storage = plugins.storage(settings.storage)
        self.store = JobStore(settings.jobs_path, bus.topology)
        self.readers = StoreReaders(settings.jobs_path, bus.topology)
        self._lifetime = timedelta(seconds=settings.engine.file_lifetime)
        self._outbox_ready = asyncio.Event()
        self._progress_sent: dict[str, float] = {}
        self.running = False

    # -- the Python API -------------------------------------------------------------------

    async def submit(self, request: ExportRequest) -> JobSnapshot:
        """Validate ``request``, record the job and queue its tasks; the new job (or, for a
        repeated idempotency key, the existing one)."""
        parts = await asyncio.to_thread(self._plan_parts, request)
        job = self.store.create(request, parts, now=now())
        self._outbox_ready.set()
        return job

    def ready(self) -> None:
        """Raise :class:`Unavailable` unless the engine runs and its job store answers."""
        if not self.running:
            raise Unavailable("the engine is not running")
        self.store.ping()

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

    async def list_jobs(
        self,
        *,
        org_id: str | None = None,
        user_id: str | None = None,
        status: str | None = None,
        not_status: str | None = None,
        source: str | None = None,
        params: Mapping[str, ParamValue] | None = None,
        completed_since: datetime | None = None,
        by_parts: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> JobPage:
        """Jobs newest first, filtered and paged, with their numbers (see
        :meth:`JobStore.list_jobs`), read off the event loop."""
        listing = functools.partial(
            JobStore.list_jobs,
            org_id=org_id,
            user_id=user_id,
            status=status,
            not_status=not_status,
            source=source,
            params=params,
            completed_since=completed_since,
            by_parts=by_parts,
            limit=limit,
            offset=offset,
        )
        return await self.readers.read(listing)

    async def cancel(self, job_id: str, org_id: str | None = None) -> JobSnapshot:
        """Cancel a job; its workers stop within a second and drop their partial files."""
        return await self._change(self.store.cancel(job_id, org_id, now=now()))

    async def restart(self, job_id: str, org_id: str | None = None) -> JobSnapshot:
        """Run a failed, canceled or expired job again as a new attempt."""
        return await self._change(self.store.restart(job_id, org_id, now=now()))

    async def delete(self, job_id: str, org_id: str | None = None) -> JobSnapshot:
        """Delete a job and its files at once."""
        return await self._change(self.store.delete(job_id, org_id, now=now()))

    def _plan_parts(self, request: ExportRequest) -> list[NewPart]:
        plan = plan_export(request, self.plugins, self.settings.data_path)
        parts = plan.parts(self.settings.batch_size)
        names = plan.part_file_names(len(parts))
        return [
            NewPart(params=part.request.params, file_name=name)
            for part, name in zip(parts, names, strict=True)
        ]

    async def _change(self, change: Change) -> JobSnapshot:
        self._outbox_ready.set()
        await self._discard(change.discard)
        return change.job

    async def _discard(self, keys: Iterable[str]) -> None:
        for key in keys:
            await asyncio.to_thread(self.storage.delete, key)

    # -- running ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set: consume requests and updates, relay the outbox,
        sweep.  The bus must be started."""
        topology = self.bus.topology
        prefetch = self.settings.broker.prefetch
        subscriptions = [
            await self.bus.consume(topology.requests, self._on_request, prefetch=prefetch),
            await self.bus.consume(topology.control, self._on_command, prefetch=prefetch),
            await self.bus.consume(topology.status, self._on_status, prefetch=prefetch),
        ]
        if not self.bus.durable:
            self._redispatch_unfinished()
        self.running = True
        loops = [
            asyncio.create_task(self._relay(), name="exportd outbox relay"),
            asyncio.create_task(self._sweep(), name="exportd sweeper"),
        ]
        log.info("engine running: jobs in %s", self.settings.jobs_path)
        try:
            await stop.wait()
        finally:
            self.running = False
            for subscription in subscriptions:
                await subscription.stop()
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            with contextlib.suppress(BusError):
                await self._publish_outbox()  # what the last handlers wrote
            self.store.close()
            self.readers.close()

    def _redispatch_unfinished(self) -> None:
        """On a bus that keeps no messages (the embedded mode), the tasks of a previous run
        died with it: send those of every unfinished part again."""
        changes = self.store.redispatch_unfinished(now())
        if changes:
            log.info("dispatched again %d unfinished part(s) of a previous run", len(changes))
            self._outbox_ready.set()

    async def _on_request(self, message: Message) -> None:
        try:
            request = decode_json(message.body, ExportRequest)
            job = await self.submit(request)
        except ExportError as exc:
            await self._refuse(message, exc.body())
            return
        await self._reply(message, RequestReply(ok=True, job=job))
        await message.ack()

    async def _on_command(self, message: Message) -> None:
        await self._reply(message, await self.answer(message.body))
        await message.ack()

    async def answer(self, body: bytes) -> RequestReply:
        """The reply to the :class:`JobCommand` in JSON ``body``, from the control queue or
        the control socket: what :meth:`command` returns, or the error that refused it."""
        try:
            return await self.command(decode_json(body, JobCommand))
        except ExportError as exc:
            return RequestReply(ok=False, error=exc.body())

    async def command(self, command: JobCommand) -> RequestReply:
        """Carry out an operation on jobs, as the control queue (or the control socket of
        the embedded mode) asks for it.  A command may name a job by the start of its id,
        as the command line prints it (see :meth:`JobStore.resolve_id`)."""
        if command.op == "list":
            page = await self.list_jobs(
                org_id=command.org_id,
                user_id=command.user_id,
                status=command.status,
                source=command.source,
                limit=command.limit,
                offset=command.offset,
            )
            return RequestReply(ok=True, jobs=page.jobs, total=page.total)
        if command.job_id is None:
            raise InvalidRequest.field("job_id", f"{command.op} needs a job_id")
        operations = {
            "get": self.get,
            "cancel": self.cancel,
            "restart": self.restart,
            "delete": self.delete,
        }
        job_id = self.store.resolve_id(command.job_id, command.org_id)
        job = await operations[command.op](job_id, command.org_id)
        return RequestReply(ok=True, job=job)

    async def _refuse(self, message: Message, error: ErrorBody) -> None:
        """Answer a refused request with the error, announce it, and dead-letter it."""
        log.info("request refused: %s", error.message)
        await self._reply(message, RequestReply(ok=False, error=error))
        event = JobEvent(
            id=str(uuid.uuid4()), type="request.rejected", occurred_at=now(), error=error
        )
        key = event_routing_key(None, "request", "rejected")
        with contextlib.suppress(BusError):
            await self.bus.publish(self.bus.topology.events, key, msgspec.json.encode(event))
        await message.reject(requeue=False)

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
        try:
            update = msgspec.json.decode(message.body, type=StatusUpdate)
        except msgspec.DecodeError as exc:
            log.error("dropped a malformed status update: %s", exc)
            await message.reject(requeue=False)
            return
        outcome = self.store.apply_update(update, now=now(), lifetime=self._lifetime)
        if isinstance(outcome, Dropped):
            log.debug("dropped update %s/%s: %s", update.job_id, update.part, outcome.reason)
        elif outcome.event is None:
            await self._announce_progress(outcome.job)
        else:
            self._outbox_ready.set()
        await self._discard(outcome.discard)
        await message.ack()

    async def _announce_progress(self, job: JobSnapshot) -> None:
        """Publish ``job.progress``, at most once a :data:`PROGRESS_EVENT_INTERVAL` per job."""
        moment = time.monotonic()
        if moment - self._progress_sent.get(job.id, 0.0) < PROGRESS_EVENT_INTERVAL:
            return
        self._progress_sent[job.id] = moment
        event = JobEvent(id=str(uuid.uuid4()), type="job.progress", occurred_at=now(), job=job)
        key = event_routing_key(job.request.org_id, job.request.source, job.status)
        with contextlib.suppress(BusError):  # progress is news, not state: a lost one is fine
            await self.bus.publish(self.bus.topology.events, key, msgspec.json.encode(event))

    async def _relay(self) -> None:
        """Publish the outbox, oldest first, deleting each message once it is confirmed."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(OUTBOX_POLL):
                    await self._outbox_ready.wait()
            self._outbox_ready.clear()
            try:
                await self._publish_outbox()
            except BusError as exc:
                log.warning("outbox messages not confirmed, will retry: %s", exc)
                await asyncio.sleep(RETRY_PAUSE)

    async def _publish_outbox(self) -> None:
        """Publish every outbox message; raise :class:`BusError` if one is not confirmed
        (the confirmed ones are deleted, the others wait for the next try)."""
        while batch := self.store.outbox_batch(OUTBOX_BATCH):
            results = await asyncio.gather(
                *(self.bus.publish(row.exchange, row.routing_key, row.body) for row in batch),
                return_exceptions=True,
            )
            self.store.outbox_done(
                row.id
                for row, result in zip(batch, results, strict=True)
                if not isinstance(result, BaseException)
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    async def _sweep(self) -> None:
        """Expire finished jobs whose time has come; re-dispatch silent detached parts."""
        lease = timedelta(seconds=self.settings.engine.lease)
        while True:
            moment = now()
            changes = [*self.store.expire_due(moment), *self.store.redispatch_lapsed(moment, lease)]
            for change in changes:
                await self._discard(change.discard)
            if changes:
                self._outbox_ready.set()
            await asyncio.sleep(self.settings.engine.sweep_interval)
