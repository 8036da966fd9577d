"""``exportd demo-data``: fill the data store with deterministic demo data."""

from __future__ import annotations

import argparse
import time
from typing import Any

import msgspec

from exportd.cli.arguments import at_least
from exportd.config import Settings
from exportd.config.data_url import is_postgresql, redact
from exportd.data.demo import DemoData, DemoSummary, generate_demo_data, load_demo_data
from exportd.errors import InvalidRequest
from exportd.kernel.datastores import open_store

COUNTS = (
    ("orgs", "orgs"),
    ("rooms", "rooms"),
    ("conversations", "conversations"),
    ("messages", "messages"),
    ("workflows", "workflows"),
    ("workflow_events", "workflow events"),
    ("qna_channels", "Q&A channels"),
    ("qna_rooms", "Q&A rooms"),
    ("qna_questions", "Q&A questions"),
)


def add_parser(commands: Any, name: str, help_: str) -> None:
    """Add the ``demo-data`` command to the ``exportd`` parser's sub-commands."""
    parser = commands.add_parser(
        name,
        help=help_,
        description="Replace the data store (data.url: EXPORTD_HOME/data.db by default) "
        "with deterministic demo data: orgs, rooms with real and non-real chats, workflows "
        "of every kind, Q&A channels.  The same seed always gives the same rows, in SQLite "
        "and in PostgreSQL.  A PostgreSQL store is filled only when --url names it: its "
        "exportd tables are replaced in one transaction.",
    )
    parser.add_argument(
        "--url",
        metavar="URL",
        help="the store to fill, sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
        "(default: data.url if it is a SQLite file; a PostgreSQL store is filled only "
        "when --url names it)",
    )
    parser.add_argument(
        "--messages",
        type=at_least(0),
        default=100_000,
        metavar="N",
        help="chat messages (default: 100000)",
    )
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default: 1)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Generate the data, then print what was written, how long it took and what to try."""
    if args.url is None and is_postgresql(settings.data_url):
        raise InvalidRequest(
            f"exportd demo-data replaces every table of the store it fills, and data.url "
            f"({redact(settings.data_url)}) is a PostgreSQL one: to fill it, pass --url "
            "naming it"
        )
    url = args.url or settings.data_url
    store = open_store(url)  # a bad URL, or psycopg missing, is an error naming data.url
    started = time.perf_counter()
    summary: DemoData
    if store.path is None:
        summary = load_demo_data(url, messages=args.messages, seed=args.seed)
    else:
        summary = generate_demo_data(store.path, messages=args.messages, seed=args.seed)
    seconds = time.perf_counter() - started
    if args.json:
        data = {**msgspec.to_builtins(summary, enc_hook=str), "seconds": round(seconds, 3)}
        print(msgspec.json.encode(data).decode())
    else:
        print(describe(summary, seconds))
    return 0


def describe(summary: DemoData, seconds: float) -> str:
    """The summary for people: counts, the period, and an export to try for each source."""
    start, end = summary.start.date().isoformat(), summary.end.date().isoformat()
    interval = f"--start {start} --end {end}"
    written = summary.path if isinstance(summary, DemoSummary) else summary.url
    lines = [f"Wrote {written} in {seconds:.1f} s; data from {start} to {end} (UTC)"]
    lines += [f"  {label:<16}{getattr(summary, name):>12,}" for name, label in COUNTS]
    lines += [
        "Try:",
        f"  exportd export rooms -p room_id={summary.room_id} -p type=logs -f xlsx {interval}",
        f"  exportd export rooms -p room_id={summary.room_id} -p type=stats -f txt {interval}",
        f"  exportd export workflows -p workflow_id={summary.workflow_id} -p step_index=0 "
        f"-p filters=[] {interval}",
        f"  exportd export qna -p channel_id={summary.channel_id} -f json {interval}",
        "and, for the HTTP API, a tenant that owns that room:",
        f"  exportd orgs create Demo --id {summary.org_id} --benefit qna",
    ]
    return "\n".join(lines)
