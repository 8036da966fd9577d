"""What a worker tells every engine of itself, each ``worker.heartbeat_interval``: a
:class:`~exportd.messages.WorkerHeartbeat` on the fanout ``exportd.workers``.

The heartbeats go on through any :class:`Exception` (the broker gone), logging it once
per streak and backing off (:mod:`exportd.supervision`); a worker that shuts down says
goodbye once, and if the broker does not take that, the engines see it lost after
``engine.worker_timeout`` instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

import msgspec

from exportd.bus.base import Bus, BusError
from exportd.messages import PluginInfo, RunningTask, WorkerFacts, WorkerHeartbeat
from exportd.plugins.manager import Plugins
from exportd.version import __version__

log = logging.getLogger(__name__)

BUILT_IN_PACKAGE = "exportd"
"""The package the plugin manager names for the built-in plugins, without a version."""


def plugin_infos(plugins: Plugins, kind: str, names: Iterable[str]) -> list[PluginInfo]:
    """The sources, formats or storages (``kind``) ``names``, each with its plugin and
    that plugin's package and version."""
    infos = []
    for name in names:
        origin = plugins.origin(kind, name)
        package = origin.package
        if package == BUILT_IN_PACKAGE:
            package = f"{BUILT_IN_PACKAGE} {__version__}"
        infos.append(PluginInfo(name=name, plugin=origin.plugin, package=package))
    return infos


class Heartbeats:
    """The heartbeats of the worker called ``name`` on ``bus``; ``running`` tells the
    tasks it runs at the moment of each."""

    def __init__(
        self,
        bus: Bus,
        plugins: Plugins,
        *,
        name: str,
        concurrency: int,
        interval: float,
        running: Callable[[], list[RunningTask]],
    ) -> None:
        self.bus = bus
        self.interval = interval
        self._running = running
        kinds: Mapping[str, Iterable[str]] = {
            "source": plugins.sources,
            "format": plugins.formats,
            "storage": plugins.storages,
        }
        infos = {kind: plugin_infos(plugins, kind, names) for kind, names in kinds.items()}
        self.facts = WorkerFacts(
            name=name,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            concurrency=concurrency,
            heartbeat_interval=interval,
            sources=infos["source"],
            formats=infos["format"],
            storages=infos["storage"],
            started_at=datetime.now(UTC),
        )
        """What the worker's heartbeats say of it, but its running tasks."""

    def heartbeat(self, *, leaving: bool = False) -> WorkerHeartbeat:
        """The heartbeat to send now (a goodbye if ``leaving``)."""
        facts = msgspec.structs.asdict(self.facts)
        facts["tasks"] = [] if leaving else self._running()
        return WorkerHeartbeat(**facts, sent_at=datetime.now(UTC), leaving=leaving)

    async def beat(self) -> None:
        """One turn of the heartbeat loop: send a heartbeat, then wait ``interval``.  A
        publish that fails raises (the loop logs it, backs off and tries again)."""
        await self._send(self.heartbeat())
        await asyncio.sleep(self.interval)

    async def say_goodbye(self) -> None:
        """Tell the engines this worker shuts down; a broker that does not take it is
        logged (the engines see the worker lost after ``engine.worker_timeout``)."""
        try:
            await self._send(self.heartbeat(leaving=True))
        except BusError as exc:
            log.warning("worker %s could not say goodbye: %s", self.facts.name, exc)

    async def _send(self, beat: WorkerHeartbeat) -> None:
        await self.bus.publish(self.bus.topology.workers, "", msgspec.json.encode(beat))
