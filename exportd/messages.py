"""Wire schemas shared by the CLI, the engine, workers and clients.

Every message carries ``v``, its schema version.  Messages that people write
(:class:`ExportRequest`, :class:`JobCommand`) forbid unknown fields so that a
typo is an error naming the field, and refuse a version this exportd does not
speak.  Messages that exportd's own processes exchange (:class:`ExportTask`,
:class:`StatusUpdate`, :class:`CancelSignal`, :class:`JobEvent`, :class:`PieceTask`,
:class:`PieceNews`, :class:`WorkerHeartbeat`) ignore unknown
fields, so that an engine and workers of neighbouring versions can run side by
side while a deployment rolls; the engine refuses a :class:`StatusUpdate` of
another version (it dead-letters it), as it cannot tell what such an update
would do to a job.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal, get_args

import msgspec

from exportd.errors import ErrorBody

SCHEMA_VERSION: Final = 1
"""The version of the messages this exportd writes."""
Version = Literal[1]
"""The versions of :class:`ExportRequest`, :class:`JobCommand` and :class:`StatusUpdate`
this exportd reads; one of any other version is refused, naming ``v``."""
SCHEMA_VERSIONS: tuple[int, ...] = get_args(Version)

LABEL_KEY = r"^[a-z][a-z0-9_.-]{0,62}$"
"""What a label's key is: a lower-case letter, then up to 62 lower-case letters, digits,
``_``, ``.`` or ``-``."""
MAX_LABEL_VALUE = 200
"""The most characters a label's value has (at least one, none a control character)."""
MAX_LABELS = 16
"""The most labels a job has."""
LabelValue = Annotated[
    str,
    msgspec.Meta(
        extra_json_schema={
            "minLength": 1,
            "maxLength": MAX_LABEL_VALUE,
            "pattern": "^[^\\u0000-\\u001f\\u007f]*$",
        }
    ),
]
API_LABEL: Final = "api"
"""The label that names the API a job was made through: each facade sets its own at
submit, and lists and reads only the jobs that have it; a native API client may not."""
Labels = Annotated[
    dict[str, LabelValue],
    msgspec.Meta(
        description='Labels of the job, to list jobs by (see docs/http.md, "Labels").',
        extra_json_schema={"maxProperties": MAX_LABELS, "propertyNames": {"pattern": LABEL_KEY}},
    ),
]
"""A job's labels, ``key: value``: set when the job is made, never changed.  Listings
filter on them; an API (a facade) marks the jobs made through it (``api``), and what
it needs to find them again.  The limits are checked when a request is planned, with
errors naming ``labels.<key>`` (the schema states them too)."""


class Interval(msgspec.Struct, forbid_unknown_fields=True):
    """The time range: ``start`` inclusive, ``end`` exclusive.

    Each end is ISO 8601 (``2024-05-01``, ``2024-05-01T08:00``,
    ``2024-05-01T08:00:00+02:00``, ``...Z``); a time without an offset is read
    in the request's ``timezone``.
    """

    start: str
    end: str


class Delivery(msgspec.Struct, forbid_unknown_fields=True):
    """Where the finished file goes: ``file`` keeps it for download; any other
    ``type`` names a delivery method (``email``, or a plugin's) that also sends it,
    to the addresses in ``to``."""

    type: str = "file"
    to: list[str] = []


class RequestFields(msgspec.Struct, kw_only=True):
    """The fields of an export request, tolerant of fields it does not know.

    exportd's own messages carry a request in this form; callers write an
    :class:`ExportRequest`, which is strict.
    """

    v: int = SCHEMA_VERSION
    source: str
    format: str = "csv"
    params: dict[str, Any] = {}
    format_options: dict[str, Any] = {}
    interval: Interval
    timezone: str = "UTC"
    delivery: Delivery = msgspec.field(default_factory=Delivery)
    org_id: str | None = None
    user_id: str | None = None
    idempotency_key: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)] | None = None
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    labels: Labels = {}


class ExportRequest(RequestFields, forbid_unknown_fields=True, kw_only=True):
    """A request for one export, as a caller writes it: an unknown field is an error,
    and so is a version (``v``) this exportd does not speak."""

    v: Version = SCHEMA_VERSION


class FileInfo(msgspec.Struct, frozen=True):
    """A finished export file: its name, type, size, SHA-256 and row count.

    ``key`` is where the storage keeps it (for a one-shot CLI export, the path).
    """

    key: str
    name: str
    media_type: str
    size: int
    sha256: str
    rows: int


ColumnType = Literal["text", "integer", "float", "boolean", "datetime", "date"]
Role = Literal["time", "author", "text", "conversation"]


