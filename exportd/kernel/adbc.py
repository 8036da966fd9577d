"""ADBC connections and queries through the driver manager's own handles (database,
connection, statement), for the data stores' Arrow reads.

Not ADBC's DB-API module (``adbc_driver_sqlite.dbapi``, ``adbc_driver_postgresql.dbapi``):
importing it loads pyarrow.dataset, and polars wherever polars is installed, 20 to 100 ms
of a command's start-up for nothing these reads need.  What it did for them is done
here the same way: a statement is prepared, its parameters bound as one row (by name
for a mapping), and run so that Ctrl-C cancels it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Generator, Mapping
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import adbc_driver_manager
import pyarrow as pa

from exportd.plugins.api import SqlArgs

try:  # what ADBC's DB-API cursor runs a query with, so that Ctrl-C cancels it
    from adbc_driver_manager._lib import _blocking_call
except ImportError:  # a release that moved it: the query runs, without Ctrl-C's cancel

    def _blocking_call(  # type: ignore[misc]
        func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[Any, Any], cancel: Any
    ) -> Any:
        return func(*args, **kwargs)


Error = adbc_driver_manager.Error
"""What ADBC raises (a server's refusal carries its ``sqlstate``)."""


def database(driver: str, uri: str) -> adbc_driver_manager.AdbcDatabase:
    """An ADBC database at ``uri`` of the driver the package ``driver`` ships
    (``adbc_driver_sqlite``, ``adbc_driver_postgresql``): the library its wheel bundles
    beside the module, where the package's own ``connect`` looks first (through
    importlib.resources: 2-3 ms of start-up); without it, where that looks."""
    package = importlib.import_module(driver)
    bundled = Path(package.__file__ or "").with_name(f"lib{driver}.so")
    if bundled.is_file():
        return adbc_driver_manager.AdbcDatabase(driver=str(bundled), uri=uri)
    found: adbc_driver_manager.AdbcDatabase = package.connect(uri)
    return found


class Connection:
    """An ADBC connection (in autocommit: each statement on its own) and the database it
    was opened on, which it closes with it."""

    def __init__(self, database: adbc_driver_manager.AdbcDatabase) -> None:
        self._database = database
        try:
            self._connection = adbc_driver_manager.AdbcConnection(database)
        except BaseException:
            database.close()
            raise

    def run(self, sql: str) -> None:
        """Run ``sql`` (a statement without parameters) and read its rows, if any, to
        their end."""
        for _ in self.batches(sql):
            pass

    def batches(
        self, sql: str, args: SqlArgs = (), options: Mapping[str, str] | None = None
    ) -> Generator[pa.RecordBatch]:
        """The record batches of ``sql`` run with ``args`` (``:name`` parameters by their
        name, colon included, from a mapping), its statement given ``options`` first."""
        with closing(adbc_driver_manager.AdbcStatement(self._connection)) as statement:
            if options:
                statement.set_options(**options)
            statement.set_sql_query(sql)
            with suppress(adbc_driver_manager.NotSupportedError):  # as the DB-API does
                _blocking_call(statement.prepare, (), {}, statement.cancel)
            if args:
                _bind(statement, args)
            handle, _ = _blocking_call(statement.execute_query, (), {}, statement.cancel)
            with pa.RecordBatchReader._import_from_c(handle.address) as reader:
                yield from reader

    def close(self) -> None:
        """Close the connection, then its database."""
        try:
            self._connection.close()
        finally:
            self._database.close()


def _bind(statement: adbc_driver_manager.AdbcStatement, args: SqlArgs) -> None:
    """Bind ``args`` as one row of parameters: a mapping's by name, ``:`` before each,
    others by position."""
    row: Any
    if isinstance(args, Mapping):
        row = pa.record_batch({f":{name}": [value] for name, value in args.items()})
        statement.set_options(**{adbc_driver_manager.StatementOptions.BIND_BY_NAME.value: "true"})
    else:
        row = pa.record_batch([[value] for value in args], names=[str(i) for i in range(len(args))])
    statement.bind(row)
