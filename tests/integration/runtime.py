"""A running engine and workers over a bus, for the runtime tests."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from exportd.bus.base import Bus, Message
from exportd.config import Settings
from exportd.engine.service import Engine
from exportd.messages import ExportRequest, JobEvent, JobSnapshot
from exportd.plugins.manager import Plugins
from exportd.workers.worker import Worker

FINAL = {"done", "failed", "canceled", "deleted", "expired"}


@dataclass
class Events:
    """Every public event seen, and a way to wait for the ones a test expects."""

    seen: list[JobEvent] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, message: Message) -> None:
        """Record one event (a bus handler)."""
        event = msgspec.json.decode(message.body, type=JobEvent)
        async with self._changed:
            self.seen.append(event)
            self._changed.notify_all()
        await message.ack()

    async def wait_for(self, job_id: str, type_: str, timeout: float = 30) -> JobEvent:
        """The first event of ``type_`` about ``job_id``, waiting up to ``timeout`` seconds."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for event in self.seen:
                    if event.job is not None and event.job.id == job_id and event.type == type_:
                        return event
                await self._changed.wait()

    def of(self, job_id: str) -> list[JobEvent]:
        """The events about ``job_id`` so far."""
        return [e for e in self.seen if e.job is not None and e.job.id == job_id]


@dataclass
class Runtime:
    """An engine, its workers and an event subscriber, running on one bus."""

    bus: Bus
    engine: Engine
    workers: list[Worker]
    events: Events
    settings: Settings

    async def submit(self, **fields: Any) -> JobSnapshot:
        """Submit a request given as keyword fields."""
        return await self.engine.submit(msgspec.convert(fields, ExportRequest))

    def file_bytes(self, job: JobSnapshot) -> list[bytes]:
        """The content of each part's file, from the storage."""
        contents = []
        for part in job.parts:
            assert part.file is not None
            with self.engine.storage.open(part.file.key) as file:
                contents.append(file.read())
        return contents

    def check_files(self, job: JobSnapshot) -> None:
        """Every part's file is in the storage, whole: its size and sha256 are as reported."""
        for part, content in zip(job.parts, self.file_bytes(job), strict=True):
            assert part.file is not None
            assert len(content) == part.file.size
            assert hashlib.sha256(content).hexdigest() == part.file.sha256


@asynccontextmanager
async def running(
    bus: Bus,
    settings: Settings,
    *,
    workers: int = 1,
    plugins: Plugins | None = None,
    worker_plugins: Plugins | None = None,
) -> AsyncIterator[Runtime]:
    """Start ``bus``, an engine and ``workers`` workers; stop them all at the end.  The
    workers have ``worker_plugins`` if given, else the engine's ``plugins``."""
    plugins = plugins or Plugins(settings=settings)
    stop = asyncio.Event()
    async with bus:
        events = Events()
        subscription = await bus.subscribe(bus.topology.events, "#", events.handle)
        engine = Engine(bus, plugins, settings)
        crew = [
            Worker(bus, worker_plugins or plugins, settings, name=f"worker-{n}")
            for n in range(workers)
        ]
        tasks = [asyncio.create_task(engine.run(stop))]
        tasks += [asyncio.create_task(worker.run(stop)) for worker in crew]
        try:
            yield Runtime(bus, engine, crew, events, settings)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await subscription.cancel()


def settings_in(home: Path, **changes: Any) -> Settings:
    """Settings with ``home`` and quick timings for tests."""
    base = Settings(home=str(home))
    return msgspec.convert({**msgspec.to_builtins(base), **changes}, Settings)
