"""``exportd worker``: a worker of the distributed mode, on RabbitMQ."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from typing import Any

from exportd.cli.arguments import add_broker_option, with_broker, with_concurrency
from exportd.cli.runtime import amqp_bus, run_until_stopped
from exportd.config import Settings
from exportd.kernel.datastores import data_store
from exportd.metrics.listener import serving_metrics
from exportd.metrics.process import ProcessMetrics
from exportd.plugins.manager import load_plugins
from exportd.workers.worker import Worker

LISTEN_FIELD = "worker.metrics_listen"


def add_parser(commands: Any, name: str, help_: str) -> None:
    """Add the ``worker`` command to the ``exportd`` parser's sub-commands."""
    parser = commands.add_parser(
        name,
        help=help_,
        description="Run a worker on RabbitMQ: it takes export tasks from the engine "
        "(exportd engine), runs them and stores their files.  Run as many as you like, on "
        "any host; they must share the storage with the engine.  On SIGINT or SIGTERM it "
        "takes no more tasks, gives the running ones worker.shutdown_grace seconds to "
        "finish, then returns the rest to the queue for another worker.  With the "
        "worker.metrics_listen setting (HOST:PORT) it serves /metrics and /healthz there.",
    )
    add_broker_option(parser)
    parser.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="exports run at once, each in a thread (default: the worker.concurrency setting, 1)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the worker until SIGINT or SIGTERM, then stop gracefully."""
    settings = with_concurrency(
        with_broker(settings, args.broker), args.concurrency, "--concurrency"
    )
    plugins = load_plugins(settings)
    data_store(settings)  # a data.url it cannot use stops it now (no connection yet)
    name = f"{socket.gethostname()}:{os.getpid()}"
    metrics = ProcessMetrics()

    async def service(stop: asyncio.Event) -> None:
        worker: Worker | None = None

        def health() -> str | None:
            return "connecting to the broker" if worker is None else worker.health()

        # Listening first: an address it cannot listen on stops it before it connects.
        async with (
            serving_metrics(settings.worker.metrics_listen, LISTEN_FIELD, metrics, health),
            amqp_bus(settings, f"exportd worker {name}", metrics) as bus,
        ):
            worker = Worker(bus, plugins, settings, name=name, metrics=metrics)
            await worker.run(stop)

    return run_until_stopped(service, settings.log)
