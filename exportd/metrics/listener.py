"""The small HTTP listener of ``exportd worker`` (``worker.metrics_listen``): ``GET
/metrics`` (Prometheus's text format) and ``GET /healthz`` (liveness), nothing else.

It runs in the worker's event loop, on asyncio's streams: a worker loads no HTTP
framework (see docs/runtime.md, "Layers").  That it answers at all says the loop
turns; ``/healthz`` answers 200 ``ok`` while the worker says it is live, and 503 with
the reason otherwise (shutting down, a loop that ended).  Each connection carries one
request (``Connection: close``); a request whose head does not arrive within
:data:`HEAD_TIMEOUT` seconds, or is larger than :data:`HEAD_LIMIT`, is cut.  An answer
that fails (a bug) is a 500, logged with its traceback; the listener goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus

from exportd.config.settings import host_and_port
from exportd.errors import ConfigError
from exportd.metrics.process import CONTENT_TYPE, ProcessMetrics

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 5.0
"""Seconds a connection has to send its request line and headers."""
HEAD_LIMIT = 8192
"""The most bytes of a request's head."""
Health = Callable[[], str | None]
"""Why the process is not live, or ``None`` when it is."""


def listen_address(value: str, field: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) as a host and a port; :class:`ConfigError`
    naming ``field`` otherwise."""
    address = host_and_port(value)
    if address is None:
        raise ConfigError.field(field, f"expected HOST:PORT, got {value!r}")
    return address


class MetricsListener:
    """Answers the requests of one listener: the metrics of ``metrics``, the liveness
    ``health`` tells."""

    def __init__(self, metrics: ProcessMetrics, health: Health) -> None:
        self.metrics = metrics
        self.health = health

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one request on a connection, then close it."""
        try:
            async with asyncio.timeout(HEAD_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            try:
                status, content_type, body = await self.answer(head)
            except Exception:  # a bug: answered 500 and logged, the listener goes on
                log.exception("the metrics listener failed to answer")
                status, content_type, body = HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", b""
            writer.write(_response(status, content_type, body))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # cut: a slow, incomplete or oversized head
        except ConnectionError:
            pass  # the client went away
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def answer(self, head: bytes) -> tuple[HTTPStatus, str, bytes]:
        """The status, media type and body answering the request whose head is ``head``."""
        method, _, rest = head.partition(b" ")
        target = rest.partition(b" ")[0].partition(b"?")[0]
        if target not in (b"/metrics", b"/healthz"):
            return HTTPStatus.NOT_FOUND, "text/plain", b"not found: /metrics, /healthz\n"
        if method != b"GET":
            return HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", b"only GET\n"
        if target == b"/metrics":
            return HTTPStatus.OK, CONTENT_TYPE, await self.metrics.exposition()
        reason = self.health()
        if reason is None:
            return HTTPStatus.OK, "text/plain", b"ok\n"
        return HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", f"{reason}\n".encode()


def _response(status: HTTPStatus, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


@contextlib.asynccontextmanager
async def serving_metrics(
    listen: str, field: str, metrics: ProcessMetrics, health: Health
) -> AsyncIterator[str | None]:
    """Serve ``/metrics`` and ``/healthz`` on ``listen`` (``HOST:PORT``; empty: not at
    all) while the block runs; yields the base URL (or None).  ``field`` names the setting
    in the error of an address it cannot listen on."""
    if not listen:
        yield None
        return
    host, port = listen_address(listen, field)
    try:
        server = await asyncio.start_server(
            MetricsListener(metrics, health).serve, host, port, limit=HEAD_LIMIT
        )
    except OSError as exc:
        raise ConfigError.field(field, f"cannot listen on {listen}: {exc}") from None
    bound = server.sockets[0].getsockname()
    url = f"http://{f'[{host}]' if ':' in host else host}:{bound[1]}"
    log.info("metrics at %s/metrics, liveness at %s/healthz", url, url)
    try:
        yield url
    finally:
        server.close()
        await server.wait_closed()
