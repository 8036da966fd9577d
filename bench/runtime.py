"""Small exports through RabbitMQ, beside bare aio-pika trips measured in the same run.

    python bench/runtime.py                     # 200 jobs one at a time, then 1,000 at once
    python bench/runtime.py --jobs 50 --burst 200 --url amqp://guest:guest@host:5672/

An engine and two workers (``--concurrency`` tasks each) run as processes of
their own (this file with ``--role engine`` or ``--role worker``) on a topology
with a prefix of this run's own, over a fresh ``data.db`` of 2,000 demo
messages.  The bench plays an upstream system: it publishes each request (a
rooms logs export of ``ROWS`` rows, csv) to the requests queue, with a confirm,
and waits for the job's ``job.done`` event on the events exchange.

The baseline is a bare aio-pika round trip in the same shape: the bench
publishes a message, with a confirm, to a durable queue; two echo processes
(``--role echo``, each taking ``--concurrency`` at a time, as the workers do)
consume it, publish a reply to another queue, with a confirm, and ack; the
bench receives the reply.  Every message of all three is persistent.

The floor is bare aio-pika along exportd's own four hops, with nothing done at
any stop: quorum request, task and status queues and a topic exchange, between
a relay (``--role relay``, as the engine) and two hops (``--role hop``, as the
workers).  It is what the topology alone costs, so that
the overhead splits into the topology's share and exportd's own.

* latency: one job (round trip) at a time, ``--jobs`` of each, taking turns
  (ping, floor, job, export alone) so that a machine whose speed drifts during
  the run slows all of them alike: p50 and p99;
* overhead: exportd's latency less the export itself (planned, written and
  stored as a worker does it, timed in this process in the same turn), p50 of
  the turns' differences;
* throughput: ``--burst`` of them published at once, from the first publish to
  the last done event (reply);
* the bound: the best any exportd could do on its four hops doing no work of its
  own, beside Celery: the floor's trip plus the export alone, turn by turn
  (latency), and the jobs per second the cores allow for the floor's CPU per trip
  plus the export's CPU per job, at most the floor's own rate (throughput).  A
  bound that misses Celery's figure says the target needs fewer or cheaper hops,
  not savings inside exportd; so does exportd's own CPU per job (its engine's and
  workers', less the export's) above what the cores leave at Celery's rate.  The
  latency's bound on classic hops (four of the baseline's, classic queues with
  confirms) says whether queues of that type alone would do.

The peer is Celery 5 on the same RabbitMQ: two Celery workers (``--role celery``,
the solo pool, or ``--concurrency`` threads) run the same export as a task (planned,
written and stored as exportd's worker does it), on a queue of this run's own
(deleted at the end); the bench sends the task and waits for its result.  Its
result backend is ``rpc://``: the result comes back as a message on the bench's
own reply queue, the same broker and the same kind of trip as exportd's
``job.done`` event, with no store of results to poll (Celery keeps no job record:
what exportd's job store, publisher confirms and done event promise besides is
exportd's cost).  Celery runs with its defaults otherwise (persistent messages on
a classic queue, no publisher confirms, the task acknowledged as it starts, four
tasks prefetched per worker).  It takes its turn beside exportd's job (which of
the two goes first alternates), and its burst alternates with exportd's over
``--rounds``; exportd's figures are printed as ratios to Celery's.

A ratio is a time per job over the baseline's; the exit status is 1 when the
p50 overhead misses its target (at most 5x the baseline: issue 4).  Where exportd's time goes: the
arrival of each job's events at the bench, one job at a time; and the CPU time
each process used per job (from ``/proc``, so on Linux; the broker's when it
runs on this machine and ``rabbitmqctl`` names its process).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import aio_pika
import msgspec
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage
from yarl import URL

from exportd.bus.amqp import AmqpBus
from exportd.bus.topology import Topology
from exportd.config import Settings
from exportd.config.settings import BrokerSettings, WorkerSettings
from exportd.data.demo import generate_demo_data
from exportd.engine.service import Engine
from exportd.errors import ErrorBody
from exportd.kernel.datastores import data_store
from exportd.kernel.pipeline import run_export
from exportd.kernel.plan import plan_export
from exportd.messages import ExportRequest, Interval
from exportd.plugins.manager import load_plugins
from exportd.workers.worker import Worker

ROLES = ("engine", "worker", "echo", "relay", "hop", "celery")
WORKERS = 2
ROWS = 10
WARMUP = 10
TIMEOUT = 60.0
"""Seconds to wait for a job (a reply) before the bench gives up."""
P50_TARGET = 5.0
FLOOR_EVENT = "floor.done"
STAGES = ("job.created", "job.processing", "job.uploading", "job.done")
CELERY_TASK = "exportd_bench.export"
ROW = "{:<22}{:>12}{:>12}{:>10}{:>8} {}"
CPU_LABEL, CPU_FIGURE = "{:<26}", "{:>9}"
Send = Callable[[str], Awaitable[None]]


class Inbox:
    """The replies (events) the bench awaits, by key, and when each kind of them arrived."""

    def __init__(self, final: str) -> None:
        self.final = final
        self.arrivals: dict[str, dict[str, float]] = {}
        self._waiting: dict[str, asyncio.Future[float]] = {}

    def expect(self, key: str) -> asyncio.Future[float]:
        """A future of the moment (``perf_counter``) the final reply for ``key`` arrives."""
        self.arrivals[key] = {}
        future = self._waiting[key] = asyncio.get_running_loop().create_future()
        return future

    def arrive(self, key: str, kind: str, failure: str | None = None) -> None:
        """Note that a reply of ``kind`` for ``key`` arrived now."""
        moment = time.perf_counter()
        self.arrivals.setdefault(key, {}).setdefault(kind, moment)
        future = self._waiting.get(key)
        if future is None or future.done():
            return
        if failure is not None:
            future.set_exception(RuntimeError(f"{key}: {failure}"))
        elif kind == self.final:
            future.set_result(moment)


async def latency(send: Send, inbox: Inbox, key: str) -> tuple[float, float]:
    """Send one and wait for its final reply: when it was sent, and how long that took."""
    arrived = inbox.expect(key)
    began = time.perf_counter()
    await send(key)
    return began, await asyncio.wait_for(arrived, TIMEOUT) - began


async def throughput(send: Send, inbox: Inbox, keys: list[str]) -> float:
    """Send all at once; per second, from the first send to the last final reply."""
    arrivals = [inbox.expect(key) for key in keys]
    began = time.perf_counter()
    await asyncio.gather(*(send(key) for key in keys))
    async with asyncio.timeout(TIMEOUT + len(keys) / 10):
        finished = max(await asyncio.gather(*arrivals))
    return len(keys) / (finished - began)


def persistent(body: bytes, *, correlation_id: str | None = None) -> aio_pika.Message:
    """A persistent message, as exportd's bus publishes them."""
    mode = aio_pika.DeliveryMode.PERSISTENT
    return aio_pika.Message(body, delivery_mode=mode, correlation_id=correlation_id)


