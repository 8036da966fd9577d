"""``exportd plugins``: the sources and formats on offer and where each comes from."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import msgspec

from exportd.config import Settings
from exportd.plugins.manager import Plugins, load_plugins


def add_parser(commands: Any, name: str, help_: str) -> None:
    """Add the ``plugins`` command to the ``exportd`` parser's sub-commands."""
    parser = commands.add_parser(
        name,
        help=help_,
        description="List every source and format of the enabled plugins, with the plugin "
        "and the package each comes from.",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object, with each source's parameters and each format's "
        "options as JSON Schema",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the listing as a table or, with ``--json``, as JSON."""
    plugins = load_plugins(settings)
    if args.json:
        print(msgspec.json.encode(listing(plugins)).decode())
    else:
        print(table(plugins))
    return 0


def listing(plugins: Plugins) -> dict[str, list[dict[str, Any]]]:
    """Every source and format, its origin and the JSON Schema of its parameters or options."""
    sources = [
        {
            **dataclasses.asdict(plugins.origin("source", name)),
            "params": msgspec.json.schema(source.Params),
        }
        for name, source in plugins.sources.items()
    ]
    formats = [
        {
            **dataclasses.asdict(plugins.origin("format", name)),
            "media_type": format_.media_type,
            "extension": format_.extension,
            "options": msgspec.json.schema(format_.Options),
        }
        for name, format_ in plugins.formats.items()
    ]
    return {"sources": sources, "formats": formats}


def table(plugins: Plugins) -> str:
    """Sources, then formats: name, description, and ``package (plugin)``."""
    sections = {
        "Sources": [plugins.origin("source", name) for name in plugins.sources],
        "Formats": [plugins.origin("format", name) for name in plugins.formats],
    }
    every = [origin for origins in sections.values() for origin in origins]
    name_width = max((len(o.name) for o in every), default=0)
    description_width = max((len(o.description) for o in every), default=0)
    lines: list[str] = []
    for title, origins in sections.items():
        lines.append(f"{title}:")
        lines += [
            f"  {o.name:<{name_width}}  {o.description:<{description_width}}  "
            f"{o.package} ({o.plugin})"
            for o in origins
        ]
        if not origins:
            lines.append("  (none)")
    return "\n".join(lines)
