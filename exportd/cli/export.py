"""``exportd export``: validate one request, write each of its parts to a file, report them."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any, TextIO

import msgspec

from exportd.cli import start_up
from exportd.cli.arguments import add_broker_option, at_least, with_broker
from exportd.cli.progress import progress_bar
from exportd.cli.text import human_size
from exportd.config import Settings
from exportd.errors import ExportFailed, InvalidRequest
from exportd.kernel.datastores import data_store
from exportd.kernel.pipeline import run_export
from exportd.kernel.plan import ExportPlan, part_names, plan_export
from exportd.kernel.validation import convert
from exportd.kernel.window import parse_timezone
from exportd.messages import ExportRequest, FileInfo, JobSnapshot
from exportd.plugins.api import Window
from exportd.plugins.manager import Plugins, load_plugins

DEFAULT_DAYS = 30
STDOUT = "-"
COPY_CHUNK = 1 << 20
"""Bytes copied at a time from a finished file (to standard output, out of the storage)."""

DESCRIPTION = """\
Export the rows of SOURCE to a file in FORMAT.

The interval is --start (inclusive) to --end (exclusive), each an ISO 8601 date
or date-time; one without an offset is read in --tz.  Without --end the export
runs to the start of tomorrow (today included); without --start it begins 30
days before the end.

Parameter values are read as JSON when they parse (-p min_message_count=3 is a
number, -p is_real_conversation=true a boolean, -p 'filters=[...]' a list) and
as text otherwise; quote a number that must stay text: -p 'id="123"'.

An export that its source splits into parts writes one file per part:
NAME-part1of3.EXT, NAME-part2of3.EXT, ...  -o - writes the file to standard
output (once it is complete; the summary goes to stderr), which an export in
parts cannot use: give -o FOLDER/ for it.

The times a file records (json's generated_at, xlsx's created and modified)
are SOURCE_DATE_EPOCH when it is set (seconds since 1970), else now; with
--broker, the job's creation time: so that the same export gives the same
bytes.  A window that matches no rows writes an empty file and says so on
stderr, with where the data is if the source knows.

With --broker URL the export runs on the workers of a running engine (exportd
engine, exportd worker); the files are then copied out of the storage, which
must be shared with the workers (the same EXPORTD_HOME, or a shared volume).
"""

EXAMPLES = """\
examples:
  exportd export rooms -p room_id=ROOM -p type=logs -f xlsx --start 2024-05-01 --end 2024-06-01
  exportd export rooms -p room_id=ROOM -p type=stats --tz Europe/Helsinki -o stats.csv
  exportd export qna -p channel_id=CHANNEL -f json_bulk --limit 1000
  exportd export weather --params '{"city": "Lisbon"}' -f markdown --option align_numbers=false
  exportd export rooms -p room_id=ROOM --broker amqp://guest:guest@rabbit:5672/
"""


def add_parser(commands: Any, name: str, help_: str) -> None:
    """Add the ``export`` command to the ``exportd`` parser's sub-commands."""
    parser = commands.add_parser(
        name,
        help=help_,
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source", metavar="SOURCE", help="the source to read (see: exportd plugins)"
    )
    parser.add_argument(
        "-p",
        "--param",
        dest="params",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of the source; repeat for more",
    )
    parser.add_argument(
        "--params",
        dest="params_json",
        type=json_object,
        default={},
        metavar="JSON",
        help="parameters as one JSON object; -p values override its keys",
    )
    parser.add_argument(
        "-f", "--format", default="csv", help="the file format (default: csv; see: exportd plugins)"
    )
    parser.add_argument(
        "--option",
        dest="options",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="an option of the format, read like -p; repeat for more",
    )
    parser.add_argument(
        "--start", metavar="TIME", help="start of the interval, inclusive (default: see above)"
    )
    parser.add_argument(
        "--end", metavar="TIME", help="end of the interval, exclusive (default: see above)"
    )
    parser.add_argument(
        "--tz",
        default="UTC",
        metavar="ZONE",
        help="IANA time zone for times without an offset, for days and for the times "
        "written in the file (default: UTC)",
    )
    parser.add_argument(
        "--limit", type=at_least(1), metavar="N", help="write at most N rows per file"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="the file to write, an existing folder to write into, or - for standard "
        "output (default: the files folder under EXPORTD_HOME, with a name made of the "
        "source, the parameters and the interval)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print each file's path, name, rows, size, sha256 and media type as JSON",
    )
    add_broker_option(
        parser,
        help="run the export on the workers of the engine at this RabbitMQ, "
        "amqp://user:password@host:port/vhost, instead of here",
    )
    parser.set_defaults(run=run, parser=parser)


