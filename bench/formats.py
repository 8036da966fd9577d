"""Export N demo messages to every format, beside a baseline measured in the same run.

    python bench/formats.py                     # 1,000,000 rows, every format
    python bench/formats.py --rows 200000 --formats csv,xlsx

Every measurement runs in a fresh process, so its peak memory (max RSS) is its
own.  The data is exportd's demo data with every conversation moved into one
room, so that one ``rooms`` logs export holds all N messages.  The baselines:

* csv: the ``sqlite3 -csv`` command-line shell running the ``rooms`` source's
  own SQL into a file: the floor for csv;
* xlsx: a bare openpyxl write-only loop (``ws.append(row)``) over the very rows
  the ``rooms`` source yields (datetimes made naive: Excel has no zones);
* json / json_bulk: the stdlib ``json.dumps`` per row over those same rows,
  written a batch at a time.

"source s" is the time to read the rows alone, the part every export shares.

A second export of a tenth of the rows, per format, checks that peak memory
does not grow with the number of rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from html import escape
from pathlib import Path

import openpyxl

from exportd import Batch
from exportd.config import Settings
from exportd.data.demo import generate_demo_data
from exportd.kernel.datastores import SqliteStore
from exportd.kernel.pipeline import run_export
from exportd.kernel.plan import ExportPlan, plan_export
from exportd.messages import ExportRequest, Interval
from exportd.plugins.manager import load_plugins
from exportd.plugins.sources.rooms import LOG_SELECT, SQLITE

FORMATS = ("csv", "xlsx", "json", "json_bulk", "txt", "html")
BASELINES = {
    "csv": "sqlite3 -csv shell",
    "xlsx": "bare openpyxl loop",
    "json": "stdlib json",
    "json_bulk": "stdlib json",
    "txt": "f-string lines",
    "html": "html.escape table",
}
# No target is set for txt and html: their figures are reported for the record.
TARGETS: dict[str, float | None] = {
    "csv": 2.5,
    "xlsx": 1.1,
    "json": 0.5,
    "json_bulk": 0.5,
    "txt": None,
    "html": None,
}
MEMORY_TARGET = 1.2
COLUMNS = (
    "format",
    "exportd s",
    "baseline",
    "base s",
    "ratio",
    "target",
    "source s",
    "mem 1/10",
    "mem full",
    "mem ratio",
    "",
)
ROW = "{:<10}{:>10}{:>21}{:>8}{:>8}{:>8}{:>10}{:>10}{:>10}{:>10} {}"
BATCH = 5000
INTERVAL = Interval(start="2000-01-01T00:00:00Z", end="2100-01-01T00:00:00Z")
ROOM = "bench-room"


def prepare(folder: Path, rows: int) -> Path:
    """Demo data of ``rows`` messages, all in one room; reused if already there."""
    data = folder / f"data-{rows}.db"
    if not data.exists():
        summary = generate_demo_data(folder / "demo.db", messages=rows)
        with sqlite3.connect(summary.path) as conn:
            conn.execute("UPDATE rooms SET id = ? WHERE id = ?", (ROOM, summary.room_id))
            conn.execute("UPDATE conversations SET room_id = ?", (ROOM,))
            conn.execute("UPDATE messages SET room_id = ?", (ROOM,))
        summary.path.rename(data)
    return data


def query() -> tuple[str, dict[str, object]]:
    """The SQL the ``rooms`` source runs for a logs export of the bench room."""
    sql = SQLITE.logs.format(columns=LOG_SELECT, filters="")
    args = {"room": ROOM, "start": "2000-01-01", "end": "2100-01-01", "limit": None}
    return sql, args


def plan_for(data: Path, fmt: str, rows: int) -> ExportPlan:
    """The plan ``exportd export rooms -p type=logs ...`` would run on the bench room."""
    request = ExportRequest(
        source="rooms",
        format=fmt,
        params={"room_id": ROOM, "type": "logs"},
        interval=INTERVAL,
        limit=rows,
    )
    return plan_export(request, load_plugins(Settings(home=str(data.parent))), SqliteStore(data))


def source_batches(plan: ExportPlan) -> Iterator[Batch]:
    """The very batches the pipeline hands the format."""
    return plan.source.read(plan.params, plan.context(batch_size=BATCH))


def exportd_export(data: Path, fmt: str, rows: int, out: Path) -> None:
    """An export through exportd's planner and pipeline, as the CLI runs it."""
    run_export(plan_for(data, fmt, rows), out, batch_size=BATCH)


def source_only(data: Path, fmt: str, rows: int, out: Path) -> None:
    """Read the rows as an export does and write nothing: the source's share."""
    count = sum(len(batch) for batch in source_batches(plan_for(data, fmt, rows)))
    out.write_text(f"{count}\n")


def baseline_xlsx(data: Path, rows: int, out: Path) -> None:
    """A bare openpyxl write-only loop; datetimes lose their zone (Excel has none)."""
    plan = plan_for(data, "xlsx", rows)
    times = [i for i, column in enumerate(plan.columns) if column.type == "datetime"]
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append([column.name for column in plan.columns])
    for batch in source_batches(plan):
        for row in batch:
            cells = list(row)
            for i in times:
                cells[i] = cells[i].replace(tzinfo=None)
            sheet.append(cells)
    workbook.save(out)


