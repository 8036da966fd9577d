"""``exportd export``: validate one request, write each of its parts to a file, report them."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any

import msgspec

from exportd.cli.progress import progress_bar
from exportd.config import Settings
from exportd.errors import InvalidRequest
from exportd.messages import ExportRequest, FileInfo
from exportd.plan import ExportPlan, plan_export
from exportd.plugins.manager import load_plugins
from exportd.validation import convert
from exportd.window import parse_timezone
from exportd.workers.pipeline import run_export

DEFAULT_DAYS = 30

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
NAME-part1of3.EXT, NAME-part2of3.EXT, ...
"""

EXAMPLES = """\
examples:
  exportd export rooms -p room_id=ROOM -p type=logs -f xlsx --start 2024-05-01 --end 2024-06-01
  exportd export rooms -p room_id=ROOM -p type=stats --tz Europe/Helsinki -o stats.csv
  exportd export qna -p channel_id=CHANNEL -f json_bulk --limit 1000
  exportd export weather --params '{"city": "Lisbon"}' -f markdown --option align_numbers=false
"""


def add_parser(commands: Any) -> None:
    """Add the ``export`` command to the ``exportd`` parser's sub-commands."""
    parser = commands.add_parser(
        "export",
        help="export rows of a source to a file",
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
    parser.add_argument("--limit", type=int, metavar="N", help="write at most N rows per file")
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="the file to write, or a directory to write into (default: the files folder "
        "under EXPORTD_HOME, with a name made of the source, the parameters and the interval)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the request, write every part, print each file's path, rows, size and hash."""
    request = build_request(args)
    plan = plan_export(request, load_plugins(settings), settings.data_path)
    parts = plan.parts(settings.batch_size)
    targets = output_paths(plan, len(parts), args.output, settings.files_path)
    files = write_parts(parts, targets, settings.batch_size)
    for target, info in zip(targets, files, strict=True):
        print(target)
        print(f"  {info.rows:,} rows, {human_size(info.size)}, sha256 {info.sha256}")
    return 0


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


def output_paths(plan: ExportPlan, count: int, output: str | None, files_path: Path) -> list[Path]:
    """Where each of ``count`` parts goes: ``-o`` (a file or a folder) or the files folder."""
    if output is None or output.endswith(("/", os.sep)) or Path(output).is_dir():
        folder = files_path if output is None else Path(output)
        path = folder / plan.file_name()
    else:
        path = Path(output)
    if count == 1:
        return [path]
    return [
        path.with_name(f"{path.stem}-part{number}of{count}{path.suffix}")
        for number in range(1, count + 1)
    ]


def write_parts(
    parts: Sequence[ExportPlan], targets: Sequence[Path], batch_size: int
) -> list[FileInfo]:
    """Run every part into its file; if one fails or is interrupted, remove them all."""
    written: list[FileInfo] = []
    try:
        for number, (part, target) in enumerate(zip(parts, targets, strict=True)):
            label = f"part {number + 1}/{len(parts)}" if len(parts) > 1 else ""
            bar = progress_bar(sys.stderr, label)
            try:
                written.append(
                    run_export(
                        part,
                        target,
                        batch_size=batch_size,
                        on_progress=None if bar is None else bar.update,
                        part=number,
                        part_count=len(parts),
                    )
                )
            finally:
                if bar is not None:
                    bar.close()
    except BaseException:
        for target in targets[: len(written)]:
            target.unlink(missing_ok=True)
        raise
    return written


def human_size(size: int) -> str:
    """``size`` bytes as people read it: ``512 bytes``, ``1.5 KiB``, ``3.2 MiB``."""
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