class ExportedFile(msgspec.Struct):
    """A file written, as ``--json`` prints it; ``path`` is null for standard output."""

    path: str | None
    name: str
    rows: int
    size: int
    sha256: str
    media_type: str


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the request, write every part (here, or through the engine at
    ``--broker``), print each file's path, rows, size and hash."""
    request = build_request(args)
    with start_up():
        plugins = load_plugins(settings)
    to_stdout = args.output == STDOUT
    with ExitStack() as spool:

        def targets(name: str, count: int) -> list[Path]:
            if not to_stdout:
                return output_paths(name, count, args.output, settings.files_path)
            if count > 1:
                args.parser.error(
                    f"-o -: this export has {count} parts, one file each, and standard "
                    "output takes one: give -o FOLDER/"
                )
            import tempfile  # for -o - only

            return [Path(spool.enter_context(tempfile.TemporaryDirectory())) / name]

        job = None
        if args.broker is None:
            files = export_here(request, plugins, settings, targets)
        else:
            from exportd.cli import remote  # the clients of RabbitMQ: for --broker only

            job = remote.run_job(with_broker(settings, args.broker), request, sys.stderr)
            files = remote.fetch_files(job, plugins.storage(settings.storage), targets)
        if to_stdout:
            copy_to_stdout(files[0][0])
    summary = sys.stderr if to_stdout else sys.stdout
    if args.json:
        report_json(files, job, summary, to_stdout=to_stdout)
    else:
        report(files, summary, to_stdout=to_stdout)
    return 0


Targets = Callable[[str, int], list[Path]]
"""Where the files of an export go, given the name of its file and its part count."""


def export_here(
    request: ExportRequest, plugins: Plugins, settings: Settings, targets: Targets
) -> list[tuple[Path, FileInfo]]:
    """Plan and write every part here, into ``targets(name, count)``; say so on stderr
    when the window matched no rows."""
    plan = plan_export(request, plugins, data_store(settings), generated_at=source_date(os.environ))
    parts = plan.parts(settings.batch_size)
    paths = targets(plan.file_name(), len(parts))
    written = write_parts(parts, paths, settings.batch_size, settings.read_slices)
    files = list(zip(paths, written, strict=True))
    if not any(info.rows for _, info in files):
        print(f"exportd: {empty_note(plan)}", file=sys.stderr)
    return files


