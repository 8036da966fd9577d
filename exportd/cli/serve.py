"""``exportd serve``: the embedded mode; the engine and workers in one process over an
in-process bus, no broker."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from exportd.bus.local import LocalBus
from exportd.cli.arguments import add_http_option, with_concurrency, with_http
from exportd.cli.runtime import log_job_changes, run_until_stopped, topology
from exportd.config import Settings
from exportd.control import socket_path
from exportd.deliveries.service import delivering
from exportd.engine.control_socket import ControlSocket
from exportd.engine.service import Engine
from exportd.http.app import serving_http
from exportd.kernel.datastores import data_store
from exportd.metrics.process import ProcessMetrics
from exportd.plugins.manager import Plugins, load_plugins
from exportd.workers.worker import Worker

log = logging.getLogger("exportd")


def add_parser(commands: Any, name: str, help_: str) -> None:
    """Add the ``serve`` command to the ``exportd`` parser's sub-commands."""
    parser = commands.add_parser(
        name,
        help=help_,
        description="Run the engine, its HTTP API and its workers in one process, over an "
        "in-process bus: no RabbitMQ needed.  The job store and the files live under "
        "EXPORTD_HOME.  exportd jobs and exportd watch reach it through its control socket, "
        "EXPORTD_HOME/control.sock.  "
        "Its HTTP API serves the metrics of the engine and its workers at /metrics.  "
        "Logs a line per change of a job's status on stderr.  On SIGINT or SIGTERM the "
        "running exports get worker.shutdown_grace seconds to finish.",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="exports run at once, each in a worker thread (default: the "
        "worker.concurrency setting, 1)",
    )
    add_http_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until SIGINT or SIGTERM, then stop gracefully."""
    settings = with_http(with_concurrency(settings, args.workers, "--workers"), args.http)
    plugins = load_plugins(settings)
    data_store(settings)  # a data.url it cannot use stops it now (no connection yet)

    async def service(stop: asyncio.Event) -> None:
        async with (
            ControlSocket(socket_path(settings)) as control,
            embedded(settings, plugins) as engine,
            serving_http(engine, plugins, settings),
            control.serving(engine),
        ):
            log.info(
                "serving in one process, no broker: %d export(s) at once, files in %s",
                settings.worker.concurrency,
                settings.files_path,
            )
            await engine.loops.wait(stop)

    return run_until_stopped(service, settings.log)


@asynccontextmanager
async def embedded(settings: Settings, plugins: Plugins) -> AsyncIterator[Engine]:
    """The engine, the delivery service and a worker running up to
    ``worker.concurrency`` exports at once, on an in-process bus, with every change of
    a job's status logged; yields the engine once it runs (so that ``/readyz`` answers
    ready as soon as the HTTP API listens).  The worker's loops are the engine's:
    ``engine.loops.wait`` raises when any loop of the process ends on its own.

    At the end the worker stops first (running exports get ``worker.shutdown_grace``
    seconds to finish), then the engine, which stops the delivery service's loop before
    its job store (a delivery in hand is finished; those left are made at the next
    start).
    """
    engine_stop, worker_stop = asyncio.Event(), asyncio.Event()
    async with LocalBus(topology(settings)) as bus:
        changes = await log_job_changes(bus)
        metrics = ProcessMetrics()  # one registry: /metrics shows the engine and its worker
        engine = Engine(bus, plugins, settings, metrics=metrics)
        async with delivering(engine, bus, plugins, settings):
            worker = Worker(
                bus, plugins, settings, name="embedded", loops=engine.loops, metrics=metrics
            )
            engine_run = asyncio.create_task(engine.run(engine_stop), name="exportd engine")
            worker_run = asyncio.create_task(worker.run(worker_stop), name="exportd worker")
            try:
                await engine.until_running(engine_run)
                yield engine
            finally:
                # The worker's last updates travel on this bus, which ends with the
                # process: the engine must still be there to record them.
                worker_stop.set()
                try:
                    await worker_run
                finally:
                    engine_stop.set()
                    await engine_run
        await changes.cancel()
