"""Requests per second of the native HTTP API, beside ``GET /healthz`` of the same server.

    python bench/http_api.py                          # 8 at once, 1,000 requests of each kind
    python bench/http_api.py --concurrency 32 --requests 4000 --rounds 5
    python bench/http_api.py --fresh                  # a new connection per request
    python bench/http_api.py --kinds healthz,list --concurrency 200 --requests 4000 --jobs 1000

``exportd serve`` (the embedded mode: engine, worker and HTTP API in one process,
no broker) runs as a process of its own, with an ``EXPORTD_HOME`` of this run's
own holding 2,000 demo messages, one organisation, a user and a token.  The bench
is the client: ``--concurrency`` tasks, each sending requests back to back on a
bare HTTP/1.1 connection of its own, kept alive (or, with ``--fresh``, a new one
per request), ``--requests`` requests of a kind in all (``httpx`` makes the jobs
and watches the worker between rounds).  The kinds:

* ``healthz``: ``GET /healthz``, the baseline: the same server, HTTP stack and
  client, but no token, no job store and no job;
* ``get``: ``GET /v1/jobs/{id}`` with the token, over the ``--jobs`` jobs made
  beforehand;
* ``list``: ``GET /v1/jobs`` with the token: the first page (20) of the
  organisation's jobs, newest first, and their count;
* ``create``: ``POST /v1/jobs`` with the token: a rooms logs export of one hour
  (a handful of rows) as csv, which the server's worker then runs too.

``--kinds`` picks some of them (``healthz`` always runs: the ratios need it).

The kinds take turns for ``--rounds`` rounds, so that a change in the machine's
load falls on all of them; before each round the bench waits until the server's
worker has run every job made so far; a kind's figure is its best round (the median is
printed too).  A ratio is the kind's requests per second over ``healthz``'s: a
figure that still compares on a busy machine.  Every answer must have the
expected status, or the bench stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from importlib.metadata import version
from itertools import cycle
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from exportd.config import Settings
from exportd.data.demo import generate_demo_data
from exportd.http.tenants import TenantStore

MESSAGES = 2_000
KINDS = ("healthz", "get", "list", "create")
STARTUP = 30.0
"""Seconds to wait for the server to say where it listens."""
LISTENING = re.compile(r"HTTP API at (http://\S+)")
ROW = "{:<10}{:>10}{:>10}{:>9}{:>9}{:>9}"


@dataclass
class Server:
    """The running ``exportd serve``: its URL, a token and a body for a small export."""

    url: str
    headers: dict[str, str]
    export: dict[str, object]
    job_ids: list[str] = field(default_factory=list)


@dataclass
class Round:
    """One round of one kind: its requests per second and each request's seconds."""

    rate: float
    seconds: list[float]


def home_for(home: Path) -> tuple[dict[str, str], dict[str, object]]:
    """Fill ``home`` with demo data and a tenant; the token's headers and an export body."""
    settings = Settings(home=str(home))
    summary = generate_demo_data(settings.data_path, messages=MESSAGES)
    org_id = summary.org_id
    with TenantStore(settings.jobs_path) as tenants:
        tenants.create_org("Bench", org_id=org_id)
        user = tenants.create_user(org_id, "Bench user")
        token = tenants.create_token(user.id, ["reports"]).token
    export: dict[str, object] = {
        "source": "rooms",
        "format": "csv",
        "params": {"room_id": summary.room_id, "type": "logs"},
        "interval": {
            "start": summary.start.isoformat(),
            "end": (summary.start + timedelta(hours=1)).isoformat(),
        },
    }
    return {"Authorization": f"Bearer {token}"}, export


@contextmanager
def serving(home: Path) -> Iterator[str]:
    """``exportd serve`` on a free port with ``home`` as its EXPORTD_HOME; yields its URL."""
    env = {**os.environ, "EXPORTD_HOME": str(home)}
    command = [sys.executable, "-m", "exportd", "serve", "--http", "127.0.0.1:0"]
    log = (home / "serve.log").open("w+")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield listening_url(process, home / "serve.log")
    finally:
        process.terminate()
        process.wait(timeout=STARTUP)
        log.close()


def listening_url(process: subprocess.Popen[bytes], log: Path) -> str:
    """The URL the server logs it listens at, once it does."""
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if found := LISTENING.search(log.read_text()):
            return found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"exportd serve did not start:\n{log.read_text()}")


