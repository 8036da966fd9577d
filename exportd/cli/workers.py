"""``exportd workers``: the workers the engine hears from, and those it lost."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from exportd.cli.arguments import add_broker_option
from exportd.cli.runtime import engine_client
from exportd.cli.text import aligned
from exportd.config import Settings
from exportd.messages import WorkerSnapshot

COLUMNS = ("WORKER", "STATE", "HOST", "PID", "VERSION", "TASKS", "LAST SEEN", "SOURCES", "FORMATS")


def add_parser(commands: Any, name: str, help_: str) -> None:
    """Add the ``workers`` command to the ``exportd`` parser's sub-commands."""
    parser = commands.add_parser(
        name,
        help=help_,
        description="List the workers a running engine hears from (each says every "
        "worker.heartbeat_interval what it runs and can export), and those it lost "
        "(silent for engine.worker_timeout): exportd serve through its control socket "
        "(EXPORTD_HOME/control.sock) when it exists and no --broker is given, else "
        "exportd engine through RabbitMQ.",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object: the workers in full"
    )
    add_broker_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the workers as a table, or as JSON."""
    with engine_client(settings, args.broker) as client:
        workers = client.workers()
    if args.json:
        print(msgspec.json.encode({"workers": workers}).decode())
    elif not workers:
        print("no workers: the engine has heard from none")
    else:
        print(table(workers, datetime.now(UTC)))
        lost = sum(worker.state == "lost" for worker in workers)
        print(f"{len(workers) - lost} live, {lost} lost")
    return 0


def table(workers: Sequence[WorkerSnapshot], now: datetime) -> str:
    """The workers as an aligned table with a header row; last seen as seconds before
    ``now``."""
    rows: list[Sequence[str]] = [COLUMNS]
    rows += [
        (
            worker.name,
            worker.state,
            worker.host,
            str(worker.pid),
            worker.version,
            f"{len(worker.tasks)}/{worker.concurrency}",
            f"{max(0.0, (now - worker.last_seen).total_seconds()):.0f} s ago",
            ",".join(source.name for source in worker.sources),
            ",".join(format_.name for format_ in worker.formats),
        )
        for worker in workers
    ]
    return aligned(rows)