class _Request(msgspec.Struct):
    idempotency_key: str | None = None


class _Job(msgspec.Struct):
    request: _Request
    error: ErrorBody | None = None


class _Event(msgspec.Struct):
    """The fields of a :class:`~exportd.messages.JobEvent` the bench reads (and decodes)."""

    type: str
    job: _Job | None = None


class Names:
    """The queues of this run: exportd's topology, the baseline's two queues and the
    floor's three queues and exchange."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.topology = Topology(prefix)
        self.ping = f"{prefix}bench.ping"
        self.pong = f"{prefix}bench.pong"
        self.floor_requests = f"{prefix}bench.floor.requests"
        self.floor_tasks = f"{prefix}bench.floor.tasks"
        self.floor_status = f"{prefix}bench.floor.status"
        self.floor_events = f"{prefix}bench.floor.events"
        self.celery = f"{prefix}bench.celery"

    def plain_queues(self) -> list[str]:
        """The baseline's classic queues."""
        return [self.ping, self.pong]

    def floor_queues(self) -> list[str]:
        """The floor's queues, quorum queues as exportd's."""
        return [self.floor_requests, self.floor_tasks, self.floor_status]

    def forwards(self, role: str) -> list[tuple[str, str, str]]:
        """What a stand-in process of ``role`` forwards: (queue, exchange, routing key)."""
        return {
            "echo": [(self.ping, "", self.pong)],
            "relay": [
                (self.floor_requests, "", self.floor_tasks),
                (self.floor_status, self.floor_events, FLOOR_EVENT),
            ],
            "hop": [(self.floor_tasks, "", self.floor_status)],
        }[role]


# -- the processes the bench starts ---------------------------------------------------------