class Column(msgspec.Struct, frozen=True):
    """One column of an export: its name, value type and optional role.

    Roles tell transcript-style formats (txt, html) which column is the time,
    the author, the message text and the conversation a row belongs to.  (A part of
    the plugin API, :mod:`exportd.plugins.api`; defined here because tasks carry it.)
    """

    name: str
    type: ColumnType = "text"
    role: Role | None = None


JobStatus = Literal[
    "created", "processing", "uploading", "done", "failed", "canceled", "deleted", "expired"
]
UpdateStatus = Literal["created", "processing", "uploading", "done", "failed", "canceled"]
"""The statuses a worker reports a part in."""
PartStatus = Literal["created", "processing", "uploading", "done", "failed", "canceled", "deleted"]
"""A part's statuses: those a worker reports, and ``deleted`` (the part alone was deleted,
see :func:`exportd.engine.lifecycle.delete_part`)."""


class Progress(msgspec.Struct, frozen=True):
    """How far a part has got: rows and bytes written, estimated total rows."""

    rows: int = 0
    bytes: int = 0
    total: int | None = None


class ExportTask(msgspec.Struct, kw_only=True):
    """One part of one job, for a worker to export (queue ``exportd.tasks``)."""

    v: int = SCHEMA_VERSION
    job_id: str
    part: int
    part_count: int
    attempt: int
    request: RequestFields
    """The validated request, with this part's own ``params``."""
    key: str
    """Where the storage is to keep the part's file."""
    created_at: datetime | None = None
    """When the job was made: the time its files record, so that every run of the job
    writes the same bytes (``None`` from an engine that predates it: the time of the run)."""
    file_name: str = ""
    """The part's file name, as downloads give it (empty from an engine that predates
    it: the end of ``key``)."""
    columns: list[Column] | None = None
    """The part's columns, as the engine planned them (``None`` from an engine that
    predates it: the worker asks the source)."""
    lapses: int = 0
    """How many runs of this part fell silent before this dispatch (their worker stopped
    reporting for ``engine.lease``).  A task dispatched after a lapse is run under the
    engine's lease from its start (acknowledged at once, see :class:`StatusUpdate`'s
    ``detached``): the broker's delivery count no longer decides whether it is poison."""


class StatusUpdate(msgspec.Struct, kw_only=True):
    """A worker's news about one part (queue ``exportd.status``).

    ``seq`` grows with every update sent for one dispatch of one part, across
    redeliveries of its task too (a later delivery's updates sort after an
    earlier one's), so that the engine can drop duplicates and updates that
    arrive late.  It starts over only when the engine dispatches the part again.
    """

    v: Version = SCHEMA_VERSION
    job_id: str
    part: int
    attempt: int
    seq: int
    status: UpdateStatus
    progress: Progress | None = None
    file: FileInfo | None = None
    error: ErrorBody | None = None
    worker: str = ""
    at: datetime | None = None
    detached: bool = False
    """The worker acknowledged the task early (it runs past the broker's ack timeout, or
    came at the queue's delivery limit, or after a lapse): from now on the engine, not the
    broker, re-dispatches it if the worker falls silent."""
    given_back: bool = False
    """The run of a detached task stopped without an outcome because its worker shuts
    down: the engine dispatches the part again at once (without waiting out the lease, and
    without counting a lapse)."""
    first_delivery: bool = False
    """The run took the first delivery of its task (the broker had given it to no one
    before) and no later one came to it, so no other run of it can have started unless
    this run's channel dropped meanwhile unseen.  The outcome of a one-part job from such
    a run, never lapsed, sends no cancel signal (see :mod:`exportd.engine.lifecycle`);
    unset (an older worker), one is sent."""


class PieceTask(msgspec.Struct, kw_only=True):
    """A piece of one part's file for another worker to write (queue ``exportd.pieces``):
    slice ``piece`` of ``count`` of ``task``, with the ``slicing`` the run of ``task`` worked
    out (MessagePack, see :mod:`exportd.kernel.pieces`).  The piece's file is stored under
    a key of its own made from ``key``; :class:`PieceNews` goes to ``reply_to``, the
    private queue of the run that joins the pieces."""

    v: int = SCHEMA_VERSION
    task: ExportTask
    piece: int
    count: int
    slicing: bytes
    key: str
    reply_to: str


PieceStatus = Literal["running", "done", "failed"]
"""Where a piece stands: written by a worker (said every ``progress_interval``), its
file stored, or failed."""


class PieceNews(msgspec.Struct, kw_only=True):
    """A worker's news about a :class:`PieceTask`, for the run that joins the pieces:
    ``rows`` written so far, the piece's ``file`` once ``done``, the ``error`` once
    ``failed``."""

    v: int = SCHEMA_VERSION
    piece: int
    status: PieceStatus
    rows: int = 0
    file: FileInfo | None = None
    error: ErrorBody | None = None
    worker: str = ""


