"""The engine's batcher: calls that arrive together are made as one, each caller gets its
own outcome (or exception), and a call that fails fails every caller of its batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from exportd.engine.batching import Batcher


class Doubling:
    """Doubles numbers, a batch at a time, noting each batch; a negative number fails alone,
    zero fails its whole batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        await self.release.wait()
        if 0 in items:
            raise OSError("the store is gone")
        return [ValueError(f"{n} is negative") if n < 0 else 2 * n for n in items]


async def test_calls_of_one_turn_are_one_batch_with_each_outcome_its_own() -> None:
    run = Doubling()
    batcher = Batcher(run)
    results = await asyncio.gather(*(batcher.call(n) for n in (1, -2, 3)), return_exceptions=True)
    assert run.batches == [[1, -2, 3]]
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], ValueError)


async def test_calls_made_while_a_batch_runs_go_in_the_next_one() -> None:
    run = Doubling()
    run.release.clear()
    batcher = Batcher(run)
    first = asyncio.create_task(batcher.call(1))
    await asyncio.sleep(0.01)  # the first batch is running
    later = [asyncio.create_task(batcher.call(n)) for n in (2, 3)]
    await asyncio.sleep(0.01)
    run.release.set()
    assert [await first, *[await task for task in later]] == [2, 4, 6]
    assert run.batches == [[1], [2, 3]]
    await batcher.drained()


async def test_a_batch_that_fails_fails_each_of_its_callers_and_not_the_next() -> None:
    run = Doubling()
    batcher = Batcher(run)
    results = await asyncio.gather(batcher.call(0), batcher.call(5), return_exceptions=True)
    assert all(isinstance(result, OSError) for result in results)
    assert await batcher.call(4) == 8


async def test_a_caller_that_stops_waiting_leaves_the_others_their_outcomes() -> None:
    run = Doubling()
    run.release.clear()
    batcher = Batcher(run)
    gone = asyncio.create_task(batcher.call(1))
    kept = asyncio.create_task(batcher.call(2))
    await asyncio.sleep(0.01)
    gone.cancel()
    run.release.set()
    assert await kept == 4
    with pytest.raises(asyncio.CancelledError):
        await gone
    await batcher.drained()
