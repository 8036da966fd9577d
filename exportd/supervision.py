"""How exportd's background loops survive failures, and what happens when one ends anyway.

Every loop of the engine and the workers (the outbox relay, the expiry sweeper,
the delivery service, a task's reporter) and every handler of a consumer
runs its work through a :class:`Guard`:

* an :class:`Exception` of any kind (the broker gone, the job store locked or
  its disk full, a bug in one message) is a failure: the guard logs it with its
  traceback, once per streak of failures (and a line a minute while the streak
  lasts), waits a back-off, and the loop goes on.  The back-off grows
  exponentially with the failures of the streak, with full jitter (a random
  wait between 0 and the exponential value, so that loops and processes that
  failed together do not retry together), up to a cap; the first success
  resets it and logs the recovery.
* a :class:`BaseException` that is not an :class:`Exception` (cancellation,
  ``KeyboardInterrupt``, ``SystemExit``, a library's own exit signal) is not a
  failure to retry: it goes through.

A loop runs as a task of :class:`Loops`, which notices a loop that ends while
the service runs (a bug, or such an exception): it logs it, makes
:meth:`Loops.check` raise (the engine's readiness, ``/readyz``, answers 503
from then on) and :meth:`Loops.wait` raise :class:`LoopEnded`, which ends the
service's ``run`` and so the process, with a non-zero status, for whatever
supervises it to start it again.  Cancellation by the service's own shutdown
is not such an end.

This is the structure of dramatiq's consumer threads (restart with exponential
back-off after any error, reset once working) and arq's worker loop, applied to
every loop of a process, with one exit for what cannot be retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NoReturn

from exportd.bus.base import BusError, Handler, Message
from exportd.errors import Unavailable

log = logging.getLogger(__name__)

REMIND_EVERY = 60.0
"""Seconds between two lines about a streak of failures that goes on."""


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with full jitter: after the ``n``-th failure in a row, a
    random wait between 0 and ``min(cap, first * 2 ** (n - 1))`` seconds."""

    first: float = 0.1
    cap: float = 30.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (from 1)."""
        exponent = min(failures - 1, 64)  # far past any cap, and far inside a float
        return random.uniform(0.0, min(self.cap, self.first * 2.0**exponent))


DEFAULT_BACKOFF = Backoff()


class Guard:
    """Runs the steps of one loop (or the calls of one handler), keeping it going through
    any :class:`Exception` as the module docstring says.  ``name`` says what the loop is,
    in the log.

    The calls of a handler run side by side (up to the consumer's prefetch), and share
    one back-off: a failure counts towards it only if its call started once the last
    back-off was over, and every failed call waits until the current back-off is over.
    Ten calls failing at once are one failure, not ten, so that the back-off grows with
    the time the failures last (and so does the wait for the first try once they end),
    whatever the prefetch.
    """

    def __init__(self, name: str, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self.name = name
        self.backoff = backoff
        self.failures = 0
        """Failures in a row so far (0 after a success)."""
        self._retry_at = 0.0
        self._streak_started = 0.0
        self._reminded = 0.0

    async def run(self, step: Callable[[], Awaitable[None]]) -> bool:
        """Run ``step``; on an :class:`Exception`, log it as the streak calls for and wait
        the back-off.  Whether it succeeded."""
        started = time.monotonic()
        try:
            await step()
        except Exception as exc:
            if started >= self._retry_at or not self.failures:
                self._failed(exc)
            await asyncio.sleep(max(0.0, self._retry_at - time.monotonic()))
            return False
        if self.failures:
            log.warning(
                "%s works again, after %d failure(s) in %.1f s",
                self.name,
                self.failures,
                time.monotonic() - self._streak_started,
            )
            self.failures = 0
        return True

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self.failures += 1
        self._retry_at = now + self.backoff.delay(self.failures)
        if self.failures == 1:
            self._streak_started = self._reminded = now
            log.error("%s failed, trying again with back-off: %s", self.name, exc, exc_info=exc)
        elif now - self._reminded >= REMIND_EVERY:
            self._reminded = now
            log.error(
                "%s still failing: %d failure(s) in %.0f s, the last: %s",
                self.name,
                self.failures,
                now - self._streak_started,
                exc,
            )


async def keep_running(
    name: str, step: Callable[[], Awaitable[None]], backoff: Backoff = DEFAULT_BACKOFF
) -> NoReturn:
    """Run ``step`` again and again under a :class:`Guard`, until cancelled.  The step
    waits for its next turn itself (an interval, an event)."""
    guard = Guard(name, backoff)
    while True:
        await guard.run(step)


def guarded(
    name: str,
    handler: Handler,
    backoff: Backoff = DEFAULT_BACKOFF,
    *,
    hold: tuple[type[Exception], ...] = (),
) -> Handler:
    """``handler`` with a :class:`Guard` for all its calls: a call that raises an
    :class:`Exception` is logged as the streak calls for, holds its message for the
    back-off (so that a failing store or broker is not asked again at once), then gives
    the message back to its queue.

    A call that raises one of ``hold`` (a failure of what the handler needs, such as the
    job store, not of its message) keeps the message and calls the handler again after
    each back-off, for as long as that failure lasts: giving it back would count a
    delivery towards the queue's limit for every try, and dead-letter a good message
    during a long outage.
    """
    guard = Guard(name, backoff)

    async def call(message: Message) -> None:
        held = True
        while held:
            held = False

            async def attempt() -> None:
                nonlocal held
                try:
                    await handler(message)
                except hold:
                    held = True
                    raise

            if await guard.run(attempt):
                return
        # The handler settled it before raising, or its channel is gone (and with it
        # the delivery, which the broker requeues).
        with contextlib.suppress(BusError):
            await message.reject(requeue=True)

    return call


class LoopEnded(Exception):
    """A background loop ended while its service ran: a bug (see :class:`Loops`)."""


class Loops:
    """The background loops of a service, each in a task of its own (see the module
    docstring).  A loop ends only when :meth:`stop` or :meth:`close` ends it, or when it
    is cancelled; any other end is recorded and reported by :meth:`check` and
    :meth:`wait`."""

    def __init__(self) -> None:
        self._running: dict[asyncio.Task[None], Callable[[], None] | None] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._ended = asyncio.Event()
        self.ended: LoopEnded | None = None
        """Why the first loop that ended on its own did, once one did."""

    def start(
        self,
        name: str,
        loop: Coroutine[Any, Any, None],
        *,
        stop: Callable[[], None] | None = None,
    ) -> asyncio.Task[None]:
        """Run ``loop`` in a task named ``name``.  :meth:`stop` ends it by calling ``stop``
        (the loop then returns when it is ready to), or by cancelling it."""
        task = asyncio.create_task(loop, name=name)
        self._running[task] = stop
        task.add_done_callback(self._on_end)
        return task

    def keep_running(
        self, name: str, step: Callable[[], Awaitable[None]], backoff: Backoff = DEFAULT_BACKOFF
    ) -> asyncio.Task[None]:
        """Run ``step`` under :func:`keep_running`, in a task named ``name``."""
        return self.start(name, keep_running(name, step, backoff))

    def _on_end(self, task: asyncio.Task[None]) -> None:
        del self._running[task]
        stopped = task in self._stopping
        self._stopping.discard(task)
        if task.cancelled():
            return  # stopped, or the service's shutdown, or the whole program's
        error = task.exception()
        if stopped:
            if error is not None:
                log.error("%s failed as it stopped", task.get_name(), exc_info=error)
            return
        how = f"raised {type(error).__name__}: {error}" if error else "returned"
        if self.ended is None:
            self.ended = LoopEnded(f"{task.get_name()} ended: it {how}")
        log.critical("%s ended: it %s; the process stops", task.get_name(), how, exc_info=error)
        self._ended.set()

    def check(self) -> None:
        """Raise :class:`~exportd.errors.Unavailable` if a loop ended on its own."""
        if self.ended is not None:
            raise Unavailable(str(self.ended))

    async def wait(self, stop: asyncio.Event) -> None:
        """Return once ``stop`` is set; raise :class:`LoopEnded` as soon as a loop ends on
        its own."""
        stopped = asyncio.ensure_future(stop.wait())
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait((stopped, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            ended.cancel()
        if self.ended is not None:
            raise self.ended

    async def stop(self, task: asyncio.Task[None]) -> None:
        """End one loop (by its ``stop`` function, or by cancelling it) and wait for it."""
        if task.done():
            return
        self._stopping.add(task)
        stop = self._running[task]
        if stop is None:
            task.cancel()
        else:
            stop()
        await asyncio.wait((task,))

    async def close(self) -> None:
        """End every loop still running, and wait for them all."""
        await asyncio.gather(*(self.stop(task) for task in tuple(self._running)))
