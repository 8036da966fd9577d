"""Start-up of ``exportd export`` (a 10-row csv), beside its floors and peers, in turns.

    python bench/startup.py                   # 15 rounds of turns
    python bench/startup.py --repeat 31 --why # and where exportd's imports go
    python bench/startup.py --compare ../main/.venv/bin/python

Every measurement is a fresh process timed from outside (``time.perf_counter``
around ``subprocess.run``: the whole command, interpreter start and exit
included), and the measurements take turns, one of each per round, so that a
machine whose speed drifts slows them alike.  The export is ``exportd export
rooms -p room_id=R -p type=logs -f csv --limit 10`` of the busiest room of
``exportd demo-data`` (made once in ``--data-dir``, which is its
``EXPORTD_HOME``).  Beside it (``MEASUREMENTS``):

* floors: ``python -c pass`` (the interpreter, with the virtualenv's site), ``python
  -c "import pyarrow, pyarrow.compute"`` (the columnar library the export needs),
  ``python -c "import exportd.cli"`` and ``exportd --help`` (exportd's own floor);
* peers a user would pick for "10 rows of SQL to csv", each running the ``rooms``
  source's own SQL for the same room, window and limit (its arguments looked up
  beforehand, as bench/formats.py does): the ``sqlite3 -csv`` shell (when
  installed), DuckDB (its sqlite scanner, ``COPY ... TO``) and polars
  (``read_database`` on a sqlite3 connection, ``write_csv``), each in a ``python
  -c`` that imports only its library.

``--compare PYTHON`` adds the export run by another checkout's virtualenv
(``PYTHON``'s ``exportd`` script) to the turns: before and after a change, in
the same run.  ``--why`` prints the 20 imports of the export with the largest
cumulative time (``-X importtime``).  The exit status is 1 when the export's
median misses issue 15's target, 0.15 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from formats import duckdb_sql, query, sqlite3_script, sqlite_scanner

TARGET_SECONDS = 0.15
ROWS = 10
EXPORT = "exportd export"


@dataclass(frozen=True)
class Measurement:
    """One command taken in turns: a label, its argv and what it reads on stdin."""

    label: str
    argv: tuple[str, ...]
    stdin: str | None = None


@dataclass(frozen=True)
class Demo:
    """The demo data the export reads: the store, its busiest room and its window."""

    home: Path
    room: str
    start: str
    end: str


def demo_data(home: Path) -> Demo:
    """``exportd demo-data`` in ``home`` (made once, then reused)."""
    summary = home / "demo.json"
    if not summary.exists():
        home.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [str(script(Path(sys.executable))), "demo-data", "--json"],
            env=environment(home),
            cwd=home,
            capture_output=True,
            text=True,
            check=True,
        )
        summary.write_text(done.stdout)
    facts = json.loads(summary.read_text())
    return Demo(home, facts["room_id"], facts["start"][:10], facts["end"][:10])


def script(python: Path) -> Path:
    """The ``exportd`` command installed beside the interpreter ``python``."""
    return python.parent / "exportd"


def environment(home: Path) -> dict[str, str]:
    """The environment of every measurement: no EXPORTD_* setting from outside but home,
    and bytecode caches written and read as an installed exportd has them (without them,
    as ``PYTHONDONTWRITEBYTECODE`` leaves an editable install, exportd's modules are
    compiled anew by every command: some 50 ms more)."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EXPORTD_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    return {**inherited, "EXPORTD_HOME": str(home)}


def export_argv(exportd: Path, demo: Demo) -> tuple[str, ...]:
    """The measured command: a 10-row csv of the demo room's logs, into the demo's home."""
    return (
        str(exportd),
        "export",
        "rooms",
        "-p",
        f"room_id={demo.room}",
        "-p",
        "type=logs",
        "-f",
        "csv",
        "--limit",
        str(ROWS),
        "--start",
        demo.start,
        "--end",
        demo.end,
        "-o",
        str(demo.home / "exportd.csv"),
    )


def python_c(code: str) -> tuple[str, ...]:
    """``python -c code`` with this interpreter (and its virtualenv's site)."""
    return (sys.executable, "-c", code)


