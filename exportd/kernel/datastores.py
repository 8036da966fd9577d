"""The data stores behind ``data.url``: a SQLite file, or a PostgreSQL database.

:func:`data_store` gives each process one store per URL, so a worker, a server or a
command shares one PostgreSQL connection pool among its exports; the pools open at
first use and close when the process ends.  The sources see a store as the public
:class:`~exportd.DataStore` (``ctx.data``).
"""

from __future__ import annotations

import atexit
import itertools
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from exportd.config import Settings
from exportd.config.data_url import is_postgresql, reason, redact, url_problem, with_session
from exportd.errors import ConfigError, ExportFailed, Unavailable
from exportd.kernel.idle import IdleConnections
from exportd.plugins.api import Column, DataStore, Dialect, SqlArgs, arrow_type

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool
    import pyarrow as pa

    from exportd.kernel import adbc

CONNECT_TIMEOUT = 10
"""Seconds to wait for PostgreSQL to answer a new connection, unless the URL's
``connect_timeout`` says otherwise."""

POOL_TIMEOUT = 30.0
"""Seconds an export waits for a connection of the pool before it is refused."""

SESSION_OPTIONS = "-c TimeZone=UTC -c default_transaction_read_only=on"
"""Every PostgreSQL session of a store: times come back in UTC, and nothing is written.
Added after the URL's own ``options`` (``-csearch_path=...``), which are kept."""

SESSION_DEFAULTS = {"application_name": "exportd", "connect_timeout": str(CONNECT_TIMEOUT)}
"""Connection parameters a URL that does not set them gets."""

UNAVAILABLE_SQLSTATES = ("08", "53", "57P")
"""SQLSTATE classes of a server that cannot serve now (connection exceptions, too many
connections, a shutdown), as opposed to a statement's fault."""

INSTALL_HINT = "pip install 'exportd[postgresql]'"

BUSY_TIMEOUT_MS = 5000
"""How long ADBC's SQLite connections wait for a writer's lock, as Python's sqlite3 does
before it gives up."""


def reset_session(conn: psycopg.Connection[Any]) -> None:
    """Give ``conn`` back to the pool as it was lent: every setting a source changed back
    to the session's start (``RESET ALL`` restores the startup options, UTC and
    read-only among them), and out of autocommit."""
    conn.autocommit = True
    conn.execute("RESET ALL")
    conn.autocommit = False
    conn.read_only = None
    conn.isolation_level = None


def is_unavailable(error: Exception) -> bool:
    """Whether a psycopg ``error`` says the server cannot serve now (it is unreachable,
    the connection was lost, the pool had none to lend): a passing condition."""
    import psycopg

    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(error, psycopg.OperationalError) and (
        sqlstate is None or sqlstate.startswith(UNAVAILABLE_SQLSTATES)
    )


FileId = tuple[int, int]
"""A file's device and inode: a SQLite file replaced under the same path is another."""