class Connection:
    """A bare HTTP/1.1 client connection (asyncio streams, ``Content-Length`` answers):
    at 200 requests at once, ``httpx`` used more CPU than the server it measured and
    set the latency itself, on the same two cores."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        """A connection to the server at ``url``."""
        address = urlsplit(url)
        assert address.hostname is not None and address.port is not None
        return cls(*await asyncio.open_connection(address.hostname, address.port))

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        """Send one request; the answer's status and body."""
        lines = [f"{method} {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *fields = head.decode("latin-1").split("\r\n")
        length = 0
        for line in fields:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    async def close(self) -> None:
        """Close the connection."""
        self.writer.close()
        await self.writer.wait_closed()


async def one_round(
    server: Server, kind: str, requests: int, concurrency: int, fresh: bool
) -> Round:
    """Send ``requests`` requests of ``kind`` from ``concurrency`` tasks at once, each on
    a connection of its own (a new one per request if ``fresh``)."""
    left = iter(range(requests))
    ids = cycle(server.job_ids)
    seconds: list[float] = []
    export = json.dumps(server.export).encode()
    posting = {**server.headers, "Content-Type": "application/json"}

    async def send(connection: Connection | None) -> None:
        for _ in left:
            began = time.perf_counter()
            used = connection or await Connection.open(server.url)
            if kind == "healthz":
                answer, expected = await used.request("GET", "/healthz", {}), 200
            elif kind == "get":
                path = f"/v1/jobs/{next(ids)}"
                answer, expected = await used.request("GET", path, server.headers), 200
            elif kind == "list":
                answer, expected = await used.request("GET", "/v1/jobs", server.headers), 200
            else:
                answer, expected = await used.request("POST", "/v1/jobs", posting, export), 201
            if connection is None:
                await used.close()
            seconds.append(time.perf_counter() - began)
            if answer[0] != expected:
                raise SystemExit(f"{kind}: {answer[0]} {answer[1].decode(errors='replace')}")

    # Connections are made before the clock starts (the server closes idle ones
    # between rounds), unless every request makes its own.
    connections = [None if fresh else await Connection.open(server.url) for _ in range(concurrency)]
    began = time.perf_counter()
    await asyncio.gather(*(send(connection) for connection in connections))
    rate = requests / (time.perf_counter() - began)
    for connection in connections:
        if connection is not None:
            await connection.close()
    return Round(rate, seconds)


async def measure(args: argparse.Namespace, server: Server) -> dict[str, list[Round]]:
    """Warm up, make the jobs to get, then run the kinds in turn for ``args.rounds``."""
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        await make_jobs(client, server, args.jobs)
        for kind in args.kinds:  # warm-up: connections, caches, first-call costs
            await drained(client, server)
            await one_round(server, kind, args.concurrency * 10, args.concurrency, args.fresh)
        rounds: dict[str, list[Round]] = {kind: [] for kind in args.kinds}
        for _ in range(args.rounds):
            for kind in args.kinds:
                await drained(client, server)
                share = args.requests // args.rounds
                done = await one_round(server, kind, share, args.concurrency, args.fresh)
                rounds[kind].append(done)
        return rounds


async def make_jobs(client: httpx.AsyncClient, server: Server, count: int) -> None:
    """Make ``count`` jobs (the ones ``get`` reads, and ``list`` pages through), 8 at once."""
    pending = iter(range(count))

    async def make() -> None:
        for _ in pending:
            made = await client.post("/v1/jobs", json=server.export, headers=server.headers)
            made.raise_for_status()
            server.job_ids.append(made.json()["id"])

    await asyncio.gather(*(make() for _ in range(8)))


def kinds(value: str) -> tuple[str, ...]:
    """``--kinds``: names of :data:`KINDS`, comma-separated; ``healthz`` comes first."""
    chosen = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(KINDS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown kinds {', '.join(unknown)}; known: {KINDS}")
    return tuple(kind for kind in KINDS if kind == "healthz" or kind in chosen)


async def drained(client: httpx.AsyncClient, server: Server) -> None:
    """Wait until the server's worker has run every job made so far, so that no round
    shares the machine with the exports of the ``create`` round before it."""
    for status in ("created", "processing", "uploading"):
        while True:
            query = {"status": status, "page_size": 1}
            answer = await client.get("/v1/jobs", params=query, headers=server.headers)
            if answer.json()["count"] == 0:
                break
            await asyncio.sleep(0.1)


def percentile(seconds: list[float], percent: int) -> float:
    """The ``percent``-th percentile of ``seconds``, in milliseconds."""
    return statistics.quantiles(seconds, n=100, method="inclusive")[percent - 1] * 1000


def report(rounds: dict[str, list[Round]]) -> None:
    """The table: best and median requests per second, ratio to healthz, latency."""
    best = {kind: max(r.rate for r in kind_rounds) for kind, kind_rounds in rounds.items()}
    print(ROW.format("", "req/s", "median", "ratio", "p50 ms", "p99 ms"))
    for kind, kind_rounds in rounds.items():
        seconds = [s for r in kind_rounds for s in r.seconds]
        print(
            ROW.format(
                kind,
                f"{best[kind]:.0f}",
                f"{statistics.median(r.rate for r in kind_rounds):.0f}",
                f"{best[kind] / best['healthz']:.2f}",
                f"{percentile(seconds, 50):.1f}",
                f"{percentile(seconds, 99):.1f}",
            )
        )
    print("ratio: the kind's best req/s over healthz's (the same server, client and run)")


def main() -> None:
    """Run the bench and print the machine, the versions and the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8, help="requests at once")
    parser.add_argument("--requests", type=int, default=1000, help="requests of each kind")
    parser.add_argument("--rounds", type=int, default=3, help="turns each kind takes")
    parser.add_argument("--jobs", type=int, default=50, help="jobs made before the rounds")
    parser.add_argument(
        "--kinds", type=kinds, default=KINDS, help=f"some of {','.join(KINDS)} (all)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="a new connection per request (no keep-alive)"
    )
    args = parser.parse_args()
    print(
        f"cpus: {os.cpu_count()} (load {os.getloadavg()[0]:.1f} before the run), "
        f"python {sys.version.split()[0]}, exportd {version('exportd')}, "
        f"litestar {version('litestar')}, uvicorn {version('uvicorn')}, httpx {version('httpx')}"
    )
    print(
        f"exportd serve (embedded) in its own process; {args.concurrency} requests at once "
        f"on {'a new connection each' if args.fresh else 'kept-alive connections'}, "
        f"{args.requests} of each kind over {args.rounds} rounds; {MESSAGES} demo messages, "
        f"{args.jobs} jobs made first"
    )
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="exportd-bench-http-") as directory:
        home = Path(directory)
        headers, export = home_for(home)
        with serving(home) as url:
            rounds = asyncio.run(measure(args, Server(url, headers, export)))
    print(f"measured in {time.perf_counter() - began:.0f} s\n")
    report(rounds)


if __name__ == "__main__":
    main()
