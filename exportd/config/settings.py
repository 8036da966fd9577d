"""The settings tree.  Every field has a default, so exportd runs with no file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

DEAD_LETTER_MAX = 10_000
"""The default of ``broker.dead_letter_max``."""


class BrokerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The RabbitMQ connection of the engine and workers (``[broker]``)."""

    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    """AMQP URL; ``EXPORTD_BROKER__URL`` sets it from the environment."""

    confirm_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """Seconds to wait for the broker to confirm a publish before it counts as failed."""

    prefetch: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 10
    """Unsettled messages a consumer may hold at once."""

    prefix: str = ""
    """Put before every queue and exchange name (``test-1.exportd.tasks``), so that
    deployments or tests sharing a vhost keep apart; all of one deployment's processes
    must use the same."""

    dead_letter_max: Annotated[int, msgspec.Meta(ge=1)] = DEAD_LETTER_MAX
    """Messages each dead-letter queue keeps at most; past it the oldest is dropped, so
    that refused messages cannot fill the broker.  A queue declared before with another
    limit (or none) keeps it: exportd logs a WARNING saying how to change it."""


Seconds = Annotated[float, msgspec.Meta(gt=0)]
LISTEN_OR_OFF_PATTERN = r"^(.+:[0-9]{1,5})?$"
"""``HOST:PORT``, or empty for no listener."""


def host_and_port(listen: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) as a host and a port; ``None`` if it is
    not one (each caller names the setting or option in its own error)."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    return host.strip("[]"), int(port)


class WorkerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How workers run their tasks (``[worker]``)."""

    concurrency: Annotated[int, msgspec.Meta(ge=1, le=256)] = 1
    """Tasks one worker process runs at once, each in its own thread."""

    progress_interval: Seconds = 1.0
    """Least time between two progress updates of one task."""

    heartbeat_interval: Seconds = 30.0
    """Most time between two updates of a running task, even without progress; and the
    time between two of the worker's own heartbeats, which tell every engine that it is
    alive, what it can export and what it runs (``exportd workers``)."""

    ack_deadline: Seconds = 900.0
    """A task running this long is acknowledged early and kept alive by heartbeats
    instead; must be shorter than RabbitMQ's ``consumer_timeout`` (30 min by default)."""

    shutdown_grace: Seconds = 30.0
    """On SIGTERM, how long running tasks may take to finish before they are returned."""

    pieces: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    """Pieces a large export may be split into, for the workers to write at once and the
    worker that took its task to join (sliceable sources, formats that join: csv,
    json_bulk, txt transcripts); the pieces pass through the storage, which every worker
    must share (``s3``, or ``local`` on one host).  1 never splits."""

    piece_rows: Annotated[int, msgspec.Meta(ge=1)] = 100_000
    """The fewest rows, by the source's estimate, worth a piece of their own."""

    piece_silence: Seconds = 15.0
    """A piece whose worker has said nothing for this long (it reports every
    ``progress_interval``; at least three of those count) is written by the joining
    worker itself."""

    metrics_listen: Annotated[str, msgspec.Meta(pattern=LISTEN_OR_OFF_PATTERN)] = ""
    """HOST:PORT where ``exportd worker`` serves ``/metrics`` (Prometheus) and
    ``/healthz`` (200 while it takes tasks, 503 otherwise), e.g. ``127.0.0.1:9464``;
    empty (the default): no listener.  ``exportd serve`` serves its worker's metrics on
    its HTTP API instead."""


class EngineSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How the engine keeps jobs (``[engine]``)."""

    file_lifetime: Seconds = 24 * 3600.0
    """Seconds a finished file stays downloadable before the job expires."""

    sweep_interval: Seconds = 60.0
    """Seconds between two sweeps for expired jobs, silent workers and jobs past their
    retention."""

    lease: Seconds = 120.0
    """A part acknowledged early (see ``worker.ack_deadline``) whose worker stays
    silent this long lapses: it is dispatched again, or fails at ``lapses``."""

    lapses: Annotated[int, msgspec.Meta(ge=1)] = 3
    """A part whose runs fell silent this many times in one attempt fails: its task
    crashes every worker that takes it, or no worker stays in touch long enough."""

    job_retention: Annotated[float, msgspec.Meta(ge=0)] = 30 * 86400.0
    """Seconds a job stays in the job store once it is over (failed, canceled, expired
    or deleted; a done job first expires after ``file_lifetime``): then the sweep
    removes it, its parts and labels, and its delivery records.  0 keeps jobs for ever."""
    worker_timeout: Seconds = 90.0
    """A worker not heard from for this long is shown lost (``exportd workers``,
    ``GET /v1/workers``); three of the default ``worker.heartbeat_interval``.  A lost
    worker is forgotten once silent ten times as long; one that shuts down cleanly says
    goodbye and is forgotten at once."""


class HttpSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The HTTP API (``[http]``), served by ``exportd serve`` and ``exportd engine``."""

    listen: str = "127.0.0.1:8080"
    """HOST:PORT to listen on (``--http`` overrides it)."""

    public_url: str = ""
    """The base URL clients reach the API at, for the absolute URLs in answers
    (download links); empty: the URL each request came to."""

    secret: str = ""
    """The key that signs download URLs; empty: a random one kept in
    ``EXPORTD_HOME/http-secret`` (made on first use).  Engines behind one load
    balancer need the same secret."""

    url_lifetime: Seconds = 3600.0
    """How long a download URL works (never past the file's own expiry)."""

    sync_max_rows: Annotated[int, msgspec.Meta(ge=1)] = 100_000
    """The most rows a synchronous export (the file as the answer) may hold; larger
    exports go through a job."""

    sync_concurrency: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
    """Synchronous exports run at once, each in a thread of its own; more answer 503."""

    shutdown_grace: Seconds = 10.0
    """When exportd stops, answers under way (a slow client's download, say) get this
    long to finish; then they are cut."""

    header_timeout: Seconds = 10.0
    """Seconds a connection has to send a request's line and headers, from its opening
    or the end of the previous answer; then it is closed (slow or idle clients)."""


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["text", "json"]


class LogSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What the services (``exportd serve``, ``engine``, ``worker``) log on stderr
    (``[log]``)."""

    level: LogLevel = "INFO"
    """The least level of exportd's own lines.  The libraries' lines (uvicorn, ...) show
    from ``WARNING`` on (or from this level, if higher); those of the AMQP client
    (aio-pika, aiormq: a lost connection's traceback) only at ``DEBUG``, exportd saying
    itself in one line that the connection is lost, and in one that it is back."""

    format: LogFormat = "text"
    """``text``: a line of time, level and message; ``json``: one JSON object a line, with
    ``time``, ``level``, ``logger``, ``message``, the ``job_id``, ``part`` and ``attempt``
    of a job's lines, and ``exception`` (the traceback) where there is one."""


DATA_URL_PATTERN = r"^(sqlite:///.+|postgres(ql)?://.*)?$"
"""What ``data.url`` may be: empty, ``sqlite:///PATH`` or ``postgresql://...``."""


class DataSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The data store the built-in sources read (``[data]``)."""

    url: Annotated[str, msgspec.Meta(pattern=DATA_URL_PATTERN)] = ""
    """``sqlite:///PATH`` (a relative PATH is from the working folder) or
    ``postgresql://USER@HOST:PORT/DB``; empty: ``sqlite:///HOME/data.db``
    (``sqlite:///var/data.db`` by default).  ``EXPORTD_DATA__URL`` sets it."""

    pool_size: Annotated[int, msgspec.Meta(ge=0, le=256)] = 0
    """PostgreSQL only: the most connections one process keeps open to the store; each
    running export holds one until it ends.  0 (the default): enough for every export a
    process runs at once, ``worker.concurrency + http.sync_concurrency + 2``."""


DEFAULT_SLICES_AT_MOST = 4


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, which a container's cpuset
    limits), where the system tells; else all of them."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """All of exportd's settings (``exportd.toml`` keys, ``EXPORTD_*`` variables)."""

    home: str = "var"
    """Folder holding ``data.db`` (the data store), the job store and exported files."""

    batch_size: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 5000
    """Rows a source reads and a format writes at a time."""

    slices: Annotated[int, msgspec.Meta(ge=0, le=64)] = 0
    """Slices of a large export read at once, for sources that can (``Source.sliceable``):
    0 is one for each CPU core the process may use, at most 4; 1 reads every export in
    one go."""

    disable_plugins: list[str] = []
    """Plugins (entry-point or built-in module names) not to load."""

    storage: str = "local"
    """The storage plugin that keeps finished files (see ``exportd plugins``)."""

    plugins: dict[str, dict[str, Any]] = {}
    """Each plugin's own settings, by plugin name (``[plugins.NAME]``): checked against
    the plugin's ``Config`` when the plugins load (see ``docs/plugins.md``)."""

    broker: BrokerSettings = msgspec.field(default_factory=BrokerSettings)
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    engine: EngineSettings = msgspec.field(default_factory=EngineSettings)
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    data: DataSettings = msgspec.field(default_factory=DataSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)

    @property
    def home_path(self) -> Path:
        """``home`` as a path."""
        return Path(self.home)

    @property
    def data_path(self) -> Path:
        """The embedded data store's file, ``HOME/data.db``: where ``data.url`` points when
        it is empty."""
        return self.home_path / "data.db"

    @property
    def data_url(self) -> str:
        """``data.url``, or for an empty one ``sqlite:///HOME/data.db``."""
        return self.data.url or f"sqlite:///{self.data_path}"

    @property
    def read_slices(self) -> int:
        """``slices``, or for 0 the CPU cores this process may run on, at most
        :data:`DEFAULT_SLICES_AT_MOST` (a large host's cores would multiply the data
        store's connections)."""
        return self.slices or min(DEFAULT_SLICES_AT_MOST, usable_cores())

    @property
    def data_pool_size(self) -> int:
        """``data.pool_size``, or for 0 ``(worker.concurrency + http.sync_concurrency) *
        read_slices + worker.concurrency + 2``: a connection for each slice of each export
        a process may run at once, one for each piece of another worker's export it may
        write (see ``worker.pieces``), and two to spare."""
        exports = self.worker.concurrency + self.http.sync_concurrency
        return self.data.pool_size or exports * self.read_slices + self.worker.concurrency + 2

    @property
    def files_path(self) -> Path:
        """Where the local storage keeps finished export files."""
        return self.home_path / "files"

    @property
    def jobs_path(self) -> Path:
        """The engine's job store."""
        return self.home_path / "jobs.db"

    @property
    def work_path(self) -> Path:
        """Where workers write files before handing them to the storage."""
        return self.home_path / "work"
