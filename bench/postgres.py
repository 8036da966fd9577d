"""Export N demo messages from PostgreSQL, beside psql's COPY and ADBC, in one run.

    python bench/postgres.py                    # 1,000,000 rows
    python bench/postgres.py --rows 200000 --repeat 3

It makes a throwaway database on the server (``--server``, default the local
``postgres`` one), fills it with ``exportd demo-data --url ... --messages N``,
moves every conversation into one room (so that one ``rooms`` logs export holds all
N messages), and drops it at the end.  Then, taking turns, each in a process of its
own (so that its peak memory, max RSS, is its own):

* ``exportd export`` (the CLI, ``data.url`` on the database) of the room's logs to
  csv and to json_bulk, and the csv of a tenth of the rows (``--limit``), to check
  that memory stays flat;
* the baseline, ``psql -c "\\copy (SELECT ...) TO STDOUT WITH CSV HEADER" > file``
  with the ``rooms`` source's own SELECT;
* the read path alone, on that SELECT: psycopg's server-side cursor with
  ``fetchmany`` (what exportd's store does), ADBC's DB-API ``fetchmany``
  (adbc-driver-postgresql), and ADBC's ``fetch_arrow_table`` for reference.

Targets: the csv export within 2.5x of psql's COPY; the export's peak memory at N
rows within 1.2x of its peak at N/10.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from exportd.plugins.sources.rooms import LOG_SELECT, POSTGRESQL, touched_starts

CSV_TARGET = 2.5
MEMORY_TARGET = 1.2
BATCH = 5000
START, END = "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"
EXPORTD = Path(sys.executable).with_name("exportd")
ROW = "{:<28}{:>10}{:>10}{:>10}  {}"


def database_url(server: str, name: str) -> str:
    """The URL of the database ``name`` on the server of ``server``."""
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


def prepare(url: str, rows: int) -> str:
    """Demo data of ``rows`` messages in the database at ``url``, all in the busiest room;
    that room's id."""
    command = [str(EXPORTD), "demo-data", "--url", url, "--messages", str(rows), "--json"]
    summary = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
    room: str = summary["room_id"]
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE conversations SET room_id = %s", (room,))
        conn.execute("UPDATE messages SET room_id = %s", (room,))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return room


def logs_select(url: str, room: str, rows: int) -> str:
    """The ``rooms`` source's logs SELECT for the room, its values written in, on one line."""
    query = POSTGRESQL.logs.format(columns=LOG_SELECT, filters="")
    args: dict[str, object] = {"room": room, "start": START, "end": END, "limit": rows}
    with psycopg.connect(url) as conn:
        args["first"], args["last"] = touched_starts(conn, POSTGRESQL, args) or (None, None)
        bound = psycopg.ClientCursor(conn).mogrify(query, args)
    return " ".join(bound.split())


def read_psycopg(url: str, select: str, out: Path) -> int:
    """What exportd's store does: a named (server-side) cursor, ``fetchmany`` at a time."""
    count = 0
    with psycopg.connect(url, options="-c TimeZone=UTC") as conn, conn.cursor(name="bench") as cur:
        cur.execute(select)
        while batch := cur.fetchmany(BATCH):
            count += len(batch)
    return count


def read_adbc(url: str, select: str, out: Path) -> int:
    """ADBC's DB-API cursor, ``fetchmany`` at a time (rows as Python tuples)."""
    from adbc_driver_postgresql import dbapi  # type: ignore[import-untyped]

    count = 0
    with dbapi.connect(url) as conn, conn.cursor() as cur:
        cur.execute(select)
        while batch := cur.fetchmany(BATCH):
            count += len(batch)
    return count


def read_arrow(url: str, select: str, out: Path) -> int:
    """ADBC's whole result as one Arrow table: columns, no Python objects per value."""
    from adbc_driver_postgresql import dbapi

    with dbapi.connect(url) as conn, conn.cursor() as cur:
        cur.execute(select)
        rows: int = cur.fetch_arrow_table().num_rows
    return rows


READERS: dict[str, Callable[[str, str, Path], int]] = {
    "psycopg fetchmany": read_psycopg,
    "adbc fetchmany": read_adbc,
    "adbc fetch_arrow_table": read_arrow,
}


