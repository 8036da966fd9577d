"""``exportd watch``: job events as they happen, with a progress bar per running job."""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import Any, TextIO

import msgspec

from exportd.cli.arguments import add_broker_option
from exportd.cli.progress import render
from exportd.cli.runtime import engine_client, interrupt_on_signals
from exportd.cli.text import event_line
from exportd.client import Client
from exportd.config import Settings
from exportd.messages import JobEvent, JobSnapshot, Progress

RUNNING = ("processing", "uploading")
UP_AND_CLEAR_BELOW = "\x1b[{lines}A\r\x1b[J"


def add_parser(commands: Any, name: str, help_: str) -> None:
    """Add the ``watch`` command to the ``exportd`` parser's sub-commands."""
    parser = commands.add_parser(
        name,
        help=help_,
        description="Print a line for every change of a job's status as the engine "
        "announces it and, on a terminal, a progress bar for every running job; until "
        "Ctrl-C.  PATTERN matches the events' routing keys, ORG.SOURCE.STATUS (_ for no "
        "org): * stands for one word, # for any number; e.g. 'org1.#', '*.rooms.done'.  "
        "Follows exportd serve through its control socket (EXPORTD_HOME/control.sock) when "
        "it exists and no --broker is given, else the engine's events on RabbitMQ.",
    )
    parser.add_argument(
        "pattern",
        nargs="?",
        default="#",
        metavar="PATTERN",
        help="the routing keys of the events to follow (default: #, every event)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print every event (progress too) as a line of JSON, a JobEvent; no bars",
    )
    add_broker_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the events until Ctrl-C (or SIGTERM)."""
    interrupt_on_signals()
    view = LiveView(sys.stdout, bars=sys.stdout.isatty())
    with engine_client(settings, args.broker) as client:
        if isinstance(client, Client) and not client.declared():
            print(undeclared(client.topology.events), file=sys.stderr)
        with client.events(args.pattern) as events:
            try:  # from the line on, which says Ctrl-C stops, Ctrl-C is no failure
                print(
                    f"watching job events matching {args.pattern!r}; Ctrl-C to stop",
                    file=sys.stderr,
                )
                for event in events:
                    if args.json:
                        print(msgspec.json.encode(event).decode(), flush=True)
                    else:
                        view.show(event)
            except KeyboardInterrupt:
                pass
            finally:
                view.close()
    return 0


def undeclared(exchange: str) -> str:
    """What a watch on a broker where no engine has declared ``exchange`` tells."""
    return (
        f"no engine or worker has declared the events exchange {exchange} on this broker "
        "(is EXPORTD_BROKER__PREFIX right?); waiting for one"
    )


class LiveView:
    """Event lines that scroll and, with ``bars``, a progress bar per running job under
    them, redrawn after every event."""

    def __init__(self, stream: TextIO, *, bars: bool) -> None:
        self.stream = stream
        self.bars = bars
        self.running: dict[str, JobSnapshot] = {}
        self.drawn = 0

    def show(self, event: JobEvent) -> None:
        """A line for ``event`` unless it only brings progress; then the bars again."""
        self._erase()
        if event.type != "job.progress":
            moment = event.occurred_at.astimezone()
            self.stream.write(f"{moment:%H:%M:%S}  {event_line(event)}\n")
        job = event.job
        if job is not None and job.status in RUNNING:
            self.running[job.id] = job
        elif job is not None:
            self.running.pop(job.id, None)
        self._draw()
        self.stream.flush()

    def close(self) -> None:
        """Erase the bars."""
        self._erase()
        self.stream.flush()

    def _draw(self) -> None:
        if not self.bars:
            return
        width = shutil.get_terminal_size().columns
        for job in self.running.values():
            progress = Progress(job.progress.rows, job.progress.bytes, job.progress.total)
            label = f"{job.id[:8]} {job.request.source} to {job.request.format}"
            self.stream.write(render(progress, 0, label)[: width - 1] + "\n")
        self.drawn = len(self.running)

    def _erase(self) -> None:
        if self.drawn:
            self.stream.write(UP_AND_CLEAR_BELOW.format(lines=self.drawn))
            self.drawn = 0
