"""Calls that arrive together, made as one: what the engine's handlers ask of the job store
while it is busy goes to it in one call (one transaction, one commit) rather than one each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Hands the items given to :meth:`call` to ``run`` together: those given within one
    turn of the event loop, and those given while ``run`` is busy with the batch before.

    ``run`` takes a batch and returns an outcome per item, in order: an outcome that is an
    :class:`Exception` is raised to that item's caller alone.  An exception ``run`` raises
    is raised to every caller of its batch.
    """

    def __init__(self, run: Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]]) -> None:
        self._run = run
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def call(self, item: T) -> R:
        """``item``'s outcome, once the batch it joined has run."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def drained(self) -> None:
        """Return once every batch given so far has run."""
        while self._draining is not None:
            await asyncio.shield(self._draining)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._settle(batch)
        finally:
            self._draining = None

    async def _settle(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            outcomes = await self._run([item for item, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # the loop shuts down: no caller is left to answer
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # its caller stopped waiting
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
