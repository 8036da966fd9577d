"""The engine's side of the control socket (:mod:`exportd.control` says what it speaks):
``exportd jobs`` and ``exportd watch`` against ``exportd serve``, which has no broker.

Commands go to :meth:`Engine.answer`, as those of the AMQP control queue do; events
come from a subscription to the bus's events exchange, as a queue bound to it would.
Each connection is served in a task of its own.  A connection the client breaks off
ends quietly; any other error in one is logged with its traceback and closes that
connection only: the engine and the other connections go on.  A watcher that falls
:data:`WATCH_BACKLOG` events behind is hung up on, so that it cannot hold the memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec

from exportd.bus.base import Message
from exportd.control import Watch
from exportd.engine.service import Engine
from exportd.errors import Conflict
from exportd.messages import RequestReply

log = logging.getLogger(__name__)

WATCH_BACKLOG = 10_000
"""Events a watcher may fall behind by before it is hung up on."""
PROBE_TIMEOUT = 1.0
"""Seconds to wait for a socket left in the way to answer."""


class ControlSocket:
    """The control socket at ``path``: ``async with`` claims it, :meth:`serving` answers
    on it, and the end of the ``async with`` removes the file.

    Claim it before the engine starts, so that a second ``exportd serve`` on the same
    home stops before it touches the job store: a socket at ``path`` that answers
    raises :class:`~exportd.errors.Conflict`.  One that does not is left over from a
    process that was killed, and is replaced.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._listener: socket.socket | None = None

    async def __aenter__(self) -> ControlSocket:
        _claim(self.path)
        self._listener = _bound(self.path)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._listener is not None:
            self._listener.close()  # a no-op once the server closed it
        self.path.unlink(missing_ok=True)

    @asynccontextmanager
    async def serving(self, engine: Engine) -> AsyncIterator[None]:
        """Answer for ``engine`` while the block runs; then hang up on every client."""
        assert self._listener is not None, "claim the socket first: async with"
        connections: set[asyncio.Task[object]] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            connections.add(task)
            try:
                await _serve_connection(engine, reader, writer)
            finally:
                connections.discard(task)

        server = await asyncio.start_unix_server(on_connect, sock=self._listener)
        log.info("control socket at %s (exportd jobs, exportd watch)", self.path)
        try:
            yield
        finally:
            server.close()
            for task in tuple(connections):
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)
            await server.wait_closed()


def _claim(path: Path) -> None:
    """Make way for a new socket at ``path``, unless another process answers there."""
    if not path.is_socket():
        if path.exists():
            raise Conflict(f"{path} is in the way of the control socket: it is no socket")
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)
            return
    raise Conflict(f"another exportd serve answers on {path}: run one per EXPORTD_HOME")


def _bound(path: Path) -> socket.socket:
    """A socket bound at ``path`` that only its owner may use: bound under a temporary
    name, made 0600, then moved into place, so that it is never open to others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        temporary.unlink(missing_ok=True)
        listener.bind(str(temporary))
        temporary.chmod(0o600)
        temporary.replace(path)
    except BaseException:
        listener.close()
        temporary.unlink(missing_ok=True)
        raise
    return listener


async def _serve_connection(
    engine: Engine, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answer the one request of a connection (see :mod:`exportd.control`)."""
    try:
        line = await reader.readline()
        if not line:
            return
        try:
            watch = msgspec.json.decode(line, type=Watch)
        except msgspec.DecodeError:  # a command, or a malformed line the engine refuses
            await _send(writer, await engine.answer(line))
        else:
            await _stream_events(engine, watch.watch, reader, writer)
    except ConnectionError:  # the client hung up
        pass
    except Exception:
        log.exception("a connection to the control socket failed; it is closed")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _stream_events(
    engine: Engine, pattern: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Send the events that match ``pattern``, a line each, until the client hangs up."""
    waiting: asyncio.Queue[bytes] = asyncio.Queue(WATCH_BACKLOG)

    async def on_event(message: Message) -> None:
        await message.ack()
        try:
            waiting.put_nowait(message.body)
        except asyncio.QueueFull:
            log.warning("a watcher fell %d events behind: hung up on", WATCH_BACKLOG)
            writer.close()

    bus = engine.bus
    subscription = await bus.subscribe(bus.topology.events, pattern, on_event)
    try:
        await _send(writer, RequestReply(ok=True))
        hangup = asyncio.create_task(reader.read())  # ends when the client closes
        try:
            while not writer.is_closing():
                event = asyncio.create_task(waiting.get())
                await asyncio.wait({event, hangup}, return_when=asyncio.FIRST_COMPLETED)
                if not event.done():
                    event.cancel()
                    break
                writer.write(event.result() + b"\n")
                await writer.drain()
        finally:
            hangup.cancel()
    finally:
        await subscription.cancel()


async def _send(writer: asyncio.StreamWriter, reply: RequestReply) -> None:
    writer.write(msgspec.json.encode(reply) + b"\n")
    await writer.drain()
