"""A deadline for each request's head: a connection that has not sent a whole request
line and its headers within ``http.header_timeout`` is closed.

uvicorn has no such timeout.  Its ``timeout_keep_alive`` is armed only once a response
is complete, and any byte cancels it; until a request's head is complete nothing
bounds the wait, so a client that sends half a request line (or one byte now and
then) holds its connection and socket for ever: thousands of them exhaust the
process's file descriptors (slow loris).  :class:`HeaderDeadline` is uvicorn's h11
protocol with one timer more: armed when the connection opens and when a response
completes (the next request's head is awaited), cancelled once h11 has parsed a
whole head.  The deadline counts from then, not from the last byte, so trickling
bytes does not extend it.  Bodies and answers are not bounded by it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

log = logging.getLogger(__name__)


class HttpConfig(uvicorn.Config):
    """uvicorn's configuration, serving with :class:`HeaderDeadline` and its
    ``header_timeout`` (seconds)."""

    def __init__(self, app: Any, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, http=HeaderDeadline, **kwargs)
        self.header_timeout = header_timeout


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head (request line
    and headers) has not arrived ``config.header_timeout`` seconds after the
    connection opened or the previous response completed."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if not isinstance(config, HttpConfig):
            raise TypeError("HeaderDeadline serves an HttpConfig")
        self.header_timeout = config.header_timeout
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the connection's first deadline."""
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        """Parse ``data``; the deadline ends once a whole head has come."""
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_deadline()

    def on_response_complete(self) -> None:
        """Once an answer is complete, the next head (if any) has a deadline of its own."""
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone: so is its deadline."""
        self._cancel_deadline()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.debug(
                "closed a connection from %s: no request head within %g s",
                self.client,
                self.header_timeout,
            )
            self.transport.close()
