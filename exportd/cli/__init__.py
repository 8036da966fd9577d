"""The ``exportd`` command line: demo data, the plugin list, one-shot exports, and the
service: the embedded mode, the engine and workers, live events and the jobs.

A mistake a user can make ends the command with one line on stderr and a
non-zero exit code; only a bug in exportd itself shows a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from exportd import __version__
from exportd.bus.base import BusError
from exportd.cli import (
    demo,
    engine,
    export,
    jobs,
    plugins,
    schema,
    serve,
    tenants,
    watch,
    worker,
)
from exportd.cli.text import error_line
from exportd.client import Timeout
from exportd.config import load_settings
from exportd.errors import ConfigError, ExportError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        """Report a usage error in one line and exit with status 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every ``exportd`` command."""
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
    for command in (demo, plugins, export, schema, serve, engine, worker, watch, jobs, tenants):
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    try:
        args = build_parser().parse_args(argv)
        status: int = args.run(args, load_settings())
    except SystemExit as exit_:  # --help, --version or a usage error, already printed
        return int(exit_.code or 0)
    except ExportError as exc:
        return fail(describe(exc))
    except (BusError, Timeout) as exc:  # before OSError: Timeout is one
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    except KeyboardInterrupt:
        print("exportd: canceled", file=sys.stderr)
        return EXIT_INTERRUPTED
    return status


def describe(error: ExportError) -> str:
    """An error in one line: the fields at fault if it names any, else its message."""
    return error.message if isinstance(error, ConfigError) else error_line(error.body())


def fail(message: str) -> int:
    """Print ``message`` as one error line on stderr; the exit status of a failure."""
    print(f"exportd: error: {' '.join(message.splitlines())}", file=sys.stderr)
    return EXIT_FAILED
