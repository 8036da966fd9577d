"""The delivery service: once a job whose request asks for a delivery (``email``)
is done, hand its files to that delivery method, and never lose the delivery.

It runs beside the engine (``exportd serve``, ``exportd engine``) and learns of
finished jobs from the public ``job.done`` events.  Each delivery is written to
the :class:`~exportd.deliveries.ledger.Ledger` before the event is acknowledged
and marked sent only after the method returned (the SMTP server accepted the
message); one that fails for a passing reason (the server is down) is tried
again every ``retry_interval`` seconds.  At start it also records the done jobs
it has not seen (their event came while it was stopped), so a stop at any
moment costs at most a second copy of a message, never a lost one.

Its loop and its handler of events go on through any :class:`Exception` (the
ledger's disk full, the engine's store locked), logging it once per streak and
backing off (:mod:`exportd.supervision`); the loop runs among the engine's
:attr:`~exportd.engine.service.Engine.loops`, so that one that ends anyway
ends the engine too.

A durable broker queue would not do here: the embedded mode's bus lives in the
process, and the ledger serves both modes alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec

from exportd.bus.base import Bus, Message
from exportd.config import Settings
from exportd.deliveries.ledger import Ledger, Pending
from exportd.deliveries.metrics import DeliveryMetrics
from exportd.engine.service import Engine
from exportd.engine.store import JobQuery
from exportd.errors import NotFound
from exportd.logs.context import job_context
from exportd.messages import JobEvent, JobSnapshot
from exportd.plugins.api import DeliveryContext, DeliveryMethod, Undeliverable
from exportd.plugins.manager import FILE_DELIVERY, Plugins
from exportd.signing import signer_for
from exportd.supervision import Guard, guarded

log = logging.getLogger(__name__)

LEDGER_FILE = "deliveries.db"
DONE_EVENTS = "*.*.done"
"""The events exchange's routing-key pattern of finished jobs."""
CATCH_UP_PAGE = 200
PRUNE_INTERVAL = 3600.0
"""Seconds between two prunings of the ledger."""
KEEP_AFTER_EXPIRY = 86400.0
"""Seconds a closed delivery stays in the ledger after its job's files expired.  Until
the expiry sweeper has run, a done job could otherwise be caught up (and sent) again."""


