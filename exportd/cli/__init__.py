"""The ``exportd`` command line: demo data, the plugin list, one-shot exports, and the
service: the embedded mode, the engine and workers, live events and the jobs.

A mistake a user can make ends the command with one line on stderr and a
non-zero exit code; only a bug in exportd itself shows a traceback.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple, NoReturn

from exportd import __version__
from exportd.config import load_settings
from exportd.errors import ConfigError, ExportError, error_line

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Command(NamedTuple):
    """A command of ``exportd``: the module that adds its parser, and its line in
    ``exportd --help``."""

    module: str
    help: str


COMMANDS = {
    "demo-data": Command("demo", "fill the data store (data.url, --url) with demo data"),
    "plugins": Command(
        "plugins", "list the sources and formats, with the plugin and package of each"
    ),
    "export": Command("export", "export rows of a source to a file"),
    "schema": Command(
        "schema",
        "print the JSON Schema of the wire messages, or the HTTP API's OpenAPI document",
    ),
    "serve": Command(
        "serve", "run the engine, the HTTP API and workers in one process, with no broker"
    ),
    "engine": Command("engine", "run the engine on RabbitMQ (workers run apart: exportd worker)"),
    "worker": Command(
        "worker", "run a worker on RabbitMQ: it runs the exports the engine dispatches"
    ),
    "watch": Command("watch", "follow job events live"),
    "queues": Command("queues", "show the depth and consumers of exportd's queues on RabbitMQ"),
    "dead": Command("dead", "list, show, replay or drop the messages of the dead-letter queues"),
    "jobs": Command("jobs", "list, show, cancel, restart or delete the engine's jobs"),
    "workers": Command("workers", "list the workers the engine hears from, and those it lost"),
    "orgs": Command("tenants", "add, list and change organisations (tenants)"),
    "users": Command("tenants", "add and list the users of organisations"),
    "tokens": Command("tenants", "make, list and revoke API tokens"),
}
"""Every command, by name.  Only the module of the command that runs is imported, so
that a command loads what it needs and nothing more (``exportd export`` no HTTP
framework, say): its ``add_parser(commands, name, help_)`` adds the command's parser,
whose ``run(args, settings)`` default carries it out."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        """Report a usage error in one line and exit with status 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of ``exportd``, with the whole parser of the command that ``argv``
    names, and no other; when ``argv`` names none of its commands, each command's line of
    help, which ``exportd --help`` and a usage error list.  (Each parser takes time to
    make, and a command parses its own arguments only.)"""
    parser = Parser(
        prog="exportd",
        description="exportd: a plugin-based export engine for conversation data.  "
        "Settings come from ./exportd.toml (or $EXPORTD_CONFIG) and EXPORTD_* variables.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"exportd {__version__}")
    commands = parser.add_subparsers(
        title="commands",
        metavar="COMMAND",
        required=True,
        help="what to do; exportd COMMAND --help describes it",
    )
    chosen = named_command(argv)
    if chosen in COMMANDS:
        command = COMMANDS[chosen]
        module = importlib.import_module(f"exportd.cli.{command.module}")
        module.add_parser(commands, chosen, command.help)
        return parser
    for name, command in COMMANDS.items():
        commands.add_parser(name, help=command.help)
    return parser


def named_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first argument that is not an option (the options
    of ``exportd`` itself take no value)."""
    return next((argument for argument in argv if not argument.startswith("-")), None)


@contextmanager
def start_up() -> Iterator[None]:
    """A stretch of start-up (imports, parsers, plugins): what it makes lives as long as
    the process and holds no cycles to free, so the cyclic collector is paused meanwhile
    (it ran some 40 times during a small export's start-up, walking every module's
    objects) and what start-up made is frozen out of its way after, for good: the
    collector need not walk it again and again during an export."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        with start_up():
            args = build_parser(argv).parse_args(argv)
            settings = load_settings()
        status: int = args.run(args, settings)
    except SystemExit as exit_:  # --help, --version or a usage error, already printed
        return int(exit_.code or 0)
    except ExportError as exc:
        return fail(describe(exc))
    except OSError as exc:  # a Timeout of the engine's clients among them
        return fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    except KeyboardInterrupt:
        print("exportd: canceled", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if not is_bus_error(exc):
            raise
        return fail(str(exc))
    return status


def is_bus_error(error: Exception) -> bool:
    """Whether ``error`` is a :class:`~exportd.bus.base.BusError`.  Only a command that
    loaded the bus can raise one, so the bus is looked up, not imported: a command that
    talks to no broker does not load it (nor asyncio) to report its errors."""
    bus = sys.modules.get("exportd.bus.base")
    return bus is not None and isinstance(error, bus.BusError)


def describe(error: ExportError) -> str:
    """An error in one line: the fields at fault if it names any, else its message."""
    return error.message if isinstance(error, ConfigError) else error_line(error.body())


def fail(message: str) -> int:
    """Print ``message`` as one error line on stderr; the exit status of a failure."""
    print(f"exportd: error: {' '.join(message.splitlines())}", file=sys.stderr)
    return EXIT_FAILED