def source_date(environ: Mapping[str, str]) -> datetime | None:
    """``SOURCE_DATE_EPOCH``, the time the files are to record, if it is set."""
    text = environ.get("SOURCE_DATE_EPOCH")
    if not text:
        return None
    try:
        return datetime.fromtimestamp(int(text), UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidRequest.field(
            "SOURCE_DATE_EPOCH", f"must be a whole number of seconds since 1970, got {text!r}"
        ) from None


def empty_note(plan: ExportPlan) -> str:
    """That ``plan``'s window matched no rows, and where the source's data is, if it
    says, with the ``--start`` and ``--end`` that cover it.  A source that fails to say
    does not fail the export, which is written by then: the note tells why instead."""
    try:
        return window_note(plan.window, plan.data_range())
    except ExportFailed as exc:
        return f"{window_note(plan.window, None)} (and {exc})"


def window_note(window: Window, data: tuple[datetime, datetime] | None) -> str:
    """That ``window`` matched no rows, and where the ``data`` is, if known, with the
    ``--start`` and ``--end`` that cover it (in the window's zone)."""
    zone = window.timezone

    def local(moment: datetime) -> datetime:
        return moment.astimezone(zone)

    def shown(moment: datetime) -> str:
        return local(moment).strftime("%Y-%m-%d %H:%M:%S")

    note = f"the window {shown(window.start)} to {shown(window.end)} ({zone.key}) matched no rows"
    if data is None:
        return note
    first, last = data
    end = local(last).date() + timedelta(days=1)
    return (
        f"{note}; the data runs from {shown(first)} to {shown(last)}: "
        f"try --start {local(first).date()} --end {end}"
    )


def copy_to_stdout(path: Path) -> None:
    """The finished file ``path``, written to standard output as it is; an error if the
    reader goes away first (``exportd export ... -o - | head``)."""
    try:
        with path.open("rb") as file:
            shutil.copyfileobj(file, sys.stdout.buffer, COPY_CHUNK)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # What is left in the buffer can go nowhere: spare Python's flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise ExportFailed("standard output was closed before the whole file was written") from None


def report_json(
    files: Sequence[tuple[Path, FileInfo]],
    job: JobSnapshot | None,
    stream: TextIO,
    *,
    to_stdout: bool,
) -> None:
    """The files as one JSON object on ``stream``, with the job's snapshot when the
    engine ran it: ``{"files": [...], "job": {...}}`` (``job`` is null otherwise)."""
    listed = [
        ExportedFile(
            path=None if to_stdout else str(path),
            name=info.name,
            rows=info.rows,
            size=info.size,
            sha256=info.sha256,
            media_type=info.media_type,
        )
        for path, info in files
    ]
    print(msgspec.json.encode({"files": listed, "job": job}).decode(), file=stream)


def report(files: Sequence[tuple[Path, FileInfo]], stream: TextIO, *, to_stdout: bool) -> None:
    """Each file's path, rows, size and hash on ``stream``."""
    for path, info in files:
        print("(standard output)" if to_stdout else path, file=stream)
        line = f"  {info.rows:,} rows, {human_size(info.size)}, sha256 {info.sha256}"
        print(line, file=stream)


def build_request(args: argparse.Namespace) -> ExportRequest:
    """The :class:`ExportRequest` the command line describes (checked by its Struct)."""
    data = {
        "source": args.source,
        "format": args.format,
        "params": {**args.params_json, **dict(args.params)},
        "format_options": dict(args.options),
        "interval": interval(args.start, args.end, args.tz),
        "timezone": args.tz,
        "limit": args.limit,
    }
    return convert(data, ExportRequest)


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE decoded as JSON if it is JSON, else kept as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, msgspec.json.decode(value)
    except msgspec.DecodeError:
        return key, value


def json_object(text: str) -> dict[str, Any]:
    """A JSON object given on the command line."""
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def interval(start: str | None, end: str | None, timezone: str) -> dict[str, str]:
    """The interval asked for, with the defaults filled in (described in ``--help``)."""
    try:
        zone: tzinfo = parse_timezone(timezone)
    except InvalidRequest:
        zone = UTC  # the planner reports the bad --tz
    tomorrow = datetime.combine(datetime.now(zone).date() + timedelta(days=1), time())
    if end is None:
        end = tomorrow.date().isoformat()
    if start is None:
        try:
            anchor = datetime.fromisoformat(end)
        except ValueError:
            anchor = tomorrow  # the planner reports the bad --end
        try:
            start = (anchor - timedelta(days=DEFAULT_DAYS)).isoformat()
        except OverflowError:
            raise InvalidRequest.field(
                "interval.start", f"{DEFAULT_DAYS} days before --end is out of range: give --start"
            ) from None
    return {"start": start, "end": end}


def output_paths(name: str, count: int, output: str | None, files_path: Path) -> list[Path]:
    """Where each of ``count`` parts goes: ``-o`` (a file or a folder) or the files folder,
    under ``name`` unless ``-o`` names the file.

    The files folder is made if need be; a folder ``-o`` names must exist.
    """
    if output is None:
        files_path.mkdir(parents=True, exist_ok=True)
        path = files_path / name
    elif output.endswith(("/", os.sep)) or Path(output).is_dir():
        path = existing_folder(Path(output), output) / name
    else:
        path = Path(output)
        existing_folder(path.parent, output)
    return [path.with_name(part) for part in part_names(path.name, count)]


def existing_folder(folder: Path, output: str) -> Path:
    """``folder``, or an error naming it if it is not an existing folder."""
    if folder.is_dir():
        return folder
    problem = f"{folder} is not a folder" if folder.exists() else f"there is no folder {folder}"
    raise ExportFailed(f"-o {output}: {problem}")


def write_parts(
    parts: Sequence[ExportPlan], targets: Sequence[Path], batch_size: int, slices: int = 1
) -> list[FileInfo]:
    """Run every part into its file; if one fails or is interrupted, remove them all."""

    def write(number: int, target: Path) -> FileInfo:
        label = f"part {number + 1}/{len(parts)}" if len(parts) > 1 else ""
        bar = progress_bar(sys.stderr, label)
        try:
            return run_export(
                parts[number],
                target,
                batch_size=batch_size,
                slices=slices,
                on_progress=None if bar is None else bar.update,
                part=number,
                part_count=len(parts),
            ).file(key=target.name, name=target.name)
        finally:
            if bar is not None:
                bar.close()

    return make_all(targets, write)


def make_all(targets: Sequence[Path], make: Callable[[int, Path], FileInfo]) -> list[FileInfo]:
    """``make(number, target)`` each target in turn; if one fails or is interrupted,
    remove those made."""
    made: list[FileInfo] = []
    try:
        for number, target in enumerate(targets):
            made.append(make(number, target))
    except BaseException:
        for target in targets[: len(made)]:
            target.unlink(missing_ok=True)
        raise
    return made