class DeliveryService:
    """Delivers the files of done jobs by the method their request names."""

    def __init__(self, engine: Engine, bus: Bus, plugins: Plugins, settings: Settings) -> None:
        self.engine = engine
        self.bus = bus
        self.plugins = plugins
        self.storage = plugins.storage(settings.storage)
        self.signer = signer_for(settings)
        self.base_url = settings.http.public_url.rstrip("/") or None
        self.keep_closed = settings.engine.file_lifetime + KEEP_AFTER_EXPIRY
        self.ledger = Ledger(settings.home_path / LEDGER_FILE)
        self.metrics = engine.metrics.process.part(DeliveryMetrics)
        self._wake = asyncio.Event()
        self._stopping = False
        self._prune_at = 0.0

    async def run(self) -> None:
        """Make due deliveries, one at a time, until :meth:`stop`; a delivery in hand
        is finished first.  Now and then, forget the deliveries closed long ago.

        Any :class:`Exception` of a turn is logged (once per streak) and followed by a
        back-off, then the next turn (see :class:`~exportd.supervision.Guard`)."""
        guard = Guard("exportd deliveries")
        while not self._stopping:
            await guard.run(self._turn)

    async def _turn(self) -> None:
        """Make the next due delivery, or wait until one may be due."""
        now = time.time()
        if now >= self._prune_at:
            self._prune(now)
        pending = self.ledger.due(now)
        if pending is not None:
            await self._deliver(pending)
            return
        self._wake.clear()
        next_at = self.ledger.next_at()
        wake_at = self._prune_at if next_at is None else min(next_at, self._prune_at)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, wake_at - time.time())):
                await self._wake.wait()

    def _prune(self, now: float) -> None:
        pruned = self.ledger.prune(now - self.keep_closed)
        if pruned:
            log.info("forgot %d delivery record(s) closed over %g s ago", pruned, self.keep_closed)
        self._prune_at = now + PRUNE_INTERVAL

    def stop(self) -> None:
        """Have :meth:`run` return once the delivery in hand, if any, is made."""
        self._stopping = True
        self._wake.set()

    async def on_event(self, message: Message) -> None:
        """Record the delivery a ``job.done`` event calls for, then acknowledge it.  Any
        :class:`Exception` (the ledger's disk full) gives the event back to its queue
        after a back-off."""
        try:
            event = msgspec.json.decode(message.body, type=JobEvent)
        except msgspec.DecodeError as exc:
            log.warning("an event that is not a JobEvent: %s", exc)
        else:
            if event.type == "job.done" and event.job is not None:
                self.record(event.job)
        await message.ack()

    def record(self, job: JobSnapshot) -> None:
        """Note that ``job`` is to be delivered, if its request asks for a delivery."""
        method = job.request.delivery.type
        if method != FILE_DELIVERY and self.ledger.add(job.id, job.attempt, method):
            self._wake.set()

    async def catch_up(self) -> None:
        """Record the done jobs whose event this service missed: those done since the
        previous run started listening (or since the ledger was made)."""
        since = self.ledger.since
        offset = 0
        while True:
            query = JobQuery(
                status=("done",), completed_since=since, limit=CATCH_UP_PAGE, offset=offset
            )
            page = await self.engine.list_jobs(query)
            for job in page.jobs:
                self.record(job)
            offset += len(page.jobs)
            if not page.jobs or offset >= page.total:
                return

    async def _deliver(self, pending: Pending) -> None:
        with job_context(pending.job_id, attempt=pending.attempt):
            await self._deliver_in_context(pending)

    async def _deliver_in_context(self, pending: Pending) -> None:
        try:
            job = await self.engine.get(pending.job_id)
        except NotFound:
            self._give_up(pending, "the job is gone")
            return
        if job.status != "done" or job.attempt != pending.attempt:
            self._give_up(pending, f"its files are gone: the job is {job.status}")
            log.warning("job %s: not delivered, it is %s", job.id, job.status)
            return
        try:
            method = self.plugins.delivery(pending.method)
            await asyncio.to_thread(method.deliver, job, self._context(job))
        except Undeliverable as exc:
            self._give_up(pending, str(exc))
            log.error("job %s: %s delivery given up: %s", job.id, pending.method, exc)
        except Exception as exc:
            # Plugins not loaded any more, an SMTP server down: it may pass.
            interval = self._retry_interval(pending.method)
            self.ledger.retry(pending, time.time() + interval, f"{type(exc).__name__}: {exc}")
            self.metrics.failed.labels(pending.method, "retry").inc()
            log.warning(
                "job %s: %s delivery failed (try %d), again in %g s: %s",
                job.id,
                pending.method,
                pending.tries + 1,
                interval,
                exc,
            )
        else:
            self.ledger.finish(pending, "sent")
            self.metrics.sent.labels(pending.method).inc()
            log.info("job %s: delivered by %s", job.id, pending.method)

    def _give_up(self, pending: Pending, why: str) -> None:
        """Close a delivery that cannot be made, and count it."""
        self.ledger.finish(pending, "given_up", why)
        self.metrics.failed.labels(pending.method, "given_up").inc()

    async def refresh_metrics(self) -> None:
        """Read the pending deliveries from the ledger (on the event loop, the ledger's
        thread: one indexed count), for a scrape of the metrics."""
        self.metrics.pending_now(self.ledger.pending_by_method())

    def _retry_interval(self, method: str) -> float:
        found = self.plugins.deliveries.get(method)
        return (found or DeliveryMethod).retry_interval

    def _context(self, job: JobSnapshot) -> DeliveryContext:
        urls: dict[int, str] = {}
        if self.base_url is not None:
            # A link sent once cannot be renewed by its reader: it lasts as the file does.
            links = self.signer.links(job, self.base_url, lifetime=None)
            urls = {link.part: link.url for link in links}
        return DeliveryContext(open_file=self.storage.open, link=urls.get)


@contextlib.asynccontextmanager
async def delivering(
    engine: Engine, bus: Bus, plugins: Plugins, settings: Settings
) -> AsyncIterator[DeliveryService]:
    """Run the delivery service on ``bus`` while the block runs, its loop among the
    engine's :attr:`~exportd.engine.service.Engine.loops` (so that the engine's
    :meth:`~exportd.engine.service.Engine.run` stops it, before it closes its job
    store, or ends if it ends on its own).  Start it before the engine, so that it sees
    the engine's first events."""
    service = DeliveryService(engine, bus, plugins, settings)
    listening_since = datetime.now(UTC)
    subscription = await bus.subscribe(
        bus.topology.events, DONE_EVENTS, guarded("the handler of done events", service.on_event)
    )
    running: asyncio.Task[None] | None = None
    unwatch = service.metrics.process.on_scrape(service.refresh_metrics)
    try:
        await service.catch_up()
        service.ledger.mark(listening_since)  # from now on the events bring every job
        running = engine.loops.start("exportd deliveries", service.run(), stop=service.stop)
        engine.on_removed.append(service.ledger.forget)  # the jobs' records go with them
        yield service
    finally:
        if service.ledger.forget in engine.on_removed:
            engine.on_removed.remove(service.ledger.forget)
        await subscription.cancel()
        if running is not None:
            await engine.loops.stop(running)
        unwatch()
        service.ledger.close()
