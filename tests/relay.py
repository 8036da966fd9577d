"""A TCP relay in front of a test server, to take the server "down" and bring it back
without stopping it (a moto server would come back without its buckets, and the shared
PostgreSQL is not the tests' to stop)."""

from __future__ import annotations

import asyncio

from tests.ports import free_port


class Relay:
    """Forwards TCP connections from a port of 127.0.0.1 to ``target``'s, while it is up
    (:meth:`up`); down, nothing listens there: connections are refused."""

    def __init__(self, target: int) -> None:
        self.port = free_port()
        self.target = target
        self.listener: asyncio.Server | None = None
        self.connections: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        """Listen, and forward every connection."""
        self.listener = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def down(self) -> None:
        """Stop listening (connections under way finish)."""
        if self.listener is not None:
            self.listener.close()
            await self.listener.wait_closed()

    def cut(self) -> None:
        """Drop every connection under way, as a server that goes down does."""
        for writer in self.connections:
            writer.transport.abort()
        self.connections.clear()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target_reader, target_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.connections |= {writer, target_writer}
        try:
            await asyncio.gather(_pipe(reader, target_writer), _pipe(target_reader, writer))
        except OSError:
            pass  # cut
        finally:
            self.connections -= {writer, target_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
