"""Reading the job store off the event loop.

The engine's own :class:`~exportd.engine.store.JobStore` serves its writes on the event
loop.  Reads that callers ask for (the HTTP API's ``GET /v1/jobs`` and
``GET /v1/jobs/{id}``, the facades, the delivery service) go to :class:`StoreReaders`
instead: a few threads, each with a connection of its own to the same file (SQLite
connections serve one thread at a time), so that while SQLite reads, the loop goes
on serving other connections.  In WAL mode a reader sees the last committed state and
never waits for the writer; every change the engine makes is committed before its
method returns, so a read that follows it sees it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from exportd.bus.topology import Topology
from exportd.engine.store import JobStore

T = TypeVar("T")

READ_THREADS = 4
"""Threads (and connections) reading the job store at once."""


class StoreReaders:
    """Runs read-only calls on :class:`JobStore` in a small pool of threads, each with its
    own store of ``path``, opened on its first call."""

    def __init__(self, path: Path, topology: Topology, *, threads: int = READ_THREADS) -> None:
        self.path = path
        self.topology = topology
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="exportd-read")
        self._local = threading.local()
        self._opened: list[JobStore] = []
        self._lock = threading.Lock()

    async def read(self, call: Callable[[JobStore], T]) -> T:
        """``call(store)`` in a reading thread, with that thread's store."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, call)

    def _call(self, call: Callable[[JobStore], T]) -> T:
        store: JobStore | None = getattr(self._local, "store", None)
        if store is None:
            store = JobStore(self.path, self.topology)
            self._local.store = store
            with self._lock:
                self._opened.append(store)
        return call(store)

    def close(self) -> None:
        """Wait for the reads under way, then close every thread's store."""
        self._pool.shutdown(wait=True)
        with self._lock:
            opened, self._opened = self._opened, []
        for store in opened:
            store.close()
