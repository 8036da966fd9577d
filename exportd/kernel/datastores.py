"""The data stores behind ``data.url``: a SQLite file, or a PostgreSQL database.

:func:`data_store` gives each process one store per URL, so a worker, a server or a
command shares one PostgreSQL connection pool among its exports; the pools open at
first use and close when the process ends.  The sources see a store as the public
:class:`~exportd.DataStore` (``ctx.data``).
"""

from __future__ import annotations

import atexit
import itertools
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from exportd.config import Settings
from exportd.data.postgres import reason, redact
from exportd.errors import ConfigError, ExportFailed
from exportd.plugins.api import DataStore, Dialect, SqlArgs

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

CONNECT_TIMEOUT = 10
"""Seconds to wait for PostgreSQL to answer a new connection."""

SESSION: dict[str, Any] = {
    "options": "-c TimeZone=UTC -c default_transaction_read_only=on",
    "application_name": "exportd",
    "connect_timeout": CONNECT_TIMEOUT,
}
"""Every PostgreSQL session of a store: times come back in UTC, and nothing is written."""

INSTALL_HINT = "pip install 'exportd[postgresql]'"


class SqliteStore(DataStore):
    """A SQLite file (``sqlite:///PATH``), opened read-only for each :meth:`connect`."""

    dialect: ClassVar[Dialect] = "sqlite"
    path: Path

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection to the file, closed on exit.  A missing or unreadable
        file is an :class:`~exportd.ExportFailed` naming it, also at request time, where
        a plain ``sqlite3.Error`` would escape."""
        path = self.path
        if not path.is_file():
            raise ExportFailed(
                f"no data store at {path} (data.url {self.url}): run `exportd demo-data` "
                "or load your data (see docs/data-model.md)"
            )
        uri = f"{path.resolve().as_uri()}?mode=ro"
        try:
            with closing(sqlite3.connect(uri, uri=True, check_same_thread=False)) as conn:
                yield conn
        except sqlite3.Error as exc:
            raise ExportFailed(f"cannot read the data store {path}: {exc}") from exc

    def stream(
        self, conn: sqlite3.Connection, sql: str, args: SqlArgs, size: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of ``sql``, ``size`` at a time (SQLite steps through them lazily)."""
        cursor = conn.execute(sql, args)
        while rows := cursor.fetchmany(size):
            yield rows


class PostgresStore(DataStore):
    """A PostgreSQL database (``postgresql://USER@HOST:PORT/DB``), read through one
    ``psycopg_pool.ConnectionPool`` of at most ``pool_size`` connections, opened at the
    first :meth:`connect`.  Sessions are read-only and in UTC."""

    dialect: ClassVar[Dialect] = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        try:
            import psycopg_pool  # noqa: F401 (only to fail early)
        except ImportError:
            raise ConfigError(
                f"data.url {redact(url)} is a PostgreSQL store, which needs psycopg and "
                f"psycopg-pool: {INSTALL_HINT}",
                [],
            ) from None
        self.conninfo, self.url, self.pool_size = url, redact(url), pool_size
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] | None = None
        self._lock = threading.Lock()
        self._cursors = itertools.count()

    def _opened(self) -> psycopg_pool.ConnectionPool[psycopg.Connection[Any]]:
        """The pool, opened now if it is not yet; one connection first, so that an
        unreachable server is an error saying why, not a pool's timeout."""
        import psycopg
        import psycopg_pool

        with self._lock:
            if self._pool is None:
                try:
                    psycopg.connect(self.conninfo, **SESSION).close()
                except psycopg.Error as exc:
                    raise ExportFailed(
                        f"cannot connect to the data store (data.url {self.url}): {reason(exc)}"
                    ) from None
                self._pool = psycopg_pool.ConnectionPool(
                    self.conninfo,
                    min_size=1,
                    max_size=self.pool_size,
                    kwargs=SESSION,
                    name="exportd-data",
                    open=True,
                )
            return self._pool

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the pool, in a read-only transaction, given back on exit."""
        import psycopg

        pool = self._opened()
        try:
            with pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise ExportFailed(
                f"cannot read the data store (data.url {self.url}): {reason(exc)}"
            ) from exc

    def stream(
        self, conn: psycopg.Connection[Any], sql: str, args: SqlArgs, size: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of ``sql`` through a server-side cursor, ``size`` rows a fetch."""
        with conn.cursor(name=f"exportd_{next(self._cursors)}") as cursor:
            cursor.execute(sql, args)
            while rows := cursor.fetchmany(size):
                yield rows

    def close(self) -> None:
        """Close the pool and its connections; the next :meth:`connect` opens a new one."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def open_store(url: str, *, pool_size: int = 4) -> DataStore:
    """A new store for ``url`` (``sqlite:///PATH`` or ``postgresql://...``); a
    :class:`~exportd.ConfigError` naming ``data.url`` for any other."""
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite" and rest.startswith("/") and len(rest) > 1:
        return SqliteStore(Path(rest[1:]))
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url, pool_size=pool_size)
    raise ConfigError(
        f"data.url {redact(url)!r} is neither sqlite:///PATH nor postgresql://...", []
    )


_stores: dict[tuple[str, int], DataStore] = {}
_stores_lock = threading.Lock()


def data_store(settings: Settings) -> DataStore:
    """This process's store for ``settings.data_url``: the same object (and pool) on
    every call."""
    key = (settings.data_url, settings.data.pool_size)
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
        if isinstance(store, PostgresStore):
            store.close()
