"""``exportd queues``: the depth and consumers of every queue of exportd on RabbitMQ."""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from typing import Any

from exportd.bus.inspection import BrokerInspector, QueueDepth
from exportd.cli.arguments import add_broker_option
from exportd.cli.runtime import inspector
from exportd.cli.text import aligned
from exportd.config import Settings

COLUMNS = ("QUEUE", "READY", "CONSUMERS")
MISSING = "missing"


def add_parser(commands: Any, name: str, help_: str) -> None:
    """Add the ``queues`` command to the ``exportd`` parser's sub-commands."""
    parser = commands.add_parser(
        name,
        help=help_,
        description="Show every queue of exportd on RabbitMQ, the dead-letter queues "
        "included (with the broker.prefix setting in front of each name): the messages "
        "ready in it and its consumers.  A queue no engine or worker declared yet is "
        "shown as missing.  The embedded mode (exportd serve) has no broker.",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a JSON array of {name, messages, consumers} (null when missing)",
    )
    add_broker_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the queues as a table, or as JSON."""
    depths = asyncio.run(_depths(inspector(settings, args.broker)))
    if args.json:
        print(json.dumps([asdict(depth) for depth in depths]))
    else:
        print(table(depths))
    return 0


async def _depths(broker: BrokerInspector) -> list[QueueDepth]:
    async with broker:
        return await broker.depths()


def table(depths: list[QueueDepth]) -> str:
    """The queues as an aligned table with a header row."""
    rows = [COLUMNS]
    rows += [
        (
            depth.name,
            MISSING if depth.messages is None else str(depth.messages),
            MISSING if depth.consumers is None else str(depth.consumers),
        )
        for depth in depths
    ]
    return aligned(rows)