async def forward(
    url: str, forwards: list[tuple[str, str, str]], prefetch: int, stop: asyncio.Event
) -> None:
    """A stand-in of the baseline (an echo) or the floor (the relay, a hop): take each
    message of a queue, publish its body on with a confirm, then ack it."""
    connection = await aio_pika.connect(url)
    async with connection:
        publisher = await connection.channel()
        for queue_name, exchange_name, routing_key in forwards:
            consumer = await connection.channel()
            await consumer.set_qos(prefetch_count=prefetch)
            queue = await consumer.get_queue(queue_name)
            exchange = (
                await publisher.get_exchange(exchange_name)
                if exchange_name
                else publisher.default_exchange
            )
            await queue.consume(partial(pass_on, exchange, routing_key))
        await stop.wait()


async def pass_on(
    exchange: AbstractExchange, routing_key: str, message: AbstractIncomingMessage
) -> None:
    """Publish ``message``'s body on to ``exchange``, with a confirm, then ack it."""
    onward = persistent(message.body, correlation_id=message.correlation_id)
    await exchange.publish(onward, routing_key, mandatory=not exchange.name)
    await message.ack()


def settings_for(home: Path, url: str, concurrency: int) -> Settings:
    """The settings of the engine and workers of a run."""
    return Settings(
        home=str(home),
        broker=BrokerSettings(url=url),
        worker=WorkerSettings(concurrency=concurrency),
    )


