"""``exportd engine``: the engine of the distributed mode, on RabbitMQ."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from typing import Any

from exportd.cli.arguments import add_broker_option, add_http_option, with_broker, with_http
from exportd.cli.runtime import amqp_bus, log_job_changes, run_until_stopped
from exportd.config import Settings
from exportd.deliveries.service import delivering
from exportd.engine.service import Engine
from exportd.http.app import serving_http
from exportd.kernel.datastores import data_store
from exportd.metrics.process import ProcessMetrics
from exportd.plugins.manager import load_plugins


def add_parser(commands: Any, name: str, help_: str) -> None:
    """Add the ``engine`` command to the ``exportd`` parser's sub-commands."""
    parser = commands.add_parser(
        name,
        help=help_,
        description="Run the engine on RabbitMQ: it takes export requests and job commands, "
        "records jobs in EXPORTD_HOME/jobs.db, serves the HTTP API, dispatches their tasks "
        "to workers (exportd worker, on any host), announces every change of a job and "
        "sends the files of jobs that ask for it by email, and serves its metrics at /metrics "
        "on its HTTP listener.  Run one.  "
        "Logs a line per change of a job's status on stderr.  On SIGINT or SIGTERM it "
        "stops taking messages and exits.",
    )
    add_broker_option(parser)
    add_http_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the engine until SIGINT or SIGTERM."""
    settings = with_http(with_broker(settings, args.broker), args.http)
    plugins = load_plugins(settings)
    data_store(settings)  # a data.url it cannot use stops it now (no connection yet)

    async def service(stop: asyncio.Event) -> None:
        name = f"exportd engine {socket.gethostname()}:{os.getpid()}"
        metrics = ProcessMetrics()
        async with amqp_bus(settings, name, metrics) as bus:
            changes = await log_job_changes(bus)
            engine = Engine(bus, plugins, settings, metrics=metrics)
            try:
                async with (
                    delivering(engine, bus, plugins, settings),
                    serving_http(engine, plugins, settings),
                ):
                    await engine.run(stop)
            finally:
                await changes.cancel()

    return run_until_stopped(service, settings.log)