class CancelSignal(msgspec.Struct, kw_only=True):
    """Tells every worker to stop a job's parts (fanout ``exportd.cancel``)."""

    v: int = SCHEMA_VERSION
    job_id: str
    attempt: int


class PartSnapshot(msgspec.Struct, kw_only=True):
    """One part of a job as the engine knows it."""

    part: int
    status: PartStatus
    progress: Progress = msgspec.field(default_factory=Progress)
    file: FileInfo | None = None
    error: ErrorBody | None = None


class JobSnapshot(msgspec.Struct, kw_only=True):
    """Everything about a job: what was asked, where it stands, where its files are."""

    id: str
    status: JobStatus
    request: RequestFields
    attempt: int
    part_count: int
    parts: list[PartSnapshot]
    progress: Progress
    error: ErrorBody | None = None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    expires_at: datetime | None = None


class JobEvent(msgspec.Struct, kw_only=True):
    """A change of a job, published on topic exchange ``exportd.events``.

    The routing key is ``<org_id>.<source>.<status>`` (``_`` for no org).
    ``type`` is ``job.<status>``, or ``job.progress`` for progress within a
    status, or ``request.rejected`` for a request that was refused (then
    ``job`` is absent and ``error`` says why).
    """

    v: int = SCHEMA_VERSION
    id: str
    type: str
    occurred_at: datetime
    job: JobSnapshot | None = None
    error: ErrorBody | None = None


class PluginInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A source, format or storage a worker has: its name, the plugin that registers it
    and that plugin's package with its version (``exportd 0.1.0``)."""

    name: str
    plugin: str
    package: str


class RunningTask(msgspec.Struct, frozen=True, kw_only=True):
    """A part of a job that a worker is exporting."""

    job_id: str
    part: int
    attempt: int


class WorkerFacts(msgspec.Struct, kw_only=True):
    """What a worker says of itself: where it runs, what it can export, what it runs."""

    name: str
    """The worker's name, as its status updates give it (``host:pid``)."""
    host: str
    pid: int
    version: str
    """The exportd version the worker runs."""
    concurrency: int
    """Tasks it runs at once (``worker.concurrency``)."""
    heartbeat_interval: float
    """Seconds between two of its heartbeats (``worker.heartbeat_interval``)."""
    sources: list[PluginInfo] = []
    formats: list[PluginInfo] = []
    storages: list[PluginInfo] = []
    tasks: list[RunningTask] = []
    """The parts it is exporting now."""
    started_at: datetime


class WorkerHeartbeat(WorkerFacts, kw_only=True):
    """A worker's announcement, repeated every ``worker.heartbeat_interval`` (fanout
    ``exportd.workers``, which every running engine hears; nobody listening drops it).
    ``leaving`` says goodbye: the worker shuts down and the engine forgets it at once."""

    v: int = SCHEMA_VERSION
    sent_at: datetime
    leaving: bool = False


WorkerState = Literal["live", "lost"]
"""A worker heard from within ``engine.worker_timeout`` is ``live``; one silent for
longer is ``lost`` (it crashed, was killed, or cannot reach the broker)."""


class WorkerSnapshot(WorkerFacts, kw_only=True):
    """A worker as the engine knows it: what it last said, when, and whether it is lost."""

    state: WorkerState
    last_seen: datetime


MIN_ID_PREFIX: Final = 6
"""The fewest characters of a job id that a command may give for the whole id: the
engine completes a start that only one id has."""


class JobCommand(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An operation on jobs for the engine (queue ``exportd.control``), answered on its
    ``reply_to`` with a :class:`RequestReply`.

    ``get``, ``cancel``, ``restart`` and ``delete`` need ``job_id``; ``list`` takes the
    filters and paging.  ``org_id``, when given, limits the command to that org's jobs.
    ``workers`` asks for the workers the engine hears from, and those it lost.
    """

    v: Version = SCHEMA_VERSION
    op: Literal["get", "list", "cancel", "restart", "delete", "workers"]
    job_id: str | None = None
    org_id: str | None = None
    user_id: str | None = None
    status: str | None = None
    source: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50
    offset: Annotated[int, msgspec.Meta(ge=0)] = 0


class RequestReply(msgspec.Struct, kw_only=True):
    """The engine's answer to a request (``exportd.requests``) or a command
    (``exportd.control``), sent to its ``reply_to`` with its ``correlation_id``.

    ``ok`` with the job (created, or for a repeated idempotency key the existing
    one; or the one a command acted on), or with a page of ``jobs`` and their
    ``total`` for ``list``, or with the ``workers`` for ``workers``; else ``error`` says
    why it was refused.
    """

    v: int = SCHEMA_VERSION
    ok: bool
    job: JobSnapshot | None = None
    jobs: list[JobSnapshot] | None = None
    total: int | None = None
    workers: list[WorkerSnapshot] | None = None
    error: ErrorBody | None = None