def run(command: list[str], out: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``command`` with its standard output into ``out``: its seconds and peak memory
    (its children's included)."""
    began = time.perf_counter()
    with out.open("wb") as file, subprocess.Popen(command, stdout=file, env=env) as process:
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - began
    if process.returncode != 0:
        sys.exit(f"{command[0]} failed with exit code {process.returncode}")
    return {"seconds": seconds, "max_rss_kib": usage.ru_maxrss, "bytes": out.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="turns; the best of each counts")
    parser.add_argument(
        "--server", default="postgresql://postgres@127.0.0.1:5432/postgres", metavar="URL"
    )
    parser.add_argument("--child", nargs=4, metavar=("READER", "URL", "SELECT", "OUT"))
    args = parser.parse_args()
    if args.child:
        reader, url, select, out = args.child
        print(READERS[reader](url, select, Path(out)))
        return
    name = f"exportd_bench_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(args.server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            measure(database_url(args.server, name), args.rows, args.repeat)
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def measure(url: str, rows: int, repeat: int) -> None:
    """Load the data, take the turns, print the figures; exit 1 on a missed target."""
    began = time.perf_counter()
    room = prepare(url, rows)
    print(
        f"data: {rows:,} messages in one room of a throwaway database, loaded in "
        f"{time.perf_counter() - began:.1f} s"
    )
    print(f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}, psycopg {psycopg.__version__}")
    select = logs_select(url, room, rows)
    env = {**os.environ, "EXPORTD_DATA__URL": url, "EXPORTD_HOME": tempfile.gettempdir()}

    def export(fmt: str, limit: int) -> list[str]:
        return [
            str(EXPORTD), "export", "rooms", "-p", f"room_id={room}", "-p", "type=logs",
            "-f", fmt, "--start", START, "--end", END, "--limit", str(limit), "-o", "-",
        ]  # fmt: skip

    commands: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "psql \\copy csv (baseline)": (
            ["psql", url, "-q", "-c", f"\\copy ({select}) TO STDOUT WITH CSV HEADER"],
            None,
        ),
        "exportd csv": (export("csv", rows), env),
        "exportd json_bulk": (export("json_bulk", rows), env),
        f"exportd csv, {rows // 10:,} rows": (export("csv", rows // 10), env),
        **{
            reader: ([sys.executable, __file__, "--child", reader, url, select, "-"], None)
            for reader in READERS
        },
    }
    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(repeat):
            for label, (command, command_env) in commands.items():
                figures = run(command, Path(folder) / "out", command_env)
                if label not in best or figures["seconds"] < best[label]["seconds"]:
                    best[label] = figures
    base = best["psql \\copy csv (baseline)"]["seconds"]
    print(f"times: best of {repeat}, turn by turn; memory: peak RSS of the process")
    print(ROW.format("what", "seconds", "vs psql", "peak MB", "note"))
    for label, figures in best.items():
        print(
            ROW.format(
                label,
                f"{figures['seconds']:.2f}",
                f"{figures['seconds'] / base:.2f}x",
                f"{figures['max_rss_kib'] / 1024:.0f}",
                f"{figures['bytes'] / 2**20:.0f} MiB out" if figures["bytes"] > 2**20 else "",
            )
        )
    csv_ratio = best["exportd csv"]["seconds"] / base
    memory = (
        best["exportd csv"]["max_rss_kib"]
        / best[f"exportd csv, {rows // 10:,} rows"]["max_rss_kib"]
    )
    csv_ok, memory_ok = csv_ratio <= CSV_TARGET, memory <= MEMORY_TARGET
    print(
        f"csv: {csv_ratio:.2f}x psql's COPY (target <= {CSV_TARGET}x): "
        f"{'ok' if csv_ok else 'MISSED'}"
    )
    print(
        f"memory: {rows:,} rows take {memory:.2f}x the peak of {rows // 10:,} "
        f"(target <= {MEMORY_TARGET}x): {'ok' if memory_ok else 'MISSED'}"
    )
    sys.exit(0 if csv_ok and memory_ok else 1)


if __name__ == "__main__":
    main()
