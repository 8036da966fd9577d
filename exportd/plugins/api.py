"""The contract between exportd and its plugins: columns, sources, formats, storages
and deliveries.

A *source* turns validated parameters into batches of rows; a *format* turns
batches of rows into bytes in a file.  Any source works with any format because
both speak only in :class:`Column` lists and one of two forms of batch (:data:`Form`),
which each declares: row tuples (``"rows"``, the default) or Apache Arrow record
batches (``"arrow"``).  exportd converts between the two when a source and a format
speak different forms.

Row values are plain Python objects: ``str``, ``int``, ``float``, ``bool``,
``None``, timezone-aware ``datetime`` (for ``datetime`` columns) and ``date``
(for ``date`` columns).  An Arrow batch has one array a column, of the type
:func:`arrow_type` gives for the column's type (times are UTC timestamps), or
else a *stray-text union* (see :func:`arrow_type`).  Formats render times in the
request's time zone.
"""

from __future__ import annotations

import abc
import sqlite3
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Generic, Literal, Self, TypeVar
from zoneinfo import ZoneInfo

import msgspec

from exportd.errors import ExportFailed, InvalidRequest
from exportd.messages import Column, ColumnType, Delivery, JobSnapshot, Role

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "Batch",
    "Column",
    "ColumnType",
    "DataStore",
    "DeliveryContext",
    "DeliveryMethod",
    "Dialect",
    "ExportInfo",
    "Form",
    "Format",
    "NoConfig",
    "NoOptions",
    "NoParams",
    "Piece",
    "ReadContext",
    "Role",
    "Row",
    "RowWriter",
    "Source",
    "Storage",
    "Undeliverable",
    "Window",
    "arrow_batch",
    "arrow_schema",
    "arrow_type",
]

Row = Sequence[Any]
Batch = Sequence[Row]
"""A batch in the ``rows`` form: row tuples, one value a column."""
Form = Literal["rows", "arrow"]
"""How a source's batches come and a format's writer takes them: ``"rows"``, sequences
of row tuples (:data:`Batch`), or ``"arrow"``, :class:`pyarrow.RecordBatch` es whose
arrays have the types :func:`arrow_type` names."""


def arrow_type(column_type: ColumnType) -> pa.DataType:
    """The Arrow type of a column of ``column_type`` in an ``arrow`` batch: ``text`` is
    ``string``, ``integer`` ``int64``, ``float`` ``float64``, ``boolean`` ``bool``,
    ``datetime`` ``timestamp("us", tz="UTC")`` and ``date`` ``date32``.

    A column may instead hold a *stray-text union*: a dense union whose child 0 holds
    the typed values (of this type, or of the type Arrow gives values that do not fit
    it, such as floats in an integer column) and child 1 the text (``string``).
    SQLite stores text in a column of any type, and a source that yields rows may
    mix them: exportd converts such a column so, and a format writes each value as
    its kind says, exactly as it writes a row tuple's.
    """
    import pyarrow as pa

    return {
        "text": pa.string(),
        "integer": pa.int64(),
        "float": pa.float64(),
        "boolean": pa.bool_(),
        "datetime": pa.timestamp("us", tz="UTC"),
        "date": pa.date32(),
    }[column_type]


def arrow_schema(columns: Sequence[Column]) -> pa.Schema:
    """The schema of an ``arrow`` batch of ``columns``: one field a column, in order,
    named as the column and typed by :func:`arrow_type`."""
    import pyarrow as pa

    return pa.schema([pa.field(column.name, arrow_type(column.type)) for column in columns])


def arrow_batch(batch: Any, columns: Sequence[Column]) -> pa.RecordBatch:
    """``batch`` of ``columns`` in the ``arrow`` form: a record batch as it is, row
    tuples converted as exportd converts them for a format whose form is ``arrow``
    (text in a column of another type as a stray-text union; see :func:`arrow_type`).

    For a writer of that form called with row tuples, outside exportd's pipeline.
    """
    from exportd.kernel.batches import in_form

    return in_form(batch, "arrow", columns)


class NoOptions(msgspec.Struct, forbid_unknown_fields=True):
    """The options of a format that takes none."""


class NoParams(msgspec.Struct, forbid_unknown_fields=True):
    """The parameters of a source that takes none."""


class NoConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The settings of a plugin that takes none (implements no ``exportd_plugin_config``):
    any key in its ``[plugins.NAME]`` table is an error."""


P = TypeVar("P", bound=msgspec.Struct)
O = TypeVar("O", bound=msgspec.Struct)  # noqa: E741


@dataclass(frozen=True)
class Window:
    """The time range of an export: ``start`` inclusive, ``end`` exclusive.

    Both ends are timezone-aware UTC datetimes; ``timezone`` is the request's
    IANA zone, in which formats render times and sources cut days.
    """

    start: datetime
    end: datetime
    timezone: ZoneInfo


Dialect = Literal["sqlite", "postgresql"]
"""The SQL a :class:`DataStore` speaks."""

SqlArgs = Mapping[str, Any] | Sequence[Any]


class DataStore(abc.ABC):
    """The data store the built-in sources read, as ``data.url`` names it: a SQLite file
    (``sqlite:///var/data.db``, the default) or a PostgreSQL database
    (``postgresql://user@host:5432/db``).  A source finds it as ``ctx.data``.

    :meth:`connect` lends a read-only DB-API 2 connection; :meth:`stream` runs one
    statement and yields its rows in batches, never holding the whole result.  SQLite
    takes ``:name`` (or ``?``) parameters and stores times as ISO 8601 text; PostgreSQL
    takes ``%(name)s`` (or ``%s``), answers ``timestamptz`` as aware UTC datetimes and
    takes lists as arrays (``= ANY(%(ids)s)``).  A source that speaks one dialect only
    calls :meth:`require` first.

    A store you make yourself (``exportd.testing.data_store(url)``) holds a PostgreSQL
    connection pool once used: :meth:`close` it, or use it as a context manager
    (``with data_store(url) as store:``), which closes it at the block's end.  The
    stores exportd gives its sources (``ctx.data``) are its own to close.
    """

    url: str
    """The store's URL, without any password."""
    dialect: ClassVar[Dialect]
    path: Path | None = None
    """The SQLite file, for a SQLite store; ``None`` for the others."""

    @abc.abstractmethod
    def connect(self) -> AbstractContextManager[Any]:
        """A read-only DB-API 2 connection, for a ``with`` block: closed, or given back to
        the process's pool, at its end.  A store that cannot be reached now (a server
        down, a connection lost) is an :class:`~exportd.Unavailable` naming ``data.url``,
        one that is not there or cannot be read an :class:`~exportd.ExportFailed`."""

    @abc.abstractmethod
    def stream(
        self, conn: Any, sql: str, args: SqlArgs, size: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Run ``sql`` with ``args`` on ``conn`` and yield its rows ``size`` at a time (a
        server-side cursor on PostgreSQL: memory stays flat however many rows match)."""

    def arrow(
        self, conn: Any, sql: str, args: SqlArgs, size: int, columns: Sequence[Column]
    ) -> Iterator[pa.RecordBatch]:
        """Run ``sql`` with ``args`` on the store, ``conn`` (from :meth:`connect`) lent for
        it, and yield its rows as Arrow record batches of at most ``size`` rows, of
        ``arrow_schema(columns)``: the statement selects one value per column, in order.
        Memory stays flat.

        The statement runs on an ADBC connection of the store's own, not in ``conn``'s
        session: it does not see what ``conn`` set or made (a ``SET``, a temporary
        table); use :meth:`stream` for a statement that must.

        Each store reads natively (ADBC: no Python object per value) and types the
        columns as :func:`arrow_type` says: SQLite's ISO 8601 times become UTC
        timestamps and its 0/1 flags booleans (``1`` is true, other numbers false),
        PostgreSQL's values arrive typed.  A SQLite value that does not
        fit its column (text in an integer column, a time without a zone offset) is
        kept as it is stored, in a stray-text union.  Both take the parameters
        :meth:`stream` takes.
        """
        raise NotImplementedError(f"the {self.dialect} store {self.url} reads no Arrow batches")

    def close(self) -> None:  # noqa: B027 (a no-op for a store that holds nothing)
        """Release what the store holds (a PostgreSQL store's pool and its connections;
        nothing for SQLite).  A store closed is still usable: the next :meth:`connect`
        opens what it needs again."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the store (:meth:`close`) at the end of a ``with`` block."""
        self.close()

    def require(self, source: str, *dialects: Dialect) -> None:
        """Refuse to read with ``source`` unless this store speaks one of ``dialects``: an
        :class:`~exportd.ExportFailed` naming the source, its dialects and ``data.url``."""
        if self.dialect not in dialects:
            raise ExportFailed(
                f"source {source!r} reads only {' or '.join(dialects)} data stores, and "
                f"data.url ({self.url}) is a {self.dialect} one: set data.url to a "
                f"{' or '.join(dialects)} store, or disable the source"
            )

    def _sqlite_path(self, what: str) -> Path:
        """The SQLite file, for the deprecated ``what`` (``ReadContext.data_path``); an
        :class:`~exportd.ExportFailed` naming ``data.url`` on any other store."""
        if self.path is None:
            raise ExportFailed(
                f"{what} works only on a SQLite data store, and data.url ({self.url}) is a "
                f'{self.dialect} one: use ctx.data (see docs/plugins.md, "Reading the data store")'
            )
        return self.path


def _deprecated(what: str) -> None:
    warnings.warn(
        f"{what} is deprecated: use ReadContext.data, the DataStore (docs/plugins.md)",
        DeprecationWarning,
        stacklevel=3,
    )


@dataclass(init=False)
class ReadContext:
    """What a source may use while it reads: the data store and the run's limits.

    ``data`` is the :class:`DataStore` that ``data.url`` names.  ``org_id`` is the
    organisation the export is for, if the request names one.  A source that knows
    which organisation owns its data must treat another organisation's (a room, a
    channel) as not there: :class:`~exportd.NotFound`, exactly as for one that does not
    exist, so that ids do not leak across tenants.

    ``slice`` and ``slice_count`` say which slice of the part to read, for a source
    that declares :attr:`Source.sliceable`: exportd reads the ``slice_count`` slices
    at once, and writes their batches one slice after the other.  They are 0 and 1
    (the whole part) otherwise.  ``slicing`` is what :meth:`Source.slicing` said, once,
    for all the slices of this read (``None`` when the read is not sliced).

    ``data_path=`` (a SQLite file, instead of ``data``), :attr:`data_path` and
    :meth:`connect` are deprecated, and work on SQLite stores only.
    """

    window: Window
    data: DataStore
    batch_size: int
    limit: int | None
    part: int
    part_count: int
    cancelled: Callable[[], bool]
    org_id: str | None
    slice: int
    slice_count: int
    slicing: Any

    def __init__(  # noqa: PLR0917 (positional, as the dataclass it was)
        self,
        window: Window,
        data_path: Path | None = None,
        batch_size: int = 5000,
        limit: int | None = None,
        part: int = 0,
        part_count: int = 1,
        cancelled: Callable[[], bool] = lambda: False,
        org_id: str | None = None,
        *,
        data: DataStore | None = None,
        slice: int = 0,
        slice_count: int = 1,
        slicing: Any = None,
    ) -> None:
        if data is None:
            if data_path is None:
                raise TypeError("ReadContext needs data, the DataStore to read")
            _deprecated("ReadContext(data_path=...)")
            from exportd.kernel.datastores import SqliteStore

            data = SqliteStore(Path(data_path))
        elif data_path is not None:
            raise TypeError("ReadContext takes data or data_path, not both")
        self.window, self.data, self.batch_size, self.limit = window, data, batch_size, limit
        self.part, self.part_count, self.cancelled, self.org_id = (
            part,
            part_count,
            cancelled,
            org_id,
        )
        self.slice, self.slice_count, self.slicing = slice, slice_count, slicing

    @property
    def data_path(self) -> Path:
        """Deprecated: the SQLite file of ``data`` (an error on another store)."""
        _deprecated("ReadContext.data_path")
        return self.data._sqlite_path("ReadContext.data_path")

    def connect(self) -> sqlite3.Connection:
        """Deprecated: a read-only connection to the SQLite file of ``data``, for the
        caller to close (an error on another store)."""
        _deprecated("ReadContext.connect()")
        uri = f"{self.data._sqlite_path('ReadContext.connect()').resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, check_same_thread=False)


@dataclass(frozen=True)
class Piece:
    """Which piece of one export's file a writer writes: ``index`` of ``count``.

    exportd may split a large export of a sliceable source into pieces that different
    workers write at once (slice ``index`` of ``count`` each), then join the pieces'
    files end to end, in order, into the export's file; only for a format that
    :meth:`~Format.joins`.  An export in one piece is ``Piece(0, 1)``.
    """

    index: int = 0
    count: int = 1

    @property
    def first(self) -> bool:
        """Whether this piece starts the file (it writes what comes before the rows)."""
        return self.index == 0

    @property
    def last(self) -> bool:
        """Whether this piece ends the file (it writes what comes after the rows)."""
        return self.index == self.count - 1


WHOLE = Piece()
"""The piece of an export that is not split: the whole file."""


@dataclass(frozen=True)
class ExportInfo:
    """What a format may want to record about the export it writes.

    ``generated_at`` is the time to record as the file's making: the job's creation
    time when the export runs as a job, ``SOURCE_DATE_EPOCH`` on the command line when
    it is set, else now.  A format that records a time takes this one, never the clock,
    so that the same job always writes the same bytes.

    ``piece`` is the piece of the file to write (:class:`Piece`): the whole file, unless
    the format :meth:`~Format.joins`.
    """

    source: str
    params: dict[str, Any]
    window: Window
    columns: Sequence[Column]
    generated_at: datetime
    piece: Piece = WHOLE


class Source(abc.ABC, Generic[P]):
    """Where rows come from.  Subclass it and return an instance from
    ``exportd_sources()``.

    ``Params`` is a msgspec Struct validated when the request arrives, so a bad
    parameter is rejected before any work starts.  Declare it with
    ``forbid_unknown_fields=True`` and constraints (``Meta(ge=0)``) so that the
    error names the field.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Params: ClassVar[type[msgspec.Struct]] = NoParams
    form: ClassVar[Form] = "rows"
    """What :meth:`read` yields: row tuples (``"rows"``) or Arrow record batches
    (``"arrow"``) of :func:`arrow_schema`."""
    sliceable: ClassVar[bool] = False
    """Whether :meth:`read` can read a slice of its rows alone (``ctx.slice`` of
    ``ctx.slice_count``): the slices' rows, one slice after the other, are the whole
    read's, in its order.  exportd then reads a large export's slices at once, on as
    many cores as ``export.slices`` allows; a time range of the source's choosing
    makes a good slice."""
    Slicing: ClassVar[Any] = Any
    """The type :meth:`slicing` returns, to decode its answer as on another worker
    (the default, ``Any``, gives lists for tuples and dicts for Structs)."""

    def validate(self, params: P, ctx: ReadContext) -> None:
        """Check what the Struct cannot: that named things exist, for example.

        Called at request time, before any work is queued, with the context the
        export will read with; raise :class:`~exportd.NotFound` or
        :class:`~exportd.InvalidRequest` naming the field.  The default does nothing.
        """

    @abc.abstractmethod
    def columns(self, params: P, ctx: ReadContext) -> Sequence[Column]:
        """The columns of every row :meth:`read` yields for these parameters.

        Called at request time, after :meth:`validate`, with the context the export will
        read with (a source whose columns come from a remote schema asks it there, for
        ``ctx.org_id`` say), and once for each part's parameters."""

    def estimate(self, params: P, ctx: ReadContext) -> int | None:
        """How many rows :meth:`read` will yield, for progress; ``None`` if unknown."""
        return None

    def time_range(self, params: P, ctx: ReadContext) -> tuple[datetime, datetime] | None:
        """When the data for these parameters begins and ends, whatever the window: the
        times (aware, UTC) of the first and the last row there is, or ``None`` if unknown
        or there are none.

        exportd asks when an export's window matched no rows, to tell where the data
        is; make it cheap (the first and the last entry of an index).  The default is
        ``None``.
        """
        return None

    def slicing(self, params: P, ctx: ReadContext) -> Any:
        """What the slices of one sliced read must agree on, worked out once: called
        before the ``ctx.slice_count`` slices are read, its answer reaches each as
        ``ctx.slicing``.  A source whose slices' bounds depend on the data (the n-th of
        its rows) computes them here, so that rows written meanwhile can neither fall
        between two slices nor into both.  The default is ``None``.

        The slices of one export may be read by other workers (:class:`Piece`): the
        answer then reaches them through msgspec's MessagePack, decoded as
        :attr:`Slicing`, so it must be made of what msgspec encodes (None, numbers,
        text, aware datetimes, tuples, lists, dicts, NamedTuples, Structs)."""
        return None

    def parts(self, params: P, ctx: ReadContext) -> Sequence[P]:
        """Split one export into independent parts, each with its own parameters.

        Every part becomes its own file.  The default is one part.
        """
        return [params]

    @abc.abstractmethod
    def read(self, params: P, ctx: ReadContext) -> Iterator[Any]:
        """Yield the rows in batches of about ``ctx.batch_size`` rows, in the source's
        :attr:`form`: sequences of row tuples (:data:`Batch`), or
        :class:`pyarrow.RecordBatch` es (see :func:`arrow_schema`)."""


class RowWriter(abc.ABC):
    """Writes batches of rows into one open binary file."""

    @abc.abstractmethod
    def write(self, batch: Any) -> None:
        """Write one batch, in column order, in its format's :attr:`Format.form`: a
        sequence of row tuples (:data:`Batch`) or a :class:`pyarrow.RecordBatch`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Write whatever the format needs at the end; the file itself stays open."""

    def abort(self) -> None:  # noqa: B027
        """Called instead of :meth:`close` when the export fails or is canceled.

        Release whatever the writer holds besides the file (temporary files,
        for example); the partial file itself is deleted by exportd.  The
        default does nothing.
        """


class Format(abc.ABC, Generic[O]):
    """How rows become a file.  Subclass it and return an instance from
    ``exportd_formats()``.
    """

    name: ClassVar[str]
    media_type: ClassVar[str]
    extension: ClassVar[str]
    description: ClassVar[str] = ""
    Options: ClassVar[type[msgspec.Struct]] = NoOptions
    form: ClassVar[Form] = "rows"
    """What its writer's :meth:`RowWriter.write` takes: row tuples (``"rows"``) or Arrow
    record batches (``"arrow"``); exportd converts a source's batches to it."""

    @abc.abstractmethod
    def open(
        self, file: BinaryIO, columns: Sequence[Column], options: O, info: ExportInfo
    ) -> RowWriter:
        """Start writing an export with these columns into ``file``, a stream that goes
        forward only (it does not seek; ``tell()`` counts the bytes written)."""

    def joins(self, columns: Sequence[Column], options: O) -> bool:
        """Whether an export of these columns may be written in pieces (:class:`Piece`)
        whose files, joined end to end in order, are the file of the whole export.

        A format that says so writes, for ``info.piece``, only that piece's share: what
        comes before the rows (a header) in the first piece only, what comes after them
        in the last only, and, in a later piece, its rows as they follow the rows of the
        pieces before (a source's slices hold whole conversations).  exportd then splits
        large exports across workers (``worker.pieces``).  The default is ``False``: the
        file is written in one piece, by one worker.
        """
        return False


PASSING_FAILURES: tuple[type[Exception], ...] = (ConnectionError, TimeoutError)
"""What a storage raises for a failure that another try may mend (its server down, busy
or slow): a worker tries the file again, a download answers 503.  Anything else fails
the run (a key taken, a file that is not what was written, a storage set up wrong or a
directory in the way)."""


class Storage(abc.ABC):
    """Where finished export files are kept, by key.  Subclass it and return an
    instance from ``exportd_storages(settings, config)``.

    A worker writes each file locally, then hands it to the storage with
    :meth:`store` (the job is ``uploading`` meanwhile); the engine serves
    downloads through :meth:`open` and removes expired files with :meth:`delete`.
    Keys are relative POSIX paths such as
    ``<job id>/<attempt>/<part>/<run>/<file name>``.

    A stored file is never replaced: :meth:`store` refuses a key that holds one.
    Every run of a task (a task may be delivered twice, and run twice) stores under
    a key of its own; the engine keeps the file of the first run whose ``done`` it
    applies, the one the job's size and SHA-256 describe, and deletes the others.
    So a file being downloaded never changes under its reader.

    Beside the four methods a storage must have, three are optional, with defaults
    that work for any storage: :meth:`store_checked` (the worker hands over the file
    with the SHA-256 it measured), :meth:`open_range` (a download of part of a file)
    and :meth:`url` (a download served by the storage itself).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    @abc.abstractmethod
    def store(self, key: str, path: Path) -> None:
        """Keep the finished file at ``path`` under ``key``; ``path`` is the storage's
        afterwards (it may be moved or deleted).

        Never replaces a file: if ``key`` holds one already, raise
        :class:`FileExistsError` and leave both files as they are.  A storage may
        instead count the store done when ``key`` holds this very file already (its
        SHA-256 and size), which is no replacement: a try again after a success whose
        answer was lost finds that (the ``s3`` storage does so; ``local`` refuses).  A
        file appears under ``key`` whole or not at all (a reader never sees part of
        it)."""

    def store_checked(self, key: str, path: Path, sha256: str) -> None:
        """:meth:`store`, for a file whose SHA-256 (hex) the caller measured while writing
        it: what the worker calls.  A storage that sends the file elsewhere overrides it
        to check what it sends against ``sha256`` (and keep it with the file), refusing
        with :class:`ValueError`, and keeping nothing, when they differ.  By default,
        :meth:`store`."""
        self.store(key, path)

    @abc.abstractmethod
    def open(self, key: str) -> BinaryIO:
        """The file kept under ``key``, for reading; :class:`FileNotFoundError` if none."""

    def open_range(self, key: str, start: int, stop: int) -> BinaryIO:
        """The bytes ``start`` to ``stop`` (exclusive) of the file kept under ``key``,
        for reading (the caller reads ``stop - start`` bytes, and no more): an HTTP range
        request's answer.  A storage that can start a read midway without reading what
        comes before (a ranged GET) overrides it.  By default, :meth:`open` and a seek
        (or, for a file that cannot seek, reading up to ``start``)."""
        file = self.open(key)
        try:
            if file.seekable():
                file.seek(start)
            else:
                while start > 0 and (skipped := file.read(min(start, 1 << 16))):
                    start -= len(skipped)
        except BaseException:
            file.close()
            raise
        return file

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Forget ``key``; nothing happens if it holds nothing."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a file is kept under ``key``."""

    def url(
        self, key: str, expires_at: datetime, *, media_type: str, disposition: str
    ) -> str | None:
        """A URL the storage itself serves the file kept under ``key`` at, working no
        longer than until ``expires_at`` (the signed exportd link's expiry), its answer
        carrying ``Content-Type: media_type`` and ``Content-Disposition: disposition``
        (an attachment header with the file's name); or ``None``: exportd streams the
        file through :meth:`open` (the default).  A download then answers with a
        redirect to it (an object store's presigned URL, say), and the storage serves
        range requests itself."""
        return None

    @staticmethod
    def key_parts(key: str) -> tuple[str, ...]:
        """The parts of ``key``, a relative POSIX path; a key that would leave the storage
        (absolute, empty, or with a ``..``) is refused, naming ``key``."""
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or ".." in parts:
            raise InvalidRequest.field("key", f"{key!r} is not a relative path inside the storage")
        return parts


class Undeliverable(Exception):
    """Raised by :meth:`DeliveryMethod.deliver` when trying again cannot help (the
    recipient's server refused the address for good, say): the delivery is given up
    and logged.  Any other exception is taken as passing, and the delivery retried."""


@dataclass(frozen=True)
class DeliveryContext:
    """What a delivery may use: the stored files and signed download URLs.

    ``open_file(key)`` opens a part's stored file (``part.file.key``) for reading;
    ``link(part)`` is a signed URL that downloads that part's file until it expires,
    or ``None`` when exportd has no public URL (``http.public_url``).
    """

    open_file: Callable[[str], BinaryIO]
    link: Callable[[int], str | None]


class DeliveryMethod(abc.ABC):
    """A way a finished export reaches its requester besides the download URL: the
    ``delivery.type`` of a request.  Subclass it and return an instance from
    ``exportd_deliveries(settings, config)``.

    exportd calls :meth:`deliver` once a job with this delivery type is done, in a
    thread, and again after ``retry_interval`` seconds as long as it raises anything
    but :class:`Undeliverable`.  It records each delivery before trying it, so a
    delivery cut short by a stop is tried again at the next start: ``deliver`` may
    run more than once for one job, and should be harmless when it does.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    retry_interval: float = 30.0
    """Seconds between two attempts at a delivery that failed for a passing reason."""

    def validate(self, delivery: Delivery) -> None:  # noqa: B027
        """Check a request's ``delivery`` when it arrives; raise
        :class:`~exportd.InvalidRequest` naming the field (``delivery.to``).  The
        default accepts any."""

    @abc.abstractmethod
    def deliver(self, job: JobSnapshot, ctx: DeliveryContext) -> None:
        """Deliver the files of ``job`` (done) to ``job.request.delivery.to``."""