class SqliteStore(DataStore):
    """A SQLite file (``sqlite:///PATH``), read on read-only connections that it keeps
    open between uses (:class:`~exportd.kernel.idle.IdleConnections`) for as long as the
    file at the path is the same file."""

    dialect: ClassVar[Dialect] = "sqlite"
    path: Path

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        # A reader closed early (at its limit) has closed its statements: the connection
        # is as clean as after its last row.
        clean = (GeneratorExit,)
        self._idle = IdleConnections[tuple[FileId, sqlite3.Connection]](_close_held, clean=clean)
        self._adbc_idle = IdleConnections[tuple[FileId, "adbc.Connection"]](
            _close_held, clean=clean
        )

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection to the file, given back on exit.  A missing or unreadable
        file is an :class:`~exportd.ExportFailed` naming it, also at request time, where
        a plain ``sqlite3.Error`` would escape."""
        file = self._file()
        try:
            with self._idle.lent(partial(self._open, file), partial(_reset, file)) as (_, conn):
                yield conn
        except sqlite3.Error as exc:
            raise ExportFailed(f"cannot read the data store {self.path}: {exc}") from exc

    @contextmanager
    def adbc_connection(self) -> Iterator[adbc.Connection]:
        """A read-only ADBC connection to the file (waiting for a writer's lock as long as
        :mod:`sqlite3` does), given back on exit; ADBC's errors pass through."""
        file = self._file()
        with self._adbc_idle.lent(partial(self._open_adbc, file), partial(_same, file)) as held:
            yield held[1]

    def close(self) -> None:
        """Close the idle connections; the next :meth:`connect` opens a new one."""
        self._idle.close()
        self._adbc_idle.close()

    def _file(self) -> FileId:
        """The identity of the file at the path, or :class:`~exportd.ExportFailed` if there
        is none."""
        try:
            found = os.stat(self.path)
        except OSError:
            found = None
        if found is None or not stat.S_ISREG(found.st_mode):
            raise ExportFailed(
                f"no data store at {self.path} (data.url {self.url}): run `exportd demo-data` "
                "or load your data (see docs/data-model.md)"
            )
        return found.st_dev, found.st_ino

    def _uri(self) -> str:
        return f"{self.path.resolve().as_uri()}?mode=ro"

    def _open(self, file: FileId) -> tuple[FileId, sqlite3.Connection]:
        return file, sqlite3.connect(self._uri(), uri=True, check_same_thread=False)

    def _open_adbc(self, file: FileId) -> tuple[FileId, adbc.Connection]:
        from exportd.kernel import adbc

        connection = adbc.Connection(adbc.database("adbc_driver_sqlite", self._uri()))
        try:
            connection.run(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
        except BaseException:
            connection.close()
            raise
        return file, connection

    def stream(
        self, conn: sqlite3.Connection, sql: str, args: SqlArgs, size: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of ``sql``, ``size`` at a time (SQLite steps through them lazily)."""
        cursor = conn.execute(sql, args)
        while rows := cursor.fetchmany(size):
            yield rows

    def arrow(
        self,
        conn: sqlite3.Connection,
        sql: str,
        args: SqlArgs,
        size: int,
        columns: Sequence[Column],
    ) -> Iterator[pa.RecordBatch]:
        """The rows of ``sql`` as Arrow batches (:meth:`DataStore.arrow`), read by ADBC on
        a read-only connection of their own; ``conn`` reads them from a batch that does
        not fit ``columns`` on (see :mod:`exportd.kernel.sqlite_arrow`)."""
        from exportd.kernel.sqlite_arrow import read_arrow

        return read_arrow(self, conn, sql, args, size, columns=columns)


def _close(connection: sqlite3.Connection | adbc.Connection) -> None:
    connection.close()


def _close_held(held: tuple[FileId, sqlite3.Connection | adbc.Connection]) -> None:
    _close(held[1])


def _answers(connection: adbc.Connection) -> bool:
    """Whether an idle PostgreSQL connection still answers (a server restarted, or a
    connection that timed out meanwhile, leaves dead ones)."""
    from exportd.kernel import adbc

    try:
        connection.run("SELECT 1")
    except (adbc.Error, OSError):
        return False
    return True


def _same(file: FileId, held: tuple[FileId, object]) -> bool:
    """Whether an idle connection ``held`` is to ``file``."""
    return held[0] == file


def _reset(file: FileId, held: tuple[FileId, sqlite3.Connection]) -> bool:
    """Whether an idle connection ``held`` is to ``file``; if so, it is as a new one is:
    out of any transaction, with the default row and text factories (a source may have
    changed them)."""
    if not _same(file, held):
        return False
    conn = held[1]
    if conn.in_transaction:
        conn.rollback()
    conn.row_factory = None
    conn.text_factory = str
    return True


class PostgresStore(DataStore):
    """A PostgreSQL database (``postgresql://USER@HOST:PORT/DB``), read through one
    ``psycopg_pool.ConnectionPool`` of at most ``pool_size`` connections, opened at the
    first :meth:`connect`.  Sessions are read-only and in UTC; the URL's own parameters
    (``options``, ``connect_timeout``, ``application_name``) are kept.

    A server that cannot be reached, a connection lost, or no connection free within
    :data:`POOL_TIMEOUT` is an :class:`~exportd.Unavailable` (the same export may work
    shortly); a statement's error is an :class:`~exportd.ExportFailed`.
    """

    dialect: ClassVar[Dialect] = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        try:
            import psycopg_pool  # noqa: F401 (only to fail early)
        except ImportError:
            raise ConfigError.field(
                "data.url",
                f"{redact(url)} is a PostgreSQL store, which needs psycopg and "
                f"psycopg-pool: {INSTALL_HINT}",
            ) from None
        if problem := url_problem(url):
            raise ConfigError.field("data.url", problem)
        self._url, self.url, self.pool_size = url, redact(url), pool_size
        self.conninfo = with_session(url, SESSION_OPTIONS, SESSION_DEFAULTS)
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] | None = None
        self._lock = threading.Lock()
        self._cursors = itertools.count()
        self._adbc_idle = IdleConnections["adbc.Connection"](_close, limit=pool_size)

    def _opened(self) -> psycopg_pool.ConnectionPool[psycopg.Connection[Any]]:
        """The pool, opened now if it is not yet; one connection first, so that an
        unreachable server is an error saying why, not a pool's timeout.  The probe runs
        outside the lock: requests that find no pool do not wait for one another."""
        import psycopg_pool

        with self._lock:
            if self._pool is not None:
                return self._pool
        if problem := self._probe():
            raise self._unavailable(
                f"cannot connect to the data store (data.url {self.url})", problem
            )
        with self._lock:
            if self._pool is None:
                self._pool = psycopg_pool.ConnectionPool(
                    self.conninfo,
                    min_size=1,
                    max_size=self.pool_size,
                    check=psycopg_pool.ConnectionPool.check_connection,
                    reset=reset_session,
                    timeout=POOL_TIMEOUT,
                    name="exportd-data",
                    open=True,
                )
            return self._pool

    def _probe(self) -> str | None:
        """Why a new connection to the server fails, or ``None`` if it works."""
        import psycopg

        try:
            psycopg.connect(self.conninfo).close()
        except psycopg.Error as exc:
            return reason(exc, self._url)
        return None

    def _unavailable(self, what: str, why: str) -> Unavailable:
        return Unavailable(f"{what}: {why}; the export may work once the server is back")

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the pool, in a read-only transaction, given back on exit."""
        import psycopg
        import psycopg_pool

        pool = self._opened()
        try:
            with pool.connection() as conn:
                yield conn
        except psycopg_pool.PoolTimeout:
            why = (
                self._probe() or f"all its {self.pool_size} connections (data.pool_size) are in use"
            )
            raise self._unavailable(
                f"no connection to the data store (data.url {self.url}) within {POOL_TIMEOUT:g} s",
                why,
            ) from None
        except psycopg.Error as exc:
            message = f"cannot read the data store (data.url {self.url})"
            if is_unavailable(exc):
                raise self._unavailable(message, reason(exc, self._url)) from None
            raise ExportFailed(f"{message}: {reason(exc, self._url)}") from None

    def stream(
        self, conn: psycopg.Connection[Any], sql: str, args: SqlArgs, size: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of ``sql`` through a server-side cursor, ``size`` rows a fetch."""
        with conn.cursor(name=f"exportd_{next(self._cursors)}") as cursor:
            cursor.execute(sql, args)
            while rows := cursor.fetchmany(size):
                yield rows

    def arrow(
        self,
        conn: psycopg.Connection[Any],
        sql: str,
        args: SqlArgs,
        size: int,
        columns: Sequence[Column],
    ) -> Iterator[pa.RecordBatch]:
        """The rows of ``sql`` as Arrow batches (:meth:`DataStore.arrow`), read by ADBC's
        binary ``COPY`` on an ADBC connection of the store's own (one per connection of
        ``conn``'s pool at most, sessions as the pool's).  ``COPY`` takes no parameters:
        psycopg binds ``args`` on the client (``ClientCursor.mogrify``), as it quotes
        them for any statement."""
        import psycopg

        from exportd.kernel import adbc

        query = psycopg.ClientCursor(conn).mogrify(sql, args)
        try:
            # A statement cut short may leave its COPY running: its connection is closed.
            with (
                self._adbc_idle.lent(self._open_adbc, _answers) as connection,
                # Closed before the connection is (an open statement would keep it open).
                closing(connection.batches(query)) as batches,
            ):
                for batch in batches:
                    for start in range(0, batch.num_rows, size):
                        yield _cast_to(batch.slice(start, size), columns)
        except (adbc.Error, OSError) as exc:
            message = f"cannot read the data store (data.url {self.url})"
            why = reason(exc, self._url)
            if str(getattr(exc, "sqlstate", None) or "").startswith(UNAVAILABLE_SQLSTATES):
                raise self._unavailable(message, why) from None
            raise ExportFailed(f"{message}: {why}") from None

    def _open_adbc(self) -> adbc.Connection:
        """A new ADBC connection (in autocommit: one statement at a time)."""
        from exportd.kernel import adbc

        try:
            return adbc.Connection(adbc.database("adbc_driver_postgresql", self.conninfo))
        except adbc.Error as exc:
            raise self._unavailable(
                f"cannot connect to the data store (data.url {self.url})", reason(exc, self._url)
            ) from None

    def close(self) -> None:
        """Close the pools and their connections; the next :meth:`connect` opens a new one."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        self._adbc_idle.close()


def _cast_to(batch: pa.RecordBatch, columns: Sequence[Column]) -> pa.RecordBatch:
    """``batch`` with each array of its column's Arrow type (an ``int4`` as ``int64``)."""
    import pyarrow as pa

    arrays = []
    for array, column in zip(batch.columns, columns, strict=True):
        wanted = arrow_type(column.type)
        arrays.append(array if array.type == wanted else array.cast(wanted))
    return pa.RecordBatch.from_arrays(arrays, names=[column.name for column in columns])


def open_store(url: str, *, pool_size: int = 4) -> DataStore:
    """A new store for ``url`` (``sqlite:///PATH`` or ``postgresql://...``); a
    :class:`~exportd.ConfigError` naming ``data.url`` for any other."""
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite" and rest.startswith("/") and len(rest) > 1:
        return SqliteStore(Path(rest[1:]))
    if is_postgresql(url):
        return PostgresStore(url, pool_size=pool_size)
    raise ConfigError.field(
        "data.url", f"{redact(url)!r} is neither sqlite:///PATH nor postgresql://..."
    )


_stores: dict[tuple[str, int], DataStore] = {}
_stores_lock = threading.Lock()


def data_store(settings: Settings) -> DataStore:
    """This process's store for ``settings.data_url``: the same object (and pool) on
    every call."""
    key = (settings.data_url, settings.data_pool_size)
    with _stores_lock:
        if key not in _stores:
            _stores[key] = open_store(key[0], pool_size=key[1])
        return _stores[key]


@atexit.register
def close_stores() -> None:
    """Close every pool :func:`data_store` opened (when the process ends)."""
    with _stores_lock:
        stores = list(_stores.values())
        _stores.clear()
    for store in stores:
        store.close()