def baseline_json(data: Path, rows: int, out: Path, bulk: bool) -> None:
    """The stdlib's ``json.dumps`` per row (datetimes through ``default``), one write a batch."""
    plan = plan_for(data, "json_bulk" if bulk else "json", rows)
    names = [column.name for column in plan.columns]
    separator = "\n" if bulk else ","
    with out.open("w", encoding="utf-8") as file:
        file.write("" if bulk else '{"rows": [')
        first = True
        for batch in source_batches(plan):
            text = separator.join(
                json.dumps(dict(zip(names, row, strict=True)), default=datetime.isoformat)
                for row in batch
            )
            file.write(text if first else separator + text)
            first = False
        file.write("\n" if bulk else "]}\n")


def baseline_txt(data: Path, rows: int, out: Path) -> None:
    """One ``[time] author: text`` line per message, by f-string, one write a batch."""
    plan = plan_for(data, "txt", rows)
    with out.open("w", encoding="utf-8") as file:
        for batch in source_batches(plan):
            file.write("".join(f"[{r[4]:%Y-%m-%d %H:%M:%S}] {r[6]}: {r[7]}\n" for r in batch))


def baseline_html(data: Path, rows: int, out: Path) -> None:
    """A table row per message with every value through ``html.escape``, one write a batch."""
    plan = plan_for(data, "html", rows)
    with out.open("w", encoding="utf-8") as file:
        file.write("<!doctype html><table>\n")
        for batch in source_batches(plan):
            file.write(
                "".join(
                    "<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>\n"
                    for row in batch
                )
            )
        file.write("</table>\n")


def baseline_sqlite3(data: Path, rows: int, out: Path) -> None:
    sql, args = query()
    script = [".headers on", ".mode csv", f".output {out}"]
    for name, value in args.items():
        literal = f"'{value}'" if isinstance(value, str) else str(value)
        script.append(f'.parameter set :{name} "{literal}"')
    script.append(sql.replace(":limit", str(rows)) + ";")
    subprocess.run(["sqlite3", str(data)], input="\n".join(script), text=True, check=True)


BASELINE_RUNNERS: dict[str, Callable[[Path, int, Path], None]] = {
    "csv": baseline_sqlite3,
    "xlsx": baseline_xlsx,
    "json": lambda d, r, o: baseline_json(d, r, o, bulk=False),
    "json_bulk": lambda d, r, o: baseline_json(d, r, o, bulk=True),
    "txt": baseline_txt,
    "html": baseline_html,
}


def child(kind: str, fmt: str, data: Path, rows: int, out: Path) -> None:
    """Run one measurement in this process and print seconds and peak memory."""
    began = time.perf_counter()
    if kind == "exportd":
        exportd_export(data, fmt, rows, out)
    elif kind == "source":
        source_only(data, fmt, rows, out)
    else:
        BASELINE_RUNNERS[fmt](data, rows, out)
    seconds = time.perf_counter() - began
    print(json.dumps({"seconds": seconds, "bytes": out.stat().st_size}))


def measure(kind: str, fmt: str, data: Path, rows: int, folder: Path) -> dict[str, float]:
    """Run one measurement in a new process; its peak memory includes its children."""
    out = folder / f"{kind}-{fmt}-{rows}.out"
    command = [sys.executable, __file__, "--child", kind, fmt, str(data), str(rows), str(out)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{kind} {fmt} failed with exit code {process.returncode}")
    out.unlink()
    measured: dict[str, float] = json.loads(output.splitlines()[-1])
    measured["max_rss_kib"] = usage.ru_maxrss
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "exportd-bench"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure; the best counts")
    parser.add_argument("--child", nargs=5, metavar=("KIND", "FORMAT", "DATA", "ROWS", "OUT"))
    args = parser.parse_args()
    if args.child:
        kind, fmt, data, rows, out = args.child
        child(kind, fmt, Path(data), int(rows), Path(out))
        return
    args.data_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    data = prepare(args.data_dir, args.rows)
    small_data = prepare(args.data_dir, args.rows // 10)
    print(f"data: {args.rows:,} messages in one room ({time.perf_counter() - began:.1f} s)")
    print(
        f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}, openpyxl {openpyxl.__version__}"
    )
    print(f"times: best of {args.repeat}; memory: peak RSS of the export's process")
    print(ROW.format(*COLUMNS))
    failures = 0
    for fmt in args.formats.split(","):

        def best(kind: str, fmt: str = fmt) -> dict[str, float]:
            runs = [measure(kind, fmt, data, args.rows, args.data_dir) for _ in range(args.repeat)]
            return min(runs, key=lambda run: run["seconds"])

        ours, base, source = best("exportd"), best("baseline"), best("source")
        small = measure("exportd", fmt, small_data, args.rows // 10, args.data_dir)
        ratio = ours["seconds"] / base["seconds"]
        memory = ours["max_rss_kib"] / small["max_rss_kib"]
        target = TARGETS[fmt]
        ok = (target is None or ratio <= target) and memory <= MEMORY_TARGET
        failures += not ok
        print(
            ROW.format(
                fmt,
                f"{ours['seconds']:.2f}",
                BASELINES[fmt],
                f"{base['seconds']:.2f}",
                f"{ratio:.2f}x",
                "-" if target is None else f"<={target}x",
                f"{source['seconds']:.2f}",
                f"{small['max_rss_kib'] / 1024:.0f} MB",
                f"{ours['max_rss_kib'] / 1024:.0f} MB",
                f"{memory:.2f}x",
                "ok" if ok else "MISSED",
            )
        )
    print(f"memory target: the full export's peak within {MEMORY_TARGET}x of a tenth of it")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
