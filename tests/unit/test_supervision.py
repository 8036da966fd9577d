"""exportd.supervision: the guard every background loop runs under, the back-off, and the
loops of a service, which notice one that ends."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Callable

import pytest

from exportd.bus.base import Message
from exportd.errors import Unavailable
from exportd.supervision import Backoff, Guard, LoopEnded, Loops, guarded, keep_running
from tests.unit.toy_plugins import Abort

QUICK = Backoff(first=0.001, cap=0.004)


class Failing:
    """A loop's step that raises ``error(n)`` at its first ``times`` calls, then succeeds;
    ``calls`` counts them.  Each waits a little first, as a step waits for its turn."""

    def __init__(self, times: int, error: Callable[[int], BaseException] = RuntimeError) -> None:
        self.times = times
        self.error = error
        self.calls = 0

    async def __call__(self) -> None:
        await asyncio.sleep(0.001)
        self.calls += 1
        if self.calls <= self.times:
            raise self.error(self.calls)


def test_the_back_off_grows_exponentially_with_full_jitter_up_to_its_cap() -> None:
    backoff = Backoff(first=0.1, cap=2.0)
    for failures, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (5, 1.6), (6, 2.0), (500, 2.0)]:
        delays = [backoff.delay(failures) for _ in range(200)]
        assert all(0.0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range: full jitter
        assert min(delays) < ceiling * 0.2


async def test_a_guard_logs_a_streak_of_failures_once_with_its_traceback_and_the_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = Guard("the test loop", QUICK)
    step = Failing(50)
    with caplog.at_level(logging.INFO, "exportd.supervision"):
        outcomes = [await guard.run(step) for _ in range(51)]
        assert outcomes == [False] * 50 + [True]
        assert guard.failures == 0
        assert (await guard.run(Failing(1))) is False  # a new streak
    failed = [r for r in caplog.records if "failed, trying again" in r.getMessage()]
    assert len(failed) == 2
    assert failed[0].exc_info is not None and "RuntimeError: 1" in caplog.text
    assert [r.getMessage() for r in caplog.records if "works again" in r.getMessage()] == [
        caplog.records[1].getMessage()
    ]
    assert "after 50 failure(s)" in caplog.records[1].getMessage()


async def test_calls_of_a_handler_failing_side_by_side_are_one_failure_of_the_back_off() -> None:
    guard = Guard("the test handler", QUICK)
    step = Failing(100)
    assert await asyncio.gather(*(guard.run(step) for _ in range(10))) == [False] * 10
    assert guard.failures == 1
    await guard.run(step)  # started after the last failure: the next one
    assert guard.failures == 2


async def test_a_guard_lets_cancellation_and_other_base_exceptions_through() -> None:
    guard = Guard("the test loop", QUICK)
    with pytest.raises(Abort):
        await guard.run(Failing(1, lambda n: Abort(str(n))))
    with pytest.raises(asyncio.CancelledError):
        await guard.run(Failing(1, lambda n: asyncio.CancelledError()))


async def test_keep_running_goes_on_through_failures_until_cancelled() -> None:
    step = Failing(5)
    running = asyncio.create_task(keep_running("the test loop", step, QUICK))
    while step.calls < 20:
        await asyncio.sleep(0.001)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running


class HeldMessage(Message):
    """A delivered message that records how it is settled."""

    def __init__(self) -> None:
        self.body = b"{}"
        self.routing_key = "q"
        self.reply_to = self.correlation_id = None
        self.redelivered = False
        self.delivery_count = 0
        self.settled: list[str] = []

    async def ack(self) -> None:
        self.settled.append("ack")

    async def reject(self, *, requeue: bool) -> None:
        self.settled.append("requeue" if requeue else "dead-letter")


async def test_a_guarded_handler_that_fails_backs_off_then_gives_its_message_back() -> None:
    calls = Failing(2)

    async def handler(message: Message) -> None:
        await calls()
        await message.ack()

    handle = guarded("the test handler", handler, QUICK)
    messages = [HeldMessage() for _ in range(3)]
    for message in messages:
        await handle(message)
    assert [m.settled for m in messages] == [["requeue"], ["requeue"], ["ack"]]


async def test_a_guarded_handler_keeps_its_message_through_a_failure_it_holds_for() -> None:
    """The job store unavailable 30 times over: the status update is applied at the end,
    never given back (each give-back would count towards its queue's delivery limit)."""
    outage = Failing(30, lambda n: Unavailable(f"the job store is locked ({n})"))
    bug = Failing(1)

    async def handler(message: Message) -> None:
        await outage()
        await bug()
        await message.ack()

    handle = guarded("the test handler", handler, QUICK, hold=(Unavailable,))
    first, second = HeldMessage(), HeldMessage()
    await handle(first)
    assert (outage.calls, first.settled) == (31, ["requeue"])  # the bug is no outage
    await handle(second)
    assert second.settled == ["ack"]


async def test_a_loop_that_ends_on_its_own_makes_the_loops_fail_and_their_wait_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loops = Loops()
    healthy = loops.keep_running("the healthy loop", lambda: asyncio.sleep(0.01))
    loops.keep_running("the doomed loop", Failing(1, lambda n: Abort("a bug")), QUICK)
    with pytest.raises(LoopEnded, match="the doomed loop ended: it raised Abort: a bug"):
        await asyncio.wait_for(loops.wait(asyncio.Event()), timeout=5)
    with pytest.raises(Unavailable, match="the doomed loop ended"):
        loops.check()
    assert "the doomed loop ended" in caplog.text and "Abort: a bug" in caplog.text
    assert not healthy.done()
    await loops.close()
    assert healthy.cancelled()


async def test_loops_stopped_or_cancelled_are_no_failure() -> None:
    loops = Loops()
    stop_asked = asyncio.Event()

    async def graceful() -> None:
        await stop_asked.wait()

    first = loops.keep_running("a loop", lambda: asyncio.sleep(0.01))
    loops.start("a graceful loop", graceful(), stop=stop_asked.set)
    cancelled = loops.keep_running("a cancelled loop", lambda: asyncio.sleep(0.01))
    cancelled.cancel()
    await loops.stop(first)
    await loops.close()
    loops.check()
    stop = asyncio.Event()
    stop.set()
    await loops.wait(stop)


async def test_loops_stopped_are_forgotten() -> None:
    """A worker stops a reporter per task: none may stay behind (with the run it holds)."""
    loops = Loops()
    stopped = [loops.keep_running(f"loop {n}", lambda: asyncio.sleep(0.01)) for n in range(50)]
    for task in stopped:
        await loops.stop(task)
    collected = weakref.WeakSet(stopped)
    del stopped, task
    gc.collect()
    assert len(collected) == 0
