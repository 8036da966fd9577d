"""Slow and idle clients over real sockets: a connection that has not sent a whole
request head within ``http.header_timeout`` is closed, however it trickles its bytes,
on a fresh connection as on a kept-alive one; whole requests are answered as before."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from exportd.config.loading import load_settings
from exportd.errors import ConfigError
from tests.http.server import Server, serving

TIMEOUT = 0.5
"""The test's ``http.header_timeout``, in seconds."""
SLACK = 2.0
"""How much later than the timeout a close may come on a busy machine."""


@pytest.fixture
async def server(tmp_path: Path, datastore: Path) -> AsyncIterator[Server]:
    """exportd serving HTTP with a short header timeout."""
    async with serving(tmp_path, datastore, http={"header_timeout": TIMEOUT}) as running:
        yield running


async def connect(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP connection to the server."""
    address = urlsplit(server.url)
    assert address.hostname is not None and address.port is not None
    return await asyncio.open_connection(address.hostname, address.port)


async def closed_after(reader: asyncio.StreamReader) -> tuple[float, bytes]:
    """Seconds until the server closes the connection, and what it sent before."""
    began = time.monotonic()
    async with asyncio.timeout(TIMEOUT + SLACK + 5):
        received = await reader.read()  # to the end: the server closed
    return time.monotonic() - began, received


async def test_half_a_request_line_and_then_nothing_is_closed_within_the_timeout(
    server: Server,
) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /heal")
    await writer.drain()
    seconds, received = await closed_after(reader)
    writer.close()
    assert received == b""
    assert seconds < TIMEOUT + SLACK


async def test_a_head_trickled_a_byte_at_a_time_is_closed_within_the_timeout(
    server: Server,
) -> None:
    reader, writer = await connect(server)
    began = time.monotonic()

    async def trickle() -> None:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(TIMEOUT / 10)

    trickling = asyncio.create_task(trickle())
    _, received = await closed_after(reader)
    trickling.cancel()
    writer.close()
    assert received == b""
    assert time.monotonic() - began < TIMEOUT + SLACK


async def test_many_silent_connections_are_all_closed(server: Server) -> None:
    connections = [await connect(server) for _ in range(200)]
    for _, writer in connections:
        writer.write(b"G")
    results = await asyncio.gather(*(closed_after(reader) for reader, _ in connections))
    for _, writer in connections:
        writer.close()
    assert all(received == b"" for _, received in results)
    assert max(seconds for seconds, _ in results) < TIMEOUT + SLACK
    assert (await server.http.get("/healthz")).status_code == 200


async def test_a_whole_request_is_answered_and_the_next_head_has_its_own_deadline(
    server: Server,
) -> None:
    reader, writer = await connect(server)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(3):  # each under the timeout, together over it
        await asyncio.sleep(TIMEOUT * 0.6)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
    writer.write(b"GET /heal")  # then half a request on the kept-alive connection
    seconds, received = await closed_after(reader)
    writer.close()
    assert received == b""
    assert seconds < TIMEOUT + SLACK


def test_the_header_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"EXPORTD_HTTP__HEADER_TIMEOUT": "0"})
    assert "configuration key 'http.header_timeout'" in str(refused.value)
    assert load_settings({}).http.header_timeout == 10.0
