"""``exportd schema``: the JSON Schema of the wire messages, and the OpenAPI document of
the HTTP API; ``--write`` regenerates the copies that ``docs/schemas/`` ships."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import msgspec

from exportd.config import Settings
from exportd.schemas import MESSAGES, message_schema

OPENAPI_FILE = "openapi.json"


def add_parser(commands: Any, name: str, help_: str) -> None:
    """Add the ``schema`` command to the ``exportd`` parser's sub-commands."""
    parser = commands.add_parser(
        name,
        help=help_,
        description="Print the JSON Schema (draft 2020-12) of one wire message, or of all "
        "of them as one object keyed by name; or the OpenAPI document of the HTTP API "
        "(its built-in routes).  --write FOLDER writes each as a file instead: "
        "`exportd schema --write docs/schemas` regenerates the shipped copies.",
    )
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument(
        "message",
        nargs="?",
        choices=list(MESSAGES),
        help="the message whose schema to print (default: all of them)",
    )
    shown.add_argument(
        "--openapi", action="store_true", help="the HTTP API's OpenAPI document instead"
    )
    shown.add_argument(
        "--write",
        metavar="FOLDER",
        type=Path,
        help=f"write NAME.json for every message and {OPENAPI_FILE} into FOLDER",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the schema(s) as indented JSON, or write them all into ``args.write``."""
    if args.write is not None:
        for name, document in generated_documents(settings).items():
            (args.write / name).write_text(as_json(document))
            print(args.write / name)
    elif args.openapi:
        print(as_json(openapi(settings)), end="")
    elif args.message:
        print(as_json(message_schema(args.message)), end="")
    else:
        print(as_json({name: message_schema(name) for name in MESSAGES}), end="")
    return 0


def generated_documents(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every document ``docs/schemas/`` ships, by file name."""
    documents = {f"{name}.json": message_schema(name) for name in MESSAGES}
    return {**documents, OPENAPI_FILE: openapi(settings)}


def openapi(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document of the HTTP API's built-in routes."""
    from exportd.http.app import openapi_document  # Litestar only for this

    return openapi_document(settings)


def as_json(document: Any) -> str:
    """``document`` as the indented JSON the shipped files hold, ending in a newline."""
    return msgspec.json.format(msgspec.json.encode(document), indent=2).decode() + "\n"
