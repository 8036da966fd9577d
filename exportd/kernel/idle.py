"""Connections a data store keeps open between uses, so that a small export does not pay
for opening them (and, for SQLite, reading the schema again) at every statement."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

C = TypeVar("C")

IDLE_LIMIT = 8
"""The most idle connections a store keeps; one given back beyond that is closed."""


class IdleConnections(Generic[C]):
    """Connections given back after a use that ended cleanly, lent again (the most recent
    first) for as long as ``usable`` says they still are; one that is not, or whose use
    ended with an exception (a statement cut short may leave it busy) other than one of
    ``clean`` (a reader closed early that closed its statement), is closed.  Safe across
    threads: each connection is lent to one user at a time."""

    def __init__(
        self,
        close: Callable[[C], None],
        *,
        clean: tuple[type[BaseException], ...] = (),
        limit: int = IDLE_LIMIT,
    ) -> None:
        self._close = close
        self._clean = clean
        self._limit = limit
        self._idle: list[C] = []
        self._lock = threading.Lock()

    @contextmanager
    def lent(self, open_: Callable[[], C], usable: Callable[[C], bool]) -> Iterator[C]:
        """An idle connection that is still ``usable``, or a new one from ``open_()``; kept
        for the next use after a clean exit, closed after another exception."""
        connection = self._take(usable)
        if connection is None:
            connection = open_()
        try:
            yield connection
        except BaseException as exc:
            if isinstance(exc, self._clean):
                self._give_back(connection)
            else:
                self._close(connection)
            raise
        self._give_back(connection)

    def close(self) -> None:
        """Close every idle connection (those lent now are closed or kept as they end)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            self._close(connection)

    def _take(self, usable: Callable[[C], bool]) -> C | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                connection = self._idle.pop()
            if usable(connection):
                return connection
            self._close(connection)

    def _give_back(self, connection: C) -> None:
        with self._lock:
            if len(self._idle) < self._limit:
                self._idle.append(connection)
                return
        self._close(connection)