def peers(demo: Demo) -> list[Measurement]:
    """The peers, each running the rooms source's SQL for the export's room and window."""
    data = demo.home / "data.db"
    sql, args = query(data, ROWS, room=demo.room, start=demo.start, end=demo.end)
    found = []
    if shutil.which("sqlite3"):
        shell = sqlite3_script(sql, args, demo.home / "sqlite3.csv")
        found.append(Measurement("sqlite3 -csv shell", ("sqlite3", str(data)), shell))
    copy = f"COPY ({duckdb_sql(sql, args)}) TO '{demo.home / 'duckdb.csv'}' (FORMAT csv, HEADER)"
    duckdb = (
        "import duckdb\n"
        "conn = duckdb.connect()\n"
        f"conn.execute({f'LOAD {str(sqlite_scanner())!r}'!r})\n"
        f"conn.execute({f'ATTACH {str(data)!r} AS data (TYPE sqlite, READ_ONLY)'!r})\n"
        "conn.execute('USE data')\n"
        f"conn.execute({copy!r})\n"
    )
    polars = (
        "import sqlite3\n"
        "import polars as pl\n"
        f"conn = sqlite3.connect({str(data)!r})\n"
        f"frame = pl.read_database({sql!r}, conn, execute_options={{'parameters': {args!r}}})\n"
        f"frame.write_csv({str(demo.home / 'polars.csv')!r})\n"
    )
    found.append(Measurement("duckdb COPY (sqlite scanner)", python_c(duckdb)))
    found.append(Measurement("polars read_database+write_csv", python_c(polars)))
    return found


def measurements(demo: Demo, compare: list[Path]) -> list[Measurement]:
    """Everything taken in turns, exportd's export first."""
    exportd = script(Path(sys.executable))
    return [
        Measurement(EXPORT, export_argv(exportd, demo)),
        *(
            Measurement(f"{EXPORT} ({python})", export_argv(script(python), demo))
            for python in compare
        ),
        Measurement("python -c pass", python_c("pass")),
        Measurement("import pyarrow, pyarrow.compute", python_c("import pyarrow, pyarrow.compute")),
        Measurement("import exportd.cli", python_c("import exportd.cli")),
        Measurement("exportd --help", (str(exportd), "--help")),
        *peers(demo),
    ]


def run(measurement: Measurement, home: Path) -> float:
    """The wall time of one run of ``measurement``, which must succeed."""
    began = time.perf_counter()
    done = subprocess.run(
        measurement.argv,
        input=measurement.stdin,
        env=environment(home),
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"{measurement.label} failed ({done.returncode}): {done.stderr.strip()}")
    return seconds


def why(demo: Demo, top: int) -> None:
    """Print the ``top`` imports of the export by cumulative time, from ``-X importtime``."""
    argv = (sys.executable, "-X", "importtime", *export_argv(script(Path(sys.executable)), demo))
    done = subprocess.run(
        argv, env=environment(demo.home), cwd=demo.home, capture_output=True, text=True, check=True
    )
    imports = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            own, cumulative, name = line.removeprefix("import time:").split("|")
            imports.append((int(cumulative), int(own), name.strip()))
    print(f"\n{EXPORT}: the {top} imports with the most cumulative time (-X importtime)")
    print(f"{'cumulative':>10} {'self':>9}  module")
    for cumulative, own, name in sorted(imports, reverse=True)[:top]:
        print(f"{cumulative / 1000:7.1f} ms {own / 1000:6.1f} ms  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds of turns; the median counts")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "exportd-bench-startup",
        help="EXPORTD_HOME of the demo data (made once)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        metavar="PYTHON",
        help="also time the export of the exportd installed beside this interpreter",
    )
    parser.add_argument("--why", action="store_true", help="print the export's top 20 imports")
    args = parser.parse_args()
    demo = demo_data(args.data_dir.resolve())
    taken = measurements(demo, [python.absolute() for python in args.compare])
    times: dict[str, list[float]] = {measurement.label: [] for measurement in taken}
    for measurement in taken:  # a first turn, uncounted, warms the caches
        run(measurement, demo.home)
    for _ in range(args.repeat):
        for measurement in taken:
            times[measurement.label].append(run(measurement, demo.home))
    print(f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}, {args.repeat} rounds of turns")
    print(f"{EXPORT}: {' '.join(taken[0].argv[1:])}")
    ours = statistics.median(times[EXPORT])
    row = "{:<58}{:>10}{:>10}{:>16}"
    print()
    print(row.format("command", "median s", "min s", "export / this"))
    for label, seconds in times.items():
        median = statistics.median(seconds)
        print(row.format(label, f"{median:.3f}", f"{min(seconds):.3f}", f"{ours / median:.2f}x"))
    floor = statistics.median(times["python -c pass"])
    met = ours <= TARGET_SECONDS
    print()
    print(
        f"{EXPORT}: {ours:.3f} s (median), {ours - floor:.3f} s over the interpreter's floor;"
        f" target {TARGET_SECONDS} s: {'met' if met else 'MISSED'}"
    )
    if args.why:
        why(demo, 20)
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
