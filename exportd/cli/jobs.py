"""``exportd jobs list|show|cancel|restart|delete``: the engine's jobs, through its
control queue."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, get_args

import msgspec

from exportd.cli.arguments import add_broker_option
from exportd.cli.runtime import engine_client
from exportd.cli.text import aligned, human_size, job_line, local_time
from exportd.config import Settings
from exportd.errors import error_line
from exportd.messages import MIN_ID_PREFIX, JobSnapshot, JobStatus

JOB_ID_HELP = (
    f"the job's id, or its start ({MIN_ID_PREFIX} characters or more) as the commands "
    "print it, such as 201c91a0"
)
COLUMNS = ("ID", "STATUS", "SOURCE", "FORMAT", "ORG", "CREATED", "ROWS")


def add_parser(commands: Any, name: str, help_: str) -> None:
    """Add the ``jobs`` command and its sub-commands to the ``exportd`` parser."""
    parser = commands.add_parser(
        name,
        help=help_,
        description="Ask a running engine about its jobs, or act on one: exportd serve "
        "through its control socket (EXPORTD_HOME/control.sock) when it exists and no "
        "--broker is given, else exportd engine through RabbitMQ.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list", help="jobs, newest first", description="List jobs, newest first, a page at a time."
    )
    statuses = get_args(JobStatus)
    listing.add_argument(
        "--status",
        choices=statuses,
        metavar="STATUS",
        help=f"only jobs in STATUS: {', '.join(statuses)}",
    )
    listing.add_argument("--source", help="only exports of SOURCE")
    listing.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (1-1000)")
    listing.add_argument(
        "--offset", type=int, default=0, metavar="N", help="skip the N newest first"
    )
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(run=run_list)

    show = actions.add_parser("show", help="one job in full", description="Show one job in full.")
    show.add_argument("job_id", metavar="JOB_ID", help=JOB_ID_HELP)
    show.add_argument("--json", action="store_true", help="print the job snapshot as JSON")
    show.set_defaults(run=run_show)

    subcommands = [listing, show]
    for action, action_help in (
        ("cancel", "cancel a job: its workers stop and drop their partial files"),
        ("restart", "run a failed, canceled or expired job again"),
        ("delete", "delete a job and its files"),
    ):
        acting = actions.add_parser(
            action, help=action_help, description=action_help[0].upper() + action_help[1:]
        )
        acting.add_argument("job_id", metavar="JOB_ID", help=JOB_ID_HELP)
        acting.add_argument(
            "--json", action="store_true", help="print the job snapshot, as it is now, as JSON"
        )
        acting.set_defaults(run=run_action, action=action)
        subcommands.append(acting)

    for subcommand in subcommands:
        subcommand.add_argument("--org", metavar="ID", help="keep to the jobs of organisation ID")
        add_broker_option(subcommand)


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print a page of jobs as a table, or as JSON."""
    with engine_client(settings, args.broker) as client:
        jobs, total = client.list_jobs(
            org_id=args.org,
            status=args.status,
            source=args.source,
            limit=args.limit,
            offset=args.offset,
        )
    if args.json:
        page = {"jobs": jobs, "total": total, "limit": args.limit, "offset": args.offset}
        print(msgspec.json.encode(page).decode())
    elif not jobs:
        print(f"no jobs (of {total}) from offset {args.offset}" if total else "no jobs")
    else:
        print(table(jobs))
        print(f"jobs {args.offset + 1}-{args.offset + len(jobs)} of {total}")
    return 0


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    """Print one job, in full."""
    with engine_client(settings, args.broker) as client:
        job = client.get(args.job_id, org_id=args.org)
    print(msgspec.json.encode(job).decode() if args.json else details(job))
    return 0


def run_action(args: argparse.Namespace, settings: Settings) -> int:
    """Cancel, restart or delete a job; print the job as it is now (or its snapshot)."""
    with engine_client(settings, args.broker) as client:
        act = {"cancel": client.cancel, "restart": client.restart, "delete": client.delete}
        job = act[args.action](args.job_id, org_id=args.org)
    print(msgspec.json.encode(job).decode() if args.json else job_line(job))
    return 0


def table(jobs: Sequence[JobSnapshot]) -> str:
    """The jobs as an aligned table with a header row."""
    rows: list[Sequence[str]] = [COLUMNS]
    rows += [
        (
            job.id,
            job.status,
            job.request.source,
            job.request.format,
            job.request.org_id or "-",
            local_time(job.created_at),
            rows_done(job),
        )
        for job in jobs
    ]
    return aligned(rows)


def details(job: JobSnapshot) -> str:
    """Everything about a job, a ``name: value`` line each, then a line per part."""
    request = job.request
    fields: list[tuple[str, str]] = [
        ("job", job.id),
        ("status", f"{job.status} (attempt {job.attempt})"),
        ("source", f"{request.source} {msgspec.json.encode(request.params).decode()}"),
        ("format", request.format),
    ]
    if request.format_options:
        fields.append(("options", msgspec.json.encode(request.format_options).decode()))
    fields += [
        ("interval", f"{request.interval.start} to {request.interval.end} ({request.timezone})"),
        ("org", request.org_id or "-"),
        ("user", request.user_id or "-"),
    ]
    if request.name is not None:
        fields.append(("name", request.name))
    if request.limit is not None:
        fields.append(("limit", f"{request.limit:,} rows per file"))
    if request.delivery.type == "email":
        fields.append(("email to", ", ".join(request.delivery.to)))
    fields += [
        (label, local_time(moment))
        for label, moment in (
            ("created", job.created_at),
            ("updated", job.updated_at),
            ("completed", job.completed_at),
            ("expires", job.expires_at),
        )
        if moment is not None
    ]
    fields.append(("rows", rows_done(job)))
    if job.error is not None:
        fields.append(("error", f"{job.error.code}: {error_line(job.error)}"))
    for part in job.parts:
        label = f"part {part.part + 1}/{job.part_count}"
        if part.file is not None:
            file = part.file
            fields.append((label, f"{part.status}: {file.key}"))
            fields.append(
                ("", f"{file.rows:,} rows, {human_size(file.size)}, sha256 {file.sha256}")
            )
        elif part.error is not None:
            fields.append((label, f"{part.status}: {error_line(part.error)}"))
        else:
            fields.append((label, part.status))
    width = max(len(label) for label, _ in fields) + 1
    return "\n".join(
        f"{f'{label}:' if label else '':<{width}}  {value}".rstrip() for label, value in fields
    )


def rows_done(job: JobSnapshot) -> str:
    """Rows written, and out of how many while the job runs and the total is known."""
    progress = job.progress
    if progress.total is None or job.status not in ("created", "processing", "uploading"):
        return f"{progress.rows:,}"
    return f"{progress.rows:,}/{progress.total:,}"
