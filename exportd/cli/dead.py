"""``exportd dead``: the messages of exportd's dead-letter queues on RabbitMQ, what was
refused and why; replay them after a fix, or drop them."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from exportd.bus.inspection import BrokerInspector, Chosen, DeadMessage, Done
from exportd.cli.arguments import add_broker_option
from exportd.cli.runtime import inspector
from exportd.cli.text import aligned
from exportd.config import Settings
from exportd.errors import InvalidRequest
from exportd.messages import MIN_ID_PREFIX

QUEUES = ("requests", "tasks", "pieces", "status", "control")
"""The queues whose dead letters the command looks at, by their short names."""
COLUMNS = ("QUEUE", "POS", "ID", "REFUSED AT", "JOB", "REASON")
PAST = {"replay": "replayed", "drop": "dropped"}
SHOWN_ID = 12
"""Characters of an id the table shows (any start of MIN_ID_PREFIX or more selects)."""
ID_HELP = (
    f"the id of a dead message as 'exportd dead list' shows it, or its start "
    f"({MIN_ID_PREFIX} characters or more)"
)


def add_parser(commands: Any, name: str, help_: str) -> None:
    """Add the ``dead`` command and its actions to the ``exportd`` parser."""
    parser = commands.add_parser(
        name,
        help=help_,
        description="Look at the messages exportd refused, in its dead-letter queues on "
        "RabbitMQ (requests, tasks, pieces, status and control, each NAME.dead): why each "
        "was refused (the x-exportd-error header exportd adds, or RabbitMQ's x-death), "
        "replay them to the queue they came from once the cause is fixed, or drop them.  "
        "A message is removed from its dead-letter queue only after RabbitMQ confirmed "
        "its replay: a command that dies midway loses nothing.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list", help="every dead message, oldest first", description="List the dead messages."
    )
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(run=run_list)

    show = actions.add_parser(
        "show", help="one dead message in full", description="Show one dead message in full."
    )
    show.add_argument("id", metavar="ID", type=message_id, help=ID_HELP)
    show.add_argument("--json", action="store_true", help="print it as a JSON object")
    show.set_defaults(run=run_show)

    replay = actions.add_parser(
        "replay",
        help="publish dead messages back to the queue they came from",
        description="Publish each chosen message back to the queue it was refused from "
        "(without its reply_to: nobody waits for that answer any more), then remove it "
        "from its dead-letter queue.",
    )
    drop = actions.add_parser(
        "drop", help="remove dead messages", description="Remove each chosen message for good."
    )
    for acting, verb in ((replay, "replay"), (drop, "drop")):
        acting.add_argument("ids", metavar="ID", nargs="*", type=message_id, help=ID_HELP)
        acting.add_argument("--all", action="store_true", help=f"{verb} every dead message")
        acting.set_defaults(run=run_action, action=verb)

    for subcommand in (listing, show, replay, drop):
        subcommand.add_argument(
            "--queue",
            choices=QUEUES,
            action="append",
            help="only the dead letters of this queue (again for more; default: all)",
        )
        add_broker_option(subcommand)


def message_id(text: str) -> str:
    """An argument type: the start of a message id, long enough to tell one."""
    if len(text) < MIN_ID_PREFIX:
        raise argparse.ArgumentTypeError(f"an id of {MIN_ID_PREFIX} characters or more")
    return text


def dead_letter_queues(broker: BrokerInspector, args: argparse.Namespace) -> list[str]:
    """The dead-letter queues ``--queue`` names (all by default)."""
    return [broker.dead_letter_queue(short) for short in args.queue or QUEUES]


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print the dead messages as a table, or as JSON."""
    messages = asyncio.run(_messages(inspector(settings, args.broker), args))
    if args.json:
        print(json.dumps([summary(message) for message in messages]))
    elif not messages:
        print("no dead messages")
    else:
        print(table(messages))
    return 0


def whole_ids(prefixes: list[str], messages: list[DeadMessage]) -> set[str]:
    """The ids of dead messages that ``prefixes`` (ids, or their starts) name; an error
    for one that names no message, or the ids of several (as ``exportd jobs`` refuses an
    ambiguous job id).  Copies of one message (a replay cut short) share an id."""
    ids: set[str] = set()
    for given in prefixes:
        found = {message.id for message in messages if message.id.startswith(given)}
        if not found:
            raise InvalidRequest.field("ID", f"no dead message with the id {given!r}")
        if len(found) > 1:
            raise InvalidRequest.field(
                "ID", f"{given!r} starts the ids of {len(found)} dead messages: give more of it"
            )
        ids |= found
    return ids


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    """Print the dead message whose id is, or starts with, ID."""
    messages = asyncio.run(_messages(inspector(settings, args.broker), args))
    [whole] = whole_ids([args.id], messages)
    message = next(m for m in messages if m.id == whole)
    full = {**summary(message), "properties": message.properties, "body": body(message)}
    print(json.dumps(full) if args.json else json.dumps(full, indent=2, ensure_ascii=False))
    return 0


def run_action(args: argparse.Namespace, settings: Settings) -> int:
    """Replay or drop the chosen dead messages, a line for each; fails if an ID chose none."""
    if bool(args.ids) == args.all:
        raise InvalidRequest.field("ID", "give the ids of the messages, or --all (not both)")
    ids = set()
    if not args.all:
        ids = whole_ids(args.ids, asyncio.run(_messages(inspector(settings, args.broker), args)))
    unmatched = set(ids)

    def chosen(message: DeadMessage) -> bool:
        unmatched.discard(message.id)
        return args.all or message.id in ids

    def done(message: DeadMessage) -> None:
        target = f" to {message.source}" if args.action == "replay" else ""
        print(f"{PAST[args.action]} {message.id} from {message.queue}{target}")

    asyncio.run(_act(inspector(settings, args.broker), args, chosen, done))
    for gone in sorted(unmatched):  # taken from its queue meanwhile (another command)
        print(f"exportd: no dead message with the id {gone!r} any more", file=sys.stderr)
    return 1 if unmatched else 0


async def _messages(broker: BrokerInspector, args: argparse.Namespace) -> list[DeadMessage]:
    async with broker:
        queues = dead_letter_queues(broker, args)
        return [message for queue in queues for message in await broker.dead_messages(queue)]


async def _act(
    broker: BrokerInspector,
    args: argparse.Namespace,
    chosen: Chosen,
    done: Done,
) -> None:
    async with broker:
        act = broker.replay if args.action == "replay" else broker.drop
        for queue in dead_letter_queues(broker, args):
            await act(queue, chosen, done)


def summary(message: DeadMessage) -> dict[str, Any]:
    """What ``list --json`` prints of a message."""
    return {
        "queue": message.queue,
        "position": message.position,
        "id": message.id,
        "refused_at": message.refused_at,
        "source": message.source,
        "job_id": message.job_id,
        "reason": message.reason,
        "headers": message.headers,
    }


def body(message: DeadMessage) -> Any:
    """The message's body: its JSON when it is JSON, else its text."""
    try:
        return json.loads(message.body)
    except ValueError:
        return message.body.decode("utf-8", "replace")


def table(messages: list[DeadMessage]) -> str:
    """The messages as an aligned table with a header row."""
    rows = [COLUMNS]
    rows += [
        (
            message.queue,
            str(message.position),
            message.id[:SHOWN_ID],
            message.refused_at or "-",
            message.job_id or "-",
            message.reason,
        )
        for message in messages
    ]
    return aligned(rows)