def celery_app(url: str, queue: str) -> Any:
    """A Celery app on ``url`` whose tasks go to ``queue`` (its exchange of that name too),
    with results sent back over ``rpc://``, and neither remote control nor events (no
    queues or exchanges but this run's own)."""
    from celery import Celery  # type: ignore[import-untyped]  # a dev dependency, not --help's

    app = Celery("exportd-bench", broker=url, backend="rpc://")
    app.conf.update(
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_routing_key=queue,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    return app


def celery_worker(url: str, names: Names, home: Path, concurrency: int) -> None:
    """A Celery worker whose one task runs the export of the request it is given, as
    :class:`ExportAlone` does; until SIGTERM (Celery's warm shutdown)."""
    app = celery_app(url, names.celery)
    export = ExportAlone(settings_for(home, url, concurrency), label=f"celery-{os.getpid()}")

    @app.task(name=CELERY_TASK)  # type: ignore[untyped-decorator]
    def run_export_task(body: bytes) -> float:
        return export(msgspec.json.decode(body, type=ExportRequest)).wall

    pool = "solo" if concurrency == 1 else "threads"
    quiet = ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    app.worker_main(
        [
            "worker",
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
            *quiet,
        ]
    )


async def serve(role: str, url: str, names: Names, home: Path, concurrency: int) -> None:
    """Run ``role`` until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    settings = settings_for(home, url, concurrency)
    if role not in ("engine", "worker"):
        # The relay stands in for the engine, which consumes with the broker's prefetch.
        prefetch = settings.broker.prefetch if role == "relay" else concurrency
        await forward(url, names.forwards(role), prefetch, stop)
        return
    plugins = load_plugins(settings)
    async with AmqpBus(settings.broker, names.topology, name=f"bench {role}") as bus:
        if role == "engine":
            await Engine(bus, plugins, settings).run(stop)
        else:
            await Worker(bus, plugins, settings).run(stop)


def cpu_seconds(pid: int) -> float:
    """The CPU time, user and system, process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid(url: str) -> int | None:
    """The process id of the broker at ``url`` if it runs here and ``rabbitmqctl`` says it."""
    if URL(url).host not in ("127.0.0.1", "localhost", "::1") or not shutil.which("rabbitmqctl"):
        return None
    answer = subprocess.run(
        ["rabbitmqctl", "-q", "eval", "os:getpid()."],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    pid = answer.stdout.strip().strip('"')
    return int(pid) if answer.returncode == 0 and pid.isdigit() else None


class Crew:
    """The processes of a run by role, and the CPU time each role used per job, by phase."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self.usage: dict[str, dict[str, float]] = {}

    def cpu(self) -> dict[str, float]:
        """The CPU seconds of each role so far."""
        return {role: sum(map(cpu_seconds, pids)) for role, pids in self.pids.items()}

    @contextmanager
    def counting(self, phase: str, jobs: int) -> Iterator[None]:
        """Note the CPU milliseconds per job each role uses in the block."""
        before = self.cpu()
        yield
        after = self.cpu()
        self.usage[phase] = {role: (after[role] - before[role]) * 1000 / jobs for role in after}


@contextmanager
def processes(roles: dict[str, list[list[str]]], url: str) -> Iterator[Crew]:
    """Run the commands of each role; at the end, SIGTERM them and wait for them to stop."""
    started: dict[str, list[subprocess.Popen[bytes]]] = {}
    try:
        for role, commands in roles.items():
            started[role] = [subprocess.Popen(command) for command in commands]
        pids = {role: [process.pid for process in group] for role, group in started.items()}
        pids["bench"] = [os.getpid()]
        broker = broker_pid(url)
        if broker is not None:
            pids["broker"] = [broker]
        yield Crew(pids)
    finally:
        everyone = [process for group in started.values() for process in group]
        for process in everyone:
            process.terminate()
        for process in everyone:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


# -- the bench ---------------------------------------------------------------------------


async def wait_for_consumers(channel: AbstractChannel, wanted: dict[str, int]) -> None:
    """Return once each queue of ``wanted`` has that many consumers."""
    async with asyncio.timeout(TIMEOUT):
        for name, count in wanted.items():
            while True:
                queue = await channel.declare_queue(name, passive=True)
                if (queue.declaration_result.consumer_count or 0) >= count:
                    break
                await asyncio.sleep(0.05)


async def declare_bench_queues(channel: AbstractChannel, names: Names) -> None:
    """The baseline's and the floor's queues and exchange (exportd declares its own)."""
    for queue in names.plain_queues():
        await channel.declare_queue(queue, durable=True)
    await channel.declare_queue(names.celery, durable=True)  # as Celery's workers declare it
    quorum: dict[str, Any] = {"x-queue-type": "quorum"}  # as the queues exportd consumes
    for queue in names.floor_queues():
        await channel.declare_queue(queue, durable=True, arguments=quorum)
    await channel.declare_exchange(names.floor_events, aio_pika.ExchangeType.TOPIC, durable=True)


async def delete_queues(channel: AbstractChannel, names: Names) -> None:
    """Delete every queue and exchange of this run."""
    for queue in [spec.name for spec in names.topology.queues()]:
        await channel.queue_delete(queue)
    for queue in names.plain_queues() + names.floor_queues():
        await channel.queue_delete(queue)
    await channel.queue_delete(names.celery)
    exchanges = [spec.name for spec in names.topology.exchanges()]
    for exchange in [*exchanges, names.floor_events, names.celery]:
        await channel.exchange_delete(exchange)


class Bench:
    """The upstream end of all three: sends requests (pings) and follows events (pongs)."""

    def __init__(self, channel: AbstractChannel, names: Names, request: ExportRequest) -> None:
        self.channel = channel
        self.names = names
        self.request = request
        self.jobs = Inbox(final="job.done")
        self.pongs = Inbox(final="pong")
        self.floors = Inbox(final="floor")

    async def listen(self) -> None:
        """Follow this org's job events, the pongs and the floor's events (no acks: all
        three are private)."""
        events = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        await events.bind(self.names.topology.events, f"{self.request.org_id}.#")
        await events.consume(self._on_event, no_ack=True)
        pongs = await self.channel.get_queue(self.names.pong)
        await pongs.consume(partial(self._on_reply, self.pongs, "pong"), no_ack=True)
        floor = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        await floor.bind(self.names.floor_events, FLOOR_EVENT)
        await floor.consume(partial(self._on_reply, self.floors, "floor"), no_ack=True)

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        event = msgspec.json.decode(message.body, type=_Event)
        if event.job is None or event.job.request.idempotency_key is None:
            return
        failed = event.job.error.message if event.job.error else None
        if event.type == "job.failed":
            failed = failed or "failed"
        self.jobs.arrive(event.job.request.idempotency_key, event.type, failed)

    @staticmethod
    async def _on_reply(inbox: Inbox, kind: str, message: AbstractIncomingMessage) -> None:
        inbox.arrive(message.correlation_id or "", kind)

    async def submit(self, key: str) -> None:
        """Publish an export request, as an upstream system would."""
        request = msgspec.structs.replace(self.request, idempotency_key=key)
        message = persistent(msgspec.json.encode(request))
        await self.channel.default_exchange.publish(
            message, self.names.topology.requests, mandatory=True
        )

    async def ping(self, key: str) -> None:
        """Publish a baseline ping."""
        await self._publish_bare(self.names.ping, key)

    async def floor(self, key: str) -> None:
        """Publish a request of the floor, as big as exportd's."""
        await self._publish_bare(self.names.floor_requests, key)

    async def _publish_bare(self, queue: str, key: str) -> None:
        body = msgspec.json.encode(msgspec.structs.replace(self.request, idempotency_key=key))
        message = persistent(body, correlation_id=key)
        await self.channel.default_exchange.publish(message, queue, mandatory=True)


class Took(NamedTuple):
    """What an export alone took: seconds of the wall clock, and of the process's CPU."""

    wall: float
    cpu: float


class ExportAlone:
    """The export of a job done as a worker does it (plan, pipeline, storage), timed: in
    the bench process, and in each Celery worker as its task.  ``label`` keeps the files
    of each process apart."""

    def __init__(self, settings: Settings, label: str = "alone") -> None:
        self.settings = settings
        self.label = label
        self.plugins = load_plugins(settings)
        self.storage = self.plugins.storage(settings.storage)
        self.count = 0
        settings.work_path.mkdir(parents=True, exist_ok=True)

    def __call__(self, request: ExportRequest) -> Took:
        """What the export of ``request`` takes."""
        self.count += 1
        began, began_cpu = time.perf_counter(), time.process_time()
        plan = plan_export(request, self.plugins, data_store(self.settings))
        written = self.settings.work_path / f"{self.label}-{self.count}.csv"
        run_export(plan, written, batch_size=self.settings.batch_size)
        self.storage.store(f"{self.label}/{self.count}/{written.name}", written)
        return Took(time.perf_counter() - began, time.process_time() - began_cpu)


class CeleryPeer:
    """The bench's end of Celery: sends the export task and waits for its result, in a
    thread of its own (Celery's client is blocking, and its result consumer belongs to
    the thread that made it)."""

    def __init__(self, url: str, queue: str, request: ExportRequest) -> None:
        self.app = celery_app(url, queue)
        self.body = msgspec.json.encode(request)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="celery client")

    def _one(self) -> float:
        began = time.perf_counter()
        self.app.send_task(CELERY_TASK, [self.body]).get(timeout=TIMEOUT)
        return time.perf_counter() - began

    def _many(self, count: int) -> float:
        began = time.perf_counter()
        results = [self.app.send_task(CELERY_TASK, [self.body]) for _ in range(count)]
        for result in results:
            result.get(timeout=TIMEOUT + count / 10)
        return count / (time.perf_counter() - began)

    async def latency(self) -> float:
        """Seconds from sending one task to its result."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._one)

    async def throughput(self, count: int) -> float:
        """Tasks per second, ``count`` sent at once, from the first send to the last result."""
        many = partial(self._many, count)
        return await asyncio.get_running_loop().run_in_executor(self._thread, many)

    def close(self) -> None:
        """Let the client's thread go."""
        self._thread.shutdown()


class Results(msgspec.Struct):
    """One run's figures: seconds per job, jobs per second, CPU ms per job by phase and role."""

    exportd: list[float]
    baseline: list[float]
    baseline_warm: list[float]
    floor: list[float]
    export: list[float]
    celery: list[float]
    exportd_rate: float
    exportd_rates: list[float]
    celery_rates: list[float]
    baseline_rate: float
    floor_rate: float
    stages: dict[str, list[float]]
    cpu: dict[str, dict[str, float]]
    export_cpu: list[float]


def stage_times(inbox: Inbox, keys: list[str], sent: list[float]) -> dict[str, list[float]]:
    """For each of ``STAGES`` a job went through, how long after the one before (the send,
    first) it arrived.  A quick export skips ``processing`` and ``uploading``."""
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for key, began in zip(keys, sent, strict=True):
        arrived = inbox.arrivals[key]
        previous = began
        for stage in STAGES:
            if stage in arrived:
                stages[stage].append(arrived[stage] - previous)
                previous = arrived[stage]
    return {stage: times for stage, times in stages.items() if times}


async def run(args: argparse.Namespace, home: Path, names: Names) -> Results:
    """Start the processes, measure all three, stop everything and delete the queues."""
    summary = generate_demo_data(home / "data.db", messages=2000)
    request = ExportRequest(
        source="rooms",
        format="csv",
        params={"room_id": summary.room_id, "type": "logs"},
        interval=Interval(start=summary.start.isoformat(), end=summary.end.isoformat()),
        limit=ROWS,
        org_id=summary.org_id,  # the room's: an org's export reads only its own data
    )
    settings = settings_for(home, args.url, args.concurrency)
    export = partial(ExportAlone(settings), request)
    async with AmqpBus(settings.broker, names.topology, name="bench declare"):
        pass  # the topology exists before anyone consumes from it
    role = [sys.executable, __file__, "--url", args.url, "--prefix", names.prefix]
    role += ["--home", str(home), "--concurrency", str(args.concurrency), "--role"]
    roles = {
        "echo": [[*role, "echo"]] * WORKERS,
        "relay": [[*role, "relay"]],
        "hops": [[*role, "hop"]] * WORKERS,
        "engine": [[*role, "engine"]],
        "workers": [[*role, "worker"]] * WORKERS,
        "celery": [[*role, "celery"]] * WORKERS,
    }
    connection = await aio_pika.connect(args.url)
    async with connection:
        try:
            async with await connection.channel() as channel:
                await declare_bench_queues(channel, names)
                bench = Bench(channel, names, request)
                await bench.listen()
                celery = CeleryPeer(args.url, names.celery, request)
                with processes(roles, args.url) as crew:
                    await wait_for_consumers(
                        channel,
                        {
                            names.ping: WORKERS,
                            names.floor_requests: 1,
                            names.floor_tasks: WORKERS,
                            names.floor_status: 1,
                            names.topology.requests: 1,
                            names.topology.tasks: WORKERS,
                            names.celery: WORKERS,
                        },
                    )
                    try:
                        return await measure(args, bench, crew, export, celery)
                    finally:
                        celery.close()
        finally:
            await delete_queues(await connection.channel(), names)


class Turn(NamedTuple):
    """Seconds each took, one after the other (the export alone's CPU seconds too), and
    when the job was sent."""

    ping: float
    floor: float
    job: float
    celery: float
    export: float
    export_cpu: float
    job_sent: float


async def take_turns(
    bench: Bench, export: Callable[[], Took], celery: CeleryPeer, key: str, celery_first: bool
) -> Turn:
    """A ping, a floor trip, a job and a Celery task (``celery_first`` or not), then the
    export alone."""
    _, ping = await latency(bench.ping, bench.pongs, key)
    _, floor = await latency(bench.floor, bench.floors, key)
    task = await celery.latency() if celery_first else 0.0
    sent, job = await latency(bench.submit, bench.jobs, key)
    if not celery_first:
        task = await celery.latency()
    took = export()
    return Turn(ping, floor, job, task, took.wall, took.cpu, sent)


async def measure(
    args: argparse.Namespace,
    bench: Bench,
    crew: Crew,
    export: Callable[[], Took],
    celery: CeleryPeer,
) -> Results:
    """The latencies of all three taking turns, then each one's throughput, after a
    warm-up."""

    def keys(label: str, count: int) -> list[str]:
        return [f"{label}-{n}" for n in range(count)]

    for number, key in enumerate(keys("warm", WARMUP)):
        await take_turns(bench, export, celery, key, celery_first=number % 2 == 1)
    baseline, floor, exportd, tasks, alone, alone_cpu, sent = [], [], [], [], [], [], []
    with crew.counting("all four, one at a time", args.jobs):
        for number, key in enumerate(keys("one", args.jobs)):
            turn = await take_turns(bench, export, celery, key, celery_first=number % 2 == 1)
            baseline.append(turn.ping)
            floor.append(turn.floor)
            exportd.append(turn.job)
            tasks.append(turn.celery)
            alone.append(turn.export)
            alone_cpu.append(turn.export_cpu)
            sent.append(turn.job_sent)
    baseline_warm = [
        (await latency(bench.ping, bench.pongs, key))[1] for key in keys("warm-ping", args.jobs)
    ]
    with crew.counting("baseline, all at once", args.burst):
        baseline_rate = await throughput(bench.ping, bench.pongs, keys("many", args.burst))
    with crew.counting("floor, all at once", args.burst):
        floor_rate = await throughput(bench.floor, bench.floors, keys("many", args.burst))
    exportd_rates, celery_rates = [], []
    for round_ in range(args.rounds):
        with crew.counting("exportd, all at once", args.burst):
            burst = keys(f"many-{round_}", args.burst)
            exportd_rates.append(await throughput(bench.submit, bench.jobs, burst))
        with crew.counting("celery, all at once", args.burst):
            celery_rates.append(await celery.throughput(args.burst))
    stages = stage_times(bench.jobs, keys("one", args.jobs), sent)
    return Results(
        exportd=exportd,
        baseline=baseline,
        baseline_warm=baseline_warm,
        floor=floor,
        export=alone,
        export_cpu=alone_cpu,
        celery=tasks,
        exportd_rate=statistics.median(exportd_rates),
        exportd_rates=exportd_rates,
        celery_rates=celery_rates,
        baseline_rate=baseline_rate,
        floor_rate=floor_rate,
        stages=stages,
        cpu=crew.usage,
    )


def p(seconds: list[float], percent: int) -> float:
    """The ``percent`` percentile, in milliseconds."""
    return statistics.quantiles(seconds, n=100, method="inclusive")[percent - 1] * 1000


def report(args: argparse.Namespace, results: Results) -> bool:
    """Print the tables; whether the p50 target is met."""
    ours, base, floor = results.exportd, results.baseline, results.floor
    overheads = [job - alone for job, alone in zip(ours, results.export, strict=True)]
    own = [over - trip for over, trip in zip(overheads, floor, strict=True)]
    overhead = p(overheads, 50)
    rows = [
        ("latency p50 ms", p(ours, 50), p(base, 50), None),
        ("latency p99 ms", p(ours, 99), p(base, 99), None),
        ("export alone p50 ms", p(results.export, 50), None, None),
        ("overhead p50 ms", overhead, p(base, 50), P50_TARGET),
        ("  the floor p50 ms", p(floor, 50), p(base, 50), None),
        ("  exportd's own p50 ms", p(own, 50), p(base, 50), None),
        ("overhead / warm ping", overhead, p(results.baseline_warm, 50), None),
        (
            f"{args.burst} jobs, ms/job",
            1000 / results.exportd_rate,
            1000 / results.baseline_rate,
            None,
        ),
        (
            f"{args.burst} floor, ms/trip",
            1000 / results.floor_rate,
            1000 / results.baseline_rate,
            None,
        ),
    ]
    met = True
    print(ROW.format("", "measured", "baseline", "ratio", "target", ""))
    for label, ours_ms, base_ms, target in rows:
        ratio = None if base_ms is None else ours_ms / base_ms
        ok = target is None or ratio is None or ratio <= target
        met = met and ok
        print(
            ROW.format(
                label,
                f"{ours_ms:.2f}",
                "-" if base_ms is None else f"{base_ms:.2f}",
                "-" if ratio is None else f"{ratio:.1f}x",
                "-" if target is None else f"<={target:g}x",
                "" if target is None else "ok" if ok else "MISSED",
            )
        )
    print(
        f"throughput: exportd {results.exportd_rate:.0f} jobs/s, "
        f"baseline {results.baseline_rate:.0f} round trips/s, "
        f"floor {results.floor_rate:.0f} trips/s"
    )
    print(
        f"\nexportd beside Celery 5 (rpc:// results), taking turns; throughput: median of "
        f"{args.rounds} alternating burst(s) of {args.burst}, and their range"
    )
    celery_rate = statistics.median(results.celery_rates)
    peer = [
        ("latency p50 ms", p(ours, 50), p(results.celery, 50), "<=1x"),
        ("latency p90 ms", p(ours, 90), p(results.celery, 90), ""),
        ("latency p99 ms", p(ours, 99), p(results.celery, 99), ""),
    ]
    print(ROW.format("", "exportd", "celery", "ratio", "target", ""))
    for label, exportd_ms, celery_ms, aim in peer:
        ok = exportd_ms <= celery_ms
        verdict = ("ok" if ok else "MISSED") if aim else ""
        met = met and (ok or not aim)
        share = f"{exportd_ms / celery_ms:.2f}x"
        print(ROW.format(label, f"{exportd_ms:.2f}", f"{celery_ms:.2f}", share, aim, verdict))
    rate_ok = results.exportd_rate > celery_rate
    met = met and rate_ok
    print(
        ROW.format(
            f"{args.burst} at once, jobs/s",
            f"{results.exportd_rate:.0f}",
            f"{celery_rate:.0f}",
            f"{results.exportd_rate / celery_rate:.2f}x",
            ">1x",
            "ok" if rate_ok else "MISSED",
        )
    )
    spans = (
        f"{min(rates):.0f}-{max(rates):.0f}"
        for rates in (results.exportd_rates, results.celery_rates)
    )
    print(ROW.format("  range", *spans, "", "", ""))
    print(
        "ratio: time per job over the baseline's; overhead: latency less the export alone,\n"
        "turn by turn, and of it the floor (bare aio-pika along exportd's four hops: quorum\n"
        "request, task and status queues, event) and exportd's own (the rest); warm ping: the\n"
        "baseline sent back to back, each echo woken two round trips after its last;"
        "\nexportd's and Celery's ratios: exportd's figure over Celery's"
    )
    report_bound(args, results, celery_rate)
    print(f"\nwhere a job's time goes, from its events' arrival ({args.jobs} jobs, ms):")
    print(ROW.format("", "p50", "p99", "", "", ""))
    previous = "request sent"
    for stage, seconds in results.stages.items():
        label = f"{previous.removeprefix('job.')} -> {stage.removeprefix('job.')}"
        print(ROW.format(label, f"{p(seconds, 50):.2f}", f"{p(seconds, 99):.2f}", "", "", ""))
        previous = stage
    roles = list(next(iter(results.cpu.values())))
    print(
        "\nCPU ms per job, by process (the bench and the broker serve all three; the bench"
        "\nalso runs the export alone of each turn):"
    )
    cpu_row = CPU_LABEL + CPU_FIGURE * (len(roles) + 1)
    print(cpu_row.format("", *roles, "total"))
    for phase, usage in results.cpu.items():
        figures = [f"{usage[role]:.2f}" for role in roles]
        print(cpu_row.format(phase, *figures, f"{sum(usage.values()):.2f}"))
    return met


def report_bound(args: argparse.Namespace, results: Results, celery_rate: float) -> None:
    """Print the best any exportd could do on its four hops, doing no work of its own,
    beside Celery: the floor's trip and the export alone, turn by turn (latency); and
    the jobs per second the machine's cores allow for the floor's CPU per trip (every
    process and the broker) and the export's CPU per job, or the floor's own rate if
    that is less (throughput)."""
    trips = [trip + alone for trip, alone in zip(results.floor, results.export, strict=True)]
    classic = [
        2 * ping + alone for ping, alone in zip(results.baseline, results.export, strict=True)
    ]
    floor_cpu = sum(results.cpu["floor, all at once"].values())
    export_cpu = p(results.export_cpu, 50)
    cores = os.cpu_count() or 1
    rate = min(results.floor_rate, cores * 1000 / (floor_cpu + export_cpu))
    print(
        "\nthe bound: the floor and the export alone, no work of exportd's own; a latency"
        "\nratio above 1x or a rate's below 1x is a Celery target no saving inside exportd"
        f"\nmeets on these hops (rate: {cores} cores over {floor_cpu:.2f} ms of the floor's"
        f" CPU per trip\nand {export_cpu:.2f} ms of the export's, at most the floor's rate;"
        "\non classic hops: four baseline hops, twice its round trip, for the floor's trip)"
    )
    print(ROW.format("", "bound", "celery", "ratio", "", ""))
    celery_ms = p(results.celery, 50)
    for label, times in (("latency p50 ms", trips), ("  on classic hops", classic)):
        latency_ms = p(times, 50)
        ratio = f"{latency_ms / celery_ms:.2f}x"
        print(ROW.format(label, f"{latency_ms:.2f}", f"{celery_ms:.2f}", ratio, "", ""))
    print(
        ROW.format(
            f"{args.burst} at once, jobs/s",
            f"{rate:.0f}",
            f"{celery_rate:.0f}",
            f"{rate / celery_rate:.2f}x",
            "",
            "",
        )
    )
    burst = results.cpu["exportd, all at once"]
    own = burst["engine"] + burst["workers"] - export_cpu
    room = cores * 1000 / celery_rate - floor_cpu - export_cpu
    print(
        f"CPU per job left for exportd's own work at Celery's rate: {room:.2f} ms (the cores"
        f"\nover Celery's rate, less the floor's and the export's); its engine's and workers'"
        f"\nall at once, less the export's: {own:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=BrokerSettings().url, help="RabbitMQ's AMQP URL")
    parser.add_argument("--jobs", type=int, default=200, help="jobs for the latency")
    parser.add_argument("--burst", type=int, default=1000, help="jobs for the throughput")
    parser.add_argument("--concurrency", type=int, default=1, help="tasks per worker at once")
    parser.add_argument(
        "--rounds", type=int, default=3, help="bursts of exportd and Celery, alternating"
    )
    parser.add_argument("--role", choices=ROLES, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "celery":
        celery_worker(args.url, Names(args.prefix), args.home, args.concurrency)
        return
    if args.role:
        asyncio.run(serve(args.role, args.url, Names(args.prefix), args.home, args.concurrency))
        return
    print(
        f"cpus: {os.cpu_count()} (load {os.getloadavg()[0]:.1f} before the run), "
        f"python {sys.version.split()[0]}, aio-pika {aio_pika.__version__}"
    )
    print(
        f"{WORKERS} workers (echoes, hops) x {args.concurrency} task(s); "
        f"jobs: rooms logs, {ROWS} rows, csv; latency over {args.jobs} jobs one at a time, "
        f"throughput of {args.burst} at once"
    )
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="exportd-bench-") as home:
        names = Names(f"bench-{uuid.uuid4().hex[:8]}.")
        results = asyncio.run(run(args, Path(home), names))
    print(f"measured in {time.perf_counter() - began:.0f} s\n")
    sys.exit(0 if report(args, results) else 1)


if __name__ == "__main__":
    main()
