"""The idle connections a data store keeps between uses: lent again while usable, closed
after a use that failed, at most a few kept; and the SQLite store's, which follow the
file at the path and come back as new."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from exportd import Column, ExportFailed
from exportd.kernel.batches import to_rows
from exportd.kernel.datastores import SqliteStore
from exportd.kernel.idle import IdleConnections


class Link:
    """A stand-in connection: the pool's own logic is what is tested here."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False


class Links:
    """Numbered links, and the pool that lends them."""

    def __init__(self, *, limit: int = 8) -> None:
        self.opened: list[Link] = []
        self.pool = IdleConnections[Link](self.close, clean=(GeneratorExit,), limit=limit)

    def open(self) -> Link:
        link = Link(len(self.opened))
        self.opened.append(link)
        return link

    @staticmethod
    def close(link: Link) -> None:
        link.closed = True


def usable(link: Link) -> bool:
    return True


def test_a_connection_given_back_is_lent_again_and_closed_with_the_pool() -> None:
    links = Links()
    with links.pool.lent(links.open, usable) as first:
        pass
    with links.pool.lent(links.open, usable) as again:
        assert again is first
        with links.pool.lent(links.open, usable) as nested:  # the first is lent: a new one
            assert nested is not first
    assert len(links.opened) == 2
    links.pool.close()
    assert all(link.closed for link in links.opened)


def test_a_use_that_raised_closes_its_connection_unless_the_exception_is_clean() -> None:
    links = Links()
    with pytest.raises(RuntimeError), links.pool.lent(links.open, usable) as failed:
        raise RuntimeError("a statement cut short")
    assert failed.closed

    def reader() -> Iterator[Link]:
        with links.pool.lent(links.open, usable) as link:
            yield link
            yield link

    read = reader()
    early = next(read)
    read.close()  # a reader stopped at its limit
    assert not early.closed
    with links.pool.lent(links.open, usable) as again:
        assert again is early


def test_a_connection_no_longer_usable_is_closed_not_lent() -> None:
    links = Links()
    with links.pool.lent(links.open, usable) as stale:
        pass
    with links.pool.lent(links.open, lambda link: link is not stale) as fresh:
        assert fresh is not stale
    assert stale.closed


def test_the_pool_keeps_at_most_its_limit_and_closes_the_others() -> None:
    links = Links(limit=1)
    with links.pool.lent(links.open, usable) as one, links.pool.lent(links.open, usable) as two:
        pass
    assert one.closed != two.closed  # one kept, one closed


def _sqlite_file(path: Path, value: int) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (n INTEGER)")
        conn.execute("INSERT INTO t VALUES (?)", (value,))
        conn.commit()


COLUMNS = (Column("n", "integer"),)


def _arrow_read(store: SqliteStore, sql: str) -> list[tuple[object, ...]]:
    with store.connect() as conn:
        return [row for batch in store.arrow(conn, sql, {}, 10, COLUMNS) for row in to_rows(batch)]


def test_the_sqlite_store_reads_a_file_replaced_under_its_path_and_what_was_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data.db"
    _sqlite_file(path, 1)
    with SqliteStore(path) as store:
        with store.connect() as conn:
            assert conn.execute("SELECT n FROM t").fetchall() == [(1,)]
        assert _arrow_read(store, "SELECT n FROM t") == [(1,)]
        with closing(sqlite3.connect(path)) as writer:  # written since: seen
            writer.execute("INSERT INTO t VALUES (2)")
            writer.commit()
        assert _arrow_read(store, "SELECT n FROM t ORDER BY n") == [(1,), (2,)]
        replacement = tmp_path / "new.db"
        _sqlite_file(replacement, 3)
        os.replace(replacement, path)  # a new file at the path: the idle ones are not it
        with store.connect() as conn:
            assert conn.execute("SELECT n FROM t").fetchall() == [(3,)]
        assert _arrow_read(store, "SELECT n FROM t") == [(3,)]
        path.unlink()
        with pytest.raises(ExportFailed, match="no data store at"), store.connect():
            pass


def test_a_sqlite_connection_a_source_changed_comes_back_as_a_new_one(tmp_path: Path) -> None:
    path = tmp_path / "data.db"
    _sqlite_file(path, 1)
    with SqliteStore(path) as store:
        with store.connect() as conn:
            conn.row_factory = sqlite3.Row
            conn.text_factory = bytes
            conn.execute("BEGIN")
            first = conn
        with store.connect() as conn:
            assert conn is first  # the same connection, lent again
            assert not conn.in_transaction
            assert conn.execute("SELECT 'x', n FROM t").fetchall() == [("x", 1)]
