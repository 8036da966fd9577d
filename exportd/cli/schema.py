"""``exportd schema``: the JSON Schema of the wire messages."""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

from exportd.config import Settings
from exportd.schemas import MESSAGES, message_schema


def add_parser(commands: Any) -> None:
    """Add the ``schema`` command to the ``exportd`` parser's sub-commands."""
    parser = commands.add_parser(
        "schema",
        help="print the JSON Schema of the wire messages",
        description="Print the JSON Schema (draft 2020-12) of one wire message, or of all "
        "of them as one object keyed by name.",
    )
    parser.add_argument(
        "message",
        nargs="?",
        choices=list(MESSAGES),
        help="the message whose schema to print (default: all of them)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the schema(s) as indented JSON."""
    names = [args.message] if args.message else list(MESSAGES)
    schemas = {name: message_schema(name) for name in names}
    document = schemas[args.message] if args.message else schemas
    print(msgspec.json.format(msgspec.json.encode(document), indent=2).decode())
    return 0
